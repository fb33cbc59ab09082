//! The bridge to the signal core's QRS detector.

use crate::lead::LeadName;
use crate::TriageError;

/// R peaks (sample indices) found by the signal core's multi-lead detector, on the leads of
/// the 12-lead system (other channels, such as Frank leads, are left out). Invalid samples
/// (lead off) are zeroed for detection only; the quality gate still sees them.
pub(crate) fn r_peaks(
    labels: &[&str],
    leads: &[&[f32]],
    fs_hz: f64,
) -> Result<Vec<usize>, TriageError> {
    let mut chosen: Vec<Vec<f32>> = labels
        .iter()
        .zip(leads)
        .filter(|(l, _)| LeadName::parse(l).is_some())
        .map(|(_, s)| {
            s.iter()
                .map(|&v| if v.is_finite() { v } else { 0.0 })
                .collect()
        })
        .collect();
    if chosen.is_empty() {
        chosen = leads.iter().map(|s| s.to_vec()).collect();
    }
    chosen.truncate(ecg_signal::qrs::MAX_LEADS);
    let views: Vec<&[f32]> = chosen.iter().map(Vec::as_slice).collect();
    let peaks =
        ecg_signal::detect_qrs(&views, fs_hz).map_err(|e| TriageError::Detector(e.to_string()))?;
    Ok(peaks
        .into_iter()
        .filter_map(|p| usize::try_from(p).ok())
        .collect())
}
