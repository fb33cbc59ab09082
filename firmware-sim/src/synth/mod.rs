//! Synthetic 12-lead ECGs with ground truth, for behaviour tests, load runs
//! and demos. Pure: no I/O, and every visit is a function of its
//! [`VisitSpec`] and a seed.
//!
//! How a visit is made:
//! - `rhythm`: beat times (sinus with respiratory and LF variability, or a
//!   pacemaker's fixed interval);
//! - `morphology`: the heart as a dipole, a sum of Gaussian waves each with a
//!   3D vector, per condition, rotated and sized per patient;
//! - `beat`: each beat drawn into a 3-axis buffer and delineated as drawn;
//!   ST and voltage calibrated against the clinical thresholds;
//! - `leads`: Dower projection onto I, II, V1..V6, and the derived limb leads
//!   (so Einthoven's law holds by construction);
//! - `noise`: interference added at the electrodes.
//!
//! Samples are int16 at [`UV_PER_LSB`] = 1 uV per LSB, the resolution of
//! research 12-lead databases such as LUDB (1000 adu/mV): fine enough for
//! 0.1 mm ST decisions, with +-32.7 mV of range, far beyond any surface ECG.

mod beat;
mod leads;
mod morphology;
mod noise;
mod rhythm;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

pub use leads::{
    st_elevation_criteria_met, st_elevation_threshold_uv, Lead, CONTIGUOUS_PAIRS, LEAD_NAMES,
};

use beat::{BeatParams, Dipole};

/// Microvolts per LSB of the generated samples.
pub const UV_PER_LSB: f32 = 1.0;

const MAX_WANDER_UV: f32 = 3000.0;
const MAX_MUSCLE_RMS_UV: f32 = 300.0;
const MAX_MAINS_UV: f32 = 1000.0;
const MAX_MOTION_UV: f32 = 5000.0;

/// Patient sex, which sets the V2-V3 ST thresholds and some morphology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
}

/// Myocardial territory, as used for STEMI localisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Territory {
    /// V1-V4 (left anterior descending artery).
    Anterior,
    /// II, III, aVF (right coronary or dominant circumflex).
    Inferior,
    /// I, aVL, V5-V6 (circumflex or diagonal).
    Lateral,
}

impl Territory {
    /// The leads that face this territory.
    pub fn leads(self) -> &'static [Lead] {
        use Lead::*;
        match self {
            Territory::Anterior => &[V1, V2, V3, V4],
            Territory::Inferior => &[II, III, AVF],
            Territory::Lateral => &[I, AVL, V5, V6],
        }
    }
}

/// Where an acute occlusion injures the heart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StemiLocation {
    Anterior,
    Inferior,
    Lateral,
    Inferolateral,
    Anterolateral,
}

impl StemiLocation {
    /// Territories with ST elevation meeting the criteria.
    pub fn territories(self) -> &'static [Territory] {
        match self {
            StemiLocation::Anterior => &[Territory::Anterior],
            StemiLocation::Inferior => &[Territory::Inferior],
            StemiLocation::Lateral => &[Territory::Lateral],
            StemiLocation::Inferolateral => &[Territory::Inferior, Territory::Lateral],
            StemiLocation::Anterolateral => &[Territory::Anterior, Territory::Lateral],
        }
    }
}

/// The one condition a visit's ECG shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    Normal,
    /// Acute ST-elevation MI: ST elevation at J meeting the 4th-UDMI
    /// thresholds in contiguous leads of the territory, reciprocal depression
    /// opposite, hyperacute T.
    Stemi(StemiLocation),
    /// Left bundle branch block: QRS >= 120 ms, QS in V1, broad notched R in
    /// I/V5-V6, discordant ST-T.
    Lbbb,
    /// Right bundle branch block: rSR' in V1, wide S in I and V6.
    Rbbb,
    /// Left ventricular hypertrophy: Sokolow-Lyon >= 3.5 mV with strain.
    Lvh,
    /// Benign early repolarisation: J notch, concave ST elevation below the
    /// STEMI thresholds.
    EarlyRepolarisation,
    /// Ventricular (VVI) pacing: stimulus artefact before a wide QRS.
    Paced,
}

impl Condition {
    /// Whether the chest-pain centre should be alerted.
    pub fn is_stemi(self) -> bool {
        matches!(self, Condition::Stemi(_))
    }

