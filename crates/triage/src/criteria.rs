//! The rules that turn measurements into a decision: the 4th Universal Definition of MI
//! (formal STEMI criteria), the Smith-modified Sgarbossa rule for LBBB and paced rhythm,
//! and the signs of acute coronary occlusion that the criteria miss.

use std::collections::BTreeSet;

use crate::analysis::Analysis;
use crate::lead::{contiguous, LeadName, Territory};
use crate::measurement::{terminal_qrs_distortion, LeadMeasurement};
use crate::mimic::Mimic;
use crate::patient::{Patient, Sex};

/// 4th-UDMI ST-elevation threshold at J for one lead, with a note when a default was taken.
pub(crate) fn udmi_threshold_uv(lead: LeadName, patient: &Patient) -> (f32, Option<&'static str>) {
    if lead.is_posterior_or_right() {
        return (50.0, None);
    }
    if !matches!(lead, LeadName::V2 | LeadName::V3) {
        return (100.0, None);
    }
    match (patient.sex, patient.age_years) {
        (Some(Sex::Female), _) => (150.0, None),
        (Some(Sex::Male), Some(age)) if age >= 40.0 => (200.0, None),
        (Some(Sex::Male), Some(_)) => (250.0, None),
        (Some(Sex::Male), None) => (
            200.0,
            Some("age unknown: V2-V3 threshold 2 mm (men >= 40), the lower of the men's"),
        ),
        (None, _) => (
            150.0,
            Some("sex unknown: V2-V3 threshold 1.5 mm, the one that misses least"),
        ),
    }
}

/// Outcome of the rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verdict {
    pub criteria_met: bool,
    pub stemi: bool,
    pub territories: BTreeSet<Territory>,
    pub reasons: Vec<String>,
}

fn mm(uv: f32) -> f32 {
    uv / 100.0
}

fn pairs_meeting(
    a: &Analysis,
    mut pass: impl FnMut(LeadName, &LeadMeasurement) -> bool,
) -> Vec<(LeadName, LeadName)> {
    let ok: Vec<LeadName> = a
        .leads
        .iter()
        .zip(&a.measurements)
        .filter(|(&l, m)| pass(l, m))
        .map(|(&l, _)| l)
        .collect();
    let mut pairs = Vec::new();
    for (i, &x) in ok.iter().enumerate() {
        for &y in &ok[i + 1..] {
            if contiguous(x, y) {
                pairs.push((x, y));
            }
        }
    }
    pairs
}

fn leads_of(pairs: &[(LeadName, LeadName)]) -> BTreeSet<LeadName> {
    pairs.iter().flat_map(|&(x, y)| [x, y]).collect()
}

fn list(leads: &BTreeSet<LeadName>) -> String {
    leads
        .iter()
        .map(|l| l.label())
        .collect::<Vec<_>>()
        .join(", ")
}

fn st(a: &Analysis, l: LeadName) -> f32 {
    a.get(l).map_or(0.0, |m| m.st_j_uv)
}

/// ST elevation at J that can be primary: zero when, in a wide QRS, it is discordant to a
/// dominant S wave and under 25% of its depth (secondary repolarisation). A QS complex is
/// a Q wave (necrosis), not a conduction-delayed S: elevation over it stays primary.
fn primary_elevation(a: &Analysis, l: LeadName) -> f32 {
    let Some(m) = a.get(l) else { return 0.0 };
    if a.qrs_ms() >= 120.0 && discordant_secondary(m) {
        return 0.0;
    }
    m.st_j_uv
}

fn discordant_secondary(m: &LeadMeasurement) -> bool {
    let rs = m.s_uv > m.r_uv && m.q_uv < m.s_uv;
    rs && m.st_j60_uv.max(m.st_j_uv) < 0.25 * m.s_uv
}

