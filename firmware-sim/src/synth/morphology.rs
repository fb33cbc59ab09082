//! The heart as a time-varying dipole: each wave (P, QRS components, T) is an
//! asymmetric Gaussian in time carrying a 3D vector in Frank coordinates
//! (X right-to-left, Y head-to-foot, Z front-to-back), in the spirit of the
//! McSharry/Sameni dipole models. The ST segment is one more vector (injury
//! current, or the secondary repolarisation change of a conduction
//! disturbance) held on a plateau from the J point into the T wave.
//!
//! Each condition is a set of waves; a patient is a random rotation and
//! scaling of that set.

use rand::Rng;

use super::leads::Lead;
use super::{Condition, Sex, StemiLocation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    P,
    Qrs,
    T,
}

#[derive(Debug, Clone)]
pub(crate) struct Wave {
    pub group: Group,
    /// Centre relative to the beat's fiducial point; T waves are given at
    /// 60 bpm and stretched with the RR interval.
    pub center_s: f32,
    pub sigma_l_s: f32,
    pub sigma_r_s: f32,
    pub v_uv: [f32; 3],
}

#[derive(Debug, Clone)]
pub(crate) struct Pacing {
    /// Stimulus artefact vector (bipolar lead in the RV apex).
    pub v_uv: [f32; 3],
    pub width_s: f32,
    /// How long before the QRS deflection the stimulus comes.
    pub latency_s: f32,
}

#[derive(Debug, Clone)]
pub(crate) struct Morphology {
    pub waves: Vec<Wave>,
    /// ST vector at the J point.
    pub st_uv: [f32; 3],
    /// Duration of the ST rise, ending exactly at J (the injury current
    /// already shifts the terminal QRS).
    pub st_rise_s: f32,
    /// Flat part after J, at 60 bpm.
    pub st_plateau_s: f32,
    /// Beat-to-beat relative SD of the ST amplitude.
    pub st_beat_sd: f32,
    /// Respiratory modulation depth of the QRS amplitude.
    pub qrs_resp_depth: f32,
    pub pacing: Option<Pacing>,
}

fn wave(group: Group, c: f32, sl: f32, sr: f32, v: [f32; 3]) -> Wave {
    Wave {
        group,
        center_s: c,
        sigma_l_s: sl,
        sigma_r_s: sr,
        v_uv: v,
    }
}

fn rotation<R: Rng + ?Sized>(rng: &mut R, max_deg: f32) -> [[f32; 3]; 3] {
    let mut a = [0.0f32; 3];
    for x in &mut a {
        *x = rng.random_range(-max_deg..=max_deg).to_radians();
    }
    let (sx, cx) = a[0].sin_cos();
    let (sy, cy) = a[1].sin_cos();
    let (sz, cz) = a[2].sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    matmul(&rz, &matmul(&ry, &rx))
}

