//! A cheap check of a new beat against the beats of the last streaming interpretation.
//!
//! While a visit streams, the interpreter could re-run the whole interpretation each
//! time a beat arrives, but a median beat does not change when the beats added to it
//! look like the ones it was made of, and neither does the verdict read from it. So
//! after a reading that cannot decide early (it does not alert on the 4th-UDMI
//! criteria) the interpreter measures each new beat at a few points that the rules read
//! (ST at J from the beat's own PR segment, ST at J+60 ms, the T wave, the QRS
//! amplitude), and interprets again only when some lead differs from the reference
//! beats by more than a tolerance. The final interpretation of the
//! whole recording never depends on this screen.
//!
//! The points are read above a line through the beat's PR segment and the next beat's,
//! as the analysis removes baseline wander: read above the PR level alone, breathing's
//! wander (a few hundred uV at 0.2-0.3 Hz) tilts ST by up to 1 mm between PR and J, and
//! on the simulated clinics' tracings with wander the screen sent 3-5 readings per
//! visit instead of 1.5. A beat is therefore screened once the next R peak is known.
//!
//! In a paced rhythm both sides are read without the stimulus needles, as the analysis
//! reads its beats: left in a new beat, the needle alone pulled its correlation with the
//! needle-free median under the dominant threshold, and every paced beat missed.

use crate::analysis::Analysis;
use crate::beat::{median, samples, Aligner, DOMINANT_CORR};

/// ST changes below half a millimetre (50 uV) cannot move a verdict whose smallest
/// ST threshold is 1 mm, and the median of several beats moves less than one beat.
const ST_TOLERANCE_UV: f32 = 50.0;
/// On noisy beats the tolerance follows their spread, but never past 1 mm, the
/// smallest ST threshold.
const ST_TOLERANCE_CAP_UV: f32 = 100.0;
/// The T wave and the QRS are larger and jitter more with the detector's R position.
const WAVE_TOLERANCE_UV: f32 = 100.0;
/// Relative tolerance on QRS amplitude: breathing alone moves it 10-20 % from beat to
/// beat, and the median of several beats much less.
const QRS_TOLERANCE: f32 = 0.20;
/// Half-width of the averages taken at each point, against sample noise.
const HALF_WIDTH_S: f64 = 0.004;
/// No two beats closer than this: the next beat's R peak lies beyond it (the aligned R
/// of a beat can sit a few samples after the detector's).
const REFRACTORY_S: f64 = 0.2;

/// Where each point is measured, in samples from the aligned R peak.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    /// The PR segment's flattest stretch, averaged whole: the baseline of one beat.
    pr: (isize, isize),
    qrs_on: isize,
    qrs_off: isize,
    j: isize,
    j60: isize,
    t: isize,
    half: usize,
    refractory: usize,
}

/// Per lead, in uV: ST at J (above the baseline line), the ST's rise from J to J+60 ms, the
/// T wave from J+60 ms, and the QRS peak-to-peak.
type Points = [f32; 4];

/// The reference beats of one interpretation, measured the way new beats will be.
#[derive(Debug, Clone)]
pub(crate) struct BeatScreen {
    aligner: Aligner,
    offsets: Offsets,
    /// Per analysed lead (in the analysis' lead order) and point, the median over the
    /// dominant beats and how far from it a new beat may lie.
    reference: Vec<[(f32, f32); 4]>,
    /// The analysis cut pacing needles: new beats get theirs cut too.
    paced: bool,
    fs_hz: f64,
}