pub(crate) fn judge(
    a: &Analysis,
    patient: &Patient,
    mimics: &[Mimic],
    early_repol: bool,
) -> Verdict {
    let mut v = Verdict::default();
    let mut notes = BTreeSet::new();
    let udmi_pairs = pairs_meeting(a, |l, m| {
        let (thr, note) = udmi_threshold_uv(l, patient);
        if let Some(n) = note {
            if matches!(l, LeadName::V2 | LeadName::V3) {
                notes.insert(n);
            }
        }
        m.st_j_uv >= thr
    });
    v.reasons.extend(notes.iter().map(|n| n.to_string()));
    let udmi_leads = leads_of(&udmi_pairs);
    v.criteria_met = !udmi_pairs.is_empty();
    if v.criteria_met {
        v.reasons.push(format!(
            "ST elevation at J meets the 4th-UDMI thresholds in contiguous leads {}",
            list(&udmi_leads)
        ));
    } else {
        v.reasons
            .push("4th-UDMI ST-elevation thresholds not met in two contiguous leads".to_string());
    }

    let lbbb_or_paced = mimics
        .iter()
        .any(|m| matches!(m, Mimic::LeftBundleBranchBlock | Mimic::Paced));
    if lbbb_or_paced {
        if v.criteria_met {
            v.reasons.push("ST elevation is expected with LBBB / pacing: the UDMI criteria do not apply, Sgarbossa does".into());
        }
        sgarbossa(a, &mut v);
        return v;
    }

    if let Some(rr) = a.rr_s.filter(|&rr| rr < MIN_RR_FOR_ST_S) {
        // At these rates the T wave of one beat runs into the next P and QRS: the ST
        // segment is too short to separate from them (and tachycardia itself shifts ST).
        v.reasons.push(format!(
            "heart rate {:.0} bpm: ST segment cannot be judged at this rate; treat the rate and repeat the ECG",
            60.0 / rr
        ));
        return v;
    }
    let lvh = mimics.contains(&Mimic::LeftVentricularHypertrophy);
    let mut formula_tried = false;
    if v.criteria_met {
        let wide = a.qrs_ms() >= 120.0;
        let mut explained = Vec::new();
        let mut transient = Vec::new();
        let mut confirmed = BTreeSet::new();
        for &l in &udmi_leads {
            let Some(m) = a.get(l) else { continue };
            let (thr, _) = udmi_threshold_uv(l, patient);
            if m.st_j60_uv < 0.5 * thr {
                // An injury current lifts the whole ST segment; elevation that is gone
                // 60 ms later is the tail of the QRS (a J point placed too early).
                transient.push(l.label());
            } else if (lvh || wide) && discordant_secondary(m) {
                // Armstrong et al. (LVH), Smith et al. (LBBB): discordant ST elevation below
                // 25% of the S wave is secondary repolarisation, proportional to the QRS.
                explained.push(l.label());
            } else {
                confirmed.insert(l);
            }
        }
        if !transient.is_empty() {
            v.reasons.push(format!(
                "ST elevation at J in {} is not sustained at J+60 ms: terminal QRS rather than ST elevation",
                transient.join(", ")
            ));
        }
        let confirmed_pairs: Vec<_> = udmi_pairs
            .iter()
            .filter(|(x, y)| confirmed.contains(x) && confirmed.contains(y))
            .copied()
            .collect();
        if !explained.is_empty() {
            v.reasons.push(format!(
                "ST elevation in {} is < 25% of the S-wave depth: secondary to {}",
                explained.join(", "),
                if lvh { "LVH" } else { "the wide QRS" }
            ));
        }
        if !confirmed_pairs.is_empty() {
            let leads = leads_of(&confirmed_pairs);
            let reciprocal = reciprocal_depression(a, &leads);
            let normal_variant = |v: &mut Verdict, tried: &mut bool| {
                early_repol && reciprocal.is_none() && {
                    *tried = true;
                    anterior_occlusion_formula(a, mimics, &mut v.reasons) != Some(true)
                }
            };
            if let Some(reason) = aneurysm_pattern(a, &leads) {
                v.reasons.push(reason);
            } else if normal_variant(&mut v, &mut formula_tried) {
                v.reasons.push(
                    "ST elevation consistent with early repolarisation (no reciprocal depression)"
                        .into(),
                );
            } else {
                v.stemi = true;
                v.territories
                    .extend(leads.iter().filter_map(|l| l.territory()));
                v.reasons.push(format!(
                    "suspected acute coronary occlusion: STEMI criteria in {}",
                    list(&leads)
                ));
                if let Some(r) = reciprocal {
                    v.reasons.push(r);
                }
            }
        }
    }
    if !v.stemi && !mimics.contains(&Mimic::RightBundleBranchBlock) {
        anterior_terminal_distortion(a, &mut v);
    }
    if !v.stemi && !formula_tried {
        subtle_anterior_occlusion(a, mimics, &mut v);
    }
    if !v.stemi && lvh && !v.criteria_met {
        lvh_disproportionate_elevation(a, &mut v);
    }
    if !v.stemi && !lvh && !early_repol {
        subtle_signs(a, mimics, &mut v);
    }
    v
}

