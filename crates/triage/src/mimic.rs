//! STEMI mimics: conditions that raise or hide ST segments without coronary occlusion.
//! Each is recognised from the representative beat's measurements.

use serde::Serialize;

use crate::analysis::Analysis;
use crate::beat::samples;
use crate::lead::LeadName;
use crate::patient::{Patient, Sex};

/// A condition that changes how the ST segment must be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mimic {
    LeftBundleBranchBlock,
    RightBundleBranchBlock,
    /// QRS >= 120 ms without a typical bundle-branch pattern.
    IntraventricularConductionDelay,
    Paced,
    LeftVentricularHypertrophy,
    EarlyRepolarisation,
}

impl std::fmt::Display for Mimic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mimic::LeftBundleBranchBlock => "left bundle branch block",
            Mimic::RightBundleBranchBlock => "right bundle branch block",
            Mimic::IntraventricularConductionDelay => "intraventricular conduction delay",
            Mimic::Paced => "paced rhythm",
            Mimic::LeftVentricularHypertrophy => "left ventricular hypertrophy",
            Mimic::EarlyRepolarisation => "early repolarisation",
        })
    }
}

/// QRS duration from which conduction is called delayed (AHA/ACCF/HRS 2009).
const WIDE_QRS_MS: f64 = 120.0;
/// A pacing stimulus is a deflection far narrower than anything the heart makes: its
/// second difference dwarfs the QRS's own.
const PACING_SPIKE_RATIO: f32 = 2.5;
const PACING_SPIKE_MIN_MV: f32 = 0.4;

pub(crate) fn detect(a: &Analysis, patient: &Patient, reasons: &mut Vec<String>) -> Vec<Mimic> {
    let mut found = Vec::new();
    let m = |l| a.get(l);
    // Every width decision reads the clinical duration: the 120 ms cut-offs come from it.
    let qrs_ms = a.qrs_ms();
    if paced(a) {
        reasons.push("pacing spikes precede the QRS: paced rhythm".to_string());
        found.push(Mimic::Paced);
    }
    // Strauss criteria for complete LBBB: 140 ms (men) / 130 ms (women), on the clinical
    // QRS duration they were set on (not the wider global span used for J). Unknown sex:
    // 130 ms.
    let lbbb_ms = match patient.sex {
        Some(Sex::Male) => 140.0,
        _ => 130.0,
    };
    if qrs_ms >= WIDE_QRS_MS {
        let v1 = m(LeadName::V1);
        let lateral: Vec<_> = [LeadName::I, LeadName::V6, LeadName::AVL]
            .into_iter()
            .filter_map(m)
            .collect();
        let v1_negative = v1.is_some_and(|v| v.s_uv > 2.0 * v.r_uv && v.terminal_uv < 0.0);
        let lateral_upright = lateral
            .iter()
            .filter(|l| l.r_uv > 2.0 * l.s_uv && l.terminal_uv > 0.0)
            .count()
            >= 2;
        let v1_terminal_r = v1.is_some_and(|v| v.terminal_uv > 50.0 && v.r_uv > 150.0);
        let lateral_terminal_s = [LeadName::I, LeadName::V6]
            .into_iter()
            .filter_map(m)
            .any(|l| l.terminal_uv < -30.0);
        if found.contains(&Mimic::Paced) {
            // A paced QRS is wide by construction; it is read with Sgarbossa like LBBB.
        } else if v1_negative && lateral_upright && qrs_ms >= lbbb_ms {
            reasons.push(format!(
                "QRS {qrs_ms:.0} ms, V1 predominantly negative, I/aVL/V6 broad and upright: left bundle branch block"
            ));
            found.push(Mimic::LeftBundleBranchBlock);
        } else if v1_terminal_r && lateral_terminal_s {
            reasons.push(format!(
                "QRS {qrs_ms:.0} ms, terminal R in V1 and terminal S in I/V6: right bundle branch block"
            ));
            found.push(Mimic::RightBundleBranchBlock);
        } else {
            reasons.push(format!("QRS {qrs_ms:.0} ms without a typical bundle-branch pattern: intraventricular conduction delay"));
            found.push(Mimic::IntraventricularConductionDelay);
        }
    }
    if let Some(reason) = lvh(a, patient) {
        reasons.push(reason);
        found.push(Mimic::LeftVentricularHypertrophy);
    }
    found
}

