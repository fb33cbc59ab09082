//! Rendering one beat of the dipole into a 3-axis buffer, delineating it as
//! it is drawn (so the truth comes from the design, not from a detector), and
//! calibrating a visit's ST and voltage against the clinical thresholds on a
//! nominal beat.

use super::leads::{self, Lead, DOWER};
use super::morphology::{scale, Group, Morphology};

/// Spatial magnitude (uV) below which a wave counts as over: the eye of a
/// reader at usual gain does not see deflections much smaller than this.
const QRS_EDGE_UV: f32 = 20.0;
const T_EDGE_MIN_UV: f32 = 20.0;
/// Gaussians are evaluated over +-4 sigma only: beyond that they are below
/// 0.04 % of their peak, under one LSB for any realistic amplitude.
const SIGMA_SPAN: f32 = 4.0;

/// Beat-specific inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BeatParams {
    pub fid_s: f32,
    pub rr_s: f32,
    /// QRS amplitude factor (respiration).
    pub qrs_gain: f32,
    /// ST amplitude factor (beat-to-beat variation).
    pub st_gain: f32,
}

/// Delineation of one rendered beat, in buffer sample indices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BeatMarks {
    pub qrs_on: isize,
    pub qrs_off: isize,
    pub t_end: isize,
    /// Pacing stimulus onset, if paced.
    pub spike: Option<isize>,
}

/// A dipole buffer: three axes of samples, index 0 at `t0_s`.
pub(crate) struct Dipole {
    pub fs_hz: f32,
    pub t0_s: f32,
    pub axes: [Vec<f32>; 3],
    scratch: Vec<[f32; 3]>,
}

impl Dipole {
    pub fn new(fs_hz: f32, t0_s: f32, len: usize) -> Self {
        Self {
            fs_hz,
            t0_s,
            axes: [vec![0.0; len], vec![0.0; len], vec![0.0; len]],
            scratch: Vec::new(),
        }
    }

    fn len(&self) -> isize {
        self.axes[0].len() as isize
    }

    fn index_of(&self, t_s: f32) -> isize {
        ((t_s - self.t0_s) * self.fs_hz).round() as isize
    }

    fn time_of(&self, n: isize) -> f32 {
        self.t0_s + n as f32 / self.fs_hz
    }

