//! Per-lead amplitudes on the representative beat, relative to the PR isoelectric level.

use ndarray::ArrayView1;
use serde::Serialize;

use crate::beat::samples;
use crate::delineation::Fiducials;

/// Amplitudes of one lead's representative beat, in microvolts, relative to the PR segment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LeadMeasurement {
    /// ST deviation at the J point (positive = elevation).
    pub st_j_uv: f32,
    /// ST deviation 60 ms after the J point.
    pub st_j60_uv: f32,
    /// Largest positive QRS deflection (R wave), >= 0.
    pub r_uv: f32,
    /// Depth of the largest negative QRS deflection (Q or S), >= 0.
    pub s_uv: f32,
    /// Depth of the initial negative deflection (Q wave), 0 when the QRS starts upward.
    pub q_uv: f32,
    /// Duration of that initial negative deflection.
    pub q_ms: f32,
    /// Terminal QRS force: the largest deviation from the J-point level over the last 50 ms
    /// of the QRS (the final 8 ms excluded), signed. Positive for the R' of RBBB in V1,
    /// negative for its slurred S in I and V6, measured from J so that ST shifts do not
    /// masquerade as terminal forces.
    pub terminal_uv: f32,
    /// T-wave amplitude (signed, largest deviation between J+80 ms and T end).
    pub t_uv: f32,
}

impl LeadMeasurement {
    /// Peak-to-peak QRS amplitude.
    pub fn qrs_pp_uv(&self) -> f32 {
        self.r_uv + self.s_uv
    }

    /// Whether the QRS is predominantly positive (for Sgarbossa concordance).
    pub fn qrs_positive(&self) -> bool {
        self.r_uv >= self.s_uv
    }
}

/// Mean of `x[a..b]` (the sample at `a` when the span is empty).
fn level(x: ArrayView1<f32>, a: usize, b: usize) -> f32 {
    let b = b.min(x.len());
    if b <= a {
        return x[a.min(x.len() - 1)];
    }
    x.slice(ndarray::s![a..b]).sum() / (b - a) as f32
}

/// The level at sample `t` relative to the PR segment `pr`, in uV: averaged over the 8 ms
/// from the point onwards, so that the end of the QRS never leaks into a J-point level.
pub(crate) fn st_level_uv(x: ArrayView1<f32>, pr: (usize, usize), t: usize, fs_hz: f64) -> f32 {
    let t = t.min(x.len() - 1);
    let half = samples(fs_hz, 0.004);
    (level(x, t, t + 2 * half + 1) - level(x, pr.0, pr.1)) * 1000.0
}

/// Measures one baseline-corrected lead (isoelectric level already at zero is not assumed:
/// the PR level is subtracted here).
pub(crate) fn measure_lead(x: ArrayView1<f32>, f: &Fiducials, fs_hz: f64) -> LeadMeasurement {
    let len = x.len();
    let base = level(x, f.pr.0, f.pr.1);
    let at = |t: usize| st_level_uv(x, f.pr, t, fs_hz);
    let st_j_uv = at(f.j);
    let st_j60_uv = at(f.j + samples(fs_hz, 0.06));
    let on = f.qrs_on;
    let off = f.qrs_off.max(on + 1).min(len - 1);
    let mut r_uv = 0f32;
    let mut s_uv = 0f32;
    for t in on..=off {
        let v = (x[t] - base) * 1000.0;
        r_uv = r_uv.max(v);
        s_uv = s_uv.max(-v);
    }
    // Initial negative deflection: from the onset, until the signal crosses back above zero.
    // A deflection smaller than 50 uV is noise, not a Q wave.
    let mut q_uv = 0f32;
    let mut q_end = on;
    let mut t = on;
    while t <= off {
        let v = (x[t] - base) * 1000.0;
        if v > 50.0 {
            break;
        }
        q_uv = q_uv.max(-v);
        if v < 0.0 {
            q_end = t;
        }
        t += 1;
    }
    let (q_uv, q_ms) = if q_uv >= 50.0 {
        (q_uv, ((q_end - on) as f64 / fs_hz * 1000.0) as f32)
    } else {
        (0.0, 0.0)
    };
    let j_level = (x[off] - base) * 1000.0;
    let mut terminal_uv = 0f32;
    for t in
        off.saturating_sub(samples(fs_hz, 0.05)).max(on)..off.saturating_sub(samples(fs_hz, 0.008))
    {
        let d = (x[t] - base) * 1000.0 - j_level;
        if d.abs() > terminal_uv.abs() {
            terminal_uv = d;
        }
    }
    let t_from = (f.j + samples(fs_hz, 0.08)).min(len - 1);
    let t_to = f
        .t_end
        .unwrap_or(f.j + samples(fs_hz, 0.35))
        .clamp(t_from + 1, len);
    let mut t_uv = 0f32;
    for t in t_from..t_to {
        let v = (x[t] - base) * 1000.0;
        if v.abs() > t_uv.abs() {
            t_uv = v;
        }
    }
    LeadMeasurement {
        st_j_uv,
        st_j60_uv,
        r_uv,
        s_uv,
        q_uv,
        q_ms,
        terminal_uv,
        t_uv,
    }
}

