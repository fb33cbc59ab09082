//! The JSON messages of the v1 contract, one struct per schema in schemas/.
//!
//! Versioning, as in schemas/README.md: the pipeline is the hub and is
//! upgraded first, so messages it *reads* (meta, end, ack) are parsed
//! strictly (`deny_unknown_fields`: a misspelt field or a smuggled raw
//! patient identifier is rejected, not silently dropped); messages it
//! *writes* (result, alert, dead letter) are read by devices and dashboards
//! that upgrade later, so they are tolerant readers and ignore fields added
//! within v1. Enumerations are closed within v1: a device must never guess
//! what an unknown triage status means.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::chunk::MAX_SAMPLES_PER_CHUNK;
use crate::ids::{AlertId, CentreId, ClinicId, DeviceId, PatientPseudonym, VisitId};
use crate::lead::{Lead, LeadSet};

/// Largest JSON message accepted, in bytes.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Dead letters keep at most this many bytes of the rejected payload.
pub const DEADLETTER_PAYLOAD_MAX_BYTES: usize = 1024;
/// Bounds on free-text lists, shared with the JSON Schemas.
pub const MAX_REASONS: usize = 32;
pub const MAX_TEXT_LEN: usize = 512;

/// Why a JSON message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is {len} bytes, more than {MAX_JSON_BYTES}")]
    TooLarge { len: usize },
    #[error("malformed JSON or wrong shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> MessageError {
    MessageError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Shared behaviour of the JSON messages.
pub trait Message: Serialize + DeserializeOwned {
    /// Schema file for this message, relative to schemas/.
    const SCHEMA: &'static str;

    /// Checks the rules that serde types alone do not express.
    fn validate(&self) -> Result<(), MessageError>;

    /// Parses and validates an untrusted payload.
    fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_JSON_BYTES {
            return Err(MessageError::TooLarge { len: bytes.len() });
        }
        let message: Self = serde_json::from_slice(bytes)?;
        message.validate()?;
        Ok(message)
    }

    /// Serialises to compact JSON.
    fn to_json(&self) -> Vec<u8> {
        // Every message is a struct of strings, numbers and string-keyed
        // maps, which serde_json always serialises.
        serde_json::to_vec(self).expect("wire messages always serialise")
    }
}

fn check_text_list(field: &'static str, items: &[String]) -> Result<(), MessageError> {
    if items.len() > MAX_REASONS {
        return Err(invalid(
            field,
            format!("{} items, at most {MAX_REASONS}", items.len()),
        ));
    }
    for item in items {
        check_text(field, item)?;
    }
    Ok(())
}

fn check_territories(territories: &[Territory]) -> Result<(), MessageError> {
    let mut sorted = territories.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != territories.len() {
        return Err(invalid("territories", "a territory is listed twice"));
    }
    Ok(())
}

