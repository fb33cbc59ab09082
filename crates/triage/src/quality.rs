//! The quality gate: when the tracing cannot be trusted the answer is "repeat the ECG",
//! never a guess.

use serde::Serialize;

use crate::analysis::Analysis;
use crate::beat::samples;
use crate::lead::{LeadName, STANDARD_LEADS};

/// Result of the quality gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    pub ok: bool,
    pub issues: Vec<String>,
}

/// Leads whose raw range stays under this are disconnected (a real lead always shows QRS).
const LEAD_OFF_RANGE_UV: f32 = 40.0;
/// Beat-to-beat scatter of the ST-T segment (RMS around the representative beat) above
/// which a lead's ST measurement is not reliable to the 0.5 mm that the rules need.
const NOISE_ST_RMS_UV: f32 = 150.0;
/// Standard error of the representative ST level above which the ST measure is unreliable.
const NOISE_ST_SE_UV: f32 = 40.0;
/// Einthoven residual |I + III - II| relative to the limb-lead power above which the limb
/// leads cannot come from one set of electrodes. Real recorders filter leads separately
/// (LUDB reaches 0.45), so only a gross violation (a mislabelled or inverted lead) counts.
const EINTHOVEN_MAX_RESIDUAL: f32 = 0.8;
/// A global QRS longer than this is beyond even hyperkalaemic or paced complexes in
/// practice (about 220 ms as a reader measures them; the global span, the earliest onset
/// to the latest offset over twelve leads, runs some 30 ms longer, see `delineation`):
/// the delineation has run into the ST-T wave.
const MAX_QRS_MS: f64 = 250.0;
/// Fewer dominant beats than this do not make a representative beat.
const MIN_BEATS: usize = 3;

pub(crate) fn assess(
    analysis: Option<&Analysis>,
    leads: &[LeadName],
    raw: &[&[f32]],
    fs_hz: f64,
) -> Quality {
    let mut issues = Vec::new();
    let missing: Vec<&str> = STANDARD_LEADS
        .iter()
        .filter(|l| !leads.contains(l))
        .map(|l| l.label())
        .collect();
    if !missing.is_empty() {
        issues.push(format!("missing standard leads: {}", missing.join(", ")));
    }
    for (lead, x) in leads.iter().zip(raw) {
        let finite = all_finite(x);
        if !finite {
            issues.push(format!(
                "lead {lead}: invalid samples (lead off or corrupt)"
            ));
            continue;
        }
        let (lo, hi) = x
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        if x.is_empty() || (hi - lo) * 1000.0 < LEAD_OFF_RANGE_UV {
            issues.push(format!("lead {lead}: flat signal (lead off)"));
        }
    }
    let Some(a) = analysis else {
        issues.push("no heartbeat could be measured".to_string());
        return Quality { ok: false, issues };
    };
    if a.dominant_count() < MIN_BEATS {
        issues.push(format!(
            "only {} beats of the dominant morphology (need {MIN_BEATS})",
            a.dominant_count()
        ));
    }
    if a.qrs_global_ms() > MAX_QRS_MS {
        issues.push(format!(
            "QRS of {:.0} ms: the QRS end cannot be placed reliably",
            a.qrs_global_ms()
        ));
    }
    noise(a, fs_hz, &mut issues);
    limb_consistency(a, &mut issues);
    Quality {
        ok: issues.is_empty(),
        issues,
    }
}

/// Whether every sample is a number (not NaN, not infinite). Block by block without an
/// early exit inside a block, so that the test is vector instructions: a lead-by-lead
/// `all` looks at one sample per branch, and every interpretation asks this of every
/// sample twice.
pub(crate) fn all_finite(x: &[f32]) -> bool {
    x.chunks(256)
        .all(|block| block.iter().fold(true, |ok, v| ok & v.is_finite()))
}