    /// Draws one beat and returns its delineation.
    pub fn render(&mut self, m: &Morphology, p: &BeatParams) -> BeatMarks {
        // Fridericia: the QT interval scales with the cube root of RR.
        let qt = p.rr_s.cbrt().clamp(0.6, 1.3);
        let mut scratch = std::mem::take(&mut self.scratch);

        // P waves go straight into the buffer.
        for w in m.waves.iter().filter(|w| w.group == Group::P) {
            let c = p.fid_s + w.center_s;
            let (lo, hi) = self.span(c - SIGMA_SPAN * w.sigma_l_s, c + SIGMA_SPAN * w.sigma_r_s);
            for n in lo..hi {
                let g = self.gauss(n, c, w.sigma_l_s, w.sigma_r_s);
                for a in 0..3 {
                    self.axes[a][n as usize] += g * w.v_uv[a];
                }
            }
        }

        // QRS in a scratch window, so its extent can be read before it merges
        // with the ST segment.
        let qrs: Vec<_> = m.waves.iter().filter(|w| w.group == Group::Qrs).collect();
        let start = qrs
            .iter()
            .map(|w| w.center_s - SIGMA_SPAN * w.sigma_l_s)
            .fold(f32::INFINITY, f32::min);
        let end = qrs
            .iter()
            .map(|w| w.center_s + SIGMA_SPAN * w.sigma_r_s)
            .fold(f32::NEG_INFINITY, f32::max);
        let q_lo = self.index_of(p.fid_s + start);
        let q_hi = self.index_of(p.fid_s + end) + 1;
        scratch.clear();
        scratch.resize((q_hi - q_lo).max(0) as usize, [0.0; 3]);
        for w in &qrs {
            let c = p.fid_s + w.center_s;
            for (k, s) in scratch.iter_mut().enumerate() {
                let n = q_lo + k as isize;
                let dt = self.time_of(n) - c;
                let sigma = if dt < 0.0 { w.sigma_l_s } else { w.sigma_r_s };
                if dt.abs() > SIGMA_SPAN * sigma {
                    continue;
                }
                let g = p.qrs_gain * (-0.5 * (dt / sigma) * (dt / sigma)).exp();
                axpy(s, g, w.v_uv);
            }
        }
        let above = |s: &[f32; 3], thr: f32| s[0] * s[0] + s[1] * s[1] + s[2] * s[2] >= thr * thr;
        let first = scratch
            .iter()
            .position(|s| above(s, QRS_EDGE_UV))
            .unwrap_or(0);
        let last = scratch
            .iter()
            .rposition(|s| above(s, QRS_EDGE_UV))
            .unwrap_or(scratch.len().saturating_sub(1));
        let qrs_on = q_lo + first as isize;
        let qrs_off = q_lo + last as isize;
        self.add_scratch(&scratch, q_lo);

        // ST plateau and T wave, anchored on this beat's J point.
        let j_s = self.time_of(qrs_off);
        let st = scale(m.st_uv, p.st_gain);
        let ts: Vec<_> = m.waves.iter().filter(|w| w.group == Group::T).collect();
        let t_center = |c: f32| (p.fid_s + c * qt).max(j_s + 0.1);
        let (t_c, t_sr) = ts
            .first()
            .map(|w| (t_center(w.center_s), w.sigma_r_s * qt))
            .unwrap_or((j_s + 0.2, 0.04));
        let rise_start = j_s - m.st_rise_s;
        let plateau_end = j_s + m.st_plateau_s * qt;
        let st_end = (t_c + t_sr).max(plateau_end + 0.05);
        let t_lo = self.index_of(rise_start);
        let t_end_s = ts
            .iter()
            .map(|w| t_center(w.center_s) + SIGMA_SPAN * w.sigma_r_s * qt)
            .fold(st_end, f32::max);
        let t_hi = self.index_of(t_end_s) + 1;
        scratch.clear();
        scratch.resize((t_hi - t_lo).max(0) as usize, [0.0; 3]);
        for (k, s) in scratch.iter_mut().enumerate() {
            let t = self.time_of(t_lo + k as isize);
            let h = if t <= rise_start {
                0.0
            } else if t < j_s {
                0.5 - 0.5 * (std::f32::consts::PI * (t - rise_start) / m.st_rise_s).cos()
            } else if t <= plateau_end {
                1.0
            } else if t < st_end {
                0.5 + 0.5
                    * (std::f32::consts::PI * (t - plateau_end) / (st_end - plateau_end)).cos()
            } else {
                0.0
            };
            *s = scale(st, h);
            for w in &ts {
                let c = t_center(w.center_s);
                let dt = t - c;
                let sigma = qt * if dt < 0.0 { w.sigma_l_s } else { w.sigma_r_s };
                if dt.abs() > SIGMA_SPAN * sigma {
                    continue;
                }
                let g = (-0.5 * (dt / sigma) * (dt / sigma)).exp();
                axpy(s, g, w.v_uv);
            }
        }
        // T end: where the repolarisation loop shrinks to a few percent of
        // its peak, the limit a reader's tangent would reach.
        let peak = scratch
            .iter()
            .map(|s| (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt())
            .fold(0.0, f32::max);
        let thr = (0.06 * peak).max(T_EDGE_MIN_UV);
        let t_last = scratch.iter().rposition(|s| above(s, thr)).unwrap_or(0);
        let t_end = (t_lo + t_last as isize).max(qrs_off + 1);
        self.add_scratch(&scratch, t_lo);
        self.scratch = scratch;

        let spike = m
            .pacing
            .as_ref()
            .map(|pc| qrs_on - (pc.latency_s * self.fs_hz).round() as isize);
        BeatMarks {
            qrs_on: spike.unwrap_or(qrs_on),
            qrs_off,
            t_end,
            spike,
        }
    }

    fn span(&self, t_lo: f32, t_hi: f32) -> (isize, isize) {
        let lo = self.index_of(t_lo).clamp(0, self.len());
        let hi = (self.index_of(t_hi) + 1).clamp(0, self.len());
        (lo, hi)
    }

    fn gauss(&self, n: isize, c: f32, sl: f32, sr: f32) -> f32 {
        let dt = self.time_of(n) - c;
        let s = if dt < 0.0 { sl } else { sr };
        (-0.5 * (dt / s) * (dt / s)).exp()
    }

    fn add_scratch(&mut self, scratch: &[[f32; 3]], lo: isize) {
        for (k, s) in scratch.iter().enumerate() {
            let n = lo + k as isize;
            if n < 0 || n >= self.len() {
                continue;
            }
            for (axis, x) in self.axes.iter_mut().zip(s) {
                axis[n as usize] += x;
            }
        }
    }

    /// The 12 leads at one sample.
    pub fn leads_at(&self, n: usize) -> [f32; 12] {
        let d = [self.axes[0][n], self.axes[1][n], self.axes[2][n]];
        let mut ind = [0.0f32; 8];
        for (o, row) in ind.iter_mut().zip(DOWER.iter()) {
            *o = row[0] * d[0] + row[1] * d[1] + row[2] * d[2];
        }
        leads::derive12(ind)
    }
}

fn axpy(acc: &mut [f32; 3], g: f32, v: [f32; 3]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += g * x;
    }
}

