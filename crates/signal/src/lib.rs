//! Pure streaming ECG signal processing.