/// Sokolow-Lyon (S V1 + R V5/V6 >= 3.5 mV) or Cornell (R aVL + S V3 > 2.8 mV men, > 2.0 mV
/// women; men's threshold when sex is unknown, so that LVH does not hide an infarct).
fn lvh(a: &Analysis, patient: &Patient) -> Option<String> {
    let m = |l| a.get(l);
    let sokolow = match (m(LeadName::V1), m(LeadName::V5), m(LeadName::V6)) {
        (Some(v1), Some(v5), Some(v6)) => Some(v1.s_uv + v5.r_uv.max(v6.r_uv)),
        _ => None,
    };
    let cornell = match (m(LeadName::AVL), m(LeadName::V3)) {
        (Some(avl), Some(v3)) => Some(avl.r_uv + v3.s_uv),
        _ => None,
    };
    let cornell_limit = match patient.sex {
        Some(Sex::Female) => 2000.0,
        _ => 2800.0,
    };
    if let Some(s) = sokolow.filter(|&s| s >= 3500.0) {
        return Some(format!(
            "Sokolow-Lyon voltage {:.1} mV >= 3.5 mV: left ventricular hypertrophy",
            s / 1000.0
        ));
    }
    if let Some(c) = cornell.filter(|&c| c > cornell_limit) {
        return Some(format!(
            "Cornell voltage {:.1} mV > {:.1} mV: left ventricular hypertrophy",
            c / 1000.0,
            cornell_limit / 1000.0
        ));
    }
    None
}

/// Pacing spikes: in most dominant beats, a needle just before or at the QRS onset whose
/// second difference exceeds the QRS's largest by far.
fn paced(a: &Analysis) -> bool {
    let dom = a.sorted.dominant_r();
    if dom.is_empty() {
        return false;
    }
    let before = samples(a.fs_hz, 0.25);
    let after = samples(a.fs_hz, 0.01);
    let on = a.fid.qrs_on;
    // Needles cut out before measuring (`pacing`), in the same window.
    let with_needle = dom
        .iter()
        .filter(|&&r| {
            let start = r + on - a.origin;
            a.pace_needles
                .iter()
                .any(|&(s, _)| s + before >= start && s < start + after)
        })
        .count();
    if with_needle * 2 > dom.len() {
        return true;
    }
    // Stimuli wider or smaller than a needle (filtered by the recorder) are still there.
    let mut with_spike = 0;
    for &r in &dom {
        let start = r + on - a.origin;
        let mut spike = 0f32;
        let mut qrs = 0f32;
        for x in &a.corrected {
            let d2 = |t: usize| (x[t + 1] - 2.0 * x[t] + x[t - 1]).abs();
            for t in start.saturating_sub(before).max(1)..start + after {
                spike = spike.max(d2(t));
            }
            let qrs_end = r + a.fid.qrs_off - a.origin;
            for t in start + after..qrs_end.min(x.len() - 1) {
                qrs = qrs.max(d2(t));
            }
        }
        if spike > PACING_SPIKE_MIN_MV && spike > PACING_SPIKE_RATIO * qrs {
            with_spike += 1;
        }
    }
    with_spike * 2 > dom.len()
}

/// Early repolarisation pattern: J-point elevation >= 1 mm in two contiguous inferior or
/// lateral/precordial leads with a concave (up-sloping) ST segment and tall T waves, and no
/// ST depression other than in aVR and V1.
pub(crate) fn early_repolarisation(a: &Analysis) -> Option<String> {
    use LeadName::*;
    let pairs = [
        (II, AVF),
        (III, AVF),
        (II, III),
        (V4, V5),
        (V5, V6),
        (V3, V4),
        (V2, V3),
        (I, AVL),
    ];
    let er_lead = |l: LeadName| {
        a.get(l).is_some_and(|m| {
            m.st_j_uv >= 100.0
                && m.st_j60_uv >= m.st_j_uv
                && m.t_uv > 2.0 * m.st_j60_uv.max(0.0)
                && m.t_uv > 300.0
        })
    };
    let pair = pairs.iter().find(|(x, y)| er_lead(*x) && er_lead(*y))?;
    // Elevation of 5 mm is beyond the normal variant: the 4-variable formula's derivation
    // (Smith et al. 2012) left it out of the normal-variant differential as obvious STEMI.
    if a.measurements.iter().any(|m| m.st_j_uv >= 500.0) {
        return None;
    }
    let depressed = a
        .leads
        .iter()
        .zip(&a.measurements)
        .any(|(l, m)| !matches!(l, AVR | V1) && m.st_j_uv <= -50.0);
    if depressed {
        return None;
    }
    Some(format!(
        "concave J-point elevation with tall T waves in {} and {} without reciprocal depression: early repolarisation pattern",
        pair.0, pair.1
    ))
}