    /// STEMI territories; empty for anything else.
    pub fn territories(self) -> &'static [Territory] {
        match self {
            Condition::Stemi(loc) => loc.territories(),
            _ => &[],
        }
    }
}

/// What a disconnected lead shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadOffLevel {
    /// Flat at zero (front ends that blank a lead-off channel).
    Zero,
    /// Stuck at the positive full scale (the clipping limit if clipping is
    /// on, else `i16::MAX`).
    Rail,
}

/// One lead losing contact during the visit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeadOff {
    pub lead: Lead,
    pub level: LeadOffLevel,
    /// From when on the lead is off (0 = the whole visit).
    pub from_s: f32,
}

/// Interference; each source is off when `None`. Amplitudes are per
/// electrode (a limb lead, the difference of two electrodes, sees up to
/// twice as much).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSpec {
    /// Peak amplitude of respiratory baseline wander, <= 3000 uV.
    pub baseline_wander_uv: Option<f32>,
    /// RMS of muscle (EMG) noise, band-limited to 20-150 Hz, <= 300 uV.
    pub muscle_uv: Option<f32>,
    /// Peak amplitude of mains interference, <= 1000 uV.
    pub mains_uv: Option<f32>,
    /// Mains frequency (50 Hz in China and Europe, 60 Hz in the Americas).
    pub mains_hz: f32,
    /// Peak amplitude of electrode-motion artefacts, <= 5000 uV.
    pub electrode_motion_uv: Option<f32>,
    pub lead_off: Option<LeadOff>,
    /// ADC saturation: every lead clipped at +-this many uV (500..=32767).
    pub clipping_uv: Option<f32>,
}

impl Default for NoiseSpec {
    /// No noise at all.
    fn default() -> Self {
        Self {
            baseline_wander_uv: None,
            muscle_uv: None,
            mains_uv: None,
            mains_hz: 50.0,
            electrode_motion_uv: None,
            lead_off: None,
            clipping_uv: None,
        }
    }
}

impl NoiseSpec {
    fn any_electrode_noise(&self) -> bool {
        self.baseline_wander_uv.is_some()
            || self.muscle_uv.is_some()
            || self.mains_uv.is_some()
            || self.electrode_motion_uv.is_some()
    }

    /// A plausible clinic recording: wander usually, sometimes tremor or
    /// mains, rarely a loose electrode, a lead off or saturation.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut pick =
            |p: f64, lo: f32, hi: f32| rng.random_bool(p).then(|| rng.random_range(lo..hi));
        let baseline_wander_uv = pick(0.7, 50.0, 400.0);
        let muscle_uv = pick(0.35, 5.0, 40.0);
        let mains_uv = pick(0.2, 5.0, 60.0);
        let electrode_motion_uv = pick(0.08, 200.0, 2000.0);
        let lead_off = rng.random_bool(0.02).then(|| LeadOff {
            lead: Lead::ALL[rng.random_range(0..12)],
            level: if rng.random_bool(0.5) {
                LeadOffLevel::Zero
            } else {
                LeadOffLevel::Rail
            },
            from_s: rng.random_range(0.0..5.0),
        });
        let clipping_uv = rng
            .random_bool(0.02)
            .then(|| rng.random_range(1500.0..5000.0));
        Self {
            baseline_wander_uv,
            muscle_uv,
            mains_uv,
            mains_hz: 50.0,
            electrode_motion_uv,
            lead_off,
            clipping_uv,
        }
    }
}

/// Everything that defines one visit's recording, apart from the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitSpec {
    /// Sampling rate; 200..=2000 Hz (250, 360, 500 and 1000 are typical).
    pub fs_hz: u32,
    pub duration_s: f32,
    pub condition: Condition,
    pub noise: NoiseSpec,
    /// The visit's mean heart rate is drawn uniformly from this range
    /// (30..=200 bpm). A paced visit runs at 60 or 70 bpm when the range
    /// allows, else at the range's midpoint.
    pub hr_min_bpm: f32,
    pub hr_max_bpm: f32,
    pub sex: Sex,
    pub age_years: u8,
}

impl Default for VisitSpec {
    fn default() -> Self {
        Self {
            fs_hz: 500,
            duration_s: 10.0,
            condition: Condition::Normal,
            noise: NoiseSpec::default(),
            hr_min_bpm: 60.0,
            hr_max_bpm: 80.0,
            sex: Sex::Male,
            age_years: 55,
        }
    }
}