fn check_text(field: &'static str, text: &str) -> Result<(), MessageError> {
    if text.is_empty() || text.chars().count() > MAX_TEXT_LEN {
        return Err(invalid(
            field,
            format!("text must be 1..={MAX_TEXT_LEN} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(field, "text contains control characters"));
    }
    Ok(())
}

/// Patient sex as recorded at the device; thresholds of the STEMI criteria
/// depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
    Unknown,
}

/// `meta`: what a device says about a visit before its first chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitMeta {
    pub device_id: DeviceId,
    pub clinic_id: ClinicId,
    pub visit_id: VisitId,
    pub patient_pseudonym: PatientPseudonym,
    pub sex: Sex,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_years: Option<u8>,
    /// The recorded leads, in canonical order (the order of chunk samples).
    pub leads: LeadSet,
    pub fs_hz: u32,
    /// Microvolts per ADC count: `uv = sample * gain_uv_per_lsb` (baseline 0).
    pub gain_uv_per_lsb: f64,
    /// Device clock at the first sample; may be wrong, the pipeline also
    /// records when it received the meta.
    #[serde(with = "rfc3339_strict")]
    pub acquired_at: OffsetDateTime,
    /// Samples per lead in every chunk but the last, which may be shorter.
    pub chunk_samples: u16,
    pub firmware_version: String,
}

impl Message for VisitMeta {
    const SCHEMA: &'static str = "visit-meta.schema.json";

    fn validate(&self) -> Result<(), MessageError> {
        if self.leads.is_empty() {
            return Err(invalid("leads", "no leads"));
        }
        if !(50..=10_000).contains(&self.fs_hz) {
            return Err(invalid(
                "fs_hz",
                format!("{} Hz outside 50..=10000", self.fs_hz),
            ));
        }
        // Real ECG front ends resolve 0.1-10 uV per count. The floor also
        // keeps gains out of the exponent range where the JSON parser's fast
        // float path may read a number back one ULP off (found by the fuzz
        // test: 4.531283520630347e-172 did not round-trip).
        if !(0.001..=1000.0).contains(&self.gain_uv_per_lsb) {
            return Err(invalid(
                "gain_uv_per_lsb",
                format!("{} outside [0.001, 1000]", self.gain_uv_per_lsb),
            ));
        }
        if self.age_years.is_some_and(|age| age > 130) {
            return Err(invalid("age_years", "more than 130"));
        }
        let per_chunk = usize::from(self.chunk_samples) * self.leads.len();
        if self.chunk_samples == 0 || per_chunk > MAX_SAMPLES_PER_CHUNK {
            return Err(invalid(
                "chunk_samples",
                format!(
                    "{} x {} leads must be 1..={MAX_SAMPLES_PER_CHUNK}",
                    self.chunk_samples,
                    self.leads.len()
                ),
            ));
        }
        if self.firmware_version.is_empty()
            || self.firmware_version.len() > 64
            || !self.firmware_version.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(invalid(
                "firmware_version",
                "must be 1..=64 printable ASCII characters",
            ));
        }
        Ok(())
    }
}

/// SHA-256 of a visit's samples: int16 little-endian, lead by lead in
/// canonical lead order, each lead in time order. 64 lowercase hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SamplesDigest(pub [u8; 32]);

impl SamplesDigest {
    /// Hashes whole leads, given in canonical lead order.
    pub fn of_leads<'a>(leads: impl IntoIterator<Item = &'a [i16]>) -> SamplesDigest {
        let mut hasher = Sha256::new();
        let mut buf = Vec::new();
        for lead in leads {
            buf.clear();
            buf.extend(lead.iter().flat_map(|s| s.to_le_bytes()));
            hasher.update(&buf);
        }
        SamplesDigest(hasher.finalize().into())
    }
}

impl fmt::Display for SamplesDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SamplesDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SamplesDigest({self})")
    }
}

impl TryFrom<String> for SamplesDigest {
    type Error = MessageError;
    fn try_from(s: String) -> Result<Self, MessageError> {
        let bad = || invalid("samples_sha256", "must be 64 lowercase hex digits");
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            let nibble = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            out[i] = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
        }
        Ok(SamplesDigest(out))
    }
}

impl From<SamplesDigest> for String {
    fn from(d: SamplesDigest) -> String {
        d.to_string()
    }
}

/// `end`: the device's statement of what it sent, so the pipeline can prove
/// it received the visit whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitEnd {
    pub visit_id: VisitId,
    /// Chunks sent, i.e. last sequence number + 1.
    pub n_chunks: u32,
    /// Samples per lead over the whole visit.
    pub n_samples: u32,
    pub samples_sha256: SamplesDigest,
}

impl Message for VisitEnd {
    const SCHEMA: &'static str = "visit-end.schema.json";

    fn validate(&self) -> Result<(), MessageError> {
        if self.n_chunks == 0 || self.n_samples == 0 {
            return Err(invalid(
                "n_chunks",
                "a visit has at least one chunk and one sample",
            ));
        }
        if self.n_chunks > self.n_samples {
            return Err(invalid("n_chunks", "more chunks than samples per lead"));
        }
        Ok(())
    }
}

/// Decision sent back to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// Transfer now: the chest-pain centre has been alerted.
    StemiSuspected,
    NoStemi,
    /// Too noisy or leads off: record the ECG again.
    PoorSignalRepeat,
    /// The visit never arrived whole (gaps, no end); record again.
    Incomplete,
}

/// Myocardial territory of an ST elevation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Territory {
    Septal,
    Anterior,
    Lateral,
    Inferior,
    Posterior,
    RightVentricular,
}

