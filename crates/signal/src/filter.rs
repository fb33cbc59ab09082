//! Causal, streaming IIR filters built from second-order sections.
//!
//! Every filter keeps its state between calls, so a record filtered in one
//! call or in many chunks gives the same output sample for sample. Section
//! coefficients come from the `biquad` crate (RBJ cookbook designs, which for
//! a Butterworth Q equal SciPy's bilinear Butterworth); state is kept in f64
//! because a 0.05 Hz high-pass at 1 kHz has poles so close to the unit circle
//! that f32 state drifts.
//!
//! Two paths exist on purpose:
//! - the *monitoring/detection* path ([`BaselineFilter`], [`DetectionBandpass`])
//!   may distort the ST segment, it only has to make QRS complexes stand out;
//! - the *diagnostic* path ([`DiagnosticFilter`]) keeps 0.05-150 Hz, the
//!   AHA diagnostic band, with a high-pass low enough (0.05 Hz) that a causal
//!   filter does not shift the ST segment.

use biquad::{Biquad, Coefficients, DirectForm2Transposed, ToHertz, Type};

use crate::SignalError;

/// Q of the two sections of a 4th-order Butterworth filter.
const BUTTERWORTH4_Q: [f64; 2] = [0.541_196_100_146_197, 1.306_562_964_876_376_7];
const BUTTERWORTH2_Q: f64 = biquad::Q_BUTTERWORTH_F64;

/// A chain of biquad sections applied one after the other.
#[derive(Clone, Debug)]
pub struct Cascade {
    sections: Vec<DirectForm2Transposed<f64>>,
}

impl Cascade {
    fn new() -> Self {
        Cascade {
            sections: Vec::new(),
        }
    }

    fn push(&mut self, kind: Type<f64>, fs_hz: f64, f0_hz: f64, q: f64) -> Result<(), SignalError> {
        let coefficients = Coefficients::<f64>::from_params(kind, fs_hz.hz(), f0_hz.hz(), q)
            .map_err(|e| SignalError::FilterDesign {
                what: format!("{kind:?} at {f0_hz} Hz with fs {fs_hz} Hz: {e:?}"),
            })?;
        self.sections
            .push(DirectForm2Transposed::<f64>::new(coefficients));
        Ok(())
    }

    /// Filters one sample.
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        self.sections.iter_mut().fold(x, |acc, s| s.run(acc))
    }

    /// Filters a block in place.
    pub fn process(&mut self, samples: &mut [f32]) {
        for v in samples.iter_mut() {
            *v = self.step(f64::from(*v)) as f32;
        }
    }

    /// Number of second-order sections.
    pub fn order(&self) -> usize {
        self.sections.len() * 2
    }
}

fn check_fs(fs_hz: f64) -> Result<(), SignalError> {
    if !(fs_hz.is_finite() && (50.0..=20_000.0).contains(&fs_hz)) {
        return Err(SignalError::SamplingRate { fs_hz });
    }
    Ok(())
}

/// Mains frequency of the supply grid the device runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mains {
    Hz50,
    Hz60,
}

impl Mains {
    pub fn hz(self) -> f64 {
        match self {
            Mains::Hz50 => 50.0,
            Mains::Hz60 => 60.0,
        }
    }
}

/// Adds a notch at the mains frequency (and its 2nd harmonic when the
/// sampling rate allows). Q = 30 gives a ~1.7 Hz wide notch: narrow enough to
/// leave QRS energy alone, wide enough for a grid that drifts by a few tenths
/// of a hertz.
fn push_mains_notches(cascade: &mut Cascade, fs_hz: f64, mains: Mains) -> Result<(), SignalError> {
    for harmonic in [1.0, 2.0] {
        let f0 = mains.hz() * harmonic;
        // A notch within 5% of Nyquist would be ill-conditioned and removes
        // nothing a device's anti-alias filter has not already removed.
        if f0 < 0.45 * fs_hz {
            cascade.push(Type::Notch, fs_hz, f0, 30.0)?;
        }
    }
    Ok(())
}

/// Removes baseline wander for monitoring and display: 2nd-order Butterworth
/// high-pass at 0.5 Hz. Causal, so it tilts the ST segment: never use it
/// for ST measurement ([`DiagnosticFilter`] is for that).
#[derive(Clone, Debug)]
pub struct BaselineFilter(Cascade);

