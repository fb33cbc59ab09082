//! 12-lead interpretation: from samples and R peaks to "suspected STEMI?", with reasons.
//!
//! The measuring half:
//! - `beat`: beats of the dominant morphology, aligned, median representative beat;
//! - `delineation`: global QRS onset/offset, J point, T end, PR isoelectric window, on the
//!   spatial velocity of all leads;
//! - `measurement`: per-lead ST at J and J+60 ms, QRS and T amplitudes (uV);
//! - `pacing`: pacemaker stimuli, found and cut out before anything is measured;
//! - `analysis`: runs the above, with baseline removal between PR knots.
//!
//! The judging half:
//! - `quality`: the gate whose only answer to a bad tracing is "repeat the ECG";
//! - `mimic`: bundle-branch blocks, pacing, LVH, early repolarisation;
//! - `criteria`: 4th-UDMI STEMI criteria, Smith-modified Sgarbossa, occlusion signs;
//! - `lead`: lead names, contiguity, territories; `patient`: sex and age.
//!
//! `interpretation` ties them together: [`interpret`] for a whole record and
//! [`Interpreter`] for a stream that decides as soon as the criteria hold on enough
//! beats (`screen` spares it re-reading beats like those it has read; `recording` keeps
//! the stream, as ADC counts when it comes as counts).

mod analysis;
mod beat;
mod criteria;
mod delineation;
mod detect;
mod interpretation;
mod lead;
mod measurement;
mod mimic;
mod pacing;
mod patient;
mod quality;
mod recording;
mod screen;
#[cfg(test)]
mod synthetic;

pub use analysis::Beat;
pub use interpretation::{
    interpret, interpret_detecting, EarlyDecision, Interpretation, Interpreter, LeadSignal,
    CONSISTENT_BEATS,
};
pub use lead::{LeadName, Territory, STANDARD_LEADS};
pub use measurement::LeadMeasurement;
pub use mimic::Mimic;
pub use patient::{Patient, Sex};
pub use quality::Quality;

/// What can be wrong with the input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TriageError {
    #[error("sampling rate {0} Hz is not usable (need 100-20,000 Hz)")]
    SamplingRate(f64),
    #[error("no leads given")]
    NoLeads,
    #[error("lead {lead} has {len} samples, expected {expected} like the others")]
    LeadLength {
        lead: String,
        len: usize,
        expected: usize,
    },
    #[error("chunk has {got} leads, the stream has {expected}")]
    ChunkLeads { got: usize, expected: usize },
    #[error("chunk of {pushed}, but this stream keeps {kept}")]
    SampleKind {
        pushed: &'static str,
        kept: &'static str,
    },
    #[error("QRS detector failed: {0}")]
    Detector(String),
    #[error("sex {0:?} not understood (male or female)")]
    InvalidSex(String),
}