/// Scatter of the dominant beats around the representative beat over the ST-T segment.
fn noise(a: &Analysis, fs_hz: f64, issues: &mut Vec<String>) {
    let dom = a.sorted.dominant_r();
    if dom.len() < 2 {
        return;
    }
    let from = a.fid.j;
    let to = (a.fid.j + samples(fs_hz, 0.2)).min(a.median.ncols());
    let mut noisy = Vec::new();
    for (li, lead) in a.leads.iter().enumerate() {
        let x = &a.corrected[li];
        let mut ss = 0f64;
        let mut n = 0usize;
        for &r in &dom {
            for t in from..to {
                let d = x[r + t - a.origin] - a.median[[li, t]];
                ss += (d as f64) * (d as f64);
                n += 1;
            }
        }
        let rms_uv = ((ss / n.max(1) as f64).sqrt() * 1000.0) as f32;
        let se_uv = rms_uv / (dom.len() as f32).sqrt();
        if rms_uv > NOISE_ST_RMS_UV && se_uv > NOISE_ST_SE_UV {
            noisy.push(format!("{lead} ({rms_uv:.0} uV)"));
        }
    }
    if !noisy.is_empty() {
        issues.push(format!("noise over the ST segment in {}", noisy.join(", ")));
    }
}

/// Einthoven's law (I + III = II) and the augmented leads' sum (aVR + aVL + aVF = 0) hold for
/// any correctly wired recorder; lead I with every wave inverted and aVR upright betrays
/// swapped arm electrodes.
fn limb_consistency(a: &Analysis, issues: &mut Vec<String>) {
    let idx = |l: LeadName| a.leads.iter().position(|&x| x == l);
    if let (Some(i), Some(ii), Some(iii)) =
        (idx(LeadName::I), idx(LeadName::II), idx(LeadName::III))
    {
        let mut err = 0f32;
        let mut pow = 0f32;
        for t in 0..a.median.ncols() {
            let e = a.median[[i, t]] + a.median[[iii, t]] - a.median[[ii, t]];
            err += e * e;
            pow += a.median[[ii, t]].powi(2) + a.median[[i, t]].powi(2);
        }
        if pow > 0.0 && (err / pow).sqrt() > EINTHOVEN_MAX_RESIDUAL {
            issues.push(
                "limb leads inconsistent (I + III != II): electrode or lead-label error"
                    .to_string(),
            );
        }
    }
    if let (Some(m1), Some(mr)) = (a.get(LeadName::I), a.get(LeadName::AVR)) {
        let p_inverted = p_wave_uv(a, LeadName::I).is_some_and(|p| p < -40.0);
        if m1.s_uv > 2.0 * m1.r_uv
            && m1.t_uv < -50.0
            && mr.r_uv > mr.s_uv
            && mr.t_uv > 50.0
            && p_inverted
        {
            issues.push(
                "lead I inverted (P, QRS and T negative) with upright aVR: suspected left/right arm electrode reversal"
                    .to_string(),
            );
        }
    }
}

/// Signed P-wave amplitude of one lead: largest deviation in the 200 ms before the PR window.
fn p_wave_uv(a: &Analysis, lead: LeadName) -> Option<f32> {
    let li = a.leads.iter().position(|&x| x == lead)?;
    let x = a.median.row(li);
    let base = (a.fid.pr.0..a.fid.pr.1).map(|t| x[t]).sum::<f32>()
        / (a.fid.pr.1 - a.fid.pr.0).max(1) as f32;
    let from = a.fid.pr.0.saturating_sub(samples(a.fs_hz, 0.15));
    (from..a.fid.pr.0)
        .map(|t| (x[t] - base) * 1000.0)
        .max_by(|p, q| p.abs().total_cmp(&q.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_that_is_not_a_number_is_found_anywhere() {
        let mut x = vec![0.25f32; 1000];
        assert!(all_finite(&x));
        assert!(all_finite(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 255, 256, 999] {
                x[at] = bad;
                assert!(!all_finite(&x), "{bad} at {at}");
                x[at] = f32::MAX;
                assert!(all_finite(&x));
            }
        }
    }
}