fn matmul(a: &[[f32; 3]; 3], b: &[[f32; 3]; 3]) -> [[f32; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

pub(crate) fn rotate(m: &[[f32; 3]; 3], v: [f32; 3]) -> [f32; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

pub(crate) fn scale(v: [f32; 3], k: f32) -> [f32; 3] {
    [v[0] * k, v[1] * k, v[2] * k]
}

fn norm(v: [f32; 3]) -> f32 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// Unit ST direction of an occlusion, and the leads whose elevation it is
/// designed around (at least two contiguous ones per territory).
pub(crate) fn stemi_design(loc: StemiLocation) -> ([f32; 3], &'static [Lead]) {
    use Lead::*;
    let (v, leads): ([f32; 3], &'static [Lead]) = match loc {
        // LAD: anterior and a little left; superior tilt gives the reciprocal
        // inferior depression.
        StemiLocation::Anterior => ([0.25, -0.3, -1.0], &[V2, V3, V4]),
        // RCA: inferior and rightward, so III > II and aVL/I go down.
        StemiLocation::Inferior => ([-0.25, 1.0, 0.15], &[II, III, AVF]),
        // LCx / diagonal: leftward and superior, reciprocal in III/aVF.
        StemiLocation::Lateral => ([1.0, -0.45, 0.1], &[I, AVL, V5, V6]),
        StemiLocation::Inferolateral => ([0.6, 0.9, 0.2], &[II, III, AVF, V5, V6]),
        StemiLocation::Anterolateral => ([0.7, -0.35, -0.8], &[V2, V3, V4, V5, I, AVL]),
    };
    let n = norm(v);
    ([v[0] / n, v[1] / n, v[2] / n], leads)
}

/// The normal sinus beat's QRS: septal q (rightward, anterior), main left
/// ventricular R, terminal basal S.
fn normal_qrs(w: f32) -> Vec<Wave> {
    // Sized so that the precordial voltages come near adults' normal values (S in V2
    // about 1.5 mV in men, R in V4 about 1.5 mV; Rijnbeek et al. 2014, Macfarlane):
    // the mid-QRS vector points well back as well as left.
    vec![
        wave(
            Group::Qrs,
            -0.028 * w,
            0.007 * w,
            0.007 * w,
            [-120.0, 20.0, -300.0],
        ),
        // The loop turns counter-clockwise in the horizontal plane: left and
        // forward first (the R of V3-V4), then left and back (the S of V1-V2).
        wave(
            Group::Qrs,
            -0.012 * w,
            0.008 * w,
            0.008 * w,
            [500.0, 150.0, -450.0],
        ),
        wave(
            Group::Qrs,
            0.0,
            0.011 * w,
            0.011 * w,
            [1250.0, 750.0, 950.0],
        ),
        wave(
            Group::Qrs,
            0.026 * w,
            0.009 * w,
            0.009 * w,
            [-250.0, -50.0, 250.0],
        ),
    ]
}

/// Atrial depolarisation, placed so that the PR interval (P onset to QRS
/// onset) is `pr_s` whatever the QRS shape.
fn p_waves(pr_s: f32, qrs: &[Wave]) -> Vec<Wave> {
    let qrs_onset_s = qrs
        .iter()
        .map(|w| w.center_s - 2.5 * w.sigma_l_s)
        .fold(0.0f32, f32::min);
    let c = qrs_onset_s - pr_s + 2.5 * 0.022;
    vec![
        wave(Group::P, c, 0.022, 0.018, [90.0, 140.0, -30.0]),
        // Left atrial, posterior: the terminal negative part of P in V1.
        wave(Group::P, c + 0.025, 0.015, 0.015, [20.0, 10.0, 60.0]),
    ]
}

/// Builds the patient's heart for one visit. The ST vector is returned at its
/// design size; `beat::calibrate` then scales it against the thresholds.
pub(crate) fn design<R: Rng + ?Sized>(
    rng: &mut R,
    condition: Condition,
    sex: Sex,
    age_years: u8,
) -> Morphology {
    let pr_s = rng.random_range(0.13..0.19);
    let qt_extra_s = if sex == Sex::Female { 0.012 } else { 0.0 };
    let t_c = 0.26 + qt_extra_s;
    let mut st_plateau_s = rng.random_range(0.03..0.06);
    let mut pacing = None;
    let mut st_beat_sd = 0.02;
    let (mut waves, st_uv): (Vec<Wave>, [f32; 3]) = match condition {
        Condition::Normal => {
            let mut w = Vec::new();
            w.extend(normal_qrs(rng.random_range(0.9..1.1)));
            w.push(wave(Group::T, t_c, 0.06, 0.04, [350.0, 180.0, -150.0]));
            (w, [20.0, 20.0, -60.0])
        }
        Condition::Stemi(loc) => {
            let mut w = Vec::new();
            w.extend(normal_qrs(rng.random_range(0.9..1.1)));
            let (dir, _) = stemi_design(loc);
            // Hyperacute T: the T wave swings toward the injured wall too.
            let k = rng.random_range(250.0..500.0);
            let t = [350.0 + k * dir[0], 180.0 + k * dir[1], -150.0 + k * dir[2]];
            w.push(wave(Group::T, t_c, 0.06, 0.045, t));
            st_beat_sd = 0.05;
            st_plateau_s = rng.random_range(0.04..0.08);
            // Size set by calibration; direction perturbed per patient.
            let r = rotation(rng, 8.0);
            (w, rotate(&r, dir))
        }
        Condition::Lbbb => {
            let k = rng.random_range(0.9..1.1);
            let mut w = Vec::new();
            w.extend([
                // No septal q: the septum depolarises left to right.
                wave(
                    Group::Qrs,
                    -0.045 * k,
                    0.014 * k,
                    0.014 * k,
                    [300.0, 100.0, 300.0],
                ),
                wave(
                    Group::Qrs,
                    -0.018 * k,
                    0.015 * k,
                    0.015 * k,
                    [1000.0, 300.0, 900.0],
                ),
                // The notch between the two ventricles' activation fronts.
                wave(
                    Group::Qrs,
                    0.005 * k,
                    0.007 * k,
                    0.007 * k,
                    [-150.0, -30.0, -100.0],
                ),
                wave(
                    Group::Qrs,
                    0.028 * k,
                    0.016 * k,
                    0.018 * k,
                    [1100.0, 100.0, 700.0],
                ),
                // Discordant T.
                wave(Group::T, t_c + 0.02, 0.06, 0.045, [-350.0, 50.0, -400.0]),
            ]);
            st_plateau_s = 0.0;
            (w, [-150.0, -50.0, -250.0])
        }
        Condition::Rbbb => {
            let k = rng.random_range(0.9..1.1);
            let mut w = Vec::new();
            w.extend([
                wave(Group::Qrs, -0.03, 0.007, 0.007, [-100.0, 50.0, -200.0]),
                wave(Group::Qrs, -0.005, 0.011, 0.011, [1000.0, 600.0, 500.0]),
                // Late, slow right-ventricular activation: R' in V1, wide S
                // in I and V6.
                wave(
                    Group::Qrs,
                    0.045 * k,
                    0.017 * k,
                    0.017 * k,
                    [-450.0, -50.0, -550.0],
                ),
                wave(Group::T, t_c + 0.02, 0.06, 0.04, [350.0, 200.0, 250.0]),
            ]);
            (w, [-20.0, 10.0, 80.0])
        }
        Condition::Lvh => {
            let mut w = Vec::new();
            let k = rng.random_range(1.1..1.25);
            w.extend([
                wave(
                    Group::Qrs,
                    -0.03 * k,
                    0.007 * k,
                    0.007 * k,
                    [-120.0, 20.0, -150.0],
                ),
                wave(
                    Group::Qrs,
                    0.0,
                    0.012 * k,
                    0.012 * k,
                    [1400.0, 700.0, 1100.0],
                ),
                wave(
                    Group::Qrs,
                    0.03 * k,
                    0.01 * k,
                    0.01 * k,
                    [-250.0, -50.0, 300.0],
                ),
                // Strain: asymmetric inverted T in the lateral leads.
                wave(Group::T, t_c, 0.07, 0.035, [-300.0, -50.0, 50.0]),
            ]);
            // Downsloping from J straight into the inverted T.
            st_plateau_s = 0.0;
            (w, [-120.0, -30.0, 60.0])
        }
        Condition::EarlyRepolarisation => {
            let mut w = Vec::new();
            w.extend(normal_qrs(rng.random_range(0.9..1.0)));
            // The J wave: a late notch on the downstroke of R.
            let j = rng.random_range(0.8..1.3);
            w.push(wave(
                Group::Qrs,
                0.04,
                0.007,
                0.007,
                [130.0 * j, 130.0 * j, -50.0 * j],
            ));
            w.push(wave(Group::T, t_c, 0.06, 0.04, [450.0, 220.0, -300.0]));
            st_plateau_s = 0.0;
            (w, [150.0, 100.0, -350.0])
        }
        Condition::Paced => {
            // RV apical pacing: wide, LBBB-like, superior axis; no P (VVI).
            let w = vec![
                wave(Group::Qrs, -0.03, 0.022, 0.022, [600.0, -800.0, 500.0]),
                wave(Group::Qrs, 0.035, 0.025, 0.025, [400.0, -300.0, 400.0]),
                wave(Group::T, t_c + 0.04, 0.06, 0.045, [-300.0, 300.0, -300.0]),
            ];
            let dir = rotate(&rotation(rng, 20.0), [0.3, -0.6, 0.5]);
            let amp = rng.random_range(800.0..2500.0) / norm(dir);
            pacing = Some(Pacing {
                v_uv: scale(dir, amp),
                width_s: 0.002,
                latency_s: 0.008,
            });
            (w, [-100.0, 100.0, -150.0])
        }
    };

    if condition != Condition::Paced {
        let p = p_waves(pr_s, &waves);
        waves.extend(p);
    }

    // The patient: heart orientation and size.
    let r = rotation(rng, 12.0);
    let mut size = if sex == Sex::Male { 1.05 } else { 0.9 };
    size *= if age_years < 40 {
        1.12
    } else if age_years > 70 {
        0.88
    } else {
        1.0
    };
    for w in &mut waves {
        let k = size * rng.random_range(0.88..1.12);
        w.v_uv = scale(rotate(&r, w.v_uv), k);
    }
    let st_uv = match condition {
        // The occlusion's direction is fixed by the artery, not the habitus.
        Condition::Stemi(_) => st_uv,
        _ => scale(rotate(&r, st_uv), size),
    };
    Morphology {
        waves,
        st_uv,
        st_rise_s: 0.02,
        st_plateau_s,
        st_beat_sd,
        qrs_resp_depth: rng.random_range(0.02..0.05),
        pacing,
    }
}
