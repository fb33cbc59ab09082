//! WFDB input.
