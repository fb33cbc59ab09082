//! Streaming one recorded visit: `meta`, then the chunks paced as the
//! recording progresses, then `end`, each through the device's [`Link`].

use std::time::Duration;

use ecg_wire::{
    Chunk, ClinicId, DeviceId, Lead, LeadSet, Message, PatientPseudonym, SamplesDigest, Sex, Topic,
    VisitEnd, VisitId, VisitMeta, VisitTopic,
};
use rand::Rng;
use time::OffsetDateTime;

use crate::device::{DeviceError, Link};

/// Written into every meta.
pub const FIRMWARE_VERSION: &str = concat!("firmware-sim/", env!("CARGO_PKG_VERSION"));

/// Why a recording cannot be streamed.
#[derive(Debug, thiserror::Error)]
pub enum VisitError {
    #[error("recording has {leads} leads in its lead set but {rows} sample rows")]
    LeadCount { leads: usize, rows: usize },
    #[error("recording leads have different lengths")]
    Ragged,
    #[error("recording has no samples")]
    Empty,
    #[error("recording of {0} samples per lead exceeds the u32 sample index")]
    TooLong(usize),
    #[error("chunk length {0} s gives no whole sample or too many samples per chunk")]
    ChunkLength(f64),
    #[error("lead {0:?} has no v1 wire name")]
    UnknownLead(String),
    #[error("lead {0} appears twice")]
    DuplicateLead(Lead),
    #[error(transparent)]
    Wire(#[from] ecg_wire::WireError),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Samples as a device holds them before sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub leads: LeadSet,
    pub fs_hz: u32,
    pub gain_uv_per_lsb: f64,
    /// One row per lead of `leads`, in canonical lead order.
    pub samples: Vec<Vec<i16>>,
    pub sex: Sex,
    pub age_years: Option<u8>,
}

impl Recording {
    /// Builds a recording from leads given by name in any order; names are
    /// matched to the wire's lead table ignoring ASCII case.
    pub fn from_named(
        named: Vec<(String, Vec<i16>)>,
        fs_hz: u32,
        gain_uv_per_lsb: f64,
        sex: Sex,
        age_years: Option<u8>,
    ) -> Result<Recording, VisitError> {
        let mut rows: Vec<(Lead, Vec<i16>)> = Vec::with_capacity(named.len());
        for (name, row) in named {
            let lead = Lead::ALL
                .into_iter()
                .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| VisitError::UnknownLead(name.clone()))?;
            if rows.iter().any(|(l, _)| *l == lead) {
                return Err(VisitError::DuplicateLead(lead));
            }
            rows.push((lead, row));
        }
        rows.sort_by_key(|(l, _)| *l);
        let rec = Recording {
            leads: rows.iter().map(|(l, _)| *l).collect(),
            fs_hz,
            gain_uv_per_lsb,
            samples: rows.into_iter().map(|(_, r)| r).collect(),
            sex,
            age_years,
        };
        rec.check()?;
        Ok(rec)
    }

    fn check(&self) -> Result<usize, VisitError> {
        if self.samples.len() != self.leads.len() {
            return Err(VisitError::LeadCount {
                leads: self.leads.len(),
                rows: self.samples.len(),
            });
        }
        let n = self.samples.first().map_or(0, Vec::len);
        if n == 0 {
            return Err(VisitError::Empty);
        }
        if self.samples.iter().any(|r| r.len() != n) {
            return Err(VisitError::Ragged);
        }
        u32::try_from(n).map_err(|_| VisitError::TooLong(n))?;
        Ok(n)
    }

    /// Samples per lead.
    pub fn n_samples(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    /// The digest the `end` message and the truth file carry.
    pub fn digest(&self) -> SamplesDigest {
        SamplesDigest::of_leads(self.samples.iter().map(Vec::as_slice))
    }
}

/// Misbehaviour to inject, for testing the pipeline's robustness.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Probability that a chunk is published twice.
    pub duplicate_p: f64,
    /// Probability that a chunk is held back and sent after the next one.
    pub reorder_p: f64,
    /// Offset of the device clock from true time, in seconds.
    pub clock_skew_s: f64,
    /// Tear the link down this often (0 = never) ...
    pub link_drop_every_s: f64,
    /// ... for this long.
    pub link_outage_s: f64,
}

impl Faults {
    pub fn link_drops(&self) -> Option<crate::device::LinkDrops> {
        (self.link_drop_every_s > 0.0).then_some(crate::device::LinkDrops {
            every_s: self.link_drop_every_s,
            outage_s: self.link_outage_s,
        })
    }
}

/// How to stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamOpts {
    pub chunk_s: f64,
    /// Time compression: chunks come every `chunk_s / speed` seconds.
    pub speed: f64,
    pub faults: Faults,
}

impl Default for StreamOpts {
    fn default() -> Self {
        StreamOpts {
            chunk_s: 1.0,
            speed: 1.0,
            faults: Faults::default(),
        }
    }
}

/// Who is recording whom.
#[derive(Debug, Clone)]
pub struct VisitHeader {
    pub device_id: DeviceId,
    pub clinic_id: ClinicId,
    pub visit_id: VisitId,
    pub patient_pseudonym: PatientPseudonym,
}

