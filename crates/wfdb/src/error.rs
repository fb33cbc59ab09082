//! The crate's error type: every variant names the file involved and what is
//! wrong with it, so that a caller scanning a whole database can log and skip
//! a bad record instead of aborting.

use std::path::PathBuf;

/// A problem found while parsing header text (line numbers start at 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct HeaderParseError {
    pub line: usize,
    pub message: String,
}

/// A problem found while decoding MIT annotation bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct AnnotationDecodeError {
    pub offset: usize,
    pub message: String,
}

/// Errors returned when reading records and annotation files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid header {path}: {source}")]
    Header {
        path: PathBuf,
        #[source]
        source: HeaderParseError,
    },
    #[error("signal file {path}: {message}")]
    Signal { path: PathBuf, message: String },
    #[error("record {path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("annotation file {path}: {source}")]
    Annotation {
        path: PathBuf,
        #[source]
        source: AnnotationDecodeError,
    },
    #[error(
        "record {path}: signal {signal} ({lead}): checksum {actual} differs from header {expected}"
    )]
    Checksum {
        path: PathBuf,
        signal: usize,
        lead: String,
        expected: i32,
        actual: i32,
    },
    #[error("signal {signal} ({lead}) has units {units:?}, which are not a voltage")]
    NotVoltage {
        signal: usize,
        lead: String,
        units: String,
    },
    #[error("signal index {signal} out of range (record has {n_signals} signals)")]
    NoSuchSignal { signal: usize, n_signals: usize },
}
