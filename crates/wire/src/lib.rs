//! Wire contract v1.
