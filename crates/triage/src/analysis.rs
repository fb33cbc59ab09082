//! From raw leads and R peaks to representative beats, global fiducials and per-lead
//! measurements: the measuring half of the interpretation (the judging half is in
//! `criteria`, `mimic` and `quality`).

use ndarray::Array2;

use crate::beat::{
    self, median_beat, remove_baseline, samples, sort_beats, BeatSet, POST_R_S, PRE_R_S,
};
use crate::delineation::{clinical_qrs, delineate, Fiducials};
use crate::lead::LeadName;
use crate::measurement::{measure_lead, LeadMeasurement};

/// One beat located in the record's own sample numbering; QRS onset and offset are global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Beat {
    pub r: usize,
    pub qrs_on: usize,
    pub qrs_off: usize,
    /// Whether the beat has the dominant morphology (the one measured).
    #[serde(skip)]
    pub dominant: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    pub fs_hz: f64,
    pub leads: Vec<LeadName>,
    /// Baseline-corrected signals, one per entry of `leads`.
    pub corrected: Vec<Vec<f32>>,
    pub beats: Vec<Beat>,
    pub sorted: BeatSet,
    /// Representative beat (lead x time), baseline corrected; R at `origin`.
    pub median: Array2<f32>,
    pub origin: usize,
    pub fid: Fiducials,
    /// Clinical QRS onset and offset on the representative beat (see `clinical_qrs`).
    pub clinical_qrs: (usize, usize),
    pub measurements: Vec<LeadMeasurement>,
    pub rr_s: Option<f64>,
    /// Pacemaker stimuli cut out of the signals before anything was measured.
    pub pace_needles: Vec<(usize, usize)>,
}

impl Analysis {
    pub fn get(&self, lead: LeadName) -> Option<&LeadMeasurement> {
        self.leads
            .iter()
            .position(|&l| l == lead)
            .map(|i| &self.measurements[i])
    }

    /// Global QRS duration (earliest onset to latest offset, LUDB-calibrated).
    pub fn qrs_global_ms(&self) -> f64 {
        (self.fid.qrs_off - self.fid.qrs_on) as f64 / self.fs_hz * 1000.0
    }

    /// Clinical QRS duration, the one the width rules read.
    pub fn qrs_ms(&self) -> f64 {
        (self.clinical_qrs.1 - self.clinical_qrs.0) as f64 / self.fs_hz * 1000.0
    }

    pub fn qt_ms(&self) -> Option<f64> {
        self.fid
            .t_end
            .map(|te| (te.saturating_sub(self.fid.qrs_on)) as f64 / self.fs_hz * 1000.0)
    }

    /// ST deviation `after_s` after the clinical QRS end in `lead`, relative to the PR
    /// segment, averaged over 8 ms like every ST point.
    pub fn st_after_clinical_end_uv(&self, lead: LeadName, after_s: f64) -> Option<f32> {
        let li = self.leads.iter().position(|&l| l == lead)?;
        let t = self.clinical_qrs.1 + samples(self.fs_hz, after_s);
        Some(crate::measurement::st_level_uv(
            self.median.row(li),
            self.fid.pr,
            t,
            self.fs_hz,
        ))
    }

    pub fn dominant_count(&self) -> usize {
        self.sorted.dominant.iter().filter(|&&d| d).count()
    }
}

fn median_rr_s(r: &[usize], fs_hz: f64) -> Option<f64> {
    let mut rr: Vec<f32> = r.windows(2).map(|w| (w[1] - w[0]) as f32).collect();
    if rr.is_empty() {
        return None;
    }
    Some(beat::median(&mut rr) as f64 / fs_hz)
}

/// Runs the measuring pipeline. `signals` are in millivolts, all the same length.
/// Returns `None` when no beat window fits inside the signal.
pub(crate) fn analyse(
    fs_hz: f64,
    leads: &[LeadName],
    signals: &[&[f32]],
    r_peaks: &[usize],
) -> Option<Analysis> {
    let pre = samples(fs_hz, PRE_R_S);
    let post = samples(fs_hz, POST_R_S);
    let pace_needles = crate::pacing::find(signals, fs_hz);
    let despiked: Vec<Vec<f32>>;
    let despiked_views: Vec<&[f32]>;
    let signals = if pace_needles.is_empty() {
        signals
    } else {
        despiked = crate::pacing::remove(signals, &pace_needles);
        despiked_views = despiked.iter().map(Vec::as_slice).collect();
        &despiked_views[..]
    };
    let mut sorted = sort_beats(signals, r_peaks, fs_hz);
    let dom = sorted.dominant_r();
    if dom.is_empty() {
        return None;
    }
    let rr_s = median_rr_s(r_peaks, fs_hz);
    let rr_for_t = rr_s.unwrap_or(1.0);
    // First pass on raw signals: only to find where the PR segment sits relative to R.
    let raw_median = match sorted.dominant_median.take() {
        Some(m) => m,
        None => median_beat(signals, &dom, pre, post),
    };
    let fid0 = delineate(&raw_median, pre, fs_hz, rr_for_t);
    let pr_centre = (fid0.pr.0 + fid0.pr.1) / 2;
    let half = (fid0.pr.1 - fid0.pr.0) / 2;
    let knots: Vec<usize> = sorted
        .r_aligned
        .iter()
        .filter_map(|&r| (r + pr_centre).checked_sub(pre))
        .collect();
    let corrected: Vec<Vec<f32>> = signals
        .iter()
        .map(|s| remove_baseline(s, &knots, half))
        .collect();
    let views: Vec<&[f32]> = corrected.iter().map(|v| v.as_slice()).collect();
    let median = median_beat(&views, &dom, pre, post);
    let fid = delineate(&median, pre, fs_hz, rr_for_t);
    let clinical_qrs = clinical_qrs(&median, &fid, fs_hz);
    let measurements = (0..leads.len())
        .map(|li| measure_lead(median.row(li), &fid, fs_hz))
        .collect();

    let n_samples = signals.first().map_or(0, |s| s.len());
    let mut beats = Vec::with_capacity(r_peaks.len());
    let mut usable = sorted
        .source
        .iter()
        .zip(&sorted.r_aligned)
        .enumerate()
        .peekable();
    for (i, &src) in r_peaks.iter().enumerate() {
        let (on, off, dominant) = match usable.peek() {
            Some(&(k, (&s, &r))) if s == i => {
                usable.next();
                if sorted.dominant[k] {
                    (r + fid.qrs_on - pre, r + fid.qrs_off - pre, true)
                } else {
                    // An ectopic beat has its own QRS: delineate it alone.
                    let single = median_beat(&views, &[r], pre, post);
                    let f = delineate(&single, pre, fs_hz, rr_for_t);
                    (r + f.qrs_on - pre, r + f.qrs_off - pre, false)
                }
            }
            // Too close to the record's edges for a full window: the template's fiducials.
            _ => (
                (src + fid.qrs_on).saturating_sub(pre),
                (src + fid.qrs_off)
                    .saturating_sub(pre)
                    .min(n_samples.saturating_sub(1)),
                false,
            ),
        };
        beats.push(Beat {
            r: src,
            qrs_on: on.min(src),
            qrs_off: off.max(src),
            dominant,
        });
    }
    Some(Analysis {
        fs_hz,
        leads: leads.to_vec(),
        corrected,
        beats,
        sorted,
        median,
        origin: pre,
        fid,
        clinical_qrs,
        measurements,
        rr_s,
        pace_needles,
    })
}