/// `result`: pipeline -> device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitResult {
    pub visit_id: VisitId,
    pub status: ResultStatus,
    /// Human-readable, for the village doctor.
    pub reasons: Vec<String>,
    pub territories: Vec<Territory>,
    /// Set when `status` is `stemi_suspected`, for reference on the phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<AlertId>,
    #[serde(with = "rfc3339_strict")]
    pub decided_at: OffsetDateTime,
}

impl Message for VisitResult {
    const SCHEMA: &'static str = "visit-result.schema.json";

    fn validate(&self) -> Result<(), MessageError> {
        check_text_list("reasons", &self.reasons)?;
        check_territories(&self.territories)?;
        if self.alert_id.is_some() && self.status != ResultStatus::StemiSuspected {
            return Err(invalid(
                "alert_id",
                "only a stemi_suspected result refers to an alert",
            ));
        }
        Ok(())
    }
}

/// ST deviation of one lead, in microvolts against the PR baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadSt {
    /// At the J point.
    pub st_j_uv: i32,
    /// 60 ms after the J point.
    pub st_j60_uv: i32,
}

/// `alerts/{centre_id}`: a suspected STEMI, for the cardiologists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: AlertId,
    pub visit_id: VisitId,
    pub device_id: DeviceId,
    pub clinic_id: ClinicId,
    pub centre_id: CentreId,
    pub patient_pseudonym: PatientPseudonym,
    pub sex: Sex,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_years: Option<u8>,
    pub territories: Vec<Territory>,
    /// Per-lead ST values for the leads that could be measured.
    pub leads: BTreeMap<Lead, LeadSt>,
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_rate_bpm: Option<f64>,
    /// Device clock at the first sample.
    #[serde(with = "rfc3339_strict")]
    pub acquired_at: OffsetDateTime,
    /// When the pipeline decided.
    #[serde(with = "rfc3339_strict")]
    pub detected_at: OffsetDateTime,
    /// When this copy was published (re-publications get a new time).
    #[serde(with = "rfc3339_strict")]
    pub published_at: OffsetDateTime,
    /// Decided while the visit was still streaming, before its end.
    pub early: bool,
    /// 0 on first publication, +1 each time an unacknowledged alert is
    /// re-published to a wider audience.
    #[serde(default)]
    pub escalation_level: u8,
}

impl Message for Alert {
    const SCHEMA: &'static str = "alert.schema.json";

    fn validate(&self) -> Result<(), MessageError> {
        check_text_list("reasons", &self.reasons)?;
        check_territories(&self.territories)?;
        if self.territories.is_empty() {
            return Err(invalid(
                "territories",
                "an alert names at least one territory",
            ));
        }
        if self.age_years.is_some_and(|age| age > 130) {
            return Err(invalid("age_years", "more than 130"));
        }
        if self
            .heart_rate_bpm
            .is_some_and(|hr| !(hr.is_finite() && (1.0..=400.0).contains(&hr)))
        {
            // Under 1 bpm is no rate (and tiny values would not round-trip
            // exactly through the JSON parser; see gain_uv_per_lsb).
            return Err(invalid("heart_rate_bpm", "outside 1..=400"));
        }
        if self.detected_at > self.published_at {
            return Err(invalid("published_at", "before detected_at"));
        }
        Ok(())
    }
}

/// `alerts/{centre_id}/ack`: a cardiologist has seen the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertAck {
    pub alert_id: AlertId,
    /// Who acknowledged (staff id or name as the dashboard knows them).
    pub by: String,
    #[serde(with = "rfc3339_strict")]
    pub at: OffsetDateTime,
    /// The cardiologist's reading, when known at acknowledgement; the
    /// chest-pain centre counts its false alarms from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// What the cardiologist made of an alerted ECG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A suspected acute coronary occlusion: the alert was right.
    Confirmed,
    /// Not an occlusion (mimic, artefact, old infarct): a false alarm.
    FalseAlarm,
}

impl Verdict {
    /// The name on the wire and in the archive's `verdict` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::FalseAlarm => "false_alarm",
        }
    }

    /// The verdict named `s` (as [`Verdict::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "confirmed" => Some(Verdict::Confirmed),
            "false_alarm" => Some(Verdict::FalseAlarm),
            _ => None,
        }
    }
}

