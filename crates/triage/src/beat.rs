//! Representative beats: beats of the dominant morphology, aligned and averaged by the
//! median, lead by lead (a lead x time matrix).
//!
//! The median rather than the mean because it ignores the occasional artefact or
//! ectopic sample that survives the morphology selection.

use ndarray::Array2;

/// How far before and after the R peak a beat window reaches.
pub(crate) const PRE_R_S: f64 = 0.30;
pub(crate) const POST_R_S: f64 = 0.65;
/// Half-width of the QRS window used to compare morphologies.
const MORPH_PRE_S: f64 = 0.06;
const MORPH_POST_S: f64 = 0.08;
/// Alignment search around the detector's R peak; detectors jitter by a few samples and
/// an unaligned median beat smears the QRS edges that delineation looks for.
const ALIGN_S: f64 = 0.016;
/// Correlation with the template above which a beat counts as the dominant morphology.
pub(crate) const DOMINANT_CORR: f64 = 0.90;
/// At most this many beats feed a template: 12-lead rest ECGs have ~10-20; long records
/// are subsampled evenly so the work stays bounded.
const MAX_TEMPLATE_BEATS: usize = 120;

/// The beats of one recording sorted by morphology.
#[derive(Debug, Clone)]
pub(crate) struct BeatSet {
    /// Aligned R position of every usable beat (absolute sample index).
    pub r_aligned: Vec<usize>,
    /// Index in the caller's R-peak list.
    pub source: Vec<usize>,
    /// Whether the beat belongs to the dominant morphology.
    pub dominant: Vec<bool>,
    /// The median beat of the dominant beats (`median_beat` of the signals sorted, at
    /// their aligned R), when sorting ended by computing it: the caller's first template.
    pub dominant_median: Option<Array2<f32>>,
}

impl BeatSet {
    pub fn dominant_r(&self) -> Vec<usize> {
        self.r_aligned
            .iter()
            .zip(&self.dominant)
            .filter(|(_, &d)| d)
            .map(|(&r, _)| r)
            .collect()
    }
}

pub(crate) fn samples(fs_hz: f64, seconds: f64) -> usize {
    (fs_hz * seconds).round().max(1.0) as usize
}

/// Median over the windows [r - pre, r + post) of every lead; beats whose window leaves the
/// signal are skipped by the caller. Beats are subsampled evenly above `MAX_TEMPLATE_BEATS`.
///
/// The interpretation's largest cost (one median per lead and sample, several templates
/// per interpretation, an interpretation per chunk while streaming), so the medians are
/// taken [`LANES`] samples at a time: the beats' values as integer keys in
/// `f32::total_cmp` order, sorted by a branch-free network that the compiler vectorises.
/// The result is [`median`]'s, bit for bit.
pub(crate) fn median_beat(
    leads: &[&[f32]],
    centres: &[usize],
    pre: usize,
    post: usize,
) -> Array2<f32> {
    let len = pre + post;
    let step = centres.len().div_ceil(MAX_TEMPLATE_BEATS).max(1);
    let used: Vec<usize> = centres.iter().step_by(step).copied().collect();
    let mut out = Array2::<f32>::zeros((leads.len(), len));
    let n = used.len();
    if n == 0 {
        return out;
    }
    // One row per beat, one lane per sample; lanes past a short last block keep
    // whatever they held and are never read.
    let mut block = vec![[0i32; LANES]; n];
    for (li, lead) in leads.iter().enumerate() {
        let mut t = 0;
        while t < len {
            let w = LANES.min(len - t);
            for (row, &r) in block.iter_mut().zip(&used) {
                let from = r - pre + t;
                for (k, &x) in row.iter_mut().zip(&lead[from..from + w]) {
                    *k = order_key(x);
                }
            }
            sort_lanes(&mut block);
            for l in 0..w {
                out[[li, t + l]] = if n % 2 == 1 {
                    from_order_key(block[n / 2][l])
                } else {
                    0.5 * (from_order_key(block[n / 2 - 1][l]) + from_order_key(block[n / 2][l]))
                };
            }
            t += w;
        }
    }
    out
}

