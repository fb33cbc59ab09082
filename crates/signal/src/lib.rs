//! The pure signal-processing core of ecg-triage: samples in, beats and
//! signal-quality values out, chunk by chunk. No I/O, no async, no clocks:
//! the same samples always give the same answer, whatever the chunk size.
//!
//! - [`filter`]: causal streaming filters (baseline wander, mains notch,
//!   detection band-pass, the 0.05-150 Hz diagnostic band).
//! - [`qrs`]: the streaming multi-lead QRS detector ([`QrsDetector`]) and the
//!   one-shot [`detect_qrs`].
//! - [`sink`]: where results go ([`DetectionSink`]), so that the producer
//!   (the detector) and the consumer (CLI, pipeline, archive) never mix.

pub mod filter;
pub mod qrs;
pub mod sink;

pub use qrs::{detect_qrs, DetectorConfig, QrsDetector};
pub use sink::{Beat, DetectionSink, QualitySegment};

/// Errors of the signal core: bad parameters or malformed input blocks.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SignalError {
    #[error("sampling rate {fs_hz} Hz is outside 50..=20000 Hz")]
    SamplingRate { fs_hz: f64 },
    #[error("filter design failed: {what}")]
    FilterDesign { what: String },
    #[error("expected {expected} leads, got {got}")]
    LeadCount { expected: usize, got: usize },
    #[error("lead {lead} has {got} samples in this chunk, lead 0 has {expected}")]
    RaggedChunk {
        lead: usize,
        expected: usize,
        got: usize,
    },
    #[error("a detector needs between 1 and {max} leads, got {got}")]
    NoLeads { got: usize, max: usize },
}
