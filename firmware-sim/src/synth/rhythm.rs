//! Beat timing: a sinus tachogram with respiratory sinus arrhythmia and a
//! Mayer-wave (LF, ~0.1 Hz) component, or the fixed interval of a pacemaker.

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Parameters of one visit's heart-rate variability.
#[derive(Debug, Clone)]
pub(crate) struct Rhythm {
    pub mean_rr_s: f32,
    /// Respiration frequency; also drives baseline wander and the QRS
    /// amplitude modulation, as in a real breathing patient.
    pub resp_hz: f32,
    pub resp_phase: f32,
    /// RSA depth as a fraction of the mean RR.
    pub rsa_frac: f32,
    pub lf_hz: f32,
    pub lf_phase: f32,
    pub lf_frac: f32,
    /// Beat-to-beat white jitter as a fraction of the mean RR.
    pub jitter_frac: f32,
}

impl Rhythm {
    /// A sinus rhythm whose HRV shrinks with age, as it does in people.
    pub fn sinus<R: Rng + ?Sized>(rng: &mut R, mean_hr_bpm: f32, age_years: u8) -> Self {
        let youth = (1.0 - (f32::from(age_years) - 20.0) / 70.0).clamp(0.2, 1.0);
        Self {
            mean_rr_s: 60.0 / mean_hr_bpm,
            resp_hz: rng.random_range(0.2..0.3),
            resp_phase: rng.random_range(0.0..std::f32::consts::TAU),
            rsa_frac: youth * rng.random_range(0.02..0.05),
            lf_hz: rng.random_range(0.08..0.12),
            lf_phase: rng.random_range(0.0..std::f32::consts::TAU),
            lf_frac: youth * rng.random_range(0.01..0.03),
            jitter_frac: rng.random_range(0.004..0.01),
        }
    }

    /// A ventricular pacemaker at a fixed rate: no variability.
    pub fn paced<R: Rng + ?Sized>(rng: &mut R, rate_bpm: f32) -> Self {
        Self {
            mean_rr_s: 60.0 / rate_bpm,
            resp_hz: rng.random_range(0.2..0.3),
            resp_phase: rng.random_range(0.0..std::f32::consts::TAU),
            rsa_frac: 0.0,
            lf_hz: 0.1,
            lf_phase: 0.0,
            lf_frac: 0.0,
            jitter_frac: 0.0,
        }
    }

    /// Respiratory phase (radians) at time `t_s`.
    pub fn resp_angle(&self, t_s: f32) -> f32 {
        std::f32::consts::TAU * self.resp_hz * t_s + self.resp_phase
    }

    /// Fiducial (R) times in seconds covering `[start_s, end_s]`, with the RR
    /// interval that precedes each beat.
    pub fn beat_times<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        start_s: f32,
        end_s: f32,
    ) -> Vec<(f32, f32)> {
        // Sigma is a fraction of a positive RR, so Normal::new cannot fail;
        // zero jitter (pacing) simply skips the draw.
        let jitter = Normal::new(0.0f32, self.jitter_frac.max(1e-9) * self.mean_rr_s).ok();
        let mut beats = Vec::new();
        let mut t = start_s;
        let mut rr = self.mean_rr_s;
        while t <= end_s {
            beats.push((t, rr));
            // Inspiration (rising phase) shortens the interval.
            let modulation = 1.0
                - self.rsa_frac * self.resp_angle(t).sin()
                - self.lf_frac * (std::f32::consts::TAU * self.lf_hz * t + self.lf_phase).sin();
            let noise = match (&jitter, self.jitter_frac > 0.0) {
                (Some(n), true) => n.sample(rng),
                _ => 0.0,
            };
            rr = (self.mean_rr_s * modulation + noise).max(0.3);
            t += rr;
        }
        beats
    }
}