/// With LVH, ST elevation in V1-V3 is secondary to the deep S wave and proportional to it;
/// elevation >= 25% of the S-wave depth is not (Armstrong et al., Am J Cardiol
/// 2012;110:977-83, the ratio that the UDMI path above uses once the thresholds are met).
/// Below the thresholds the same ratio is read, with elevation of at least 1 mm so that a
/// small S cannot make noise look proportionally large.
fn lvh_disproportionate_elevation(a: &Analysis, v: &mut Verdict) {
    use LeadName::*;
    let leads: BTreeSet<LeadName> = [V1, V2, V3]
        .into_iter()
        .filter(|&l| {
            a.get(l).is_some_and(|m| {
                m.s_uv > m.r_uv && m.st_j_uv >= 100.0 && m.st_j_uv >= 0.25 * m.s_uv
            })
        })
        .collect();
    if !leads.is_empty() {
        v.stemi = true;
        v.territories.insert(Territory::Anterior);
        v.reasons.push(format!(
            "suspected acute coronary occlusion: with LVH, ST elevation >= 25% of the S-wave depth in {}",
            list(&leads)
        ));
    }
}

/// Anterior ST elevation with terminal QRS distortion in V2 or V3: often present in
/// anterior occlusion, and in none of 171 ECGs read as benign early repolarisation (Lee,
/// Walsh, Smith, Am J Emerg Med 2016;34:2182-5), so it overrules an early-repolarisation
/// reading. The distorted lead needs elevation of at least 1 mm at J and at J+60 ms, so
/// that a tall R running into a normal ST does not count. RBBB is left out: its R' in
/// V1-V3 has no S by nature.
fn anterior_terminal_distortion(a: &Analysis, v: &mut Verdict) {
    use LeadName::*;
    let distorted: BTreeSet<LeadName> = [V2, V3]
        .into_iter()
        .filter(|&l| {
            let Some(i) = a.leads.iter().position(|&x| x == l) else {
                return false;
            };
            let m = &a.measurements[i];
            m.st_j_uv >= 100.0
                && m.st_j60_uv >= 100.0
                && terminal_qrs_distortion(a.median.row(i), &a.fid)
        })
        .collect();
    if !distorted.is_empty() {
        v.stemi = true;
        v.territories.insert(Territory::Anterior);
        v.reasons.push(format!(
            "suspected acute coronary occlusion: anterior ST elevation with terminal QRS distortion (neither S nor J wave) in {}",
            list(&distorted)
        ));
    }
}

/// ST elevation >= 1 mm in V2-V4 below (or above) the UDMI thresholds is the population the
/// 4-variable formula was derived on: normal-variant elevation versus subtle LAD occlusion
/// (Smith et al. 2012: 143 of 355 anterior STEMIs were "subtle", many under the
/// thresholds). The findings that made an occlusion "obvious" there (reciprocal inferior or
/// precordial ST depression) are left to the other rules, which read them directly.
fn subtle_anterior_occlusion(a: &Analysis, mimics: &[Mimic], v: &mut Verdict) {
    use LeadName::*;
    let obvious = [II, III, AVF, V2, V3, V4, V5, V6]
        .into_iter()
        .any(|l| st(a, l) <= -50.0);
    if obvious {
        return;
    }
    if anterior_occlusion_formula(a, mimics, &mut v.reasons) == Some(true) {
        let leads: BTreeSet<LeadName> = [V2, V3, V4]
            .into_iter()
            .filter(|&l| st(a, l) >= 100.0)
            .collect();
        v.stemi = true;
        v.territories.insert(Territory::Anterior);
        v.reasons.push(format!(
            "suspected subtle LAD occlusion: ST elevation in {} with the 4-variable formula above its cut-off",
            list(&leads)
        ));
    }
}

