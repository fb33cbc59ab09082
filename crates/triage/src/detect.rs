//! The bridge to the signal core's QRS detector.

use crate::TriageError;

/// R peaks (sample indices) found by the signal core's multi-lead detector.
pub(crate) fn r_peaks(leads: &[&[f32]], fs_hz: f64) -> Result<Vec<usize>, TriageError> {
    let peaks =
        ecg_signal::detect_qrs(leads, fs_hz).map_err(|e| TriageError::Detector(e.to_string()))?;
    Ok(peaks
        .into_iter()
        .filter_map(|p| usize::try_from(p).ok())
        .collect())
}