impl BeatScreen {
    /// Builds the screen from an analysis of `signals` (in the analysis' lead order, the
    /// samples it read; `r_peaks` the R peaks detected so far, in the same numbering).
    /// `None` when the reference beats cannot be measured.
    pub fn new(a: &Analysis, signals: &[&[f32]], r_peaks: &[usize]) -> Option<BeatScreen> {
        let fs = a.fs_hz;
        let rel = |t: usize| t as isize - a.origin as isize;
        let j = rel(a.fid.j);
        let t = match a.fid.t_end {
            // Midway from J to T end: near the T peak, where the T-wave rules read.
            Some(te) if te > a.fid.j => rel((a.fid.j + te) / 2),
            _ => j + samples(fs, 0.16) as isize,
        };
        let offsets = Offsets {
            pr: (rel(a.fid.pr.0), rel(a.fid.pr.1.max(a.fid.pr.0))),
            qrs_on: rel(a.fid.qrs_on),
            qrs_off: rel(a.fid.qrs_off),
            j,
            j60: j + samples(fs, 0.06) as isize,
            t,
            half: samples(fs, HALF_WIDTH_S),
            refractory: samples(fs, REFRACTORY_S),
        };
        let paced = !a.pace_needles.is_empty();
        // Paced: the signals without the needles the analysis cut.
        let despiked: Vec<Vec<f32>>;
        let view: Vec<&[f32]> = if paced {
            despiked = crate::pacing::remove(signals, &a.pace_needles);
            despiked.iter().map(Vec::as_slice).collect()
        } else {
            signals.to_vec()
        };
        let dominant: Vec<usize> = a
            .sorted
            .r_aligned
            .iter()
            .zip(&a.sorted.dominant)
            .filter(|(_, &d)| d)
            .map(|(&r, _)| r)
            .collect();
        let mut reference = Vec::with_capacity(view.len());
        for x in &view {
            let per_beat: Vec<Points> = dominant
                .iter()
                .filter_map(|&r| points(x, r, next_beat(r_peaks, r, &offsets), &offsets))
                .collect();
            if per_beat.is_empty() {
                return None;
            }
            let mut p = [(0f32, 0f32); 4];
            for (k, v) in p.iter_mut().enumerate() {
                let mut column: Vec<f32> = per_beat.iter().map(|b| b[k]).collect();
                let m = median(&mut column);
                let mut spread: Vec<f32> = column.iter().map(|c| (c - m).abs()).collect();
                // 3 robust SDs of the beats read (MAD x 1.4826): a beat inside them
                // is one of them, within a floor (the measure's own resolution) and a
                // cap (what the rules must never miss).
                let sd = 1.4826 * median(&mut spread);
                let (floor, cap) = match k {
                    0 | 1 => (ST_TOLERANCE_UV, ST_TOLERANCE_CAP_UV),
                    2 => (WAVE_TOLERANCE_UV, 2.0 * WAVE_TOLERANCE_UV),
                    _ => {
                        let f = WAVE_TOLERANCE_UV.max(QRS_TOLERANCE * m);
                        (f, 2.0 * f)
                    }
                };
                *v = (m, (3.0 * sd).clamp(floor, cap));
            }
            reference.push(p);
        }
        Some(BeatScreen {
            aligner: Aligner::new(&a.median, a.origin, fs),
            offsets,
            reference,
            paced,
            fs_hz: fs,
        })
    }

    /// Samples before a beat's R peak that `matches` may read: the alignment's reach, the
    /// PR segment and the averages' half-widths, with room to spare.
    pub fn lookback(&self) -> usize {
        let o = &self.offsets;
        self.aligner.reach().0 + o.pr.0.unsigned_abs() + 4 * o.half + 4
    }

    /// Whether the beat at R peak `r` looks like the reference beats in every lead
    /// (`r` and `r_peaks`, the R peaks detected so far, which should include the next
    /// beat's, see `has_next_beat`, in the numbering of `signals`, which reach at least
    /// `lookback` before `r`). A beat that cannot be measured does not match.
    pub fn matches(&self, signals: &[&[f32]], r: usize, r_peaks: &[usize]) -> bool {
        if !self.paced {
            return self.matches_at(signals, r, r_peaks);
        }
        // Only the stretch the beat is read on, from the alignment's reach before R (or
        // the PR segment's, from the earliest aligned R) to the next beat's PR segment,
        // is copied without needles; generous, as a needle cut or not outside the points
        // read changes nothing.
        let o = &self.offsets;
        let (before, after) = self.aligner.reach();
        let margin = 2 * o.half + 2;
        let first = r as isize - (before as isize - o.pr.0) - margin as isize;
        let mut last = r as isize + (after + o.half) as isize + o.t.max(0);
        if let Some(n) = next_beat(r_peaks, r, o) {
            last = last.max(n as isize + o.pr.1);
        }
        let len = signals.iter().map(|x| x.len()).min().unwrap_or(0);
        let (Ok(lo), Ok(hi)) = (
            usize::try_from(first),
            usize::try_from(last + margin as isize + 1).map(|h| h.min(len)),
        ) else {
            return false;
        };
        let Some(span) = signals
            .iter()
            .map(|x| x.get(lo..hi))
            .collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        let needles = crate::pacing::find(&span, self.fs_hz);
        let despiked = crate::pacing::remove(&span, &needles);
        let view: Vec<&[f32]> = despiked.iter().map(Vec::as_slice).collect();
        let peaks: Vec<usize> = r_peaks
            .iter()
            .filter(|&&p| p >= lo)
            .map(|&p| p - lo)
            .collect();
        self.matches_at(&view, r - lo, &peaks)
    }

