pub mod analyze;
pub mod demo;
pub mod detect;
pub mod devices;
pub mod eval_qrs;
pub mod hash_password;
pub mod query;
pub mod run;