impl Message for AlertAck {
    const SCHEMA: &'static str = "alert-ack.schema.json";

    fn validate(&self) -> Result<(), MessageError> {
        if self.by.chars().count() > 128 {
            return Err(invalid("by", "more than 128 characters"));
        }
        check_text("by", &self.by)
    }
}

/// Machine-readable reason of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterCode {
    /// The topic is not a v1 topic or has a bad id.
    BadTopic,
    /// A chunk failed to decode (see the reason for the [`crate::WireError`]).
    BadChunk,
    /// JSON that does not parse into the message of its topic.
    BadJson,
    /// Parsed but breaks a rule of its message (range, format).
    InvalidMessage,
    /// Body and topic disagree (e.g. the chunk's visit id is not the topic's).
    TopicMismatch,
    /// Chunk or end for a visit whose meta never arrived.
    UnknownVisit,
    /// Conflicts with the visit's meta (lead set, sample index, duplicates
    /// with different content).
    InconsistentVisit,
    /// The samples received do not hash to the end's `samples_sha256`.
    ChecksumMismatch,
    /// Payload over the size bound.
    TooLarge,
}

/// `deadletter`: input the pipeline refused, kept for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The topic the input came on (at most 256 bytes kept).
    pub topic: String,
    pub reason: String,
    pub reason_code: DeadLetterCode,
    #[serde(with = "rfc3339_strict")]
    pub received_at: OffsetDateTime,
    /// Standard base64 of the first [`DEADLETTER_PAYLOAD_MAX_BYTES`] bytes.
    pub payload_b64: String,
    /// Length of the whole payload as received.
    pub payload_len: u64,
}

impl DeadLetter {
    /// A reason as a dead letter carries it: at most [`MAX_TEXT_LEN`]
    /// characters, control characters turned into spaces.
    pub fn bounded_reason(reason: &str) -> String {
        truncate_chars(reason, MAX_TEXT_LEN)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }

    /// Builds the record, truncating topic, reason and payload to their bounds.
    pub fn new(
        topic: &str,
        payload: &[u8],
        reason_code: DeadLetterCode,
        reason: &str,
        received_at: OffsetDateTime,
    ) -> DeadLetter {
        let kept = &payload[..payload.len().min(DEADLETTER_PAYLOAD_MAX_BYTES)];
        DeadLetter {
            topic: truncate_chars(topic, crate::topic::MAX_TOPIC_LEN),
            reason: Self::bounded_reason(reason),
            reason_code,
            received_at,
            payload_b64: base64::engine::general_purpose::STANDARD.encode(kept),
            payload_len: payload.len() as u64,
        }
    }

    /// The kept prefix of the payload.
    pub fn payload_prefix(&self) -> Result<Vec<u8>, MessageError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload_b64)
            .map_err(|e| invalid("payload_b64", e.to_string()))
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Message for DeadLetter {
    const SCHEMA: &'static str = "dead-letter.schema.json";

    fn validate(&self) -> Result<(), MessageError> {
        if self.topic.chars().count() > crate::topic::MAX_TOPIC_LEN {
            return Err(invalid("topic", "longer than 256 characters"));
        }
        check_text("reason", &self.reason)?;
        let prefix = self.payload_prefix()?;
        let expected = self.payload_len.min(DEADLETTER_PAYLOAD_MAX_BYTES as u64);
        if prefix.len() as u64 != expected {
            return Err(invalid(
                "payload_b64",
                format!(
                    "holds {} bytes, expected min(payload_len, {DEADLETTER_PAYLOAD_MAX_BYTES}) = {expected}",
                    prefix.len()
                ),
            ));
        }
        Ok(())
    }
}

/// RFC 3339 timestamps exactly as the JSON Schemas' `date-time` format
/// takes them. The `time` crate's parser is more lenient about the
/// separator between date and time, and a message that one reader takes
/// and another refuses is worse than one refused by both.
mod rfc3339_strict {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(t, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        let separator_ok = text
            .as_bytes()
            .get(10)
            .is_some_and(|b| matches!(b, b'T' | b't'));
        if !separator_ok {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not an RFC 3339 date-time (date and time are separated by 'T')"
            )));
        }
        OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map_err(serde::de::Error::custom)
    }
}
