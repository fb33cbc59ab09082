//! The lossless Parquet archive: hive-partitioned tables written atomically
//! and idempotently. The contract (tables, columns, Arrow types) is
//! `schemas/archive.md`.
//!
//! - [`record`]: plain data for one archived visit ([`VisitRecord`]): its
//!   visit row, samples per lead, beats, per-lead measurements and alerts.
//! - [`table`]: the Arrow schema of every table and the conversion of
//!   records into record batches.
//! - [`store`]: the object-store seam ([`ObjectStore`]), with a local-disk
//!   implementation whose `put` is write-temp, fsync, rename.
//! - [`writer`]: [`ArchiveWriter`] batches visits, writes one file per table
//!   and partition per batch, commits the batch by writing its `visits` file
//!   last, and archives a redelivered visit once.
//! - `flusher` (private): the writer's own thread, when batches are
//!   encoded and written in the background.
//! - [`reader`]: reading back the samples of a visit, bit for bit.
//! - [`verify`]: checking a whole archive: every file read, every visit
//!   rebuilt and compared with its digest.
//! - [`compact`]: a closed day's small batches merged into a few large
//!   ones, in steps that a crash can stop anywhere and a rerun finishes.
//! - [`snapshot`]: which files a reader of a whole table reads, so that a
//!   batch being written or a compaction under way shows every row once.

pub mod compact;
mod flusher;
pub mod reader;
pub mod record;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod verify;
pub mod writer;

/// Timestamps in the records are `time::OffsetDateTime`.
pub use time;

pub use compact::{compact, compact_local, CompactConfig, CompactReport, CompactionPause, Merge};
pub use reader::{read_visit_samples, read_visit_samples_from, read_visit_samples_on};
pub use record::{
    AlertAck, AlertEscalation, AlertRow, BeatRow, LeadMeasurement, VisitRecord, VisitRow,
};
pub use store::{LocalDisk, ObjectStore, StoreError};
pub use table::{Table, TABLES};
pub use verify::{unreadable_footers, verify, verify_local, Finding, Report, Severity};
pub use writer::{ArchiveWriter, SampleEncoding, WriterConfig};

/// Everything that can go wrong while archiving or reading the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive store: {0}")]
    Store(#[from] StoreError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("visit {visit_id}: {reason}")]
    InvalidRecord { visit_id: String, reason: String },
    #[error("archive file {file}: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("visit {0} is not in the archive")]
    VisitNotFound(String),
    #[error("archive config: {0}")]
    Config(String),
    /// Another process holds what this one needs (a compaction's lock).
    #[error("{0}")]
    Busy(String),
    /// The writer's background flush thread could not start or has died
    /// (a bug): the visits it held are not archived and not released.
    #[error("the archive's flush thread is gone")]
    FlushThread,
}