/// Samples whose medians are taken together.
const LANES: usize = 8;

/// Sorts every lane of `rows` (rows = the values to sort): odd-even transposition,
/// `rows.len()` rounds of compare-exchanges between neighbours, which sorts any input.
fn sort_lanes(rows: &mut [[i32; LANES]]) {
    let n = rows.len();
    for round in 0..n {
        let mut i = round % 2;
        while i + 1 < n {
            let (a, b) = rows.split_at_mut(i + 1);
            let (x, y) = (&mut a[i], &mut b[0]);
            for l in 0..LANES {
                let (lo, hi) = (x[l].min(y[l]), x[l].max(y[l]));
                x[l] = lo;
                y[l] = hi;
            }
            i += 2;
        }
    }
}

pub(crate) fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// An integer whose order is `f32::total_cmp`'s: the median beat sorts one short column
/// per lead and sample, and integer keys sort several times faster than float compares.
fn order_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ ((((b >> 31) as u32) >> 1) as i32)
}

/// The inverse of [`order_key`] (the transform only flips bits below the sign).
fn from_order_key(k: i32) -> f32 {
    f32::from_bits((k ^ ((((k >> 31) as u32) >> 1) as i32)) as u32)
}

/// The template's QRS window, lead by lead, mean removed: the same for every beat and
/// lag of one pass, so it is prepared once.
fn template_qrs(
    template: &Array2<f32>,
    t_origin: usize,
    m_pre: usize,
    m_post: usize,
) -> Vec<Vec<f64>> {
    let n = (m_pre + m_post) as f64;
    template
        .rows()
        .into_iter()
        .map(|row| {
            let y: Vec<f32> = (0..m_pre + m_post)
                .map(|k| row[t_origin - m_pre + k])
                .collect();
            let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
            y.iter().map(|&v| v as f64 - my).collect()
        })
        .collect()
}

