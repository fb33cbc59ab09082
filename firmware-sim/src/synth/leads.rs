//! The standard 12 leads: how each one sees the cardiac dipole, which leads
//! are anatomically contiguous, and the 4th Universal Definition of MI
//! ST-elevation thresholds.

use super::Sex;

/// One of the standard 12 leads, in the canonical order used everywhere in
/// this crate and on the wire (I, II, III, aVR, aVL, aVF, V1..V6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lead {
    I,
    II,
    III,
    AVR,
    AVL,
    AVF,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
}

impl Lead {
    /// All 12 leads in canonical order; `Lead::ALL[l.index()] == l`.
    pub const ALL: [Lead; 12] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];

    /// Position in [`Lead::ALL`] and in `SyntheticVisit::samples`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Conventional name ("I", "aVR", "V4", ...).
    pub fn name(self) -> &'static str {
        LEAD_NAMES[self.index()]
    }
}

/// Names of [`Lead::ALL`], in the same order.
pub const LEAD_NAMES: [&str; 12] = [
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
];

/// Dower's transform from the Frank orthogonal leads (X: right to left,
/// Y: head to foot, Z: front to back, all in mV) to the eight independent
/// leads I, II, V1..V6. Using published torso coefficients rather than
/// invented angles gives the chest leads their realistic R-wave progression.
pub(crate) const DOWER: [[f32; 3]; 8] = [
    [0.632, -0.235, 0.059],  // I
    [0.235, 1.066, -0.132],  // II
    [-0.515, 0.157, -0.917], // V1
    [0.044, 0.164, -1.387],  // V2
    [0.882, 0.098, -1.277],  // V3
    [1.213, 0.127, -0.601],  // V4
    [1.125, 0.127, -0.086],  // V5
    [0.831, 0.076, 0.230],   // V6
];

/// Lead vector of any of the 12 leads in Frank coordinates. The four derived
/// limb leads are the Einthoven/Goldberger combinations of I and II, so a
/// dipole projected through these vectors obeys Einthoven's law exactly.
pub(crate) fn lead_vector(lead: Lead) -> [f32; 3] {
    let i = DOWER[0];
    let ii = DOWER[1];
    match lead {
        Lead::I => i,
        Lead::II => ii,
        Lead::III | Lead::AVR | Lead::AVL | Lead::AVF => {
            let (a, b) = DERIVED_LIMB_WEIGHTS[lead.index() - 2];
            [
                a * i[0] + b * ii[0],
                a * i[1] + b * ii[1],
                a * i[2] + b * ii[2],
            ]
        }
        v => DOWER[v.index() - 4],
    }
}

/// Weights of (I, II) giving III, aVR, aVL, aVF: Einthoven's and
/// Goldberger's equations, the one place they are written down.
pub(crate) const DERIVED_LIMB_WEIGHTS: [(f32, f32); 4] =
    [(-1.0, 1.0), (-0.5, -0.5), (1.0, -0.5), (-0.5, 1.0)];

pub(crate) fn project(lead: Lead, v: [f32; 3]) -> f32 {
    let l = lead_vector(lead);
    l[0] * v[0] + l[1] * v[1] + l[2] * v[2]
}

/// Derives all 12 leads from the independent ones (I, II, V1..V6) for one
/// sample. Doing it in one place is what keeps Einthoven's law exact.
#[inline]
pub(crate) fn derive12(ind: [f32; 8]) -> [f32; 12] {
    let (i, ii) = (ind[0], ind[1]);
    let d = DERIVED_LIMB_WEIGHTS.map(|(a, b)| a * i + b * ii);
    [
        i, ii, d[0], d[1], d[2], d[3], ind[2], ind[3], ind[4], ind[5], ind[6], ind[7],
    ]
}

/// Pairs of anatomically contiguous leads (4th UDMI): neighbours within the
/// inferior (II, aVF, III), lateral (aVL, I; V5, V6) and anterior (V1..V6)
/// groups. aVR is in no group.
pub const CONTIGUOUS_PAIRS: [(Lead, Lead); 9] = [
    (Lead::II, Lead::AVF),
    (Lead::AVF, Lead::III),
    (Lead::AVL, Lead::I),
    (Lead::V1, Lead::V2),
    (Lead::V2, Lead::V3),
    (Lead::V3, Lead::V4),
    (Lead::V4, Lead::V5),
    (Lead::V5, Lead::V6),
    (Lead::II, Lead::III),
];

/// New ST elevation at the J point that the 4th Universal Definition of
/// Myocardial Infarction counts as significant, in microvolts: 1 mm in all
/// leads except V2-V3, where it is 2 mm (men >= 40), 2.5 mm (men < 40) or
/// 1.5 mm (women).
pub fn st_elevation_threshold_uv(lead: Lead, sex: Sex, age_years: u8) -> f32 {
    match lead {
        Lead::V2 | Lead::V3 => match sex {
            Sex::Female => 150.0,
            Sex::Male if age_years < 40 => 250.0,
            Sex::Male => 200.0,
        },
        _ => 100.0,
    }
}

/// The strictest threshold over all sexes and ages: a STEMI designed to meet
/// this meets the criteria whoever the patient is.
pub(crate) fn strictest_threshold_uv(lead: Lead) -> f32 {
    match lead {
        Lead::V2 | Lead::V3 => 250.0,
        _ => 100.0,
    }
}

/// The most lenient threshold over all sexes and ages: a mimic kept below this
/// never meets the criteria, whoever the patient is.
pub(crate) fn most_lenient_threshold_uv(lead: Lead) -> f32 {
    match lead {
        Lead::V2 | Lead::V3 => 150.0,
        _ => 100.0,
    }
}

/// Whether ST elevations at J (indexed like [`Lead::ALL`]) meet the 4th-UDMI
/// thresholds in at least two contiguous leads.
pub fn st_elevation_criteria_met(st_j_uv: &[f32; 12], sex: Sex, age_years: u8) -> bool {
    let meets = |l: Lead| st_j_uv[l.index()] >= st_elevation_threshold_uv(l, sex, age_years);
    CONTIGUOUS_PAIRS.iter().any(|&(a, b)| meets(a) && meets(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_lead_vectors_obey_einthoven() {
        let (i, ii, iii) = (
            lead_vector(Lead::I),
            lead_vector(Lead::II),
            lead_vector(Lead::III),
        );
        for a in 0..3 {
            assert!((iii[a] - (ii[a] - i[a])).abs() < 1e-6);
            let avr = lead_vector(Lead::AVR)[a];
            let avl = lead_vector(Lead::AVL)[a];
            let avf = lead_vector(Lead::AVF)[a];
            // Goldberger leads sum to zero.
            assert!((avr + avl + avf).abs() < 1e-6);
        }
    }

    #[test]
    fn thresholds_follow_the_fourth_universal_definition() {
        assert_eq!(st_elevation_threshold_uv(Lead::V2, Sex::Male, 35), 250.0);
        assert_eq!(st_elevation_threshold_uv(Lead::V3, Sex::Male, 60), 200.0);
        assert_eq!(st_elevation_threshold_uv(Lead::V2, Sex::Female, 30), 150.0);
        assert_eq!(st_elevation_threshold_uv(Lead::AVF, Sex::Female, 30), 100.0);
        let mut st = [0.0; 12];
        st[Lead::II.index()] = 120.0;
        st[Lead::V2.index()] = 120.0; // one lead alone is not enough
        assert!(!st_elevation_criteria_met(&st, Sex::Male, 60));
        st[Lead::AVF.index()] = 100.0;
        assert!(st_elevation_criteria_met(&st, Sex::Male, 60));
    }
}