impl BaselineFilter {
    pub fn new(fs_hz: f64) -> Result<Self, SignalError> {
        check_fs(fs_hz)?;
        let mut c = Cascade::new();
        c.push(Type::HighPass, fs_hz, 0.5, BUTTERWORTH2_Q)?;
        Ok(BaselineFilter(c))
    }
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        self.0.step(x)
    }
    pub fn process(&mut self, samples: &mut [f32]) {
        self.0.process(samples)
    }
}

/// Removes mains interference (50 or 60 Hz and its second harmonic).
#[derive(Clone, Debug)]
pub struct MainsFilter(Cascade);

impl MainsFilter {
    pub fn new(fs_hz: f64, mains: Mains) -> Result<Self, SignalError> {
        check_fs(fs_hz)?;
        let mut c = Cascade::new();
        push_mains_notches(&mut c, fs_hz, mains)?;
        Ok(MainsFilter(c))
    }
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        self.0.step(x)
    }
    pub fn process(&mut self, samples: &mut [f32]) {
        self.0.process(samples)
    }
}

/// Band-pass that keeps the QRS complex's energy (about 5-20 Hz) and drops
/// baseline wander, most of the P and T waves, mains and muscle noise: the
/// front end of QRS detection. Two fixed sections rather than a [`Cascade`]:
/// this runs for every sample of every lead.
#[derive(Clone, Debug)]
pub struct DetectionBandpass {
    high_pass: DirectForm2Transposed<f64>,
    low_pass: DirectForm2Transposed<f64>,
}

impl DetectionBandpass {
    pub const LOW_HZ: f64 = 5.0;
    pub const HIGH_HZ: f64 = 20.0;

    pub fn new(fs_hz: f64) -> Result<Self, SignalError> {
        check_fs(fs_hz)?;
        let mut c = Cascade::new();
        c.push(Type::HighPass, fs_hz, Self::LOW_HZ, BUTTERWORTH2_Q)?;
        c.push(Type::LowPass, fs_hz, Self::HIGH_HZ, BUTTERWORTH2_Q)?;
        let [high_pass, low_pass]: [DirectForm2Transposed<f64>; 2] = c
            .sections
            .try_into()
            .map_err(|_| SignalError::FilterDesign {
                what: "detection band-pass needs two sections".into(),
            })?;
        Ok(DetectionBandpass {
            high_pass,
            low_pass,
        })
    }
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        self.low_pass.run(self.high_pass.run(x))
    }
    pub fn process(&mut self, samples: &mut [f32]) {
        for v in samples.iter_mut() {
            *v = self.step(f64::from(*v)) as f32;
        }
    }
}

/// The diagnostic band 0.05-150 Hz (AHA/IEC 60601-2-25), with optional mains
/// notches. The high-pass is first-order at 0.05 Hz, built as the input minus
/// its single-pole low-pass: a causal high-pass of higher order or higher
/// corner tilts the ST segment after a large QRS, this one stays inside
/// IEC 60601-2-25's limit (a 3 mV x 100 ms pulse leaves under 0.1 mV).
/// The low-pass is a 4th-order Butterworth at 150 Hz when the sampling rate
/// leaves room for it; at lower rates the device's own anti-alias filter
/// already bounds the band.
#[derive(Clone, Debug)]
pub struct DiagnosticFilter {
    baseline: DirectForm2Transposed<f64>,
    rest: Cascade,
}

impl DiagnosticFilter {
    pub const LOW_HZ: f64 = 0.05;
    pub const HIGH_HZ: f64 = 150.0;