/// Pearson correlation of a beat's QRS (all leads concatenated, mean removed per lead)
/// with the template's (from [`template_qrs`]), the beat being shifted by `lag` samples.
fn qrs_correlation(
    leads: &[&[f32]],
    r: usize,
    lag: isize,
    template: &[Vec<f64>],
    m_pre: usize,
) -> f64 {
    let (mut sxy, mut sxx, mut syy) = (0.0f64, 0.0f64, 0.0f64);
    for (lead, y) in leads.iter().zip(template) {
        let start = (r as isize + lag - m_pre as isize) as usize;
        let x = &lead[start..start + y.len()];
        let mx = x.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        for (&xv, &b) in x.iter().zip(y) {
            let a = xv as f64 - mx;
            sxy += a * b;
            sxx += a * a;
            syy += b * b;
        }
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// Whether a beat at R peak `r` has room for its window and its alignment inside a
/// signal of `n_samples`: only such beats can enter a representative beat.
pub(crate) fn usable(r: usize, n_samples: usize, fs_hz: f64) -> bool {
    let align = samples(fs_hz, ALIGN_S);
    let margin = align + samples(fs_hz, PRE_R_S).max(samples(fs_hz, MORPH_PRE_S));
    r >= margin && r + samples(fs_hz, POST_R_S) + align < n_samples
}

/// Aligns every beat on the median template and marks the dominant morphology.
/// Two passes: the first template is the median of all beats (dominant as long as the
/// dominant morphology is the majority), the second only of the beats that matched it.
pub(crate) fn sort_beats(leads: &[&[f32]], r_peaks: &[usize], fs_hz: f64) -> BeatSet {
    let n_samples = leads.first().map_or(0, |l| l.len());
    let pre = samples(fs_hz, PRE_R_S);
    let post = samples(fs_hz, POST_R_S);
    let align = samples(fs_hz, ALIGN_S);
    let m_pre = samples(fs_hz, MORPH_PRE_S);
    let m_post = samples(fs_hz, MORPH_POST_S);
    let mut source = Vec::new();
    let mut r_usable = Vec::new();
    for (i, &r) in r_peaks.iter().enumerate() {
        if usable(r, n_samples, fs_hz) {
            source.push(i);
            r_usable.push(r);
        }
    }
    let mut set = BeatSet {
        r_aligned: r_usable.clone(),
        source,
        dominant: vec![true; r_usable.len()],
        dominant_median: None,
    };
    if r_usable.len() < 2 {
        return set;
    }
    let mut template = median_beat(leads, &r_usable, pre, post);
    for _pass in 0..2 {
        let qrs = template_qrs(&template, pre, m_pre, m_post);
        let mut corr = Vec::with_capacity(r_usable.len());
        for (k, &r) in r_usable.iter().enumerate() {
            let mut best = (f64::MIN, 0isize);
            for lag in -(align as isize)..=(align as isize) {
                let c = qrs_correlation(leads, r, lag, &qrs, m_pre);
                if c > best.0 {
                    best = (c, lag);
                }
            }
            set.r_aligned[k] = (r as isize + best.1) as usize;
            corr.push(best.0);
        }
        let mut threshold = DOMINANT_CORR;
        // A noisy but regular recording may never reach 0.9; keep the best-matching
        // majority instead of throwing every beat away.
        while threshold > 0.5 && corr.iter().filter(|&&c| c >= threshold).count() * 2 < corr.len() {
            threshold -= 0.05;
        }
        for (d, &c) in set.dominant.iter_mut().zip(&corr) {
            *d = c >= threshold;
        }
        let dom = set.dominant_r();
        if dom.is_empty() {
            return set;
        }
        template = median_beat(leads, &dom, pre, post);
    }
    set.dominant_median = Some(template);
    set
}

/// Aligns single beats on a template's QRS the way [`sort_beats`] does.
#[derive(Debug, Clone)]
pub(crate) struct Aligner {
    qrs: Vec<Vec<f64>>,
    m_pre: usize,
    m_post: usize,
    align: usize,
}

impl Aligner {
    /// `template` is lead x time with R at `origin`, leads in the order later given.
    pub fn new(template: &Array2<f32>, origin: usize, fs_hz: f64) -> Aligner {
        let m_pre = samples(fs_hz, MORPH_PRE_S);
        let m_post = samples(fs_hz, MORPH_POST_S);
        Aligner {
            qrs: template_qrs(template, origin, m_pre, m_post),
            m_pre,
            m_post,
            align: samples(fs_hz, ALIGN_S),
        }
    }

    /// The R position best matching the template within the alignment search around
    /// `r`, and that match's correlation; `None` when the search leaves the signals.
    pub fn align(&self, leads: &[&[f32]], r: usize) -> Option<(usize, f64)> {
        let n = leads.iter().map(|l| l.len()).min()?;
        if r < self.align + self.m_pre || r + self.align + self.m_post > n {
            return None;
        }
        let mut best = (f64::MIN, 0isize);
        for lag in -(self.align as isize)..=(self.align as isize) {
            let c = qrs_correlation(leads, r, lag, &self.qrs, self.m_pre);
            if c > best.0 {
                best = (c, lag);
            }
        }
        Some(((r as isize + best.1) as usize, best.0))
    }
}

/// Removes baseline wander by linear interpolation between isoelectric knots (one per beat,
/// in the PR segment). Unlike a high-pass filter this leaves the ST segment untouched.
pub(crate) fn remove_baseline(lead: &[f32], knots: &[usize], half_width: usize) -> Vec<f32> {
    let level = |c: usize| -> f32 {
        let a = c.saturating_sub(half_width);
        let b = (c + half_width + 1).min(lead.len());
        if a >= b {
            return 0.0;
        }
        lead[a..b].iter().sum::<f32>() / (b - a) as f32
    };
    let pts: Vec<(usize, f32)> = knots
        .iter()
        .filter(|&&k| k < lead.len())
        .map(|&k| (k, level(k)))
        .collect();
    if pts.is_empty() {
        return lead.to_vec();
    }
    let mut out = Vec::with_capacity(lead.len());
    let mut seg = 0;
    for (t, &x) in lead.iter().enumerate() {
        while seg + 1 < pts.len() && pts[seg + 1].0 <= t {
            seg += 1;
        }
        let base = if t <= pts[0].0 {
            pts[0].1
        } else if seg + 1 >= pts.len() {
            pts[pts.len() - 1].1
        } else {
            let (t0, y0) = pts[seg];
            let (t1, y1) = pts[seg + 1];
            y0 + (y1 - y0) * (t - t0) as f32 / (t1 - t0).max(1) as f32
        };
        out.push(x - base);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_beat_is_the_float_median_bit_for_bit() {
        // Values with ties, both zeros, subnormals and extremes, in every beat count up to
        // past the sorting network's lane width.
        let special = [0.0f32, -0.0, 1e-40, -1e-40, f32::MAX, f32::MIN, 0.5, 0.5];
        let sig: Vec<f32> = (0..4000u32)
            .map(|i| {
                let h = i.wrapping_mul(2_654_435_761) >> 7;
                if h % 5 == 0 {
                    special[(h / 5 % 8) as usize]
                } else {
                    (h % 2001) as f32 / 1000.0 - 1.0
                }
            })
            .collect();
        let other: Vec<f32> = sig.iter().rev().copied().collect();
        let leads = [sig.as_slice(), other.as_slice()];
        let (pre, post) = (7, 12);
        for n in 1..=19 {
            let centres: Vec<usize> = (0..n).map(|k| 20 + k * 173).collect();
            let m = median_beat(&leads, &centres, pre, post);
            for (li, lead) in leads.iter().enumerate() {
                for t in 0..pre + post {
                    let mut column: Vec<f32> = centres.iter().map(|&r| lead[r - pre + t]).collect();
                    assert_eq!(
                        m[[li, t]].to_bits(),
                        median(&mut column).to_bits(),
                        "{n} beats, lead {li}, t {t}"
                    );
                }
            }
        }
        for &x in &special {
            assert_eq!(from_order_key(order_key(x)).to_bits(), x.to_bits());
        }
    }

    fn synthetic_beat(t: f64) -> f32 {
        // Gaussian QRS at t=0 and a T wave at 0.3 s.
        (1.5 * (-(t / 0.012).powi(2)).exp() + 0.3 * (-((t - 0.3) / 0.05).powi(2)).exp()) as f32
    }

    #[test]
    fn ectopic_beats_are_not_dominant_and_jitter_is_aligned() {
        let fs = 500.0;
        let n = 5000;
        let rs: Vec<usize> = (1..9).map(|k| k * 500 + 100).collect();
        let mut x = vec![0f32; n];
        for (k, &r) in rs.iter().enumerate() {
            for (t, v) in x.iter_mut().enumerate() {
                let dt = (t as f64 - r as f64) / fs;
                if k == 3 {
                    // A wide inverted ectopic complex.
                    *v -= (1.0 * (-(dt / 0.05).powi(2)).exp()) as f32;
                } else {
                    *v += synthetic_beat(dt);
                }
            }
        }
        let jittered: Vec<usize> = rs.iter().enumerate().map(|(k, &r)| r + (k % 3)).collect();
        let set = sort_beats(&[&x], &jittered, fs);
        assert_eq!(set.r_aligned.len(), 8);
        assert!(!set.dominant[3]);
        // Aligned on the template: every dominant beat sits at the same offset from truth.
        let shift = set.r_aligned[0] as isize - rs[0] as isize;
        assert!(shift.abs() <= 2);
        for k in [0usize, 1, 2, 4, 5, 6, 7] {
            assert!(set.dominant[k]);
            assert_eq!(
                set.r_aligned[k] as isize - rs[k] as isize,
                shift,
                "beat {k}"
            );
        }
    }

    #[test]
    fn baseline_between_knots_is_removed() {
        let x: Vec<f32> = (0..1000).map(|t| 0.001 * t as f32).collect();
        let y = remove_baseline(&x, &[100, 500, 900], 5);
        assert!(y[300].abs() < 1e-4);
        assert!(y[700].abs() < 1e-4);
    }
}
