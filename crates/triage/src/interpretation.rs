//! The interpretation of one recording, one-shot (`interpret`) or streaming (`Interpreter`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::{analyse, Analysis, Beat};
use crate::beat::samples;
use crate::criteria::judge;
use crate::lead::{LeadName, Territory};
use crate::measurement::LeadMeasurement;
use crate::mimic::{self, Mimic};
use crate::patient::Patient;
use crate::quality::{assess, Quality};
use crate::recording::Recording;
use crate::screen::BeatScreen;
use crate::TriageError;

/// One lead's samples, in millivolts, with the label from the record header.
#[derive(Debug, Clone, Copy)]
pub struct LeadSignal<'a> {
    pub label: &'a str,
    pub samples_mv: &'a [f32],
}

/// The answer for one recording.
#[derive(Debug, Clone, Serialize)]
pub struct Interpretation {
    /// Alert the chest-pain centre: suspected acute coronary occlusion.
    pub stemi: bool,
    /// The 4th-UDMI ST-elevation thresholds are met in two contiguous leads.
    pub stemi_criteria_met: bool,
    pub territories: Vec<Territory>,
    /// Per lead label, the representative beat's measurements.
    pub leads: BTreeMap<String, LeadMeasurement>,
    pub heart_rate_bpm: Option<f64>,
    /// Clinical QRS duration (as interpretation programs report it); the width rules
    /// (bundle-branch blocks, conduction delay, narrow-QRS rules) read this one.
    pub qrs_ms: Option<f64>,
    /// Global QRS duration: earliest onset to latest offset over all leads, the span of
    /// `beats`' `qrs_on`..`qrs_off`, where J and ST are measured.
    pub qrs_global_ms: Option<f64>,
    pub qt_ms: Option<f64>,
    pub quality: Quality,
    pub mimics: Vec<Mimic>,
    pub reasons: Vec<String>,
    pub beats: Vec<Beat>,
    pub patient: Patient,
}

/// Sampling rates the interpretation takes: a diagnostic ECG needs 100 Hz at least, and
/// the QRS detector stops at 20 kHz (the pacing-needle search grows with the rate).
fn usable_rate(fs_hz: f64) -> bool {
    fs_hz.is_finite() && (100.0..=20_000.0).contains(&fs_hz)
}

