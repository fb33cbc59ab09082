pub mod analyze;
pub mod detect;
pub mod eval_qrs;