    pub fn new(fs_hz: f64, mains: Option<Mains>) -> Result<Self, SignalError> {
        check_fs(fs_hz)?;
        let baseline = Coefficients::<f64>::from_params(
            Type::SinglePoleLowPass,
            fs_hz.hz(),
            Self::LOW_HZ.hz(),
            BUTTERWORTH2_Q,
        )
        .map_err(|e| SignalError::FilterDesign {
            what: format!("0.05 Hz baseline estimate at fs {fs_hz} Hz: {e:?}"),
        })?;
        let mut rest = Cascade::new();
        if let Some(mains) = mains {
            push_mains_notches(&mut rest, fs_hz, mains)?;
        }
        if Self::HIGH_HZ < 0.4 * fs_hz {
            for q in BUTTERWORTH4_Q {
                rest.push(Type::LowPass, fs_hz, Self::HIGH_HZ, q)?;
            }
        }
        Ok(DiagnosticFilter {
            baseline: DirectForm2Transposed::<f64>::new(baseline),
            rest,
        })
    }
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        let high_passed = x - self.baseline.run(x);
        self.rest.step(high_passed)
    }
    pub fn process(&mut self, samples: &mut [f32]) {
        for v in samples.iter_mut() {
            *v = self.step(f64::from(*v)) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(fs_hz: f64, f_hz: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * f_hz * i as f64 / fs_hz).sin() as f32)
            .collect()
    }

    fn rms_tail(x: &[f32]) -> f64 {
        let tail = &x[x.len() / 2..];
        (tail.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / tail.len() as f64).sqrt()
    }

    #[test]
    fn chunked_filtering_equals_whole() {
        let x = sine(500.0, 7.0, 3000);
        let mut whole = x.clone();
        DiagnosticFilter::new(500.0, Some(Mains::Hz50))
            .unwrap()
            .process(&mut whole);
        let mut f = DiagnosticFilter::new(500.0, Some(Mains::Hz50)).unwrap();
        let mut chunked = x.clone();
        for chunk in chunked.chunks_mut(37) {
            f.process(chunk);
        }
        assert_eq!(whole, chunked);
    }

    #[test]
    fn mains_notch_removes_50_hz_and_keeps_10_hz() {
        for fs in [250.0, 360.0, 500.0, 1000.0] {
            let mut hum = sine(fs, 50.0, (fs * 6.0) as usize);
            MainsFilter::new(fs, Mains::Hz50).unwrap().process(&mut hum);
            assert!(
                rms_tail(&hum) < 0.01,
                "fs {fs}: 50 Hz left {}",
                rms_tail(&hum)
            );
            let mut qrs_band = sine(fs, 10.0, (fs * 6.0) as usize);
            MainsFilter::new(fs, Mains::Hz50)
                .unwrap()
                .process(&mut qrs_band);
            assert!((rms_tail(&qrs_band) - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.02);
        }
    }

    #[test]
    fn detection_bandpass_passes_qrs_band_and_drops_wander() {
        let fs = 360.0;
        let mut wander = sine(fs, 0.3, 20_000);
        DetectionBandpass::new(fs).unwrap().process(&mut wander);
        assert!(rms_tail(&wander) < 0.01);
        let mut qrs = sine(fs, 10.0, 20_000);
        DetectionBandpass::new(fs).unwrap().process(&mut qrs);
        assert!(rms_tail(&qrs) > 0.6);
    }

    /// IEC 60601-2-25 impulse test: a 3 mV x 100 ms pulse may displace the
    /// baseline after it by at most 0.1 mV; a first-order 0.05 Hz high-pass
    /// passes, a 0.5 Hz one (monitoring) does not.
    #[test]
    fn diagnostic_filter_passes_the_iec_impulse_test() {
        for fs in [250.0, 500.0, 1000.0] {
            let n = (fs * 3.0) as usize;
            let start = (fs * 1.0) as usize;
            let width = (fs * 0.1) as usize;
            let pulse: Vec<f32> = (0..n)
                .map(|i| {
                    if (start..start + width).contains(&i) {
                        3.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut diag = pulse.clone();
            // Without the notch: a notch rings at 50 Hz on a rectangular
            // pulse's edges, which says nothing about the baseline.
            DiagnosticFilter::new(fs, None).unwrap().process(&mut diag);
            // 40 ms after the edge the 150 Hz low-pass has stopped ringing.
            let after = &diag[start + width + (fs * 0.04) as usize..];
            let worst = after.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(worst < 0.1, "fs {fs}: displacement {worst} mV");
            let mut mon = pulse.clone();
            BaselineFilter::new(fs).unwrap().process(&mut mon);
            let worst_mon = mon[start + width + (fs * 0.01) as usize..]
                .iter()
                .fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(
                worst_mon > 0.3,
                "the test must be able to fail: {worst_mon}"
            );
        }
        // In-band content (0.3 Hz respiration) is kept: removing it is the ST
        // measurement's job (isoelectric reference), not the filter's.
        let mut wander = sine(500.0, 0.3, 10_000);
        DiagnosticFilter::new(500.0, None)
            .unwrap()
            .process(&mut wander);
        assert!(rms_tail(&wander) > 0.6);
    }

    #[test]
    fn bad_sampling_rates_are_errors() {
        assert!(DiagnosticFilter::new(f64::NAN, None).is_err());
        assert!(DetectionBandpass::new(0.0).is_err());
        assert!(BaselineFilter::new(-5.0).is_err());
        // Too low for the band: the low-pass corner is above Nyquist.
        assert!(DetectionBandpass::new(30.0).is_err());
    }
}