impl VisitSpec {
    /// A visit from a realistic chest-pain-network case mix: STEMI with
    /// probability `stemi_fraction` (clamped to 0..=1; NaN counts as 0),
    /// otherwise mostly normal with the usual mimics. 500 Hz, 10 s.
    pub fn random<R: Rng + ?Sized>(rng: &mut R, stemi_fraction: f64) -> Self {
        let f = if stemi_fraction.is_nan() {
            0.0
        } else {
            stemi_fraction.clamp(0.0, 1.0)
        };
        let condition = if rng.random_bool(f) {
            let u: f32 = rng.random();
            Condition::Stemi(match u {
                u if u < 0.40 => StemiLocation::Anterior,
                u if u < 0.75 => StemiLocation::Inferior,
                u if u < 0.85 => StemiLocation::Lateral,
                u if u < 0.95 => StemiLocation::Inferolateral,
                _ => StemiLocation::Anterolateral,
            })
        } else {
            let u: f32 = rng.random();
            match u {
                u if u < 0.70 => Condition::Normal,
                u if u < 0.75 => Condition::Lbbb,
                u if u < 0.82 => Condition::Rbbb,
                u if u < 0.90 => Condition::Lvh,
                u if u < 0.95 => Condition::EarlyRepolarisation,
                _ => Condition::Paced,
            }
        };
        // Early repolarisation is a finding of young men; paced and blocked
        // hearts are old ones.
        let (sex, age_years) = match condition {
            Condition::EarlyRepolarisation => (
                if rng.random_bool(0.8) {
                    Sex::Male
                } else {
                    Sex::Female
                },
                rng.random_range(18..40),
            ),
            Condition::Paced | Condition::Lbbb => (
                if rng.random_bool(0.5) {
                    Sex::Male
                } else {
                    Sex::Female
                },
                rng.random_range(65..92),
            ),
            _ => (
                if rng.random_bool(0.55) {
                    Sex::Male
                } else {
                    Sex::Female
                },
                rng.random_range(30..88),
            ),
        };
        let centre: f32 = rng.random_range(55.0..100.0);
        Self {
            fs_hz: 500,
            duration_s: 10.0,
            condition,
            noise: NoiseSpec::random(rng),
            hr_min_bpm: centre - 5.0,
            hr_max_bpm: centre + 5.0,
            sex,
            age_years,
        }
    }

    fn validate(&self) -> Result<(), SynthError> {
        if !(200..=2000).contains(&self.fs_hz) {
            return Err(SynthError::SampleRate(self.fs_hz));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 3600.0) {
            return Err(SynthError::Duration(self.duration_s));
        }
        let hr_ok = |x: f32| x.is_finite() && (30.0..=200.0).contains(&x);
        if !(hr_ok(self.hr_min_bpm) && hr_ok(self.hr_max_bpm) && self.hr_min_bpm <= self.hr_max_bpm)
        {
            return Err(SynthError::HeartRate {
                min_bpm: self.hr_min_bpm,
                max_bpm: self.hr_max_bpm,
            });
        }
        if self.age_years > 120 {
            return Err(SynthError::Age(self.age_years));
        }
        let n = &self.noise;
        for (name, value, max_uv) in [
            ("baseline wander", n.baseline_wander_uv, MAX_WANDER_UV),
            ("muscle noise", n.muscle_uv, MAX_MUSCLE_RMS_UV),
            ("mains", n.mains_uv, MAX_MAINS_UV),
            ("electrode motion", n.electrode_motion_uv, MAX_MOTION_UV),
        ] {
            if let Some(uv) = value {
                if !(uv.is_finite() && (0.0..=max_uv).contains(&uv)) {
                    return Err(SynthError::NoiseAmplitude {
                        noise: name,
                        uv,
                        max_uv,
                    });
                }
            }
        }
        if n.mains_uv.is_some()
            && !(n.mains_hz.is_finite()
                && (40.0..=70.0).contains(&n.mains_hz)
                && n.mains_hz < 0.5 * self.fs_hz as f32)
        {
            return Err(SynthError::MainsFrequency(n.mains_hz));
        }
        if let Some(off) = n.lead_off {
            if !(off.from_s.is_finite() && off.from_s >= 0.0) {
                return Err(SynthError::LeadOffStart(off.from_s));
            }
        }
        if let Some(c) = n.clipping_uv {
            if !(c.is_finite() && (500.0..=32767.0 * UV_PER_LSB).contains(&c)) {
                return Err(SynthError::ClipLimit(c));
            }
        }
        Ok(())
    }
}

