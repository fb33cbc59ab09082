//! Simulated clinic devices.
//!
//! - [`synth`]: synthetic 12-lead ECG visits with ground truth (pure).
//! - [`broker`]: broker URLs and the per-device credentials file.
//! - [`spool`]: the on-device disk spool of unacknowledged messages.
//! - [`device`]: one device's MQTT link (QoS 1, persistent session,
//!   reconnect with backoff, PUBACK tracking against the spool).
//! - [`visit`]: streaming one recording as meta, paced chunks and end.
//! - [`fleet`]: many devices, Poisson visit arrivals, truth file, summary.
//! - [`playback`]: a WFDB record as a recording.
pub mod broker;
pub mod device;
pub mod fleet;
pub mod patient;
pub mod playback;
pub mod spool;
pub mod synth;
pub mod visit;