/// What one visit cost on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VisitStats {
    pub chunks: u32,
    pub bytes: u64,
}

/// Streams `rec` as one visit: meta, chunks in real time / speed, end.
pub async fn stream<R: Rng>(
    link: &mut Link,
    who: &VisitHeader,
    rec: &Recording,
    opts: StreamOpts,
    rng: &mut R,
) -> Result<VisitStats, VisitError> {
    let n = rec.check()?;
    let per_chunk = (opts.chunk_s * f64::from(rec.fs_hz)).round();
    if !(per_chunk >= 1.0 && per_chunk <= f64::from(u16::MAX)) {
        return Err(VisitError::ChunkLength(opts.chunk_s));
    }
    let per_chunk = per_chunk as usize;
    let skew = time::Duration::seconds_f64(opts.faults.clock_skew_s);
    let meta = VisitMeta {
        device_id: who.device_id.clone(),
        clinic_id: who.clinic_id.clone(),
        visit_id: who.visit_id,
        patient_pseudonym: who.patient_pseudonym.clone(),
        sex: rec.sex,
        age_years: rec.age_years,
        leads: rec.leads,
        fs_hz: rec.fs_hz,
        gain_uv_per_lsb: rec.gain_uv_per_lsb,
        acquired_at: OffsetDateTime::now_utc() + skew,
        chunk_samples: per_chunk as u16,
        firmware_version: FIRMWARE_VERSION.to_owned(),
    };
    let topic = |kind| Topic::visit(who.device_id.clone(), who.visit_id, kind).to_string();
    let mut stats = VisitStats::default();
    let meta_json = meta.to_json();
    stats.bytes += meta_json.len() as u64;
    link.publish(topic(VisitTopic::Meta), meta_json).await?;

    let start = tokio::time::Instant::now();
    let speed = if opts.speed.is_finite() && opts.speed > 0.0 {
        opts.speed
    } else {
        1.0
    };
    let n_chunks = n.div_ceil(per_chunk);
    let mut held: Option<Vec<u8>> = None;
    for k in 0..n_chunks {
        let from = k * per_chunk;
        let to = (from + per_chunk).min(n);
        // A chunk exists once its last sample has been recorded.
        let ready_s = to as f64 / f64::from(rec.fs_hz) / speed;
        tokio::time::sleep_until(start + Duration::from_secs_f64(ready_s)).await;
        let mut payload = Vec::with_capacity(rec.leads.len() * (to - from));
        for row in &rec.samples {
            payload.extend_from_slice(&row[from..to]);
        }
        let clipped = payload.iter().any(|&s| s == i16::MAX || s == i16::MIN);
        let chunk = Chunk::new(who.visit_id, k as u32, from as u32, rec.leads, payload)?
            .with_last(k + 1 == n_chunks)
            .with_clipped(clipped);
        let bytes = chunk.to_bytes();
        stats.chunks += 1;
        stats.bytes += bytes.len() as u64;
        let last = k + 1 == n_chunks;
        if !last && held.is_none() && rng.random_bool(opts.faults.reorder_p.clamp(0.0, 1.0)) {
            held = Some(bytes);
            continue;
        }
        if rng.random_bool(opts.faults.duplicate_p.clamp(0.0, 1.0)) {
            link.publish(topic(VisitTopic::Chunk), bytes.clone())
                .await?;
        }
        link.publish(topic(VisitTopic::Chunk), bytes).await?;
        if let Some(late) = held.take() {
            link.publish(topic(VisitTopic::Chunk), late).await?;
        }
    }
    let end = VisitEnd {
        visit_id: who.visit_id,
        n_chunks: n_chunks as u32,
        n_samples: n as u32,
        samples_sha256: rec.digest(),
    };
    let end_json = end.to_json();
    stats.bytes += end_json.len() as u64;
    link.publish(topic(VisitTopic::End), end_json).await?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_leads_are_put_in_wire_order() {
        let rec = Recording::from_named(
            vec![
                ("v1".into(), vec![3, 4]),
                ("MLII".into(), vec![1, 2]),
                ("avr".into(), vec![5, 6]),
            ],
            360,
            5.0,
            Sex::Unknown,
            None,
        )
        .unwrap();
        assert_eq!(
            rec.leads.iter().collect::<Vec<_>>(),
            [Lead::AVR, Lead::V1, Lead::MLII]
        );
        assert_eq!(rec.samples, vec![vec![5, 6], vec![3, 4], vec![1, 2]]);
    }

    #[test]
    fn bad_recordings_are_refused() {
        let r = |named| Recording::from_named(named, 500, 1.0, Sex::Male, None);
        assert!(matches!(
            r(vec![("ECG".into(), vec![1])]),
            Err(VisitError::UnknownLead(_))
        ));
        assert!(matches!(
            r(vec![("I".into(), vec![1]), ("i".into(), vec![1])]),
            Err(VisitError::DuplicateLead(Lead::I))
        ));
        assert!(matches!(
            r(vec![("I".into(), vec![1]), ("II".into(), vec![1, 2])]),
            Err(VisitError::Ragged)
        ));
        assert!(matches!(
            r(vec![("I".into(), vec![])]),
            Err(VisitError::Empty)
        ));
    }
}
