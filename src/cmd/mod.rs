pub mod analyze;
pub mod bench;
pub mod demo;
pub mod detect;
pub mod devices;
pub mod eval_qrs;
pub mod query;
pub mod run;