/// PR-segment reference window before QRS onset, in seconds: late enough
/// that the P wave is over, early enough to miss the QRS.
pub(crate) const PR_REF_START_S: f32 = 0.020;
pub(crate) const PR_REF_END_S: f32 = 0.005;

/// ST deviation at J of a rendered beat, per lead: J minus the PR level.
pub(crate) fn st_at_j(d: &Dipole, marks: &BeatMarks) -> Option<[f32; 12]> {
    let a = marks.qrs_on - (PR_REF_START_S * d.fs_hz).round() as isize;
    let b = marks.qrs_on - (PR_REF_END_S * d.fs_hz).round() as isize;
    if a < 0 || marks.qrs_off >= d.len() {
        return None;
    }
    let mut base = [0.0f32; 12];
    for n in a..=b {
        let l = d.leads_at(n as usize);
        for (acc, v) in base.iter_mut().zip(l) {
            *acc += v;
        }
    }
    let count = (b - a + 1) as f32;
    let j = d.leads_at(marks.qrs_off as usize);
    let mut st = [0.0f32; 12];
    for k in 0..12 {
        st[k] = j[k] - base[k] / count;
    }
    Some(st)
}

/// A nominal beat (mean RR, no modulation) in its own buffer.
fn nominal(m: &Morphology, fs_hz: f32, rr_s: f32) -> (Dipole, BeatMarks) {
    let mut d = Dipole::new(fs_hz, -1.0, (2.5 * fs_hz) as usize);
    let marks = d.render(
        m,
        &BeatParams {
            fid_s: 0.0,
            rr_s,
            qrs_gain: 1.0,
            st_gain: 1.0,
        },
    );
    (d, marks)
}

/// Extremes of a lead within the QRS of a rendered beat.
fn qrs_extremes(d: &Dipole, marks: &BeatMarks, lead: Lead) -> (f32, f32) {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for n in marks.qrs_on.max(0)..=marks.qrs_off.min(d.len() - 1) {
        let v = d.leads_at(n as usize)[lead.index()];
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo, hi)
}

/// Scales the QRS so that Sokolow-Lyon (S in V1 + R in V5) equals the target.
pub(crate) fn set_sokolow_lyon(m: &mut Morphology, fs_hz: f32, rr_s: f32, target_uv: f32) {
    let (d, marks) = nominal(m, fs_hz, rr_s);
    let (v1_min, _) = qrs_extremes(&d, &marks, Lead::V1);
    let (_, v5_max) = qrs_extremes(&d, &marks, Lead::V5);
    let sl = (-v1_min).max(0.0) + v5_max.max(0.0);
    if sl > 1.0 {
        let k = target_uv / sl;
        for w in m.waves.iter_mut().filter(|w| w.group == Group::Qrs) {
            w.v_uv = scale(w.v_uv, k);
        }
    }
}

/// The lead whose QRS has the largest absolute excursion, where R peaks are
/// read.
pub(crate) fn dominant_lead(m: &Morphology, fs_hz: f32, rr_s: f32) -> Lead {
    let (d, marks) = nominal(m, fs_hz, rr_s);
    let mut best = (Lead::II, 0.0f32);
    for lead in Lead::ALL {
        let (lo, hi) = qrs_extremes(&d, &marks, lead);
        let amp = lo.abs().max(hi.abs());
        if amp > best.1 {
            best = (lead, amp);
        }
    }
    best.0
}

/// Sizes the ST vector. A STEMI is made to exceed the strictest threshold by
/// `ratio` in every lead it is designed around; anything else is made to peak
/// at `ratio` of the most lenient threshold in its most elevated lead (so
/// mimics come close to, but never reach, the criteria).
pub(crate) fn calibrate_st(
    m: &mut Morphology,
    fs_hz: f32,
    rr_s: f32,
    designed: Option<&[Lead]>,
    ratio: f32,
) {
    let st_design = m.st_uv;
    m.st_uv = [0.0; 3];
    let (d, marks) = nominal(m, fs_hz, rr_s);
    let other = st_at_j(&d, &marks).unwrap_or([0.0; 12]);
    let proj = |l: Lead| leads::project(l, st_design);
    let k = match designed {
        Some(leads_for) => leads_for
            .iter()
            .map(|&l| {
                let p = proj(l).max(1e-3);
                (ratio * leads::strictest_threshold_uv(l) - other[l.index()]) / p
            })
            .fold(0.0f32, f32::max),
        None => {
            // Largest k such that every lead stays at or below the target.
            let limit = Lead::ALL
                .iter()
                .filter(|&&l| l != Lead::AVR)
                .filter(|&&l| proj(l) > 0.0)
                .map(|&l| {
                    (ratio * leads::most_lenient_threshold_uv(l) - other[l.index()]) / proj(l)
                })
                .fold(f32::INFINITY, f32::min);
            limit.clamp(0.0, 2.0)
        }
    };
    m.st_uv = scale(st_design, k);
}
