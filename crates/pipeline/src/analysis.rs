//! Per-visit analysis as samples arrive: the signal core's streaming QRS
//! detector on every chunk, the 12-lead interpreter fed with its beats (it
//! may decide early), and the refined interpretation at the end.

use ecg_signal::{Beat as DetectedBeat, QrsDetector};
use ecg_triage::{EarlyDecision, Interpretation, Interpreter, LeadName, Patient};
use ecg_wire::{Sex, VisitMeta};

/// Longest visit kept in memory, whatever a device sends: a resting ECG is
/// 10 s; 10 minutes is generous and bounds memory to ~7 MB a visit at 500 Hz.
pub const MAX_VISIT_S: u64 = 600;

/// Why a visit cannot be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("the detector refused the visit: {0}")]
    Detector(#[from] ecg_signal::SignalError),
    #[error("the interpreter refused the visit: {0}")]
    Interpreter(#[from] ecg_triage::TriageError),
    #[error("chunk has {got} leads, the visit's meta lists {expected}")]
    LeadCount { got: usize, expected: usize },
    #[error("lead {lead} has {got} samples in this chunk, lead 0 has {expected}")]
    Ragged {
        lead: usize,
        got: usize,
        expected: usize,
    },
    #[error("samples start at {got}, expected {expected} (ingestion must deliver them in order)")]
    OutOfOrder { got: u64, expected: u64 },
    #[error("visit longer than {MAX_VISIT_S} s")]
    TooLong,
}

/// The streaming analysis of one visit.
pub struct VisitAnalysis {
    gain_mv_per_lsb: f32,
    /// Lead positions (in the visit's lead order) given to the detector.
    detector_leads: Vec<usize>,
    detector: Option<QrsDetector>,
    interpreter: Interpreter,
    samples: Vec<Vec<i16>>,
    max_samples: u64,
    r_peaks: Vec<usize>,
}

/// What the analysis found at the end of a visit.
#[derive(Debug, Clone)]
pub struct VisitFindings {
    pub interpretation: Interpretation,
    /// Every R peak the streaming detector found, in sample indices.
    pub r_peaks: Vec<usize>,
}

impl VisitAnalysis {
    pub fn new(meta: &VisitMeta) -> Result<VisitAnalysis, AnalysisError> {
        let fs_hz = f64::from(meta.fs_hz);
        let labels: Vec<&str> = meta.leads.iter().map(|l| l.name()).collect();
        // The detector only sees leads of the 12-lead system (Frank leads
        // and unknown channels would only add noise), at most its maximum.
        let mut detector_leads: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, l)| LeadName::parse(l).is_some())
            .map(|(i, _)| i)
            .collect();
        if detector_leads.is_empty() {
            detector_leads = (0..labels.len()).collect();
        }
        detector_leads.truncate(ecg_signal::qrs::MAX_LEADS);
        let detector = QrsDetector::new(fs_hz, detector_leads.len())?;
        let patient = Patient {
            sex: match meta.sex {
                Sex::Male => Some(ecg_triage::Sex::Male),
                Sex::Female => Some(ecg_triage::Sex::Female),
                Sex::Unknown => None,
            },
            age_years: meta.age_years.map(f64::from),
        };
        let interpreter = Interpreter::new(fs_hz, &labels, patient)?;
        Ok(VisitAnalysis {
            gain_mv_per_lsb: (meta.gain_uv_per_lsb / 1000.0) as f32,
            detector_leads,
            detector: Some(detector),
            interpreter,
            samples: vec![Vec::new(); labels.len()],
            max_samples: MAX_VISIT_S * u64::from(meta.fs_hz),
            r_peaks: Vec::new(),
        })
    }

    /// Samples per lead received so far.
    pub fn n_samples(&self) -> u64 {
        self.samples.first().map_or(0, |s| s.len() as u64)
    }

    /// The raw samples so far, lead by lead in the visit's lead order.
    pub fn samples(&self) -> &[Vec<i16>] {
        &self.samples
    }

    /// Takes the raw samples (for the archive) once the visit is finished.
    pub fn into_samples(self) -> Vec<Vec<i16>> {
        self.samples
    }

    /// Pushes the next samples (ADC counts, one vector per lead). Returns
    /// the early decision the first time the interpreter reaches one.
    pub fn push(
        &mut self,
        first_sample: u64,
        per_lead: &[Vec<i16>],
    ) -> Result<Option<EarlyDecision>, AnalysisError> {
        if per_lead.len() != self.samples.len() {
            return Err(AnalysisError::LeadCount {
                got: per_lead.len(),
                expected: self.samples.len(),
            });
        }
        let len = per_lead[0].len();
        if let Some((lead, l)) = per_lead.iter().enumerate().find(|(_, l)| l.len() != len) {
            return Err(AnalysisError::Ragged {
                lead,
                got: l.len(),
                expected: len,
            });
        }
        if first_sample != self.n_samples() {
            return Err(AnalysisError::OutOfOrder {
                got: first_sample,
                expected: self.n_samples(),
            });
        }
        if first_sample + len as u64 > self.max_samples {
            return Err(AnalysisError::TooLong);
        }
        let mv: Vec<Vec<f32>> = per_lead
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&c| f32::from(c) * self.gain_mv_per_lsb)
                    .collect()
            })
            .collect();
        let mut beats: Vec<DetectedBeat> = Vec::new();
        if let Some(det) = self.detector.as_mut() {
            let view: Vec<&[f32]> = self
                .detector_leads
                .iter()
                .map(|&i| mv[i].as_slice())
                .collect();
            det.push(&view, &mut beats)?;
        }
        for (all, new) in self.samples.iter_mut().zip(per_lead) {
            all.extend_from_slice(new);
        }
        self.feed(&mv, &beats)
    }

    fn feed(
        &mut self,
        mv: &[Vec<f32>],
        beats: &[DetectedBeat],
    ) -> Result<Option<EarlyDecision>, AnalysisError> {
        let r: Vec<usize> = beats
            .iter()
            .filter_map(|b| usize::try_from(b.sample).ok())
            .collect();
        self.r_peaks.extend_from_slice(&r);
        let view: Vec<&[f32]> = mv.iter().map(Vec::as_slice).collect();
        let early = self.interpreter.push(&view, &r)?;
        Ok(early.cloned())
    }

    /// The early decision, if one was reached.
    pub fn early_decision(&self) -> Option<&EarlyDecision> {
        self.interpreter.early_decision()
    }

    /// Ends the visit: the detector decides its last beats, and the whole
    /// recording is interpreted again.
    pub fn finish(&mut self) -> Result<VisitFindings, AnalysisError> {
        if let Some(mut det) = self.detector.take() {
            let mut tail: Vec<DetectedBeat> = Vec::new();
            det.finish(&mut tail);
            if !tail.is_empty() {
                let empty: Vec<Vec<f32>> = vec![Vec::new(); self.samples.len()];
                self.feed(&empty, &tail)?;
            }
        }
        let interpretation = self.interpreter.finish()?;
        Ok(VisitFindings {
            interpretation,
            r_peaks: self.r_peaks.clone(),
        })
    }
}