/// A spec that cannot be generated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SynthError {
    #[error("sampling rate {0} Hz is outside the supported 200..=2000 Hz")]
    SampleRate(u32),
    #[error("duration {0} s must be finite, above 0 and at most 3600")]
    Duration(f32),
    #[error("heart-rate range {min_bpm}..={max_bpm} bpm must lie within 30..=200 with min <= max")]
    HeartRate { min_bpm: f32, max_bpm: f32 },
    #[error("age {0} years is above 120")]
    Age(u8),
    #[error("{noise} amplitude {uv} uV must be finite and within 0..={max_uv} uV")]
    NoiseAmplitude {
        noise: &'static str,
        uv: f32,
        max_uv: f32,
    },
    #[error("mains frequency {0} Hz must be within 40..=70 Hz and below half the sampling rate")]
    MainsFrequency(f32),
    #[error("lead-off start {0} s must be finite and >= 0")]
    LeadOffStart(f32),
    #[error("clipping limit {0} uV must be within 500..=32767 uV")]
    ClipLimit(f32),
}

/// Delineation of one beat, in sample indices of the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeatTruth {
    /// Largest absolute QRS deflection in the visit's dominant lead.
    pub r_peak: usize,
    /// Global QRS onset (for paced beats: the stimulus artefact).
    pub qrs_on: usize,
    pub qrs_off: usize,
    /// The J point; the designed QRS end, equal to `qrs_off`.
    pub j: usize,
    pub t_end: usize,
}

/// What the visit really contains.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub condition: Condition,
    pub stemi: bool,
    pub territories: Vec<Territory>,
    /// Every R peak inside the record (including beats cut by its edges).
    pub r_peaks: Vec<usize>,
    /// Beats entirely inside the record, QRS onset to T end.
    pub beats: Vec<BeatTruth>,
    /// Pacing stimulus onsets inside the record (empty unless paced).
    pub pace_spikes: Vec<usize>,
    /// Lead where `r_peaks` are read.
    pub dominant_lead: Lead,
    /// Noise-free ST deviation at J minus the PR-segment level
    /// (QRS onset -20..-5 ms), averaged over beats, per lead in
    /// [`Lead::ALL`] order.
    pub st_j_uv: [f32; 12],
    /// Whether `st_j_uv` meets the 4th-UDMI thresholds for this patient.
    pub stemi_criteria_met: bool,
    /// Mean heart rate over the record, from the R-R intervals.
    pub heart_rate_bpm: f32,
}

/// A generated visit: int16 samples per lead plus the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticVisit {
    pub fs_hz: u32,
    /// [`LEAD_NAMES`], the order of `samples`.
    pub lead_names: Vec<&'static str>,
    /// Always [`UV_PER_LSB`].
    pub uv_per_lsb: f32,
    /// One vector per lead, all of the same length.
    pub samples: Vec<Vec<i16>>,
    pub truth: Truth,
}

/// Independent random streams, so that switching noise on or off leaves the
/// heart and its rhythm unchanged.
fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// The random stream of the visit a simulated clinic records for `seed`.
pub fn visit_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A visit as a simulated clinic records it: its spec drawn from the case mix
/// ([`VisitSpec::random`]), then its waveform, both from `rng` (see
/// [`visit_rng`]), so that a test can read exactly what the fleet sends.
pub fn case_mix_visit(
    rng: &mut ChaCha8Rng,
    stemi_fraction: f64,
) -> Result<(VisitSpec, SyntheticVisit), SynthError> {
    let spec = VisitSpec::random(rng, stemi_fraction);
    let visit = generate(&spec, rng.random())?;
    Ok((spec, visit))
}