    fn matches_at(&self, signals: &[&[f32]], r: usize, r_peaks: &[usize]) -> bool {
        // Aligned as the analysis aligns beats, or the detector's few samples of jitter
        // would read as a change on the steep end of the QRS; a beat of another
        // morphology (ectopic) is a change.
        let Some((r, corr)) = self.aligner.align(signals, r) else {
            return false;
        };
        if corr < DOMINANT_CORR {
            return false;
        }
        signals.iter().zip(&self.reference).all(|(x, want)| {
            let Some(got) = points(x, r, next_beat(r_peaks, r, &self.offsets), &self.offsets)
            else {
                return false;
            };
            got.iter()
                .zip(want)
                .all(|(g, (m, tolerance))| (g - m).abs() <= *tolerance)
        })
    }
}

/// Whether the beat at (detected) R peak `r` can be screened: the next beat, whose PR
/// segment ends the beat's baseline, has been detected.
pub(crate) fn has_next_beat(r_peaks: &[usize], r: usize, fs_hz: f64) -> bool {
    let gap = samples(fs_hz, REFRACTORY_S);
    r_peaks.iter().any(|&n| n > r + gap)
}

/// The R peak of the beat after the one at `r`, when known.
fn next_beat(r_peaks: &[usize], r: usize, o: &Offsets) -> Option<usize> {
    r_peaks
        .iter()
        .copied()
        .filter(|&n| n > r + o.refractory)
        .min()
}

fn points(x: &[f32], r: usize, next: Option<usize>, o: &Offsets) -> Option<Points> {
    let mean = |c: usize, from: isize, to: isize| -> Option<f32> {
        let from = usize::try_from(c as isize + from).ok()?;
        let to = usize::try_from(c as isize + to).ok()?;
        let w = x.get(from..=to)?;
        Some(w.iter().sum::<f32>() / w.len() as f32)
    };
    let half = o.half as isize;
    let pr = mean(r, o.pr.0, o.pr.1)?;
    let pr_centre = (o.pr.0 + o.pr.1) / 2;
    // The baseline's slope (per sample) from this beat's PR segment to the next's; flat
    // when the next beat is unknown or so close that its PR segment would fall before
    // this beat's T point.
    let slope = next
        .filter(|&n| n as isize + o.pr.0 > r as isize + o.t + half)
        .and_then(|n| {
            let next_pr = mean(n, o.pr.0, o.pr.1)?;
            Some((next_pr - pr) / (n - r) as f32)
        })
        .unwrap_or(0.0);
    let above = |off: isize| -> Option<f32> {
        Some(mean(r, off - half, off + half)? - (pr + slope * (off - pr_centre) as f32))
    };
    let (j, j60, t) = (above(o.j)?, above(o.j60)?, above(o.t)?);
    let on = usize::try_from(r as isize + o.qrs_on).ok()?;
    let off = usize::try_from(r as isize + o.qrs_off).ok()?;
    let qrs = x.get(on..=off.max(on))?;
    let (lo, hi) = qrs
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    Some([
        j * 1000.0,
        (j60 - j) * 1000.0,
        (t - j60) * 1000.0,
        (hi - lo) * 1000.0,
    ])
}
