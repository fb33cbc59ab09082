//! The v1 wire contract of ecg-triage, shared by the device simulator and
//! the pipeline. schemas/ holds the normative text; this crate is its one
//! implementation.
//!
//! - [`lead`]: the lead table and [`LeadSet`], whose bit order is the order
//!   samples travel, are listed and are hashed in.
//! - [`ids`]: validated identifiers (device, clinic, centre, visit, alert,
//!   patient pseudonym).
//! - [`pseudonym`]: the keyed pseudonym construction (HMAC-SHA256).
//! - [`topic`]: parsing and building the MQTT topic names.
//! - [`chunk`]: the binary sample chunk and its codec.
//! - [`message`]: the JSON messages (meta, end, result, alert, ack, dead
//!   letter) and their validation.

pub mod chunk;
pub mod ids;
pub mod lead;
pub mod message;
pub mod pseudonym;
pub mod topic;

pub use chunk::{encode, Chunk, WireError};
pub use ids::{AlertId, CentreId, ClinicId, DeviceId, IdError, PatientPseudonym, VisitId};
pub use lead::{Lead, LeadError, LeadSet};
pub use message::{
    Alert, AlertAck, DeadLetter, DeadLetterCode, LeadSt, Message, MessageError, ResultStatus,
    SamplesDigest, Sex, Territory, Verdict, VisitEnd, VisitMeta, VisitResult,
};
pub use pseudonym::{PseudonymKey, PseudonymKeyError};
pub use topic::{Topic, TopicError, VisitTopic};
