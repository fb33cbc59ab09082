//! MQTT ingestion with no loss: durable spool before ack, per-visit
//! assembly (dedupe, reorder, gaps, timeouts).
//!
//! - [`assembly`]: the pure per-visit state machine, [`Assembler`], turning
//!   meta/chunk/end messages into [`AssemblyEvent`]s (samples as they become
//!   contiguous, then `Complete`, `Incomplete` or `Rejected`).
//! - [`spool`]: the CRC-framed, segmented append-only log where a message is
//!   made durable (group-committed fsync) before it is acknowledged, replayed
//!   after a crash.
//! - [`source`]: the running service, [`start`]: an MQTT 5 persistent session
//!   with manual acks, one polling task, the spooler and the assembler.
//!
//! Typical use by the pipeline:
//!
//! ```no_run
//! # async fn demo() -> Result<(), ecg_ingest::IngestError> {
//! use ecg_ingest::{start, AssemblyEvent, IngestConfig};
//! let cfg = IngestConfig::new("127.0.0.1", 1883, "ecg-pipeline-1", "/var/lib/ecg/spool");
//! let (ingest, mut events) = start(cfg).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         AssemblyEvent::Complete { key, .. } | AssemblyEvent::Incomplete { key, .. } => {
//!             // ... archive, then:
//!             ingest.mark_done(key);
//!         }
//!         AssemblyEvent::Rejected(r) => {
//!             // ... publish r.to_dead_letter(), then:
//!             if let Some(id) = r.spooled {
//!                 ingest.release(id);
//!             }
//!         }
//!         _ => {}
//!     }
//! }
//! ingest.finish().await
//! # }
//! ```

pub mod assembly;
pub mod source;
pub mod spool;

pub use assembly::{
    Assembler, AssemblyConfig, AssemblyEvent, IncompleteReason, Rejection, SampleBlock, VisitKey,
    KEPT_PAYLOAD_MAX_BYTES,
};
pub use source::{start, IngestConfig, IngestError, IngestHandle, IngestStats};
pub use spool::{Received, RecordId, Spool, SpoolConfig, SpoolError};
