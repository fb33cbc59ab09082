//! 12-lead interpretation.
