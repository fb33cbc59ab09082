//! From interpretations to the messages people read: the alert for the
//! chest-pain centre (at most once per visit) and the result for the device.

use std::collections::BTreeMap;

use ecg_triage::Interpretation;
use ecg_wire::message::{MAX_REASONS, MAX_TEXT_LEN};
use ecg_wire::{
    Alert, AlertId, CentreId, Lead, LeadSt, ResultStatus, Territory, VisitId, VisitMeta,
    VisitResult,
};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

/// The alert id of a visit. Derived from the visit id, so an alert that is
/// published again after a crash and a replay from the spool keeps its id
/// and subscribers can recognise the copy.
pub fn alert_id_for(visit_id: VisitId) -> AlertId {
    let mut h = Sha256::new();
    h.update(b"ecg-triage alert v1");
    h.update(visit_id.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // RFC 9562 version 8 (custom) and variant bits: never nil.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    AlertId::from_bytes(bytes).expect("version bits make it non-nil")
}

/// Whether a visit has been alerted; the guard that makes "at most once per
/// visit" hold across the early and the final decision.
#[derive(Debug, Default, Clone)]
pub struct AlertGate {
    alerted: Option<AlertId>,
}

impl AlertGate {
    /// The alert id, if the visit was alerted.
    pub fn alerted(&self) -> Option<AlertId> {
        self.alerted
    }

    /// Builds the alert when `interp` flags STEMI and nothing was alerted
    /// for this visit yet; marks the visit alerted.
    pub fn consider(
        &mut self,
        meta: &VisitMeta,
        centre: &CentreId,
        interp: &Interpretation,
        early: bool,
        detected_at: OffsetDateTime,
    ) -> Option<Alert> {
        if self.alerted.is_some() || !interp.stemi {
            return None;
        }
        let alert = build_alert(meta, centre, interp, early, detected_at);
        self.alerted = Some(alert.alert_id);
        Some(alert)
    }
}

fn wire_territory(t: ecg_triage::Territory) -> Territory {
    match t {
        ecg_triage::Territory::Septal => Territory::Septal,
        ecg_triage::Territory::Anterior => Territory::Anterior,
        ecg_triage::Territory::Lateral => Territory::Lateral,
        ecg_triage::Territory::Inferior => Territory::Inferior,
        ecg_triage::Territory::Posterior => Territory::Posterior,
        ecg_triage::Territory::RightVentricular => Territory::RightVentricular,
    }
}

fn territories(interp: &Interpretation) -> Vec<Territory> {
    let mut out: Vec<Territory> = interp
        .territories
        .iter()
        .map(|&t| wire_territory(t))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Reasons within the wire bounds: at most 32, each 1..=512 printable
/// characters.
fn reasons(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|r| {
            r.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_TEXT_LEN)
                .collect::<String>()
        })
        .filter(|r| !r.trim().is_empty())
        .take(MAX_REASONS)
        .collect()
}

fn round_uv(v: f32) -> i32 {
    if v.is_finite() {
        v.round().clamp(i32::MIN as f32, i32::MAX as f32) as i32
    } else {
        0
    }
}

fn build_alert(
    meta: &VisitMeta,
    centre: &CentreId,
    interp: &Interpretation,
    early: bool,
    detected_at: OffsetDateTime,
) -> Alert {
    let leads: BTreeMap<Lead, LeadSt> = interp
        .leads
        .iter()
        .filter_map(|(label, m)| {
            let lead: Lead = label.parse().ok()?;
            Some((
                lead,
                LeadSt {
                    st_j_uv: round_uv(m.st_j_uv),
                    st_j60_uv: round_uv(m.st_j60_uv),
                },
            ))
        })
        .collect();
    let mut territories = territories(interp);
    if territories.is_empty() {
        // An alert names at least one territory; the interpretation flags
        // occlusion patterns (e.g. Sgarbossa) that have none of their own.
        territories.push(Territory::Anterior);
    }
    Alert {
        alert_id: alert_id_for(meta.visit_id),
        visit_id: meta.visit_id,
        device_id: meta.device_id.clone(),
        clinic_id: meta.clinic_id.clone(),
        centre_id: centre.clone(),
        patient_pseudonym: meta.patient_pseudonym.clone(),
        sex: meta.sex,
        age_years: meta.age_years,
        territories,
        leads,
        reasons: reasons(&interp.reasons),
        heart_rate_bpm: interp
            .heart_rate_bpm
            .filter(|hr| hr.is_finite() && (1.0..=400.0).contains(hr)),
        acquired_at: meta.acquired_at,
        detected_at,
        published_at: detected_at,
        early,
        escalation_level: 0,
    }
}

/// The device's result for a finished visit. `alerted` is the visit's alert
/// (early or final); once alerted, the answer stays "transfer now".
pub fn build_result(
    visit_id: VisitId,
    interp: Option<&Interpretation>,
    alerted: Option<AlertId>,
    incomplete: Option<&str>,
    decided_at: OffsetDateTime,
) -> VisitResult {
    let mut why: Vec<String> = interp.map(|i| i.reasons.clone()).unwrap_or_default();
    let status = if alerted.is_some() {
        ResultStatus::StemiSuspected
    } else if let Some(reason) = incomplete {
        why.insert(0, format!("incomplete recording: {reason}"));
        ResultStatus::Incomplete
    } else if interp.is_some_and(|i| !i.quality.ok) {
        if let Some(i) = interp {
            why.extend(i.quality.issues.iter().cloned());
        }
        ResultStatus::PoorSignalRepeat
    } else if interp.is_none() {
        why.push("the recording could not be analysed".into());
        ResultStatus::PoorSignalRepeat
    } else {
        ResultStatus::NoStemi
    };
    VisitResult {
        visit_id,
        status,
        reasons: reasons(&why),
        territories: interp.map(territories).unwrap_or_default(),
        alert_id: alerted,
        decided_at,
    }
}