/// Terminal QRS distortion (Lee, Walsh, Smith, Am J Emerg Med 2016;34:2182-5): neither an
/// S wave nor a J wave at the end of the QRS, because the injury current lifts the terminal
/// QRS into the ST segment. Read on one lead: from the R peak to the J point the signal
/// never goes below the PR level (no S) and falls without a rebound (no J-wave notch;
/// rebounds under 20 uV are noise).
pub(crate) fn terminal_qrs_distortion(x: ArrayView1<f32>, f: &Fiducials) -> bool {
    let len = x.len();
    let on = f.qrs_on.min(len - 1);
    let off = f.qrs_off.clamp(on, len - 1);
    let base = level(x, f.pr.0, f.pr.1);
    let r = (on..=off)
        .max_by(|&a, &b| x[a].total_cmp(&x[b]))
        .unwrap_or(on);
    // A real R wave with a downstroke: when the QRS's highest point is its end (the J point
    // of an rS or QS complex lifted by the ST), the deflection before it was the S.
    if (x[r] - base) * 1000.0 <= 50.0 || (x[r] - x[off]) * 1000.0 < 100.0 {
        return false;
    }
    let mut low = f32::MAX;
    for t in r..=off {
        let v = (x[t] - base) * 1000.0;
        if v < 0.0 || v - low > 20.0 {
            return false;
        }
        low = low.min(v);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;

    #[test]
    fn st_deviation_is_relative_to_pr_level() {
        let fs = 500.0;
        // Baseline 0.2 mV, QRS 100..150 going to 1.2 mV, ST at 0.35 mV (150 uV elevation).
        let x: Array1<f32> = (0..400)
            .map(|t| match t {
                0..=99 => 0.2,
                100..=124 => 0.2 + (t - 100) as f32 * 0.04,
                125..=149 => 1.2 - (t - 125) as f32 * 0.034,
                _ => 0.35,
            })
            .collect();
        let f = Fiducials {
            qrs_on: 100,
            qrs_off: 150,
            j: 150,
            t_end: Some(300),
            pr: (80, 95),
        };
        let m = measure_lead(x.view(), &f, fs);
        assert!((m.st_j_uv - 150.0).abs() < 20.0, "{}", m.st_j_uv);
        assert!((m.st_j60_uv - 150.0).abs() < 1.0);
        assert!((m.r_uv - 1000.0).abs() < 1.0);
        assert_eq!(m.q_uv, 0.0);
    }

    fn beat(terminal: impl Fn(usize) -> f32) -> (Array1<f32>, Fiducials) {
        // PR level 0; QRS 100..150 with R at 120 (1 mV); then `terminal` until J at 150; ST
        // held at 0.2 mV.
        let x: Array1<f32> = (0..400)
            .map(|t| match t {
                0..=99 => 0.0,
                100..=119 => (t - 100) as f32 * 0.05,
                120..=149 => terminal(t),
                _ => 0.2,
            })
            .collect();
        let f = Fiducials {
            qrs_on: 100,
            qrs_off: 150,
            j: 150,
            t_end: Some(300),
            pr: (80, 95),
        };
        (x, f)
    }

    #[test]
    fn terminal_qrs_distortion_needs_neither_s_nor_j_wave() {
        // R falls straight into an elevated ST: distorted.
        let (x, f) = beat(|t| 1.0 - (t - 120) as f32 * 0.8 / 30.0);
        assert!(terminal_qrs_distortion(x.view(), &f));
        // An S wave dipping to -0.3 mV before the ST: not distorted.
        let (x, f) = beat(|t| {
            if t < 135 {
                1.0 - (t - 120) as f32 * 1.3 / 15.0
            } else {
                -0.3 + (t - 135) as f32 * 0.5 / 15.0
            }
        });
        assert!(!terminal_qrs_distortion(x.view(), &f));
        // A J-wave notch (0.1 mV rebound) at the end of the QRS: not distorted.
        let (x, f) = beat(|t| {
            if t < 140 {
                1.0 - (t - 120) as f32 * 0.9 / 20.0
            } else if t < 145 {
                0.1 + (t - 140) as f32 * 0.02
            } else {
                0.2
            }
        });
        assert!(!terminal_qrs_distortion(x.view(), &f));
        // An rS complex whose deep S returns into a high ST: the J point is the QRS's
        // highest point, and the deflection before it an S wave.
        let (_, f) = beat(|_| 0.0);
        let x: Array1<f32> = (0..400)
            .map(|t| match t {
                0..=99 => 0.0,
                100..=109 => (t - 100) as f32 * 0.01,
                110..=129 => 0.1 - (t - 110) as f32 * 0.1,
                130..=150 => -1.9 + (t - 130) as f32 * 0.12,
                _ => 0.4,
            })
            .collect();
        assert!(!terminal_qrs_distortion(x.view(), &f));
    }
}