/// Heart rate above which (RR below this) ST is not judged: 150 bpm.
const MIN_RR_FOR_ST_S: f64 = 0.4;

/// Persistent ST elevation of an old infarct (LV aneurysm) versus acute occlusion (Klein,
/// Smith et al.): where the elevated precordial leads have Q or QS waves, a T wave smaller
/// than 0.36 of the QRS amplitude in every one of them favours an old aneurysm.
fn aneurysm_pattern(a: &Analysis, elevated: &BTreeSet<LeadName>) -> Option<String> {
    use LeadName::*;
    let anterior: Vec<(LeadName, &LeadMeasurement)> = elevated
        .iter()
        .filter(|l| matches!(l, V1 | V2 | V3 | V4))
        .filter_map(|&l| a.get(l).map(|m| (l, m)))
        .collect();
    if anterior.len() < 2 || !anterior.iter().all(|(_, m)| m.q_ms >= 30.0) {
        return None;
    }
    if elevated
        .iter()
        .any(|l| !matches!(l, V1 | V2 | V3 | V4 | V5))
    {
        return None;
    }
    let max_ratio = anterior
        .iter()
        .map(|(_, m)| m.t_uv / m.qrs_pp_uv().max(1.0))
        .fold(f32::MIN, f32::max);
    (max_ratio < 0.36).then(|| {
        format!(
            "ST elevation over Q/QS waves with T/QRS at most {max_ratio:.2} (< 0.36): old infarct (LV aneurysm) pattern rather than acute occlusion"
        )
    })
}

