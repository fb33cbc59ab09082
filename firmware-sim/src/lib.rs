//! Simulated clinic devices.
//!
//! - [`synth`]: synthetic 12-lead ECG visits with ground truth (pure).
pub mod synth;
