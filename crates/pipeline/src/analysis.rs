//! Per-visit analysis as samples arrive: the signal core's streaming QRS
//! detector on every chunk, the 12-lead interpreter fed with its beats (it
//! may decide early), and the refined interpretation at the end.

use ecg_ingest::SampleBlock;
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
    /// Per lead, a hash of the samples pushed: the end of the visit checks that the
    /// stream saw exactly the samples to archive without comparing them whole (the
    /// interpreter shares the assembler's blocks; the archive gets a copy assembled at
    /// the end).
    lead_hashes: Vec<LeadHash>,
    n_samples: u64,
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
        let gain_mv_per_lsb = (meta.gain_uv_per_lsb / 1000.0) as f32;
        // It keeps the counts, read with the gain that makes `push`'s millivolts.
        let interpreter = Interpreter::new(fs_hz, &labels, patient)?.with_counts(gain_mv_per_lsb);
        Ok(VisitAnalysis {
            gain_mv_per_lsb,
            detector_leads,
            detector: Some(detector),
            interpreter,
            lead_hashes: vec![LeadHash::default(); labels.len()],
            n_samples: 0,
            max_samples: MAX_VISIT_S * u64::from(meta.fs_hz),
            r_peaks: Vec::new(),
        })
    }

    /// Samples per lead received so far.
    pub fn n_samples(&self) -> u64 {
        self.n_samples
    }

    /// Whether the samples pushed so far are exactly `samples` (lead by lead in the
    /// visit's lead order), by count and hash.
    pub fn saw_exactly(&self, samples: &[Vec<i16>]) -> bool {
        samples.len() == self.lead_hashes.len()
            && samples.iter().all(|l| l.len() as u64 == self.n_samples)
            && samples.iter().zip(&self.lead_hashes).all(|(l, h)| {
                let mut whole = LeadHash::default();
                whole.push(l);
                whole == *h
            })
    }

    /// Pushes the next samples (ADC counts, one vector per lead). Returns
    /// the early decision the first time the interpreter reaches one.
    pub fn push(
        &mut self,
        first_sample: u64,
        per_lead: SampleBlock,
    ) -> Result<Option<EarlyDecision>, AnalysisError> {
        if per_lead.len() != self.lead_hashes.len() {
            return Err(AnalysisError::LeadCount {
                got: per_lead.len(),
                expected: self.lead_hashes.len(),
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
        let mut beats: Vec<DetectedBeat> = Vec::new();
        if let Some(det) = self.detector.as_mut() {
            let mv: Vec<Vec<f32>> = self
                .detector_leads
                .iter()
                .map(|&i| {
                    per_lead[i]
                        .iter()
                        .map(|&c| f32::from(c) * self.gain_mv_per_lsb)
                        .collect()
                })
                .collect();
            let view: Vec<&[f32]> = mv.iter().map(Vec::as_slice).collect();
            det.push(&view, &mut beats)?;
            // Thousands of visits wait between chunks; their scratch space need not.
            det.release_scratch();
        }
        for (h, new) in self.lead_hashes.iter_mut().zip(per_lead.iter()) {
            h.push(new);
        }
        self.n_samples += len as u64;
        self.feed(per_lead, &beats)
    }

    fn feed(
        &mut self,
        counts: SampleBlock,
        beats: &[DetectedBeat],
    ) -> Result<Option<EarlyDecision>, AnalysisError> {
        let r: Vec<usize> = beats
            .iter()
            .filter_map(|b| usize::try_from(b.sample).ok())
            .collect();
        self.r_peaks.extend_from_slice(&r);
        let early = self.interpreter.push_block(counts, &r)?;
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
                let empty: SampleBlock = vec![Vec::new(); self.lead_hashes.len()].into();
                self.feed(empty, &tail)?;
            }
        }
        let interpretation = self.interpreter.finish()?;
        Ok(VisitFindings {
            interpretation,
            r_peaks: self.r_peaks.clone(),
        })
    }
}

/// A hash of one lead's samples that is the same however the lead is cut into
/// pieces: FNV-1a over the samples (16 bits at a time), in four interleaved lanes
/// (sample `i` goes to lane `i % 4`) so that four multiplications are in flight at
/// once; every visit's samples pass through it twice.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeadHash {
    lanes: [u64; 4],
    /// Samples hashed so far: where the next piece's first sample goes.
    len: u64,
}