/// Reciprocal ST depression (>= 0.5 mm in two leads) facing the elevated territory.
fn reciprocal_depression(a: &Analysis, elevated: &BTreeSet<LeadName>) -> Option<String> {
    use LeadName::*;
    let inferior = elevated
        .iter()
        .any(|l| l.territory() == Some(Territory::Inferior));
    let ant_lat = elevated.iter().any(|l| {
        matches!(
            l.territory(),
            Some(Territory::Anterior | Territory::Lateral | Territory::Septal)
        )
    });
    let mut opposite: Vec<LeadName> = Vec::new();
    if inferior {
        opposite.extend([I, AVL]);
    }
    if ant_lat {
        opposite.extend([II, III, AVF]);
    }
    let depressed: Vec<LeadName> = opposite
        .into_iter()
        .filter(|&l| st(a, l) <= -50.0)
        .collect();
    (depressed.len() >= 2 || (depressed.len() == 1 && inferior && depressed[0] == AVL)).then(|| {
        format!(
            "reciprocal ST depression in {}",
            depressed
                .iter()
                .map(|l| l.label())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Smith-modified Sgarbossa (Smith et al. 2012): concordant ST elevation >= 1 mm in any lead,
/// concordant ST depression >= 1 mm in V1-V3, or discordant ST elevation >= 1 mm that is
/// >= 25% of the preceding S wave.
fn sgarbossa(a: &Analysis, v: &mut Verdict) {
    let mut hits = Vec::new();
    let mut leads = BTreeSet::new();
    for (&l, m) in a.leads.iter().zip(&a.measurements) {
        let positive = m.qrs_positive();
        if positive && m.st_j_uv >= 100.0 {
            hits.push(format!(
                "concordant ST elevation {:.1} mm in {l}",
                mm(m.st_j_uv)
            ));
            leads.insert(l);
        } else if !positive
            && matches!(l, LeadName::V1 | LeadName::V2 | LeadName::V3)
            && m.st_j_uv <= -100.0
        {
            hits.push(format!(
                "concordant ST depression {:.1} mm in {l}",
                mm(-m.st_j_uv)
            ));
            v.territories.insert(Territory::Posterior);
        } else if !positive && m.st_j_uv >= 100.0 && m.st_j_uv >= 0.25 * m.s_uv {
            hits.push(format!(
                "discordant ST elevation {:.1} mm is {:.0}% of the S wave in {l}",
                mm(m.st_j_uv),
                100.0 * m.st_j_uv / m.s_uv.max(1.0)
            ));
            leads.insert(l);
        }
    }
    if hits.is_empty() {
        v.reasons
            .push("Smith-modified Sgarbossa criteria not met".into());
    } else {
        v.stemi = true;
        v.territories
            .extend(leads.iter().filter_map(|l| l.territory()));
        v.reasons.push(format!(
            "Smith-modified Sgarbossa positive: {}",
            hits.join("; ")
        ));
    }
}

/// Driver/Smith 4-variable formula separating subtle LAD occlusion from normal-variant
/// ST elevation ("early repolarisation") in V2-V4 (Driver et al., Am J Emerg Med 2017;
/// externally validated by Bozbeyoglu et al., "A tale of two formulas", 2019):
/// 0.052 QTc - 0.151 QRS-amplitude V2 - 0.268 R V4 + 1.062 STE60 V3, amplitudes in mm,
/// QTc in ms; > 18.2 favours occlusion. Smith's instructions: QTc is the machine's Bazett
/// value, but not corrected when the rate is under 60 bpm (Bazett shortens it there).
pub(crate) fn four_variable_score(
    qt_ms: f64,
    rr_s: f64,
    qrs_amplitude_v2_uv: f32,
    r_v4_uv: f32,
    ste60_v3_uv: f32,
) -> f32 {
    let qtc_ms = if rr_s > 1.0 {
        qt_ms
    } else {
        qt_ms / rr_s.sqrt()
    };
    0.052 * qtc_ms as f32 - 0.151 * mm(qrs_amplitude_v2_uv) - 0.268 * mm(r_v4_uv)
        + 1.062 * mm(ste60_v3_uv)
}

/// Cut-off of the 4-variable formula (Driver et al. 2017).
const FOUR_VARIABLE_CUTOFF: f32 = 18.2;

/// The 4-variable formula where it applies; `None` (with the reason) where it does not.
/// It was derived only on ECGs whose differential is normal-variant ST elevation versus
/// subtle LAD occlusion: ST elevation >= 1 mm in at least one of V2-V4, and none of the
/// excluded findings (Smith et al., Ann Emerg Med 2012;60:45-56; Driver et al. 2017):
/// bundle-branch block or other wide QRS, LVH, ST elevation >= 5 mm, pathological Q waves
/// in V2-V4. (Reciprocal ST depression, also excluded there, is tested by the caller.)
fn anterior_occlusion_formula(
    a: &Analysis,
    mimics: &[Mimic],
    reasons: &mut Vec<String>,
) -> Option<bool> {
    use LeadName::*;
    let (Some(v2), Some(v3), Some(v4), Some(qt), Some(rr)) =
        (a.get(V2), a.get(V3), a.get(V4), a.qt_ms(), a.rr_s)
    else {
        return None;
    };
    if [v2, v3, v4].iter().all(|m| m.st_j_uv < 100.0) {
        return None;
    }
    let excluded = if a.qrs_ms() >= 120.0
        || mimics.iter().any(|m| {
            matches!(
                m,
                Mimic::LeftBundleBranchBlock
                    | Mimic::RightBundleBranchBlock
                    | Mimic::IntraventricularConductionDelay
                    | Mimic::Paced
            )
        }) {
        Some("a wide QRS")
    } else if mimics.contains(&Mimic::LeftVentricularHypertrophy) {
        Some("LVH")
    } else if a.measurements.iter().any(|m| m.st_j_uv >= 500.0) {
        Some("ST elevation >= 5 mm")
    } else if [v2, v3, v4]
        .iter()
        .any(|m| m.q_ms >= 40.0 && m.q_uv >= 100.0)
    {
        Some("Q waves in V2-V4")
    } else {
        None
    };
    if let Some(why) = excluded {
        reasons.push(format!(
            "4-variable LAD-occlusion formula not applicable with {why} (outside its derivation)"
        ));
        return None;
    }
    // Smith's STE60 is 60 ms after the J point as a reader places it, the visible end of
    // the QRS: the clinical offset, not the global one (a median 18 ms later, higher on the
    // rising ST of both early repolarisation and LAD occlusion).
    let ste60_v3 = a.st_after_clinical_end_uv(V3, 0.06).unwrap_or(v3.st_j60_uv);
    let score = four_variable_score(qt, rr, v2.qrs_pp_uv(), v4.r_uv, ste60_v3);
    let occlusion = score > FOUR_VARIABLE_CUTOFF;
    reasons.push(format!(
        "4-variable LAD-occlusion formula {score:.1} ({} {FOUR_VARIABLE_CUTOFF})",
        if occlusion { ">" } else { "<=" }
    ));
    Some(occlusion)
}

/// A T wave as tall as a hyperacute one: at least 1 mV in the precordial leads (0.5 mV in
/// the limb leads) and three quarters of the QRS amplitude.
fn tall_t(l: LeadName, m: &LeadMeasurement) -> bool {
    use LeadName::*;
    let tall_uv = if matches!(l, V1 | V2 | V3 | V4 | V5 | V6) {
        1000.0
    } else {
        500.0
    };
    m.t_uv >= tall_uv && m.t_uv >= 0.75 * m.qrs_pp_uv()
}

/// Signs of occlusion below the UDMI thresholds (Smith, Meyers: "occlusion MI").
fn subtle_signs(a: &Analysis, mimics: &[Mimic], v: &mut Verdict) {
    use LeadName::*;
    let rbbb = mimics.contains(&Mimic::RightBundleBranchBlock);
    // Inferior ST elevation with reciprocal depression in aVL.
    let inferior: Vec<LeadName> = [II, III, AVF]
        .into_iter()
        .filter(|&l| primary_elevation(a, l) >= 50.0)
        .collect();
    if inferior.len() >= 2 && st(a, AVL) <= -50.0 && primary_elevation(a, III) >= 50.0 {
        v.stemi = true;
        v.territories.insert(Territory::Inferior);
        v.reasons.push(format!(
            "suspected acute coronary occlusion: inferior ST elevation ({}) with reciprocal ST depression {:.1} mm in aVL",
            inferior.iter().map(|l| l.label()).collect::<Vec<_>>().join(", "),
            mm(-st(a, AVL))
        ));
    }
    // Anterior / lateral ST elevation >= 1 mm with inferior reciprocal depression.
    let antlat = pairs_meeting(a, |l, m| {
        matches!(l, V1 | V2 | V3 | V4 | V5 | V6 | I | AVL)
            && primary_elevation(a, l) >= 100.0
            && m.st_j_uv >= 100.0
    });
    let inf_depressed = [II, III, AVF]
        .into_iter()
        .filter(|&l| st(a, l) <= -50.0)
        .count();
    if !antlat.is_empty() && inf_depressed >= 2 {
        let leads = leads_of(&antlat);
        v.stemi = true;
        v.territories
            .extend(leads.iter().filter_map(|l| l.territory()));
        v.reasons.push(format!(
            "suspected acute coronary occlusion: ST elevation in {} with reciprocal inferior ST depression",
            list(&leads)
        ));
    }
    // Hyperacute T waves: broad T waves as tall as the QRS, with ST straightening upward,
    // in contiguous leads, and the facing territory's T inverted or ST depressed.
    let hyper = pairs_meeting(a, |l, m| l != AVR && tall_t(l, m) && m.st_j60_uv >= 50.0);
    if !hyper.is_empty() {
        let leads = leads_of(&hyper);
        let inferior = leads
            .iter()
            .any(|l| l.territory() == Some(Territory::Inferior));
        let facing: &[LeadName] = if inferior { &[AVL, I] } else { &[II, III, AVF] };
        let reciprocal: Vec<LeadName> = facing
            .iter()
            .copied()
            .filter(|&l| {
                a.get(l)
                    .is_some_and(|m| m.t_uv < -100.0 || m.st_j_uv <= -50.0)
            })
            .collect();
        if !reciprocal.is_empty() {
            v.stemi = true;
            v.territories
                .extend(leads.iter().filter_map(|l| l.territory()));
            v.reasons.push(format!(
                "suspected acute coronary occlusion: hyperacute T waves in {} with reciprocal change in {}",
                list(&leads),
                reciprocal.iter().map(|l| l.label()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    // De Winter's pattern, an LAD occlusion without ST elevation (de Winter et al., N Engl
    // J Med 2008;359:2071-3; Verouden et al., Heart 2009;95:1701-6): upsloping ST depression
    // of 1-3 mm at the J point in the precordial leads, running into tall T waves, with a
    // QRS that is not wide. ST elevation in aVR often goes with it (supporting only).
    let de_winter = pairs_meeting(a, |l, m| {
        a.qrs_ms() < 120.0
            && !rbbb
            && matches!(l, V1 | V2 | V3 | V4 | V5 | V6)
            && m.st_j_uv <= -100.0
            && m.st_j60_uv >= m.st_j_uv + 50.0
            && tall_t(l, m)
    });
    if !de_winter.is_empty() {
        let leads = leads_of(&de_winter);
        v.stemi = true;
        v.territories
            .extend(leads.iter().filter_map(|l| l.territory()));
        let avr = st(a, AVR);
        v.reasons.push(format!(
            "suspected LAD occlusion (de Winter pattern): upsloping ST depression at J into tall T waves in {}{}",
            list(&leads),
            if avr >= 50.0 {
                format!(", ST elevation {:.1} mm in aVR", mm(avr))
            } else {
                String::new()
            }
        ));
    }
    // ST elevation out of proportion to the QRS: at least a quarter of the QRS amplitude
    // (the ratio Smith and Armstrong use for discordant ST in LBBB and LVH, here for
    // concordant elevation after a small QRS), held through J+60 ms.
    let narrow = a.qrs_ms() < 120.0;
    let disproportionate = pairs_meeting(a, |l, m| {
        narrow
            && l != AVR
            && m.st_j_uv >= 50.0
            && m.st_j60_uv >= 50.0
            && m.st_j60_uv.min(m.st_j_uv) >= 0.25 * m.qrs_pp_uv()
    });
    if !disproportionate.is_empty() {
        let leads = leads_of(&disproportionate);
        v.stemi = true;
        v.territories
            .extend(leads.iter().filter_map(|l| l.territory()));
        v.reasons.push(format!(
            "suspected acute coronary occlusion: ST elevation >= 25% of the QRS amplitude in {}",
            list(&leads)
        ));
    }
    // ST elevation over new-looking Q waves: Q >= 30 ms and >= 0.1 mV (or QS) with ST
    // elevation and a T wave still large relative to the QRS (T/QRS >= 0.36, i.e. not the
    // flat or inverted T of an old infarct's aneurysm).
    let q_with_ste = pairs_meeting(a, |l, m| {
        l != AVR
            && m.q_ms >= 30.0
            && m.q_uv >= 100.0
            && primary_elevation(a, l) >= 50.0
            && m.st_j60_uv >= 50.0
            && m.t_uv >= 0.36 * m.qrs_pp_uv()
    });
    if !q_with_ste.is_empty() {
        let leads = leads_of(&q_with_ste);
        v.stemi = true;
        v.territories
            .extend(leads.iter().filter_map(|l| l.territory()));
        v.reasons.push(format!(
            "suspected acute coronary occlusion: ST elevation with Q waves and upright T (T/QRS >= 0.36) in {}",
            list(&leads)
        ));
    }
    // Posterior: ST depression maximal in V1-V4, not explained by RBBB, by the strain
    // pattern of right-ventricular hypertrophy, or by de Winter's pattern (the same
    // depression, rising into tall T waves: the LAD, not the posterior wall).
    let rv_strain = match (a.get(V1), a.get(I), a.get(AVF)) {
        (Some(v1), Some(i), Some(avf)) => rvh_with_right_axis(v1, i, avf),
        _ => false,
    };
    if rv_strain {
        v.reasons.push(
            "dominant R in V1 (>= 0.7 mV) with right axis deviation: right-ventricular hypertrophy, so ST depression in V1-V3 is not read as posterior occlusion".into(),
        );
    }
    if !rbbb && !rv_strain && de_winter.is_empty() {
        let post = pairs_meeting(a, |l, m| {
            matches!(l, V1 | V2 | V3 | V4) && m.st_j_uv <= -100.0
        });
        let max_ant = [V1, V2, V3, V4]
            .into_iter()
            .map(|l| -st(a, l))
            .fold(0.0, f32::max);
        let max_lat = [V5, V6].into_iter().map(|l| -st(a, l)).fold(0.0, f32::max);
        if !post.is_empty() && max_ant > max_lat {
            v.stemi = true;
            v.territories.insert(Territory::Posterior);
            v.reasons.push(format!(
                "suspected posterior occlusion: ST depression maximal in {} (reciprocal to posterior ST elevation)",
                list(&leads_of(&post))
            ));
        }
    }
}

/// Right-ventricular hypertrophy by voltage and axis (AHA/ACCF/HRS 2009 recommendations,
/// Hancock et al.): R/S in V1 > 1 with R in V1 >= 0.7 mV, and a frontal axis beyond
/// +90 degrees (net QRS negative in I, positive in aVF). Its strain pattern depresses ST
/// and inverts T in V1-V3, the posterior-MI mimic; a posterior infarct's tall R in V1
/// does not bring right axis deviation with it.
fn rvh_with_right_axis(v1: &LeadMeasurement, i: &LeadMeasurement, avf: &LeadMeasurement) -> bool {
    v1.r_uv >= 700.0 && v1.r_uv > v1.s_uv && i.r_uv < i.s_uv && avf.r_uv > avf.s_uv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(r_uv: f32, s_uv: f32) -> LeadMeasurement {
        LeadMeasurement {
            st_j_uv: 0.0,
            st_j60_uv: 0.0,
            r_uv,
            s_uv,
            q_uv: 0.0,
            q_ms: 0.0,
            terminal_uv: 0.0,
            t_uv: 0.0,
        }
    }

    #[test]
    fn rvh_needs_a_dominant_tall_r_in_v1_and_right_axis() {
        let (v1, i, avf) = (lead(1100.0, 100.0), lead(250.0, 450.0), lead(750.0, 20.0));
        assert!(rvh_with_right_axis(&v1, &i, &avf));
        // Normal axis (I positive): a tall R in V1 alone may be posterior.
        assert!(!rvh_with_right_axis(&v1, &lead(800.0, 100.0), &avf));
        // R in V1 under 0.7 mV, or not dominant.
        assert!(!rvh_with_right_axis(&lead(600.0, 100.0), &i, &avf));
        assert!(!rvh_with_right_axis(&lead(900.0, 1200.0), &i, &avf));
    }

    /// Hand-computed: QT 400 ms at RR 0.81 s (QTc 444.4 ms), QRS V2 15 mm, R V4 10 mm,
    /// STE60 V3 2 mm: 23.11 - 2.265 - 2.68 + 2.124 = 20.29.
    #[test]
    fn four_variable_formula_uses_the_published_coefficients() {
        let s = four_variable_score(400.0, 0.81, 1500.0, 1000.0, 200.0);
        assert!((s - 20.29).abs() < 0.01, "{s}");
        assert!(s > FOUR_VARIABLE_CUTOFF);
    }

    /// Below 60 bpm the QT is used uncorrected: QT 400 ms at RR 1.2 s gives 20.8 from the
    /// QT term (Bazett would give 18.98), 17.98 in all, under the cut-off.
    #[test]
    fn four_variable_formula_does_not_correct_qt_below_60_bpm() {
        let s = four_variable_score(400.0, 1.2, 1500.0, 1000.0, 200.0);
        assert!((s - 17.979).abs() < 0.01, "{s}");
        assert!(s <= FOUR_VARIABLE_CUTOFF);
    }
}
