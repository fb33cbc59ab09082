//! EC57 scoring.
