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
        let mut resp = Oscillator::new(resp_hz, fs_hz);
        let mut drift = Oscillator::new(drift_hz, fs_hz);
        let mix: Vec<[f32; 4]> = (0..ELECTRODES)
            .map(|_| {
                let a_resp = amp * rng.random_range(0.3..1.0);
                let a_drift = 0.5 * amp * rng.random_range(0.0..1.0);
                let (p1, p2) = (rng.random_range(0.0..tau), rng.random_range(0.0..tau));
                // a sin(wt + p) = a cos(p) sin(wt) + a sin(p) cos(wt)
                [
                    a_resp * p1.cos(),
                    a_resp * p1.sin(),
                    a_drift * p2.cos(),
                    a_drift * p2.sin(),
                ]
            })
            .collect();
        let resp: Vec<(f32, f32)> = (0..n).map(|_| resp.next()).collect();
        let drift: Vec<(f32, f32)> = (0..n).map(|_| drift.next()).collect();
        for (ch, m) in e.iter_mut().zip(&mix) {
            for ((x, &(rs, rc)), &(ds, dc)) in ch.iter_mut().zip(&resp).zip(&drift) {
                *x += m[0] * rs + m[1] * rc + m[2] * ds + m[3] * dc;
            }
        }
    }

    if let Some(rms) = spec.muscle_uv {
        // Surface EMG: broadband 20-150 Hz, waxing and waning with tension.
        let hi_hz = (0.45 * fs_hz).min(150.0);
        let hp = Coefficients::<f32>::from_params(
            Type::HighPass,
            fs_hz.hz(),
            20.hz(),
            Q_BUTTERWORTH_F32,
        );
        let lp = Coefficients::<f32>::from_params(
            Type::LowPass,
            fs_hz.hz(),
            hi_hz.hz(),
            Q_BUTTERWORTH_F32,
        );
        if let (Ok(hp), Ok(lp)) = (hp, lp) {
            let mut buf = vec![0.0f32; n];
            for (idx, ch) in e.iter_mut().enumerate() {
                // Limb electrodes sit on bigger, tenser muscles.
                let target = rms
                    * if idx <= LL {
                        rng.random_range(0.5..1.0)
                    } else {
                        rng.random_range(0.2..0.6)
                    };
                let mut f1 = DirectForm2Transposed::<f32>::new(hp);
                let mut f2 = DirectForm2Transposed::<f32>::new(lp);
                let mut energy = 0.0f64;
                for b in buf.iter_mut() {
                    let w: f32 = StandardNormal.sample(rng);
                    *b = f2.run(f1.run(w));
                    energy += f64::from(*b) * f64::from(*b);
                }
                let actual = ((energy / n as f64).sqrt() as f32).max(1e-9);
                let mut envelope = Oscillator::new(rng.random_range(0.2..1.0), fs_hz);
                for (x, b) in ch.iter_mut().zip(&buf) {
                    let env = 0.75 + 0.25 * envelope.next().0;
                    *x += b * target / actual * env;
                }
            }
        }
    }

    if let Some(amp) = spec.mains_uv {
        // Mostly common mode, rejected by the amplifier; what survives is the
        // imbalance between electrode impedances, so it differs per electrode.
        let third = 3.0 * spec.mains_hz < 0.5 * fs_hz;
        let mut osc = Oscillator::new(spec.mains_hz, fs_hz);
        let mix: Vec<(f32, f32, f32)> = (0..ELECTRODES)
            .map(|_| {
                let a = amp * rng.random_range(0.2..1.0);
                let p: f32 = rng.random_range(-0.6..0.6);
                (a, p.cos(), p.sin())
            })
            .collect();
        for k in 0..n {
            let (s1, c1) = osc.next();
            for (ch, &(a, cp, sp)) in e.iter_mut().zip(&mix) {
                let x = s1 * cp + c1 * sp; // sin(wt + p)
                let h3 = if third {
                    3.0 * x - 4.0 * x * x * x
                } else {
                    0.0
                };
                ch[k] += a * (x + 0.1 * h3);
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
            let a =
                amp * rng.random_range(0.5..1.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
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

    let wct: Vec<f32> = (0..n)
        .map(|k| (e[RA][k] + e[LA][k] + e[LL][k]) / 3.0)
        .collect();
    let (limbs, chest) = leads.split_at_mut(2);
    for ((x, la), ra) in limbs[0].iter_mut().zip(&e[LA]).zip(&e[RA]) {
        *x += la - ra;
    }
    for ((x, ll), ra) in limbs[1].iter_mut().zip(&e[LL]).zip(&e[RA]) {
        *x += ll - ra;
    }
    for (lead, electrode) in chest.iter_mut().zip(&e[3..]) {
        for ((x, v), w) in lead.iter_mut().zip(electrode).zip(&wct) {
            *x += v - w;
        }
    }
}

/// A sine/cosine pair advanced by rotation: one complex multiply per sample
/// instead of a sin() call, the bulk of the cost of periodic noise. f64 keeps
/// the drift of the recursion far below an LSB over an hour.
struct Oscillator {
    s: f64,
    c: f64,
    ds: f64,
    dc: f64,
}

impl Oscillator {
    fn new(freq_hz: f32, fs_hz: f32) -> Self {
        let w = std::f64::consts::TAU * f64::from(freq_hz) / f64::from(fs_hz);
        Self {
            s: 0.0,
            c: 1.0,
            ds: w.sin(),
            dc: w.cos(),
        }
    }

    /// (sin, cos) at the current sample, then advance.
    fn next(&mut self) -> (f32, f32) {
        let out = (self.s as f32, self.c as f32);
        let s = self.s * self.dc + self.c * self.ds;
        self.c = self.c * self.dc - self.s * self.ds;
        self.s = s;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Oscillator;

    #[test]
    fn oscillator_tracks_sin_over_an_hour() {
        let mut o = Oscillator::new(50.0, 500.0);
        let n = 3600 * 500;
        let mut worst = 0.0f64;
        for k in 0..n {
            let (s, c) = o.next();
            let ph = std::f64::consts::TAU * 50.0 * k as f64 / 500.0;
            worst = worst
                .max((f64::from(s) - ph.sin()).abs())
                .max((f64::from(c) - ph.cos()).abs());
        }
        assert!(worst < 1e-5, "drift {worst}");
    }
}
