//! Reading WFDB records and MIT annotation files (PhysioNet databases).
//!
//! - [`header`]: `.hea` parsing ([`Header`], [`SignalSpec`]) including
//!   demographics from comments ([`Header::sex`], [`Header::age_years`]).
//! - [`format`]: storage formats 8, 16, 24, 32, 61, 80, 160 and 212.
//! - [`record`]: [`Record::read`] loads a header and its signal files
//!   (byte offsets such as CinC's `16+24` `.mat` files, multiplexed and
//!   multiple files, sample count derived from file size) and converts to
//!   millivolts.
//! - [`annotation`]: MIT-format annotations ([`read_annotations`]).
//! - [`error`]: [`Error`], which always names the offending file.
//! - [`write`]: [`encode_format16`] writes a record (header and one
//!   format-16 signal file) for exports.
//!
//! Why not the `wfdb` crate (0.1.6 on crates.io): it has no annotation
//! reader (its annotation module is commented out), which the EC57
//! evaluation needs, and its errors do not carry the file path; reading
//! annotations with our own code and signals with its would leave two error
//! types and two header models. The formats needed here are a few dozen
//! lines each, so the crate keeps a single dependency (`thiserror`).

pub mod annotation;
pub mod error;
pub mod format;
pub mod header;
pub mod record;
pub mod write;

pub use annotation::{decode_annotations, read_annotations, Annotation};
pub use error::{AnnotationDecodeError, Error, HeaderParseError};
pub use format::SignalFormat;
pub use header::{Header, Sex, SignalSpec};
pub use record::Record;
pub use write::{encode_format16, Format16Record, SignalOut, WriteError};