/// Generates one visit. The same spec and seed always give the same visit.
pub fn generate(spec: &VisitSpec, seed: u64) -> Result<SyntheticVisit, SynthError> {
    spec.validate()?;
    let mut heart_rng = stream(seed, 1);
    let mut rhythm_rng = stream(seed, 2);
    let mut noise_rng = stream(seed, 3);
    let fs = spec.fs_hz as f32;
    let n = (spec.duration_s * fs).round() as usize;

    let rhythm = match spec.condition {
        Condition::Paced => {
            let rate = [60.0, 70.0]
                .into_iter()
                .find(|r| (spec.hr_min_bpm..=spec.hr_max_bpm).contains(r))
                .unwrap_or(0.5 * (spec.hr_min_bpm + spec.hr_max_bpm));
            rhythm::Rhythm::paced(&mut rhythm_rng, rate)
        }
        _ => {
            let hr = if spec.hr_max_bpm > spec.hr_min_bpm {
                rhythm_rng.random_range(spec.hr_min_bpm..=spec.hr_max_bpm)
            } else {
                spec.hr_min_bpm
            };
            rhythm::Rhythm::sinus(&mut rhythm_rng, hr, spec.age_years)
        }
    };

    let mut heart = morphology::design(&mut heart_rng, spec.condition, spec.sex, spec.age_years);
    let rr = rhythm.mean_rr_s;
    if spec.condition == Condition::Lvh {
        let target_uv = heart_rng.random_range(3800.0..5000.0);
        beat::set_sokolow_lyon(&mut heart, fs, rr, target_uv);
    }
    match spec.condition {
        Condition::Stemi(loc) => {
            let (_, designed) = morphology::stemi_design(loc);
            let ratio = heart_rng.random_range(1.3..2.5);
            beat::calibrate_st(&mut heart, fs, rr, Some(designed), ratio);
        }
        other => {
            let ratio = match other {
                Condition::Normal => heart_rng.random_range(0.1..0.5),
                Condition::EarlyRepolarisation => heart_rng.random_range(0.6..0.85),
                _ => heart_rng.random_range(0.3..0.85),
            };
            beat::calibrate_st(&mut heart, fs, rr, None, ratio);
        }
    }
    let dominant = beat::dominant_lead(&heart, fs, rr);

    // Draw every beat into a padded dipole buffer.
    const PAD_S: f32 = 1.5;
    let pad = (PAD_S * fs).round() as usize;
    let mut dipole = Dipole::new(fs, -(pad as f32) / fs, n + 2 * pad);
    let first = -1.2 + rhythm_rng.random_range(0.0..rr);
    let beats = rhythm.beat_times(&mut rhythm_rng, first, spec.duration_s + 0.6);
    let mut marks = Vec::with_capacity(beats.len());
    for &(fid_s, rr_s) in &beats {
        let z: f32 = StandardNormal.sample(&mut heart_rng);
        let params = BeatParams {
            fid_s,
            rr_s,
            qrs_gain: 1.0 + heart.qrs_resp_depth * rhythm.resp_angle(fid_s).sin(),
            st_gain: 1.0 + heart.st_beat_sd * z.clamp(-2.5, 2.5),
        };
        marks.push(dipole.render(&heart, &params));
    }

    // Truth from the noise-free dipole.
    let to_record = |i: isize| i - pad as isize;
    let in_record = |i: isize| (0..n as isize).contains(&to_record(i));
    let dom = dominant.index();
    let mut r_peaks = Vec::new();
    let mut beat_truth = Vec::new();
    let mut st_sum = [0.0f32; 12];
    let mut st_count = 0usize;
    for m in &marks {
        let search_from = m.spike.map_or(m.qrs_on, |s| s + 1);
        let r = (search_from..=m.qrs_off)
            .max_by(|&a, &b| {
                let va = dipole.leads_at(a as usize)[dom].abs();
                let vb = dipole.leads_at(b as usize)[dom].abs();
                va.total_cmp(&vb)
            })
            .unwrap_or(m.qrs_off);
        if in_record(r) {
            r_peaks.push(to_record(r) as usize);
        }
        if in_record(m.qrs_on) && in_record(m.t_end) {
            beat_truth.push(BeatTruth {
                r_peak: to_record(r) as usize,
                qrs_on: to_record(m.qrs_on) as usize,
                qrs_off: to_record(m.qrs_off) as usize,
                j: to_record(m.qrs_off) as usize,
                t_end: to_record(m.t_end) as usize,
            });
            // The PR window must lie inside the record too.
            let pr_start = m.qrs_on - (beat::PR_REF_START_S * fs).round() as isize;
            if in_record(pr_start) {
                if let Some(st) = beat::st_at_j(&dipole, m) {
                    for (acc, v) in st_sum.iter_mut().zip(st) {
                        *acc += v;
                    }
                    st_count += 1;
                }
            }
        }
    }
    let st_j_uv = st_sum.map(|s| {
        if st_count > 0 {
            s / st_count as f32
        } else {
            0.0
        }
    });
    let heart_rate_bpm = match (r_peaks.first(), r_peaks.last()) {
        (Some(&a), Some(&b)) if r_peaks.len() >= 2 && b > a => {
            60.0 * fs * (r_peaks.len() - 1) as f32 / (b - a) as f32
        }
        _ => 60.0 / rr,
    };

    // Project onto the independent leads, inside the record only.
    let mut ind: [Vec<f32>; 8] = std::array::from_fn(|_| vec![0.0f32; n]);
    for (row, out) in leads::DOWER.iter().zip(ind.iter_mut()) {
        let [x, y, z] = &dipole.axes;
        for (k, o) in out.iter_mut().enumerate() {
            let i = k + pad;
            *o = row[0] * x[i] + row[1] * y[i] + row[2] * z[i];
        }
    }

    let mut pace_spikes = Vec::new();
    if let Some(pc) = &heart.pacing {
        let width = ((pc.width_s * fs).round() as usize).max(1);
        for s in marks.iter().filter_map(|m| m.spike) {
            let s = to_record(s);
            if s < 0 || s as usize >= n {
                continue;
            }
            pace_spikes.push(s as usize);
            for (row, out) in leads::DOWER.iter().zip(ind.iter_mut()) {
                let v = row[0] * pc.v_uv[0] + row[1] * pc.v_uv[1] + row[2] * pc.v_uv[2];
                for o in out.iter_mut().skip(s as usize).take(width) {
                    *o += v;
                }
            }
        }
    }

    noise::add_to_leads(&mut noise_rng, &spec.noise, fs, rhythm.resp_hz, &mut ind);

    // Quantise. Clipping models the front end saturating; without it the
    // spec's amplitude limits keep every sample well inside int16.
    let limit_lsb = spec
        .noise
        .clipping_uv
        .map_or(i32::from(i16::MAX), |c| (c / UV_PER_LSB).round() as i32);
    let quantise = |v: f32| -> i16 {
        let x = v / UV_PER_LSB;
        // Round half away from zero; the float-to-int cast saturates.
        let r = (x + 0.5f32.copysign(x)) as i32;
        r.clamp(-limit_lsb, limit_lsb) as i16
    };
    let [i, ii, chest @ ..] = &ind;
    let mut samples: Vec<Vec<i16>> = Vec::with_capacity(12);
    samples.push(i.iter().map(|&a| quantise(a)).collect());
    samples.push(ii.iter().map(|&b| quantise(b)).collect());
    for (wi, wii) in leads::DERIVED_LIMB_WEIGHTS {
        samples.push(
            i.iter()
                .zip(ii)
                .map(|(&a, &b)| quantise(wi * a + wii * b))
                .collect(),
        );
    }
    for v in chest {
        samples.push(v.iter().map(|&x| quantise(x)).collect());
    }
    if let Some(off) = spec.noise.lead_off {
        let from = ((off.from_s * fs).round() as usize).min(n);
        let value = match off.level {
            LeadOffLevel::Zero => 0,
            LeadOffLevel::Rail => limit_lsb as i16, // within i16 by validation
        };
        samples[off.lead.index()][from..].fill(value);
    }

    Ok(SyntheticVisit {
        fs_hz: spec.fs_hz,
        lead_names: LEAD_NAMES.to_vec(),
        uv_per_lsb: UV_PER_LSB,
        samples,
        truth: Truth {
            condition: spec.condition,
            stemi: spec.condition.is_stemi(),
            territories: spec.condition.territories().to_vec(),
            r_peaks,
            beats: beat_truth,
            pace_spikes,
            dominant_lead: dominant,
            stemi_criteria_met: st_elevation_criteria_met(&st_j_uv, spec.sex, spec.age_years),
            st_j_uv,
            heart_rate_bpm,
        },
    })
}

#[cfg(test)]
mod tests;
