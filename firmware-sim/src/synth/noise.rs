//! Interference, modelled where it arises: at the nine electrodes (RA, LA,
//! LL, V1..V6). Leads are differences of electrode potentials (limb leads)
//! or electrode minus Wilson's central terminal (chest leads), so an
//! artefact on one electrode shows up in exactly the leads that use it and
//! Einthoven's law still holds with noise on.

use biquad::{Biquad, Coefficients, DirectForm2Transposed, ToHertz, Type, Q_BUTTERWORTH_F32};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::NoiseSpec;

const RA: usize = 0;
const LA: usize = 1;
const LL: usize = 2;
const ELECTRODES: usize = 9;

/// Adds the enabled noise sources to the eight independent leads
/// (I, II, V1..V6), each `n` samples long.
pub(crate) fn add_to_leads<R: Rng + ?Sized>(
    rng: &mut R,
    spec: &NoiseSpec,
    fs_hz: f32,
    resp_hz: f32,
    leads: &mut [Vec<f32>; 8],
) {
    let n = leads[0].len();
    if !spec.any_electrode_noise() || n == 0 {
        return;
    }
    let mut e: Vec<Vec<f32>> = vec![vec![0.0; n]; ELECTRODES];
    let tau = std::f32::consts::TAU;

    if let Some(amp) = spec.baseline_wander_uv {
        // Breathing moves the electrodes and the heart; a slower drift comes
        // from the electrode-skin interface settling.
        let drift_hz = rng.random_range(0.03..0.08);
        for ch in e.iter_mut() {
            let a_resp = amp * rng.random_range(0.3..1.0);
            let a_drift = 0.5 * amp * rng.random_range(0.0..1.0);
            let (p1, p2) = (rng.random_range(0.0..tau), rng.random_range(0.0..tau));
            for (k, x) in ch.iter_mut().enumerate() {
                let t = k as f32 / fs_hz;
                *x += a_resp * (tau * resp_hz * t + p1).sin()
                    + a_drift * (tau * drift_hz * t + p2).sin();
            }
        }
    }

    if let Some(rms) = spec.muscle_uv {
        // Surface EMG: broadband 20-150 Hz, waxing and waning with tension.
        let hi_hz = (0.45 * fs_hz).min(150.0);
        let hp = Coefficients::<f32>::from_params(Type::HighPass, fs_hz.hz(), 20.hz(), Q_BUTTERWORTH_F32);
        let lp = Coefficients::<f32>::from_params(Type::LowPass, fs_hz.hz(), hi_hz.hz(), Q_BUTTERWORTH_F32);
        if let (Ok(hp), Ok(lp)) = (hp, lp) {
            let mut buf = vec![0.0f32; n];
            for (idx, ch) in e.iter_mut().enumerate() {
                // Limb electrodes sit on bigger, tenser muscles.
                let target = rms * if idx <= LL { rng.random_range(0.5..1.0) } else { rng.random_range(0.2..0.6) };
                let mut f1 = DirectForm2Transposed::<f32>::new(hp);
                let mut f2 = DirectForm2Transposed::<f32>::new(lp);
                let mut energy = 0.0f64;
                for b in buf.iter_mut() {
                    let w: f32 = StandardNormal.sample(rng);
                    *b = f2.run(f1.run(w));
                    energy += f64::from(*b) * f64::from(*b);
                }
                let actual = ((energy / n as f64).sqrt() as f32).max(1e-9);
                let env_hz = rng.random_range(0.2..1.0);
                let env_p = rng.random_range(0.0..tau);
                for (k, (x, b)) in ch.iter_mut().zip(&buf).enumerate() {
                    let env = 0.75 + 0.25 * (tau * env_hz * k as f32 / fs_hz + env_p).sin();
                    *x += b * target / actual * env;
                }
            }
        }
    }

    if let Some(amp) = spec.mains_uv {
        // Mostly common mode, rejected by the amplifier; what survives is the
        // imbalance between electrode impedances, so it differs per electrode.
        let f = spec.mains_hz;
        let third = 3.0 * f < 0.5 * fs_hz;
        for ch in e.iter_mut() {
            let a = amp * rng.random_range(0.2..1.0);
            let p = rng.random_range(-0.6..0.6);
            for (k, x) in ch.iter_mut().enumerate() {
                let ph = tau * f * k as f32 / fs_hz + p;
                *x += a * ph.sin();
                if third {
                    *x += 0.1 * a * (3.0 * ph).sin();
                }
            }
        }
    }

    if let Some(amp) = spec.electrode_motion_uv {
        // Electrode pops and tugs: a fast step that relaxes exponentially as
        // the half-cell potential recovers. At least one per visit, about one
        // every five seconds.
        let duration_s = n as f32 / fs_hz;
        let count = 1 + (duration_s / 5.0 * rng.random_range(0.5..1.5)) as usize;
        for _ in 0..count {
            let ch = rng.random_range(0..ELECTRODES);
            let at = rng.random_range(0..n);
            let a = amp * rng.random_range(0.5..1.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let rise_s = rng.random_range(0.01..0.04);
            let decay_s = rng.random_range(0.2..1.0);
            let wobble_hz = rng.random_range(1.0..3.0);
            for (k, x) in e[ch].iter_mut().enumerate().skip(at) {
                let t = (k - at) as f32 / fs_hz;
                if t > 6.0 * decay_s {
                    break;
                }
                let shape = (1.0 - (-t / rise_s).exp()) * (-t / decay_s).exp();
                *x += a * shape * (1.0 + 0.2 * (tau * wobble_hz * t).sin());
            }
        }
    }

    for k in 0..n {
        let wct = (e[RA][k] + e[LA][k] + e[LL][k]) / 3.0;
        leads[0][k] += e[LA][k] - e[RA][k];
        leads[1][k] += e[LL][k] - e[RA][k];
        for v in 0..6 {
            leads[2 + v][k] += e[3 + v][k] - wct;
        }
    }
}