fn validate(fs_hz: f64, leads: &[LeadSignal<'_>]) -> Result<(), TriageError> {
    if !usable_rate(fs_hz) {
        return Err(TriageError::SamplingRate(fs_hz));
    }
    let Some(first) = leads.first() else {
        return Err(TriageError::NoLeads);
    };
    if let Some(l) = leads
        .iter()
        .find(|l| l.samples_mv.len() != first.samples_mv.len())
    {
        return Err(TriageError::LeadLength {
            lead: l.label.to_string(),
            len: l.samples_mv.len(),
            expected: first.samples_mv.len(),
        });
    }
    Ok(())
}

/// Interprets a whole recording given the R peaks of its QRS detector (sample indices,
/// any order; out-of-range ones are ignored). Leads with labels outside the 12-lead
/// system and its extensions are ignored.
pub fn interpret(
    fs_hz: f64,
    leads: &[LeadSignal<'_>],
    r_peaks: &[usize],
    patient: Patient,
) -> Result<Interpretation, TriageError> {
    Ok(interpret_inner(fs_hz, leads, r_peaks, patient)?.0)
}

/// Interprets a recording, finding the R peaks with the signal core's multi-lead detector.
pub fn interpret_detecting(
    fs_hz: f64,
    leads: &[LeadSignal<'_>],
    patient: Patient,
) -> Result<Interpretation, TriageError> {
    validate(fs_hz, leads)?;
    let signals: Vec<&[f32]> = leads.iter().map(|l| l.samples_mv).collect();
    let labels: Vec<&str> = leads.iter().map(|l| l.label).collect();
    let r = crate::detect::r_peaks(&labels, &signals, fs_hz)?;
    interpret(fs_hz, leads, &r, patient)
}

fn interpret_inner(
    fs_hz: f64,
    leads: &[LeadSignal<'_>],
    r_peaks: &[usize],
    patient: Patient,
) -> Result<(Interpretation, Option<Analysis>), TriageError> {
    validate(fs_hz, leads)?;
    let n = leads[0].samples_mv.len();
    let mut names = Vec::new();
    let mut signals = Vec::new();
    for l in leads {
        if let Some(name) = LeadName::parse(l.label) {
            if !names.contains(&name) {
                names.push(name);
                signals.push(l.samples_mv);
            }
        }
    }
    let mut r: Vec<usize> = r_peaks.iter().copied().filter(|&x| x < n).collect();
    r.sort_unstable();
    r.dedup();
    let analysis = if names.is_empty() || signals.iter().any(|s| !crate::quality::all_finite(s)) {
        None
    } else {
        analyse(fs_hz, &names, &signals, &r)
    };
    let quality = assess(analysis.as_ref(), &names, &signals, fs_hz);
    let mut out = Interpretation {
        stemi: false,
        stemi_criteria_met: false,
        territories: Vec::new(),
        leads: BTreeMap::new(),
        heart_rate_bpm: None,
        qrs_ms: None,
        qrs_global_ms: None,
        qt_ms: None,
        quality,
        mimics: Vec::new(),
        reasons: Vec::new(),
        beats: analysis
            .as_ref()
            .map(|a| a.beats.clone())
            .unwrap_or_default(),
        patient,
    };
    let Some(a) = analysis else {
        out.reasons
            .push(format!("repeat the ECG: {}", out.quality.issues.join("; ")));
        return Ok((out, None));
    };
    out.heart_rate_bpm = a.rr_s.map(|rr| 60.0 / rr);
    out.qrs_ms = Some(a.qrs_ms());
    out.qrs_global_ms = Some(a.qrs_global_ms());
    out.qt_ms = a.qt_ms();
    for (l, m) in a.leads.iter().zip(&a.measurements) {
        out.leads.insert(l.label().to_string(), *m);
    }
    if !out.quality.ok {
        out.reasons
            .push(format!("repeat the ECG: {}", out.quality.issues.join("; ")));
        return Ok((out, Some(a)));
    }
    let mut reasons = Vec::new();
    let mut mimics = mimic::detect(&a, &patient, &mut reasons);
    let er = if !mimics
        .iter()
        .any(|m| matches!(m, Mimic::LeftBundleBranchBlock | Mimic::Paced))
    {
        mimic::early_repolarisation(&a)
    } else {
        None
    };
    if let Some(r) = &er {
        reasons.push(r.clone());
        mimics.push(Mimic::EarlyRepolarisation);
    }
    let verdict = judge(&a, &patient, &mimics, er.is_some());
    reasons.extend(verdict.reasons);
    out.stemi = verdict.stemi;
    out.stemi_criteria_met = verdict.criteria_met;
    out.territories = verdict.territories.into_iter().collect();
    out.mimics = mimics;
    out.reasons = reasons;
    Ok((out, Some(a)))
}

/// Beats that must agree before a streaming decision is given.
pub const CONSISTENT_BEATS: usize = 5;
/// The streaming window: older samples are dropped from re-evaluation.
const STREAM_WINDOW_S: f64 = 20.0;
/// Two R peaks closer than this are one beat reported twice (400 bpm is beyond any
/// conducted rhythm): a caller that re-sends its peaks, or sends noise as peaks, must not
/// make every push read the window again.
const MIN_RR_S: f64 = 0.15;
/// A resting ECG lasts 10 s: room for that up front, so that a visit's samples do not
/// end in a vector grown by doubling, 60 % larger than they are (a visit in flight
/// is the pipeline's largest memory cost). Longer recordings still grow.
const RESTING_RECORDING_S: f64 = 10.0;
/// The reservation's bound whatever the sampling rate claims (10 s at 2 kHz).
const MAX_RESERVED_SAMPLES: usize = 20_000;

fn reserved(fs_hz: f64) -> usize {
    samples(fs_hz, RESTING_RECORDING_S).min(MAX_RESERVED_SAMPLES)
}

/// A decision reached while the recording is still streaming.
#[derive(Debug, Clone, Serialize)]
pub struct EarlyDecision {
    /// Sample index (from the start of the stream) at which the decision was reached.
    pub at_sample: usize,
    pub interpretation: Interpretation,
}

/// Streaming interpretation: push samples and the detector's R peaks as they come; the
/// first time a reading alerts on the 4th-UDMI criteria and the last `CONSISTENT_BEATS`
/// dominant beats all show its ST pattern, an early decision is returned. `finish` gives
/// the refined answer on the whole record.
///
/// Only the formal criteria decide early. An alert cannot be taken back once sent, and
/// the subtler occlusion signs (the 4-variable formula near its cut-off, hyperacute T,
/// posterior and reciprocal patterns) read from the median of half a recording's beats
/// came and went with the next beats: on the labelled records three negatives (a paced
/// rhythm, a tachycardia at the rate limit, a formula score 0.4 over its cut-off) had
/// an early alert that the whole recording withdrew, and on the simulated clinics' case
/// mix 15 of 1,410 normal and RBBB visits. Those signs wait for `finish`, a few seconds
/// later, on every beat of the recording.
#[derive(Debug)]
pub struct Interpreter {
    fs_hz: f64,
    labels: Vec<String>,
    patient: Patient,
    recording: Recording,
    r_peaks: Vec<usize>,
    /// Positions in the recording of the leads the analysis reads, in its order.
    analysed: Vec<usize>,
    /// R peaks not yet seen by an interpretation nor matched by the screen.
    pending: Vec<usize>,
    /// After a reading of good quality that does not alert on the criteria: its beats, to
    /// screen new ones.
    screen: Option<BeatScreen>,
    screening: bool,
    window_interpretations: usize,
    /// After a reading that failed the quality gate: the beats that got a full window
    /// since.
    beats_after_poor_reading: Option<usize>,
    early: Option<EarlyDecision>,
}

impl Interpreter {
    pub fn new(fs_hz: f64, labels: &[&str], patient: Patient) -> Result<Self, TriageError> {
        if !usable_rate(fs_hz) {
            return Err(TriageError::SamplingRate(fs_hz));
        }
        if labels.is_empty() {
            return Err(TriageError::NoLeads);
        }
        // The same selection as `interpret_inner`: 12-lead names, first of each.
        let mut names = Vec::new();
        let mut analysed = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            if let Some(name) = LeadName::parse(l) {
                if !names.contains(&name) {
                    names.push(name);
                    analysed.push(i);
                }
            }
        }
        Ok(Interpreter {
            fs_hz,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            patient,
            recording: Recording::mv(labels.len(), reserved(fs_hz)),
            r_peaks: Vec::new(),
            analysed,
            pending: Vec::new(),
            screen: None,
            screening: true,
            window_interpretations: 0,
            beats_after_poor_reading: None,
            early: None,
        })
    }

    /// Keeps the stream as ADC counts, pushed with `push_counts` or `push_block`, read as
    /// `f32::from(count) * mv_per_count`: half the memory of millivolts. Before any push.
    pub fn with_counts(mut self, mv_per_count: f32) -> Self {
        self.recording = Recording::counts(self.labels.len(), mv_per_count);
        self
    }

    /// Screening (on by default) spares re-reading the window when new beats look like
    /// those of the last reading that could not decide (see `screen`); off, every beat
    /// that gets a full window is read again (to measure what screening changes).
    pub fn with_screening(mut self, on: bool) -> Self {
        self.screening = on;
        self
    }

    /// Appends one chunk (one slice per lead, equal lengths) and the R peaks detected so far
    /// in it (absolute sample indices). Returns the early decision when it is first reached.
    pub fn push(
        &mut self,
        chunk: &[&[f32]],
        r_peaks: &[usize],
    ) -> Result<Option<&EarlyDecision>, TriageError> {
        self.check_chunk(chunk)?;
        self.recording.extend_mv(chunk)?;
        self.pushed(r_peaks)
    }

    /// `push` for a stream kept as ADC counts (`with_counts`).
    pub fn push_counts(
        &mut self,
        chunk: &[&[i16]],
        r_peaks: &[usize],
    ) -> Result<Option<&EarlyDecision>, TriageError> {
        self.check_chunk(chunk)?;
        self.recording.extend_counts(chunk)?;
        self.pushed(r_peaks)
    }

    /// `push_counts` for a block the caller shares (one vector per lead, equal lengths):
    /// kept without a copy.
    pub fn push_block(
        &mut self,
        block: std::sync::Arc<[Vec<i16>]>,
        r_peaks: &[usize],
    ) -> Result<Option<&EarlyDecision>, TriageError> {
        let view: Vec<&[i16]> = block.iter().map(Vec::as_slice).collect();
        self.check_chunk(&view)?;
        self.recording.extend_block(block)?;
        self.pushed(r_peaks)
    }

    /// Keeps `r` among the R peaks (in order) unless a kept one lies within `MIN_RR_S`.
    fn accept(&mut self, r: usize) -> bool {
        let gap = samples(self.fs_hz, MIN_RR_S);
        let i = self.r_peaks.partition_point(|&x| x < r);
        let near = |x: &usize| x.abs_diff(r) < gap;
        if self.r_peaks.get(i).is_some_and(near)
            || i.checked_sub(1)
                .and_then(|j| self.r_peaks.get(j))
                .is_some_and(near)
        {
            return false;
        }
        self.r_peaks.insert(i, r);
        true
    }

    /// One slice per lead of the stream, all of one length.
    fn check_chunk<T>(&self, chunk: &[&[T]]) -> Result<(), TriageError> {
        if chunk.len() != self.labels.len() {
            return Err(TriageError::ChunkLeads {
                got: chunk.len(),
                expected: self.labels.len(),
            });
        }
        if let Some((i, c)) = chunk
            .iter()
            .enumerate()
            .find(|(_, c)| c.len() != chunk[0].len())
        {
            return Err(TriageError::LeadLength {
                lead: self.labels[i].clone(),
                len: c.len(),
                expected: chunk[0].len(),
            });
        }
        Ok(())
    }

    /// After a chunk was appended: the early decision when it is first reached.
    fn pushed(&mut self, r_peaks: &[usize]) -> Result<Option<&EarlyDecision>, TriageError> {
        let new: Vec<usize> = r_peaks
            .iter()
            .copied()
            .filter(|&r| self.accept(r))
            .collect();
        if self.early.is_some() {
            return Ok(None);
        }
        self.pending.extend_from_slice(&new);
        let total = self.recording.len();
        let start = total.saturating_sub(samples(self.fs_hz, STREAM_WINDOW_S));
        // Only beats with a full window can change a reading; the others wait.
        let fs_hz = self.fs_hz;
        let ready: Vec<usize> = self
            .pending
            .iter()
            .copied()
            .filter(|&r| r >= start && crate::beat::usable(r - start, total - start, fs_hz))
            .collect();
        // Beats too near the window's start never get a full window: dropped.
        self.pending.retain(|&r| {
            r >= start
                && !crate::beat::usable(r - start, total - start, fs_hz)
                && crate::beat::usable(r - start, usize::MAX / 2, fs_hz)
        });
        if ready.is_empty() || self.r_peaks.len() < CONSISTENT_BEATS {
            return Ok(None);
        }
        // After a reading that failed the quality gate, a decision needs that many new
        // beats anyway; reading at every beat in between cost noise's worth of readings.
        if let Some(seen) = &mut self.beats_after_poor_reading {
            *seen += ready.len();
            if *seen < CONSISTENT_BEATS {
                return Ok(None);
            }
        }
        // A beat is screened above its baseline up to the next beat's PR segment; until
        // the next R peak is known it waits (at the end, `finish` reads all).
        let (known, waiting): (Vec<usize>, Vec<usize>) = ready
            .iter()
            .partition(|&&r| crate::screen::has_next_beat(&self.r_peaks, r, fs_hz));
        if self.screen.is_some() && known.is_empty() {
            self.pending.extend(waiting);
            return Ok(None);
        }
        if let Some(screen) = &self.screen {
            // Only the stretch the new beats are read on.
            let from = known
                .iter()
                .min()
                .map_or(0, |&r| r.saturating_sub(screen.lookback()));
            let span = self.recording.millivolts_from(from);
            let analysed: Vec<&[f32]> = self.analysed.iter().map(|&i| &*span[i]).collect();
            let peaks = shifted(&self.r_peaks, from);
            if known
                .iter()
                .all(|&r| screen.matches(&analysed, r - from, &peaks))
            {
                self.pending.extend(waiting);
                return Ok(None);
            }
        }
        // The decision needs CONSISTENT_BEATS dominant beats, and only beats with a full
        // window can be dominant: until there are that many, interpreting the window (the
        // streaming analysis' main cost) cannot decide anything.
        let mut in_window: Vec<usize> = self
            .r_peaks
            .iter()
            .filter(|&&x| x >= start && x < total)
            .map(|&x| x - start)
            .collect();
        in_window.sort_unstable();
        in_window.dedup();
        let room = in_window
            .iter()
            .filter(|&&x| crate::beat::usable(x, total - start, self.fs_hz))
            .count();
        if room < CONSISTENT_BEATS {
            return Ok(None);
        }
        let signals = self.recording.millivolts_from(start);
        let leads: Vec<LeadSignal<'_>> = self
            .labels
            .iter()
            .zip(signals.iter())
            .map(|(l, s)| LeadSignal {
                label: l,
                samples_mv: s,
            })
            .collect();
        let r = shifted(&self.r_peaks, start);
        self.window_interpretations += 1;
        let (mut interp, analysis) = interpret_inner(self.fs_hz, &leads, &r, self.patient)?;
        self.beats_after_poor_reading = (analysis.is_none() || !interp.quality.ok).then_some(0);
        let Some(a) = analysis else {
            self.screen = None;
            return Ok(None);
        };
        // A reading that alerts on the criteria is read again beat by beat until its
        // beats agree; any other can only change with the beats, which the screen watches.
        let by_criteria = interp.stemi && interp.stemi_criteria_met;
        self.screen = if self.screening && !by_criteria && interp.quality.ok {
            let analysed: Vec<&[f32]> = self.analysed.iter().map(|&i| &*signals[i]).collect();
            BeatScreen::new(&a, &analysed, &r)
        } else {
            None
        };
        if by_criteria && interp.quality.ok && consistent(&a, CONSISTENT_BEATS) {
            for b in &mut interp.beats {
                b.r += start;
                b.qrs_on += start;
                b.qrs_off += start;
            }
            interp.reasons.push(format!(
                "early decision: the last {CONSISTENT_BEATS} beats agree"
            ));
            self.early = Some(EarlyDecision {
                at_sample: total,
                interpretation: interp,
            });
            return Ok(self.early.as_ref());
        }
        Ok(None)
    }

    /// The early decision, if one was reached.
    pub fn early_decision(&self) -> Option<&EarlyDecision> {
        self.early.as_ref()
    }

    /// How many times the streaming window was interpreted (the early decision's cost;
    /// `finish` not counted).
    pub fn window_interpretations(&self) -> usize {
        self.window_interpretations
    }

    /// The refined interpretation of everything pushed.
    pub fn finish(&self) -> Result<Interpretation, TriageError> {
        let signals = self.recording.millivolts_from(0);
        let leads: Vec<LeadSignal<'_>> = self
            .labels
            .iter()
            .zip(signals.iter())
            .map(|(l, s)| LeadSignal {
                label: l,
                samples_mv: s,
            })
            .collect();
        interpret(self.fs_hz, &leads, &self.r_peaks, self.patient)
    }
}

/// The R peaks from sample `from` on, counted from there.
fn shifted(r_peaks: &[usize], from: usize) -> Vec<usize> {
    r_peaks
        .iter()
        .filter(|&&x| x >= from)
        .map(|&x| x - from)
        .collect()
}

/// Whether the last `n` dominant beats each reproduce the representative beat's ST pattern:
/// every lead whose ST deviates by >= 1 mm keeps its sign and at least half its size.
fn consistent(a: &Analysis, n: usize) -> bool {
    let dom = a.sorted.dominant_r();
    if dom.len() < n {
        return false;
    }
    let j = a.fid.j;
    let half = samples(a.fs_hz, 0.004);
    dom[dom.len() - n..].iter().all(|&r| {
        a.measurements.iter().enumerate().all(|(li, m)| {
            if m.st_j_uv.abs() < 100.0 {
                return true;
            }
            let x = &a.corrected[li];
            let at = |t: usize| {
                let c = r + t - a.origin;
                x[c - half..=c + half].iter().sum::<f32>() / (2 * half + 1) as f32
            };
            let base = at((a.fid.pr.0 + a.fid.pr.1) / 2);
            let st_uv = (at(j) - base) * 1000.0;
            st_uv * m.st_j_uv.signum() >= 0.5 * m.st_j_uv.abs()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{ecg, normal_shape, Shape, Synthetic, LABELS};

    fn leads(s: &Synthetic) -> Vec<LeadSignal<'_>> {
        LABELS
            .iter()
            .zip(&s.leads)
            .map(|(l, x)| LeadSignal {
                label: l,
                samples_mv: x,
            })
            .collect()
    }

    /// Beats of limb leads I, II and chest V1-V6 with the given ST offsets (mV).
    fn shapes(limb_st: [f64; 2], chest_st: [f64; 6]) -> ([Shape; 2], [Shape; 6]) {
        let limb = [
            normal_shape(0.8, 0.1, limb_st[0]),
            normal_shape(1.0, 0.2, limb_st[1]),
        ];
        let rs = [
            (0.2, 1.0),
            (0.4, 1.4),
            (0.8, 0.9),
            (1.4, 0.5),
            (1.6, 0.2),
            (1.2, 0.1),
        ];
        let chest = std::array::from_fn(|k| normal_shape(rs[k].0, rs[k].1, chest_st[k]));
        (limb, chest)
    }

    fn with_st(limb_st: [f64; 2], chest_st: [f64; 6], noise_uv: f64, seed: u64) -> Synthetic {
        let (limb, chest) = shapes(limb_st, chest_st);
        ecg(limb, chest, noise_uv, seed)
    }

    fn st_errors(noise_uv: f64, seed: u64) -> f32 {
        let limb = [0.05, 0.15];
        let chest = [0.0, 0.25, 0.2, 0.1, -0.1, -0.05];
        let s = with_st(limb, chest, noise_uv, seed);
        let out = interpret(s.fs_hz, &leads(&s), &s.r_peaks, Patient::default()).unwrap();
        // Expected per lead, limb leads derived like the signals.
        let (i, ii) = (limb[0], limb[1]);
        let expected = [
            ("I", i),
            ("II", ii),
            ("III", ii - i),
            ("aVR", -(i + ii) / 2.0),
            ("aVL", i - ii / 2.0),
            ("aVF", ii - i / 2.0),
            ("V1", chest[0]),
            ("V2", chest[1]),
            ("V3", chest[2]),
            ("V4", chest[3]),
            ("V5", chest[4]),
            ("V6", chest[5]),
        ];
        let mut worst = 0f32;
        for (lead, mv) in expected {
            let m = &out.leads[lead];
            let want = (mv * 1000.0) as f32;
            worst = worst
                .max((m.st_j_uv - want).abs())
                .max((m.st_j60_uv - want).abs());
        }
        worst
    }

    #[test]
    fn st_measured_within_20_uv_without_noise() {
        let worst = st_errors(0.0, 1);
        assert!(worst <= 20.0, "worst ST error {worst} uV");
    }

    #[test]
    fn st_measured_within_50_uv_with_realistic_noise() {
        // 30 uV RMS white noise, 300 uV baseline wander, 30 uV mains.
        for seed in 1..4 {
            let worst = st_errors(30.0, seed);
            assert!(worst <= 50.0, "seed {seed}: worst ST error {worst} uV");
        }
    }

    #[test]
    fn anterior_elevation_meets_criteria_and_alerts() {
        let s = with_st([0.0, -0.05], [0.1, 0.3, 0.35, 0.25, 0.1, 0.0], 10.0, 7);
        let p = Patient {
            sex: Some(crate::Sex::Male),
            age_years: Some(55.0),
        };
        let out = interpret(s.fs_hz, &leads(&s), &s.r_peaks, p).unwrap();
        assert!(out.quality.ok, "{:?}", out.quality);
        assert!(out.stemi_criteria_met, "{:?}", out.reasons);
        assert!(out.stemi);
        assert!(out.territories.contains(&Territory::Anterior));
        assert_eq!(out.beats.len(), s.r_peaks.len());
    }

    /// Concave anterior elevation with tall T waves: early repolarisation at 1.5 mm, but
    /// not at 5.5 mm, which no normal variant reaches.
    #[test]
    fn early_repolarisation_stops_short_of_five_mm() {
        let young_man = Patient {
            sex: Some(crate::Sex::Male),
            age_years: Some(28.0),
        };
        let read = |st_mv: f64, t_mv: f64| {
            // Concave elevation with tall T waves in V2-V4.
            let (limb, mut chest) = shapes([0.0; 2], [0.0, st_mv, st_mv, st_mv, 0.0, 0.0]);
            for shape in &mut chest[1..=3] {
                shape.t_mv = t_mv;
            }
            let s = ecg(limb, chest, 0.0, 5);
            interpret(s.fs_hz, &leads(&s), &s.r_peaks, young_man).unwrap()
        };
        let variant = read(0.15, 0.7);
        assert!(variant.quality.ok, "{:?}", variant.quality);
        assert!(
            variant.mimics.contains(&Mimic::EarlyRepolarisation),
            "{:?}",
            variant.reasons
        );
        let occlusion = read(0.55, 1.6);
        assert!(
            !occlusion.mimics.contains(&Mimic::EarlyRepolarisation),
            "{:?}",
            occlusion.reasons
        );
        assert!(occlusion.stemi, "{:?}", occlusion.reasons);
    }

    /// Upsloping J-point depression in V2-V4: into tall T waves (de Winter's LAD occlusion)
    /// and into ordinary T waves (read as posterior occlusion, as before).
    #[test]
    fn de_winter_pattern_is_read_as_lad_occlusion() {
        let read = |t_mv: f64| {
            let (limb, mut chest) = shapes([0.0; 2], [0.0, -0.2, -0.2, -0.2, 0.0, 0.0]);
            for shape in &mut chest[1..=3] {
                shape.t_mv = 0.0;
            }
            let mut s = ecg(limb, chest, 0.0, 4);
            // A T wave that starts at the J point, so the depressed ST slopes up into it.
            for x in &mut s.leads[7..=9] {
                for &r in &s.r_peaks {
                    for (k, v) in x.iter_mut().enumerate().skip(r).take(350) {
                        let dt = (k - r) as f64 / s.fs_hz;
                        *v += (t_mv * (-0.5 * ((dt - 0.22) / 0.06).powi(2)).exp()) as f32;
                    }
                }
            }
            interpret(s.fs_hz, &leads(&s), &s.r_peaks, Patient::default()).unwrap()
        };
        let tall = read(1.8);
        assert!(tall.quality.ok, "{:?}", tall.quality);
        assert!(tall.stemi && !tall.stemi_criteria_met, "{:?}", tall.reasons);
        assert!(
            tall.reasons.iter().any(|r| r.contains("de Winter")),
            "{:?}",
            tall.reasons
        );
        assert!(!tall.territories.contains(&Territory::Posterior));
        let ordinary = read(0.3);
        assert!(ordinary.stemi, "{:?}", ordinary.reasons);
        assert!(
            !ordinary.reasons.iter().any(|r| r.contains("de Winter")),
            "{:?}",
            ordinary.reasons
        );
        assert!(ordinary.territories.contains(&Territory::Posterior));
    }

    /// A one-sample pacing stimulus `before_r` samples before every R peak of `s`.
    fn with_stimuli(mut s: Synthetic, before_r: usize) -> Synthetic {
        // One stimulus dipole: 1.5 mV in I, -0.9 mV in II, the other limb leads by
        // Einthoven and Goldberger, and the chest leads in between.
        let (i, ii) = (1.5f32, -0.9f32);
        let needle = [
            i,
            ii,
            ii - i,
            -(i + ii) / 2.0,
            i - ii / 2.0,
            ii - i / 2.0,
            -0.8,
            -1.0,
            -0.6,
            0.4,
            0.9,
            1.1,
        ];
        for (x, v) in s.leads.iter_mut().zip(needle) {
            for &r in &s.r_peaks {
                x[r - before_r] += v;
            }
        }
        s
    }

    /// Stimulus needles before every QRS: the rhythm is called paced, and the needles are
    /// not measured as part of the QRS.
    #[test]
    fn pacing_stimuli_are_recognised_and_cut_out() {
        let plain = with_st([0.0, 0.0], [0.0; 6], 0.0, 2);
        let paced = with_stimuli(with_st([0.0, 0.0], [0.0; 6], 0.0, 2), 30);
        let read = |s: &Synthetic| interpret(s.fs_hz, &leads(s), &s.r_peaks, Patient::default());
        let (plain, paced) = (read(&plain).unwrap(), read(&paced).unwrap());
        assert!(!plain.mimics.contains(&Mimic::Paced));
        assert!(paced.mimics.contains(&Mimic::Paced), "{:?}", paced.reasons);
        let qrs = |o: &Interpretation| o.qrs_global_ms.unwrap();
        assert!(
            (qrs(&paced) - qrs(&plain)).abs() <= 4.0,
            "QRS {} ms with the stimuli, {} ms without",
            qrs(&paced),
            qrs(&plain)
        );
    }

    #[test]
    fn normal_ecg_does_not_alert() {
        let s = with_st([0.0, 0.0], [0.0; 6], 10.0, 3);
        let out = interpret(s.fs_hz, &leads(&s), &s.r_peaks, Patient::default()).unwrap();
        assert!(out.quality.ok, "{:?}", out.quality);
        assert!(!out.stemi && !out.stemi_criteria_met, "{:?}", out.reasons);
        let hr = out.heart_rate_bpm.unwrap();
        assert!((hr - 75.0).abs() < 1.0);
    }

    #[test]
    fn v2_v3_threshold_depends_on_sex_and_age() {
        // 1.7 mm in V2-V3 only: women (1.5 mm) yes, men >= 40 (2 mm) no; unknown: 1.5 mm.
        let s = with_st([0.0, 0.0], [0.0, 0.17, 0.17, 0.0, 0.0, 0.0], 0.0, 1);
        let run = |p: Patient| interpret(s.fs_hz, &leads(&s), &s.r_peaks, p).unwrap();
        let woman = run(Patient {
            sex: Some(crate::Sex::Female),
            age_years: Some(60.0),
        });
        let man = run(Patient {
            sex: Some(crate::Sex::Male),
            age_years: Some(60.0),
        });
        let unknown = run(Patient::default());
        assert!(woman.stemi_criteria_met);
        assert!(!man.stemi_criteria_met);
        assert!(unknown.stemi_criteria_met);
        assert!(unknown.reasons.iter().any(|r| r.contains("sex unknown")));
    }

    #[test]
    fn flat_lead_answers_repeat() {
        let mut s = with_st([0.0, 0.0], [0.0; 6], 10.0, 3);
        s.leads[8] = vec![0.0; s.leads[8].len()];
        let out = interpret(s.fs_hz, &leads(&s), &s.r_peaks, Patient::default()).unwrap();
        assert!(!out.quality.ok);
        assert!(!out.stemi);
        assert!(out.reasons.iter().any(|r| r.starts_with("repeat the ECG")));
    }

    #[test]
    fn heavy_noise_answers_repeat() {
        let s = with_st([0.0, 0.0], [0.0, 0.3, 0.3, 0.0, 0.0, 0.0], 400.0, 5);
        let out = interpret(s.fs_hz, &leads(&s), &s.r_peaks, Patient::default()).unwrap();
        assert!(!out.quality.ok, "{:?}", out.reasons);
        assert!(!out.stemi);
    }

    /// A stream too noisy to read is not read again at every beat: a decision needs
    /// `CONSISTENT_BEATS` new beats after a reading that failed the quality gate.
    #[test]
    fn a_stream_too_noisy_to_read_is_read_every_few_beats() {
        let s = with_st([0.0, 0.0], [0.0, 0.3, 0.3, 0.0, 0.0, 0.0], 400.0, 5);
        let (it, decided) = stream(&s.leads, &s.r_peaks, Patient::default());
        assert_eq!(decided, None);
        assert!(!it.finish().unwrap().quality.ok);
        // 12 beats: the first reading at the fifth, then one every five beats at most
        // (every beat from the fifth without the wait: 7 or 8).
        let readings = it.window_interpretations();
        assert!((1..=3).contains(&readings), "{readings} readings");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let x = vec![0f32; 100];
        let y = vec![0f32; 99];
        let l = [
            LeadSignal {
                label: "I",
                samples_mv: &x,
            },
            LeadSignal {
                label: "II",
                samples_mv: &y,
            },
        ];
        assert!(matches!(
            interpret(500.0, &l, &[], Patient::default()),
            Err(TriageError::LeadLength { .. })
        ));
        for fs in [0.0, 20_001.0, f64::MAX, f64::NAN] {
            assert!(matches!(
                interpret(fs, &l, &[], Patient::default()),
                Err(TriageError::SamplingRate(_))
            ));
            assert!(Interpreter::new(fs, &["I"], Patient::default()).is_err());
        }
        // No beats at all: an answer ("repeat"), not an error.
        let l = [LeadSignal {
            label: "I",
            samples_mv: &x,
        }];
        let out = interpret(500.0, &l, &[5, 50, 5000], Patient::default()).unwrap();
        assert!(!out.quality.ok);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Arbitrary samples (including NaN and huge values), arbitrary R peaks and rates:
        /// always an answer or a typed error, never a panic.
        #[test]
        fn never_panics(
            n in 0usize..3000,
            fs in proptest::prop_oneof![proptest::prelude::Just(0.0), 50.0f64..2000.0],
            seed in 1u64..1000,
            peaks in proptest::collection::vec(0usize..4000, 0..40),
            nan_at in proptest::option::of(0usize..3000),
            n_leads in 1usize..13,
        ) {
            let mut rng = crate::synthetic::Noise::new(seed);
            let mut leads: Vec<Vec<f32>> = (0..n_leads)
                .map(|_| (0..n).map(|_| (rng.gauss() * 2.0) as f32).collect())
                .collect();
            if let Some(k) = nan_at {
                if k < n {
                    leads[0][k] = f32::NAN;
                }
            }
            let l: Vec<LeadSignal<'_>> = LABELS
                .iter()
                .zip(&leads)
                .map(|(label, x)| LeadSignal { label, samples_mv: x })
                .collect();
            let _ = interpret(fs, &l, &peaks, Patient::default());
        }
    }

    #[test]
    fn streaming_decides_early_and_refines_at_the_end() {
        let s = with_st([0.0, -0.05], [0.1, 0.3, 0.35, 0.25, 0.1, 0.0], 10.0, 7);
        let p = Patient {
            sex: Some(crate::Sex::Male),
            age_years: Some(55.0),
        };
        let mut it = Interpreter::new(s.fs_hz, &LABELS, p).unwrap();
        let chunk = 250;
        let n = s.leads[0].len();
        let mut decided_at = None;
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let parts: Vec<&[f32]> = s.leads.iter().map(|x| &x[start..end]).collect();
            // R peaks are reported once the detector could have seen the whole QRS.
            let r: Vec<usize> = s
                .r_peaks
                .iter()
                .copied()
                .filter(|&r| r + 50 >= start && r + 50 < end)
                .collect();
            if let Some(d) = it.push(&parts, &r).unwrap() {
                decided_at.get_or_insert(d.at_sample);
                assert!(d.interpretation.stemi);
            }
            start = end;
        }
        let at = decided_at.expect("an early decision");
        assert!(at < n, "decided at {at} of {n}");
        let fin = it.finish().unwrap();
        let once = interpret(s.fs_hz, &leads(&s), &s.r_peaks, p).unwrap();
        assert_eq!(fin.stemi, once.stemi);
        assert_eq!(fin.beats, once.beats);
    }

    /// Streams `leads` in chunks of 250 samples with R peaks reported 50 samples late;
    /// returns the interpreter and where an early decision came, if one did.
    fn stream(leads: &[Vec<f32>], r_peaks: &[usize], p: Patient) -> (Interpreter, Option<usize>) {
        let mut it = Interpreter::new(500.0, &LABELS, p).unwrap();
        let n = leads[0].len();
        let mut decided_at = None;
        let mut start = 0;
        while start < n {
            let end = (start + 250).min(n);
            let parts: Vec<&[f32]> = leads.iter().map(|x| &x[start..end]).collect();
            let r: Vec<usize> = r_peaks
                .iter()
                .copied()
                .filter(|&r| r + 50 >= start && r + 50 < end)
                .collect();
            if let Some(d) = it.push(&parts, &r).unwrap() {
                assert!(d.interpretation.stemi);
                decided_at.get_or_insert(d.at_sample);
            }
            start = end;
        }
        (it, decided_at)
    }

    #[test]
    fn a_stream_kept_as_counts_reads_as_the_same_stream_in_millivolts() {
        let mv_per_count = 0.005_f32;
        let s = with_st([0.0, -0.05], [0.1, 0.3, 0.35, 0.25, 0.1, 0.0], 10.0, 5);
        let counts: Vec<Vec<i16>> = s
            .leads
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&v| (v / mv_per_count).round() as i16)
                    .collect()
            })
            .collect();
        let mv: Vec<Vec<f32>> = counts
            .iter()
            .map(|l| l.iter().map(|&c| f32::from(c) * mv_per_count).collect())
            .collect();
        let (by_mv, decided_mv) = stream(&mv, &s.r_peaks, Patient::default());
        let mut by_counts = Interpreter::new(500.0, &LABELS, Patient::default())
            .unwrap()
            .with_counts(mv_per_count);
        let mut decided_counts = None;
        for start in (0..counts[0].len()).step_by(250) {
            let end = (start + 250).min(counts[0].len());
            let parts: Vec<&[i16]> = counts.iter().map(|x| &x[start..end]).collect();
            let r: Vec<usize> = s
                .r_peaks
                .iter()
                .copied()
                .filter(|&r| r + 50 >= start && r + 50 < end)
                .collect();
            // Copied and shared blocks, alternately: one recording either way.
            let decided = if (start / 250) % 2 == 0 {
                by_counts.push_counts(&parts, &r).unwrap()
            } else {
                let block: std::sync::Arc<[Vec<i16>]> = parts.iter().map(|p| p.to_vec()).collect();
                by_counts.push_block(block, &r).unwrap()
            };
            if let Some(d) = decided {
                decided_counts.get_or_insert(d.at_sample);
            }
        }
        assert!(decided_mv.is_some());
        assert_eq!(decided_counts, decided_mv);
        let (a, b) = (by_mv.finish().unwrap(), by_counts.finish().unwrap());
        assert_eq!(
            (a.stemi, &a.beats, &a.reasons),
            (b.stemi, &b.beats, &b.reasons)
        );
        // One kind per stream: the other is an error, not a silent mix.
        let one = [0.0_f32; 1];
        let twelve: Vec<&[f32]> = vec![&one[..]; LABELS.len()];
        assert!(matches!(
            by_counts.push(&twelve, &[]),
            Err(TriageError::SampleKind { .. })
        ));
    }

    #[test]
    fn streaming_reads_the_window_again_only_when_beats_change() {
        let s = with_st([0.0, 0.0], [0.0; 6], 10.0, 3);
        let (it, decided) = stream(&s.leads, &s.r_peaks, Patient::default());
        assert_eq!(decided, None);
        // 12 beats, 8 of them new to a reading after the first: unchanged beats are
        // screened, not read again.
        assert_eq!(it.window_interpretations(), 1);
        let fin = it.finish().unwrap();
        let once = interpret(500.0, &leads(&s), &s.r_peaks, Patient::default()).unwrap();
        assert_eq!(fin.beats, once.beats);
        assert!(!fin.stemi);
    }

    #[test]
    fn peaks_sent_again_or_twice_are_one_beat() {
        // Every new beat with a full window is read (no screen), so each peak that counted
        // twice would cost a reading: a caller re-sending all its peaks with every chunk,
        // each also a sample late, must read like one sending each peak once.
        let s = with_st([0.0, 0.0], [0.0; 6], 10.0, 3);
        let n = s.leads[0].len();
        let run = |resend: bool| {
            let mut it = Interpreter::new(500.0, &LABELS, Patient::default())
                .unwrap()
                .with_screening(false);
            for start in (0..n).step_by(250) {
                let end = (start + 250).min(n);
                let parts: Vec<&[f32]> = s.leads.iter().map(|x| &x[start..end]).collect();
                let r: Vec<usize> = s
                    .r_peaks
                    .iter()
                    .copied()
                    .filter(|&r| r + 50 < end && (resend || r + 50 >= start))
                    .flat_map(|r| if resend { vec![r, r + 1] } else { vec![r] })
                    .collect();
                it.push(&parts, &r).unwrap();
            }
            it
        };
        let (once, again) = (run(false), run(true));
        assert!(once.window_interpretations() > 1);
        assert_eq!(
            again.window_interpretations(),
            once.window_interpretations()
        );
        assert_eq!(again.finish().unwrap().beats, once.finish().unwrap().beats);
    }

    #[test]
    fn paced_beats_are_screened_without_their_stimuli() {
        // The reference median is read without the needles; new beats read with theirs
        // correlated below the dominant threshold and every one was read again.
        let s = with_stimuli(with_st([0.0, 0.0], [0.0; 6], 10.0, 3), 20);
        let (it, decided) = stream(&s.leads, &s.r_peaks, Patient::default());
        assert_eq!(decided, None);
        assert_eq!(it.window_interpretations(), 1);
        let fin = it.finish().unwrap();
        assert!(
            fin.mimics.contains(&Mimic::Paced) && !fin.stemi,
            "{:?}",
            fin.reasons
        );
    }

    #[test]
    fn breathing_wander_is_not_read_as_a_change_of_the_beats() {
        // Respiratory wander of 0.4 mV at 0.25 Hz tilts the baseline by up to 0.1 mV
        // between the PR segment and J: on the PR level alone most new beats
        // missed the screen and the window was read again and again.
        let mut s = with_st([0.0, 0.0], [0.0; 6], 10.0, 3);
        for lead in &mut s.leads {
            for (i, v) in lead.iter_mut().enumerate() {
                let t = i as f32 / 500.0;
                *v += 0.4 * (2.0 * std::f32::consts::PI * 0.25 * t + 0.7).sin();
            }
        }
        let (it, decided) = stream(&s.leads, &s.r_peaks, Patient::default());
        assert_eq!(decided, None);
        assert_eq!(it.window_interpretations(), 1);
        assert!(!it.finish().unwrap().stemi);
    }

    #[test]
    fn subtler_signs_wait_for_the_whole_recording() {
        // Sub-threshold anterior elevation that the 4-variable formula flags: an alert,
        // but not on the 4th-UDMI criteria, so not an early one.
        let p = Patient {
            sex: Some(crate::Sex::Male),
            age_years: Some(55.0),
        };
        let s = with_st([0.0, 0.0], [0.05, 0.12, 0.14, 0.10, 0.05, 0.0], 10.0, 3);
        let (it, decided) = stream(&s.leads, &s.r_peaks, p);
        assert_eq!(decided, None);
        let fin = it.finish().unwrap();
        assert!(fin.stemi && !fin.stemi_criteria_met, "{:?}", fin.reasons);
        // Screened as any reading that cannot decide early: unchanged beats are not read
        // again.
        assert_eq!(it.window_interpretations(), 1);
    }

    #[test]
    fn streaming_still_decides_when_st_elevation_appears_after_normal_beats() {
        let p = Patient {
            sex: Some(crate::Sex::Male),
            age_years: Some(55.0),
        };
        let normal = with_st([0.0, 0.0], [0.0; 6], 10.0, 7);
        let stemi = with_st([0.0, -0.05], [0.1, 0.3, 0.35, 0.25, 0.1, 0.0], 10.0, 7);
        // Six normal beats (R at 300..2300), then the same beats with anterior ST
        // elevation (cut between beats, where both signals are flat), then ten more
        // seconds of them: the elevated beats become the majority.
        let cut = 2560;
        let joined: Vec<Vec<f32>> = normal
            .leads
            .iter()
            .zip(&stemi.leads)
            .map(|(a, b)| [&a[..cut], &b[cut..], &b[..]].concat())
            .collect();
        let n0 = normal.leads[0].len();
        let r: Vec<usize> = normal
            .r_peaks
            .iter()
            .copied()
            .chain(stemi.r_peaks.iter().map(|&r| r + n0))
            .collect();
        let (it, decided) = stream(&joined, &r, p);
        let at = decided.expect("an early decision once the elevated beats dominate");
        assert!(at > cut && at < joined[0].len(), "decided at {at}");
        assert!(it.window_interpretations() > 1);
    }
}
