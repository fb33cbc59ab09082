//! Waveforms generated before the clock starts, so the generator never
//! bounds a run. A year of 12-lead visits does not fit in memory
//! (57,000 x 120 kB), so a pool of distinct synthetic visits is generated
//! once and each planned visit streams one of them under its own visit id;
//! the pipeline keeps no state across visits, so reuse changes no work.

use ecg_wire::{LeadSet, SamplesDigest, Sex};
use firmware_sim::synth::{self, VisitSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::BenchError;

/// One chunk ready to wrap: samples lead after lead, as the wire wants.
#[derive(Debug, Clone)]
pub struct PoolChunk {
    pub first_sample: u32,
    pub payload: Vec<i16>,
    pub clipped: bool,
}

/// One pre-generated visit.
#[derive(Debug, Clone)]
pub struct PoolVisit {
    pub leads: LeadSet,
    pub fs_hz: u32,
    pub gain_uv_per_lsb: f64,
    pub sex: Sex,
    pub age_years: Option<u8>,
    pub n_samples: usize,
    pub chunk_samples: usize,
    pub chunks: Vec<PoolChunk>,
    pub digest: SamplesDigest,
    pub stemi: bool,
}

impl PoolVisit {
    /// int16 samples over all leads.
    pub fn total_samples(&self) -> u64 {
        (self.n_samples * self.leads.len()) as u64
    }
}

/// `n` visits from the fleet's case mix, cut into `chunk_s` chunks.
pub fn generate(
    n: usize,
    stemi_fraction: f64,
    seed: u64,
    chunk_s: f64,
) -> Result<Vec<PoolVisit>, BenchError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n.max(1))
        .map(|_| {
            let spec = VisitSpec::random(&mut rng, stemi_fraction);
            let v = synth::generate(&spec, rng.random())
                .map_err(|e| BenchError::Setup(format!("generating a visit: {e}")))?;
            let n_samples = v.samples.first().map_or(0, Vec::len);
            let per_chunk = ((chunk_s * f64::from(v.fs_hz)).round() as usize).max(1);
            let chunks = (0..n_samples.div_ceil(per_chunk))
                .map(|k| {
                    let from = k * per_chunk;
                    let to = (from + per_chunk).min(n_samples);
                    let mut payload = Vec::with_capacity(v.samples.len() * (to - from));
                    for row in &v.samples {
                        payload.extend_from_slice(&row[from..to]);
                    }
                    let clipped = payload.iter().any(|&s| s == i16::MAX || s == i16::MIN);
                    PoolChunk {
                        first_sample: from as u32,
                        payload,
                        clipped,
                    }
                })
                .collect();
            Ok(PoolVisit {
                // The generator's rows are the standard 12 in wire order.
                leads: LeadSet::STANDARD_12,
                fs_hz: v.fs_hz,
                gain_uv_per_lsb: f64::from(v.uv_per_lsb),
                sex: match spec.sex {
                    synth::Sex::Male => Sex::Male,
                    synth::Sex::Female => Sex::Female,
                },
                age_years: Some(spec.age_years),
                n_samples,
                chunk_samples: per_chunk,
                chunks,
                digest: SamplesDigest::of_leads(v.samples.iter().map(Vec::as_slice)),
                stemi: v.truth.stemi,
            })
        })
        .collect()
}
