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
    pub qrs_ms: Option<f64>,
    pub qt_ms: Option<f64>,
    pub quality: Quality,
    pub mimics: Vec<Mimic>,
    pub reasons: Vec<String>,
    pub beats: Vec<Beat>,
    pub patient: Patient,
}

fn validate(fs_hz: f64, leads: &[LeadSignal<'_>]) -> Result<(), TriageError> {
    if !(fs_hz.is_finite() && fs_hz >= 100.0) {
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
    let analysis = if names.is_empty() || signals.iter().any(|s| s.iter().any(|v| !v.is_finite())) {
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

/// A decision reached while the recording is still streaming.
#[derive(Debug, Clone, Serialize)]
pub struct EarlyDecision {
    /// Sample index (from the start of the stream) at which the decision was reached.
    pub at_sample: usize,
    pub interpretation: Interpretation,
}

/// Streaming interpretation: push samples and the detector's R peaks as they come; the
/// first time the last `CONSISTENT_BEATS` dominant beats all show the alerting ST pattern
/// an early decision is returned. `finish` gives the refined answer on the whole record.
#[derive(Debug)]
pub struct Interpreter {
    fs_hz: f64,
    labels: Vec<String>,
    patient: Patient,
    signals: Vec<Vec<f32>>,
    r_peaks: Vec<usize>,
    early: Option<EarlyDecision>,
}

impl Interpreter {
    pub fn new(fs_hz: f64, labels: &[&str], patient: Patient) -> Result<Self, TriageError> {
        if !(fs_hz.is_finite() && fs_hz >= 100.0) {
            return Err(TriageError::SamplingRate(fs_hz));
        }
        if labels.is_empty() {
            return Err(TriageError::NoLeads);
        }
        Ok(Interpreter {
            fs_hz,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            patient,
            signals: vec![Vec::new(); labels.len()],
            r_peaks: Vec::new(),
            early: None,
        })
    }

    /// Appends one chunk (one slice per lead, equal lengths) and the R peaks detected so far
    /// in it (absolute sample indices). Returns the early decision when it is first reached.
    pub fn push(
        &mut self,
        chunk: &[&[f32]],
        r_peaks: &[usize],
    ) -> Result<Option<&EarlyDecision>, TriageError> {
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
        for (s, c) in self.signals.iter_mut().zip(chunk) {
            s.extend_from_slice(c);
        }
        let before = self.r_peaks.len();
        self.r_peaks.extend_from_slice(r_peaks);
        if self.early.is_some()
            || self.r_peaks.len() == before
            || self.r_peaks.len() < CONSISTENT_BEATS
        {
            return Ok(None);
        }
        let total = self.signals[0].len();
        let start = total.saturating_sub(samples(self.fs_hz, STREAM_WINDOW_S));
        let leads: Vec<LeadSignal<'_>> = self
            .labels
            .iter()
            .zip(&self.signals)
            .map(|(l, s)| LeadSignal {
                label: l,
                samples_mv: &s[start..],
            })
            .collect();
        let r: Vec<usize> = self
            .r_peaks
            .iter()
            .filter(|&&x| x >= start)
            .map(|&x| x - start)
            .collect();
        let (mut interp, analysis) = interpret_inner(self.fs_hz, &leads, &r, self.patient)?;
        let Some(a) = analysis else { return Ok(None) };
        if interp.stemi && interp.quality.ok && consistent(&a, CONSISTENT_BEATS) {
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

    /// The refined interpretation of everything pushed.
    pub fn finish(&self) -> Result<Interpretation, TriageError> {
        let leads: Vec<LeadSignal<'_>> = self
            .labels
            .iter()
            .zip(&self.signals)
            .map(|(l, s)| LeadSignal {
                label: l,
                samples_mv: s,
            })
            .collect();
        interpret(self.fs_hz, &leads, &self.r_peaks, self.patient)
    }
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
