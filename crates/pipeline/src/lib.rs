//! The streaming pipeline: ingestion events in; alerts, results, dead
//! letters and the Parquet archive out.
//!
//! - [`analysis`]: per-visit streaming analysis (QRS detector per chunk,
//!   12-lead interpreter with its early decision, refined at the end).
//! - [`alerting`]: the alert and result messages; at most one alert a visit.
//! - [`triage_desk`]: the synchronous core, [`TriageDesk`]: ingestion
//!   events in, [`Output`]s (publish, archive, release) out.
//! - [`deadletter`]: how many dead letters one device may cause;
//!   [`quarantine`]: refused input kept whole, for the operator;
//!   [`replay`]: what it keeps published again once it can be taken in.
//! - [`publish`]: the [`Publisher`] seam and its MQTT implementation, which
//!   completes on PUBACK.
//! - [`service`]: the running pipeline ([`service::run`]): ingest, desk,
//!   broker, archive, spool release, graceful shutdown; `shard` gives
//!   each open visit to the least loaded analysis worker.
//! - [`compaction`]: the archive's closed days merged on a schedule.
//! - [`tls_check`]: one TLS handshake before start, so an untrusted or
//!   plaintext broker is refused with its reason instead of retried forever.
//! - [`config`]: TOML settings with flag and environment overrides.
//! - [`lifecycle`]: pending, acknowledged and escalated alerts, persisted;
//!   [`acks`]: acknowledgements over MQTT.
//! - [`metrics`]: Prometheus metrics and their HTTP endpoint.
//! - [`demo`]: embedded broker + simulated fleet + pipeline on one machine.
//! - [`logging`]: tracing subscriber set-up (text or JSON).
//! - [`allocator`]: keep freed memory for reuse (the archive's flushes).

pub mod acks;
pub mod alerting;
pub mod allocator;
pub mod analysis;
pub mod compaction;
pub mod config;
pub mod deadletter;
pub mod demo;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod publish;
pub mod quarantine;
pub mod replay;
pub mod service;
mod shard;
pub mod tls_check;
pub mod triage_desk;

pub use publish::{MemoryPublisher, MqttPublisher, Publisher};
pub use triage_desk::{Output, TriageDesk};
