//! Plain data for one archived visit, one struct per table row. The writer
//! takes these as they are; mapping from the triage and ingest types is the
//! pipeline's business, so this crate depends on neither.

use time::OffsetDateTime;

use crate::ArchiveError;

/// One visit as archived: the `visits` row and the rows of the other tables
/// that belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitRecord {
    pub visit: VisitRow,
    /// One vector of raw ADC counts per lead, in `visit.leads` order, all of
    /// the same length (`n_samples`).
    pub samples: Vec<Vec<i16>>,
    pub beats: Vec<BeatRow>,
    pub measurements: Vec<LeadMeasurement>,
    pub alerts: Vec<AlertRow>,
}

/// The `visits` row, except the columns derived from the samples
/// (`n_leads`, `n_samples`).
#[derive(Debug, Clone, PartialEq)]
pub struct VisitRow {
    /// UUID text; the archive's idempotency key.
    pub visit_id: String,
    pub device_id: String,
    pub clinic_id: String,
    /// `k<n>-<32 hex>`; never a direct identifier.
    pub patient_pseudonym: String,
    /// male, female or unknown.
    pub sex: String,
    pub age_years: Option<u8>,
    /// Device clock at acquisition; sets the `date` partition (UTC).
    pub started_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub fs_hz: u32,
    pub gain_uv_per_lsb: f64,
    /// Canonical lead names, the order of [`VisitRecord::samples`].
    pub leads: Vec<String>,
    pub samples_sha256: Option<String>,
    pub complete: bool,
    /// stemi_suspected, no_stemi, poor_signal_repeat or incomplete.
    pub status: String,
    pub stemi: bool,
    pub stemi_criteria_met: bool,
    pub territories: Vec<String>,
    pub heart_rate_bpm: Option<f64>,
    pub qrs_ms: Option<f64>,
    pub quality_ok: bool,
    pub quality_issues: Vec<String>,
    pub mimics: Vec<String>,
    pub reasons: Vec<String>,
    pub alert_id: Option<String>,
    pub firmware_version: String,
    pub decided_at: Option<OffsetDateTime>,
}

/// One detected beat (`beats` table), sample indices of the visit.
#[derive(Debug, Clone, PartialEq)]
pub struct BeatRow {
    pub beat_index: u32,
    pub r: u32,
    pub qrs_on: Option<u32>,
    pub qrs_off: Option<u32>,
    pub rr_ms: Option<f64>,
    pub kind: String,
    pub used_for_st: bool,
}

/// The ST measurements of one lead (`measurements` table).
#[derive(Debug, Clone, PartialEq)]
pub struct LeadMeasurement {
    pub lead: String,
    pub st_j_uv: Option<i32>,
    pub st_j60_uv: Option<i32>,
    pub st_elevation_threshold_uv: Option<i32>,
    pub lead_ok: bool,
    pub noise_uv: Option<f64>,
}

/// One alert publication (`alerts` table); visit, device and clinic come
/// from the visit row. Partitioned by `detected_at`'s UTC date.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub alert_id: String,
    pub centre_id: String,
    pub territories: Vec<String>,
    pub early: bool,
    pub escalation_level: u8,
    pub acquired_at: OffsetDateTime,
    pub detected_at: OffsetDateTime,
    pub published_at: OffsetDateTime,
    /// Set when the ack was known before the visit was archived; a later
    /// ack goes to the `alert_acks` table instead (files are immutable).
    pub acked_at: Option<OffsetDateTime>,
    pub acked_by: Option<String>,
}

/// A cardiologist's acknowledgement that arrived after its alert was
/// archived (`alert_acks` table, partitioned by `acked_at`'s UTC date).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertAck {
    pub alert_id: String,
    pub acked_at: OffsetDateTime,
    pub acked_by: String,
    /// `confirmed` or `false_alarm`, when the cardiologist gave a reading.
    pub verdict: Option<String>,
}

/// An alert re-published to the escalation topic because nobody
/// acknowledged it in time (`alert_escalations` table, partitioned by
/// `escalated_at`'s UTC date).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEscalation {
    pub alert_id: String,
    pub centre_id: String,
    pub escalated_at: OffsetDateTime,
    /// 1 for the first escalation, +1 for each further one.
    pub escalation_level: u8,
}

impl VisitRecord {
    /// Samples per lead, after [`VisitRecord::validate`].
    pub fn n_samples(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    /// Bytes the samples of every lead take in memory.
    pub fn sample_bytes(&self) -> usize {
        self.samples
            .iter()
            .map(|lead| std::mem::size_of_val(lead.as_slice()))
            .sum()
    }

    /// Checks what the tables promise and the types cannot: one sample
    /// vector per named lead, all of one length that fits the `uint32`
    /// columns, and a usable visit id.
    pub fn validate(&self) -> Result<(), ArchiveError> {
        let invalid = |reason: String| ArchiveError::InvalidRecord {
            visit_id: self.visit.visit_id.clone(),
            reason,
        };
        if self.visit.visit_id.is_empty() {
            return Err(invalid("empty visit_id".into()));
        }
        if self.visit.leads.len() != self.samples.len() {
            return Err(invalid(format!(
                "{} lead names but {} sample vectors",
                self.visit.leads.len(),
                self.samples.len()
            )));
        }
        if self.samples.len() > usize::from(u8::MAX) {
            return Err(invalid(format!("{} leads (max 255)", self.samples.len())));
        }
        let n = self.n_samples();
        if let Some((i, lead)) = self.samples.iter().enumerate().find(|(_, s)| s.len() != n) {
            return Err(invalid(format!(
                "lead {} has {} samples, lead {} has {n}",
                self.visit.leads[i],
                lead.len(),
                self.visit.leads[0]
            )));
        }
        if u32::try_from(n).is_err() {
            return Err(invalid(format!("{n} samples per lead exceed u32")));
        }
        if self.visit.fs_hz == 0 {
            return Err(invalid("fs_hz is 0".into()));
        }
        Ok(())
    }
}