impl Default for LeadHash {
    fn default() -> LeadHash {
        LeadHash {
            lanes: [FNV_OFFSET; 4],
            len: 0,
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl LeadHash {
    fn push(&mut self, samples: &[i16]) {
        let step = |h: &mut u64, v: i16| *h = (*h ^ u64::from(v as u16)).wrapping_mul(FNV_PRIME);
        // Up to the next multiple of four, so that the blocks below start at lane 0.
        let lead_in = ((4 - self.len % 4) % 4).min(samples.len() as u64) as usize;
        for (k, &v) in samples[..lead_in].iter().enumerate() {
            step(&mut self.lanes[(self.len as usize + k) % 4], v);
        }
        let blocks = samples[lead_in..].chunks_exact(4);
        let rest = blocks.remainder();
        for b in blocks {
            for (h, &v) in self.lanes.iter_mut().zip(b) {
                step(h, v);
            }
        }
        for (h, &v) in self.lanes.iter_mut().zip(rest) {
            step(h, v);
        }
        self.len += samples.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_wire::{ClinicId, DeviceId, Lead, LeadSet, PatientPseudonym, VisitId};

    fn meta() -> VisitMeta {
        VisitMeta {
            device_id: DeviceId::new("dev-1").unwrap(),
            clinic_id: ClinicId::new("clinic-1").unwrap(),
            visit_id: VisitId::from_bytes([7; 16]).unwrap(),
            patient_pseudonym: PatientPseudonym::new("k1-9f86d081884c7d659a2feaa0c55ad015")
                .unwrap(),
            sex: Sex::Male,
            age_years: Some(60),
            leads: LeadSet::from_ordered([Lead::I, Lead::II, Lead::V2]).unwrap(),
            fs_hz: 250,
            gain_uv_per_lsb: 5.0,
            acquired_at: time::OffsetDateTime::UNIX_EPOCH,
            chunk_samples: 100,
            firmware_version: "test-1".into(),
        }
    }

    #[test]
    fn a_lead_hash_does_not_depend_on_how_the_lead_was_cut() {
        let lead: Vec<i16> = (0..300)
            .map(|i| ((i * 7919) % 4001 - 2000) as i16)
            .collect();
        let mut whole = LeadHash::default();
        whole.push(&lead);
        for sizes in [&[1usize, 2, 3, 5, 7][..], &[4, 4, 1], &[299], &[0, 3, 0, 1]] {
            let mut pieces = LeadHash::default();
            let mut at = 0;
            for &n in sizes.iter().cycle() {
                let end = (at + n).min(lead.len());
                pieces.push(&lead[at..end]);
                at = end;
                if at == lead.len() {
                    break;
                }
            }
            assert_eq!(pieces, whole, "{sizes:?}");
        }
        // Two samples swapped, in the same lane and in different lanes.
        for (i, j) in [(10, 14), (10, 11)] {
            let mut other = lead.clone();
            other.swap(i, j);
            let mut h = LeadHash::default();
            h.push(&other);
            assert_ne!(h, whole);
        }
    }

    #[test]
    fn knows_whether_it_saw_exactly_the_samples_to_archive() {
        let whole: Vec<Vec<i16>> = (0..3)
            .map(|l| {
                (0..730)
                    .map(|i| ((i * 7 + l * 13) % 200 - 100) as i16)
                    .collect()
            })
            .collect();
        let mut a = VisitAnalysis::new(&meta()).unwrap();
        for start in (0..730).step_by(100) {
            let end = (start + 100).min(730);
            let part: Vec<Vec<i16>> = whole.iter().map(|l| l[start..end].to_vec()).collect();
            a.push(start as u64, part.into()).unwrap();
        }
        assert_eq!(a.n_samples(), 730);
        assert!(a.saw_exactly(&whole));
        let mut changed = whole.clone();
        changed[2][500] += 1;
        assert!(!a.saw_exactly(&changed));
        let shorter: Vec<Vec<i16>> = whole.iter().map(|l| l[..729].to_vec()).collect();
        assert!(!a.saw_exactly(&shorter));
        let swapped = vec![whole[1].clone(), whole[0].clone(), whole[2].clone()];
        assert!(!a.saw_exactly(&swapped));
    }
}
