//! Simulated clinic devices.
