//! Synthetic 12-lead ECGs with known ST deviation, for behaviour tests (accuracy is
//! measured on real records in tests/evaluation.rs).

/// Lead labels in the order the generator returns them.
pub(crate) const LABELS: [&str; 12] = [
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
];

pub(crate) struct Synthetic {
    pub fs_hz: f64,
    pub leads: Vec<Vec<f32>>,
    pub r_peaks: Vec<usize>,
}

/// Deterministic pseudo-random numbers (xorshift) so tests never flake.
pub(crate) struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed.max(1))
    }
    /// Approximately standard normal (sum of uniforms).
    pub fn gauss(&mut self) -> f64 {
        let mut s = 0.0;
        for _ in 0..12 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s += (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        }
        s - 6.0
    }
}

fn gauss(t: f64, centre: f64, sigma: f64) -> f64 {
    (-0.5 * ((t - centre) / sigma).powi(2)).exp()
}

/// Smooth ST plateau: 0 before the QRS end, full between 40 ms and 300 ms after R, back to
/// 0 by 420 ms (raised-cosine ramps, the rising one hidden inside the QRS).
fn st_shape(dt: f64) -> f64 {
    let ramp = |x: f64| 0.5 - 0.5 * (std::f64::consts::PI * x.clamp(0.0, 1.0)).cos();
    if dt < 0.02 {
        0.0
    } else if dt < 0.04 {
        ramp((dt - 0.02) / 0.02)
    } else if dt < 0.30 {
        1.0
    } else {
        1.0 - ramp((dt - 0.30) / 0.12)
    }
}

/// One lead's beat: amplitudes in mV of R and S (S 16 ms after R), T, plus an ST offset.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub r_mv: f64,
    pub s_mv: f64,
    pub t_mv: f64,
    pub st_mv: f64,
}

fn lead_signal(shape: Shape, n: usize, fs: f64, r_peaks: &[usize]) -> Vec<f64> {
    let mut x = vec![0.0; n];
    for &r in r_peaks {
        let rt = r as f64 / fs;
        let from = r.saturating_sub((0.4 * fs) as usize);
        let to = (r + (0.7 * fs) as usize).min(n);
        for (i, v) in x.iter_mut().enumerate().take(to).skip(from) {
            let t = i as f64 / fs;
            let dt = t - rt;
            *v += 0.12 * gauss(dt, -0.16, 0.02) + shape.r_mv * gauss(dt, 0.0, 0.009)
                - shape.s_mv * gauss(dt, 0.016, 0.008)
                + shape.t_mv * gauss(dt, 0.30, 0.05)
                + shape.st_mv * st_shape(dt);
        }
    }
    x
}

/// A 10 s recording at 500 Hz, 75 bpm. `limb` gives leads I and II (the other limb leads
/// follow Einthoven and Goldberger), `chest` V1-V6. `noise_uv` adds white noise of that
/// RMS, 0.3 Hz baseline wander of 10x and 50 Hz mains of 1x that amplitude.
pub(crate) fn ecg(limb: [Shape; 2], chest: [Shape; 6], noise_uv: f64, seed: u64) -> Synthetic {
    let fs = 500.0;
    let n = 5000;
    let r_peaks: Vec<usize> = (0..12).map(|k| 300 + k * 400).collect();
    let i = lead_signal(limb[0], n, fs, &r_peaks);
    let ii = lead_signal(limb[1], n, fs, &r_peaks);
    let mut leads: Vec<Vec<f64>> = vec![
        i.clone(),
        ii.clone(),
        ii.iter().zip(&i).map(|(b, a)| b - a).collect(),
        i.iter().zip(&ii).map(|(a, b)| -(a + b) / 2.0).collect(),
        i.iter().zip(&ii).map(|(a, b)| a - b / 2.0).collect(),
        ii.iter().zip(&i).map(|(b, a)| b - a / 2.0).collect(),
    ];
    for s in chest {
        leads.push(lead_signal(s, n, fs, &r_peaks));
    }
    let mut rng = Noise::new(seed);
    let noise_mv = noise_uv / 1000.0;
    let out = leads
        .into_iter()
        .enumerate()
        .map(|(li, x)| {
            let phase = li as f64;
            x.into_iter()
                .enumerate()
                .map(|(k, v)| {
                    let t = k as f64 / fs;
                    let wander =
                        10.0 * noise_mv * (2.0 * std::f64::consts::PI * 0.3 * t + phase).sin();
                    let mains = noise_mv * (2.0 * std::f64::consts::PI * 50.0 * t + phase).sin();
                    (v + wander + mains + noise_mv * rng.gauss()) as f32
                })
                .collect()
        })
        .collect();
    Synthetic {
        fs_hz: fs,
        leads: out,
        r_peaks,
    }
}

pub(crate) fn normal_shape(r_mv: f64, s_mv: f64, st_mv: f64) -> Shape {
    Shape {
        r_mv,
        s_mv,
        t_mv: 0.25,
        st_mv,
    }
}
