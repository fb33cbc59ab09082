//! Streaming multi-lead QRS detection.
//!
//! The detector runs in four stages, each a causal recurrence over samples,
//! so that a record pushed in chunks of any size gives exactly the beats of
//! the record pushed at once:
//!
//! 1. **Front end, per lead.** A boxcar average decimates every lead to
//!    about 125 Hz (all QRS energy lies below 40 Hz), so the rest costs the
//!    same at 250 Hz or 1 kHz and behaves the same at every rate. Then the
//!    detection band-pass (5-20 Hz) and a derivative at that rate; each pair
//!    of samples gives one internal sample at about 62.5 Hz (mean square and
//!    steepest slope of the pair: the envelope of a 5-20 Hz signal varies
//!    far slower than that), and the root-mean-square over a 120 ms window
//!    makes a QRS-energy envelope. Everything after the band-pass runs at
//!    the internal rate, which halves its cost.
//! 2. **Fusion.** Each lead's envelope is divided by its own recent QRS
//!    height (the median of the last five one-second maxima, robust to one
//!    artefact) and the leads are averaged with weights that grow with their
//!    QRS-band signal-to-noise ratio: a noisy or disconnected lead fades out
//!    instead of adding false beats. When no lead looks like an ECG, the
//!    fused signal is zero and no beat is invented.
//! 3. **Candidates.** A peak of the fused signal that is the highest within
//!    +-200 ms (the physiological refractory period).
//! 4. **Decision** (after Pan and Tompkins, 1985): adaptive signal and noise
//!    levels with a threshold between them; T-wave rejection within 360 ms of
//!    a beat by comparing the maximal slope with the previous QRS; search-back
//!    at half the threshold when no beat came for 1.66 average RR intervals,
//!    or as soon as a beat ends an RR interval 1.4 times the average.
//!    The R peak is then located in the full-rate signal of the best lead.
//!
//! Detection delay: a beat is reported at most [`QrsDetector::delay_bound_ms`]
//! after its R peak (about 300 ms when found on the first pass; a beat found
//! by search-back can only be found once the RR interval has run long, so
//! that bound includes the longest search-back interval, 2 s).

use std::collections::VecDeque;

use crate::filter::DetectionBandpass;
use crate::sink::{Beat, DetectionSink, QualitySegment};
use crate::SignalError;

/// The rate the detection band-pass runs at, approximately: its 20 Hz
/// corner needs room below Nyquist.
const BANDPASS_RATE_HZ: f64 = 125.0;
/// Internal samples per piece of a chunk (about a second).
const PIECE_INTERNAL: usize = 64;
/// Leads beyond this are ignored by fusion (15 covers 12 leads + Frank XYZ).
pub const MAX_LEADS: usize = 16;

/// Tunable physiology of the detector. The defaults come from the
/// literature (Pan & Tompkins 1985; Hamilton & Tompkins 1986), not from
/// fitting any database.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorConfig {
    /// No second QRS can start this soon after one (ventricular refractory).
    pub refractory_ms: f64,
    /// A candidate this soon after a beat is checked for being its T wave.
    pub t_wave_window_ms: f64,
    /// Root-mean-square window of the energy envelope: about a wide QRS.
    pub integration_ms: f64,
    /// Search-back starts after this many average RR intervals without a beat.
    pub search_back_rr: f64,
    /// A beat ending an RR interval this many times the average first looks
    /// back in that interval for a missed beat.
    pub look_back_rr: f64,
    /// ...but never later than this after the last beat.
    pub search_back_max_ms: f64,
    /// Threshold position between the noise level (0) and the signal level (1).
    pub threshold_fraction: f32,
    /// A lead whose envelope peak-to-floor ratio is below this is not fused
    /// (broadband noise scores about 1.5, a noisy but readable ECG 3-4).
    pub min_lead_snr: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            refractory_ms: 200.0,
            t_wave_window_ms: 360.0,
            integration_ms: 120.0,
            search_back_rr: 1.66,
            search_back_max_ms: 2000.0,
            look_back_rr: 1.4,
            threshold_fraction: 0.4,
            min_lead_snr: 2.2,
        }
    }
}

/// Fixed-capacity history addressed by absolute sample index. The capacity
/// is a power of two so that addressing is a mask, not a division: this is
/// touched for every input sample of every lead.
#[derive(Clone, Debug)]
struct Ring {
    data: Vec<f32>,
    mask: u64,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1).next_power_of_two();
        Ring {
            data: vec![0.0; capacity],
            mask: capacity as u64 - 1,
        }
    }
    #[inline]
    fn put(&mut self, index: u64, v: f32) {
        self.data[(index & self.mask) as usize] = v;
    }
    #[inline]
    fn get(&self, index: u64) -> f32 {
        self.data[(index & self.mask) as usize]
    }
    fn capacity(&self) -> u64 {
        self.data.len() as u64
    }
    /// The values at `from..to` (at most the capacity), oldest first, as
    /// at most two contiguous slices.
    fn slices(&self, from: u64, to: u64) -> [&[f32]; 2] {
        let n = self.data.len();
        let len = ((to - from) as usize).min(n);
        let start = (from & self.mask) as usize;
        let head = len.min(n - start);
        [&self.data[start..start + head], &self.data[..len - head]]
    }
    /// Stores `values` at `first..first + len`, in at most two copies.
    fn put_slice(&mut self, first: u64, values: &[f32]) {
        let n = self.data.len();
        // A slice longer than the ring keeps only its tail, as single puts would.
        let skip = values.len().saturating_sub(n);
        let values = &values[skip..];
        let start = ((first + skip as u64) & self.mask) as usize;
        let head = values.len().min(n - start);
        self.data[start..start + head].copy_from_slice(&values[..head]);
        self.data[..values.len() - head].copy_from_slice(&values[head..]);
    }
}

/// One-second statistics of a lead's envelope, kept for the last few seconds.
const SCALE_BLOCKS: usize = 5;

#[derive(Clone, Debug)]
struct Lead {
    /// Boxcar accumulator of the decimator.
    acc: f64,
    /// First sample, subtracted so that the band-pass starts without a step.
    offset: Option<f64>,
    /// Last valid input: a NaN sample (a gap) repeats it.
    last_valid: f32,
    bandpass: DetectionBandpass,
    /// The last two band-pass outputs, for the derivative.
    y1: f64,
    y2: f64,
    /// Squared derivatives of the last window's samples, oldest first.
    energy_tail: Vec<f32>,
    energy_sum: f64,
    /// Full-rate input, for locating the R peak.
    raw: Ring,
    block_max: f32,
    /// This second's envelope values; their median is the lead's floor
    /// between QRS complexes, whatever the heart rate.
    /// (As bit patterns: see [`median_of_non_negative`].)
    block_values: Vec<u32>,
    block_max_hist: VecDeque<f32>,
    block_floor_hist: VecDeque<f32>,
    /// Recent QRS height of the envelope and its floor between beats.
    scale: f32,
    floor: f32,
    weight: f32,
    /// This piece's input with gaps held (used only when it has gaps),
    /// decimated input, envelope and slope: scratch space kept between
    /// pieces so that the per-sample path never allocates.
    held: Vec<f32>,
    x_buf: Vec<f64>,
    d_buf: Vec<f64>,
    e_buf: Vec<f32>,
    env_buf: Vec<f32>,
    slope_buf: Vec<f32>,
}

/// Appends the mean of each whole block of `K` samples to `out` and returns
/// the samples after the last whole block. `K` is a constant so that the
/// common decimation factors compile to straight-line sums; the summation
/// order is the same as [`boxcar_blocks_dyn`]'s.
#[inline]
fn boxcar_blocks<'a, const K: usize>(
    samples: &'a [f32],
    inv_k: f64,
    out: &mut Vec<f64>,
) -> &'a [f32] {
    let (blocks, rest) = samples.as_chunks::<K>();
    out.extend(
        blocks
            .iter()
            .map(|b| b.iter().fold(0.0f64, |s, &v| s + f64::from(v)) * inv_k),
    );
    rest
}

fn boxcar_blocks_dyn<'a>(
    samples: &'a [f32],
    k: usize,
    inv_k: f64,
    out: &mut Vec<f64>,
) -> &'a [f32] {
    let blocks = samples.chunks_exact(k);
    let rest = blocks.remainder();
    out.extend(blocks.map(|b| b.iter().fold(0.0f64, |s, &v| s + f64::from(v)) * inv_k));
    rest
}

/// Whether no sample is NaN or infinite; without an early exit inside
/// blocks of 16, so that the check compiles to vector compares.
fn all_finite(samples: &[f32]) -> bool {
    let (blocks, rest) = samples.as_chunks::<16>();
    blocks
        .iter()
        .all(|b| b.iter().fold(true, |ok, v| ok & v.is_finite()))
        && rest.iter().all(|v| v.is_finite())
}

impl Lead {
    /// Holds gaps, keeps the full-rate history and decimates `samples` into
    /// `x_buf`; `phase` is how many samples of the current decimation block
    /// came before this piece.
    fn front_end(&mut self, samples: &[f32], first_index: u64, phase: u64, k: u64, inv_k: f64) {
        self.x_buf.clear();
        // Gaps are rare: only then is the piece copied with the gaps held.
        let mut held = std::mem::take(&mut self.held);
        let clean: &[f32] = if all_finite(samples) {
            if let Some(&v) = samples.last() {
                self.last_valid = v;
            }
            samples
        } else {
            held.clear();
            let mut last = self.last_valid;
            held.extend(samples.iter().map(|&v| {
                if v.is_finite() {
                    last = v;
                }
                last
            }));
            self.last_valid = last;
            &held
        };
        self.raw.put_slice(first_index, clean);
        // First the rest of the block the previous piece started, then
        // whole blocks straight from the slice, then the start of the next.
        let mut acc = self.acc;
        let head = ((k - phase) as usize).min(clean.len());
        for &v in &clean[..head] {
            acc += f64::from(v);
        }
        if phase + head as u64 == k {
            self.x_buf.push(acc * inv_k);
            let body = &clean[head..];
            let rest = match k {
                1 => boxcar_blocks::<1>(body, inv_k, &mut self.x_buf),
                2 => boxcar_blocks::<2>(body, inv_k, &mut self.x_buf),
                3 => boxcar_blocks::<3>(body, inv_k, &mut self.x_buf),
                4 => boxcar_blocks::<4>(body, inv_k, &mut self.x_buf),
                8 => boxcar_blocks::<8>(body, inv_k, &mut self.x_buf),
                _ => boxcar_blocks_dyn(body, k as usize, inv_k, &mut self.x_buf),
            };
            acc = rest.iter().fold(0.0f64, |s, &v| s + f64::from(v));
        }
        self.acc = acc;
        self.held = held;
    }

    /// Band-pass and derivative at the band-pass rate; squared derivative
    /// and slope of each pair of band-pass samples at the decision rate;
    /// then the RMS envelope.
    fn envelope_of_decimated(&mut self, inv_len: f64, decision_hz: f64) {
        let w = self.energy_tail.len();
        let Some(&x0) = self.x_buf.first() else {
            self.env_buf.clear();
            self.slope_buf.clear();
            return;
        };
        let offset = *self.offset.get_or_insert(x0);
        // Four passes, each a tight loop: the filter recurrences, the pairs,
        // the running sum of squares over the window (the squares of the
        // window before this piece lead `e_buf`), then the square roots,
        // several per instruction.
        let mut bandpass = self.bandpass.clone();
        let (mut y1, mut y2) = (self.y1, self.y2);
        // `d_buf` starts with the unpaired derivative the last piece left.
        self.d_buf.extend(self.x_buf.iter().map(|&x| {
            let y = bandpass.step(x - offset);
            // Derivative in mV/s over two band-pass samples (16 ms), so
            // that envelopes compare across rates.
            let d = (y - y2) * decision_hz;
            y2 = y1;
            y1 = y;
            d
        }));
        (self.bandpass, self.y1, self.y2) = (bandpass, y1, y2);
        let (pairs, _) = self.d_buf.as_chunks::<2>();
        let n = pairs.len();
        self.env_buf.resize(n, 0.0);
        self.slope_buf.resize(n, 0.0);
        self.e_buf.clear();
        self.e_buf.extend_from_slice(&self.energy_tail);
        self.e_buf.resize(w + n, 0.0);
        // A pair's mean square keeps the energy of both samples (no
        // aliasing of the envelope), its larger slope keeps the steepest.
        let out = self.e_buf[w..].iter_mut().zip(self.slope_buf.iter_mut());
        for (&[a, b], (e, slope)) in pairs.iter().zip(out) {
            *e = ((a * a + b * b) * 0.5) as f32;
            *slope = a.abs().max(b.abs()) as f32;
        }
        self.d_buf.drain(..2 * n);
        let mut sum = self.energy_sum;
        let pairs = self.e_buf[w..].iter().zip(&self.e_buf[..n]);
        for ((&new, &old), env) in pairs.zip(self.env_buf.iter_mut()) {
            sum += f64::from(new) - f64::from(old);
            // Rounding can leave a tiny negative sum after a flat stretch.
            *env = (sum.max(0.0) * inv_len) as f32;
        }
        self.energy_sum = sum;
        for v in &mut self.env_buf {
            *v = v.sqrt();
        }
        self.energy_tail.copy_from_slice(&self.e_buf[n..]);
    }
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Internal-rate index of the fused peak.
    at: u64,
    strength: f32,
    slope: f32,
}

/// The streaming detector. Push chunks with [`QrsDetector::push`], then call
/// [`QrsDetector::finish`] at the end of the record.
#[derive(Clone, Debug)]
pub struct QrsDetector {
    cfg: DetectorConfig,
    fs_hz: f64,
    /// Input samples per decision sample, and per band-pass sample (half).
    decimation: u64,
    front_k: u64,
    bp_hz: f64,
    /// The decision rate (internal samples).
    internal_hz: f64,
    leads: Vec<Lead>,
    /// Input samples seen (per lead).
    n_in: u64,
    /// Input samples in the current band-pass block (a counter, because
    /// a division per sample costs more than the rest of the front end).
    phase: u64,
    /// Internal samples in the current one-second block.
    block_fill: u64,
    /// Internal samples produced.
    n_int: u64,
    integration_len: u64,
    /// Band-pass + derivative delay, in internal samples.
    front_delay: f64,
    block_len: u64,
    // Fused signal history, for candidates and R-peak location.
    fused: Ring,
    fused_slope: Ring,
    best_lead: Vec<u8>,
    half_window: u64,
    // Decision state.
    spk: f32,
    npk: f32,
    rr_hist: VecDeque<f64>,
    /// Mean of `rr_hist` (one second before the first interval).
    rr_avg: f64,
    /// Internal index from which search-back may look for a missed beat.
    search_back_due: u64,
    last_beat_at: Option<u64>,
    last_beat_sample: Option<u64>,
    last_beat_slope: f32,
    pending: Vec<Candidate>,
    searched_until: u64,
    /// Per-lead (envelope, slope) of the first second, until it has a scale.
    warmup: Option<Vec<(f32, f32)>>,
    /// Per-lead fusion coefficients and the lead that weighs most, set
    /// once a second by [`QrsDetector::update_fusion`].
    fuse_coef: Vec<f32>,
    fuse_best: u8,
    /// This run's fused envelope and slope (scratch space).
    fused_buf: Vec<f32>,
    fused_slope_buf: Vec<f32>,
    /// The last H + 1 fused values and the decision window (scratch space).
    fused_tail: Vec<f32>,
    win_buf: Vec<f32>,
    refractory: u64,
    t_wave_window: u64,
    search_back_max: u64,
}

impl QrsDetector {
    pub fn new(fs_hz: f64, n_leads: usize) -> Result<Self, SignalError> {
        Self::with_config(fs_hz, n_leads, DetectorConfig::default())
    }

    pub fn with_config(
        fs_hz: f64,
        n_leads: usize,
        cfg: DetectorConfig,
    ) -> Result<Self, SignalError> {
        if !(fs_hz.is_finite() && (50.0..=20_000.0).contains(&fs_hz)) {
            return Err(SignalError::SamplingRate { fs_hz });
        }
        if n_leads == 0 || n_leads > MAX_LEADS {
            return Err(SignalError::NoLeads {
                got: n_leads,
                max: MAX_LEADS,
            });
        }
        // Decisions run at half the band-pass rate: the QRS envelope changes
        // little within 16 ms, and everything after the band-pass costs half.
        let front_k = (fs_hz / BANDPASS_RATE_HZ).round().max(1.0) as u64;
        let bp_hz = fs_hz / front_k as f64;
        let decimation = 2 * front_k;
        let internal_hz = fs_hz / decimation as f64;
        let ms = |v: f64| ((v / 1000.0) * internal_hz).round().max(1.0) as u64;
        let integration_len = ms(cfg.integration_ms);
        // The running sum of squares spans the power of two at or above the
        // integration length (it was a power-of-two ring, and the accuracy
        // figures were measured so), while the mean divides by the length.
        let energy_window = (integration_len as usize).next_power_of_two();
        // The longest search-back, plus the candidate look-ahead, one piece
        // (written before its decisions), the R-peak search and the filter
        // delay, with room to spare.
        let raw_len = ((cfg.search_back_max_ms / 1000.0 + 2.0) * fs_hz) as usize;
        // Plus room for one piece: a piece's fused values are stored before
        // its decisions, and must not overwrite what those decisions read.
        let history = ms(cfg.search_back_max_ms + 1000.0) as usize + PIECE_INTERNAL;
        let mut leads = Vec::with_capacity(n_leads);
        for _ in 0..n_leads {
            leads.push(Lead {
                acc: 0.0,
                offset: None,
                last_valid: 0.0,
                bandpass: DetectionBandpass::new(bp_hz)?,
                y1: 0.0,
                y2: 0.0,
                energy_tail: vec![0.0; energy_window],
                energy_sum: 0.0,
                raw: Ring::new(raw_len),
                block_max: 0.0,
                block_values: Vec::with_capacity(internal_hz.round() as usize),
                block_max_hist: VecDeque::with_capacity(SCALE_BLOCKS + 1),
                block_floor_hist: VecDeque::with_capacity(SCALE_BLOCKS),
                scale: 0.0,
                floor: 0.0,
                weight: 0.0,
                held: Vec::new(),
                x_buf: Vec::new(),
                d_buf: Vec::new(),
                e_buf: Vec::new(),
                env_buf: Vec::new(),
                slope_buf: Vec::new(),
            });
        }
        let front_delay = bandpass_delay(bp_hz)? + 1.0;
        let half_window = ms(cfg.refractory_ms);
        Ok(QrsDetector {
            half_window,
            refractory: ms(cfg.refractory_ms),
            t_wave_window: ms(cfg.t_wave_window_ms),
            search_back_max: ms(cfg.search_back_max_ms),
            cfg,
            fs_hz,
            decimation,
            front_k,
            bp_hz,
            internal_hz,
            leads,
            n_in: 0,
            phase: 0,
            block_fill: 0,
            n_int: 0,
            integration_len,
            front_delay,
            block_len: internal_hz.round() as u64,
            fused: Ring::new(history),
            fused_slope: Ring::new(history),
            best_lead: vec![0; history.next_power_of_two()],
            spk: 1.0,
            npk: 0.1,
            rr_hist: VecDeque::with_capacity(8),
            rr_avg: internal_hz,
            search_back_due: 0,
            last_beat_at: None,
            last_beat_sample: None,
            last_beat_slope: 0.0,
            pending: Vec::new(),
            searched_until: 0,
            warmup: Some(Vec::new()),
            fuse_coef: vec![0.0; n_leads],
            fuse_best: 0,
            fused_buf: Vec::new(),
            fused_slope_buf: Vec::new(),
            fused_tail: Vec::new(),
            win_buf: Vec::new(),
        })
    }

    pub fn fs_hz(&self) -> f64 {
        self.fs_hz
    }

    pub fn n_leads(&self) -> usize {
        self.leads.len()
    }

    /// Upper bound of the time between an R peak and its report, in ms.
    pub fn delay_bound_ms(&self) -> f64 {
        let to_ms = |n: f64| n / self.internal_hz * 1000.0;
        self.front_delay / self.bp_hz * 1000.0
            + to_ms(self.half_window as f64 + 1.0)
            + self.decimation as f64 / self.fs_hz * 1000.0
            + self.cfg.search_back_max_ms
    }

    /// Typical delay of a beat found on the first pass, in ms.
    pub fn first_pass_delay_ms(&self) -> f64 {
        (self.front_delay / self.bp_hz
            + (self.integration_len as f64 / 2.0 + self.half_window as f64) / self.internal_hz)
            * 1000.0
    }

    /// Pushes one chunk: `chunk[lead][i]` in millivolts, every lead the same
    /// length. NaN marks a missing sample (a gap); it holds the lead's last
    /// value, so a gap adds no edge that could pass for a QRS.
    pub fn push<S: DetectionSink + ?Sized>(
        &mut self,
        chunk: &[&[f32]],
        sink: &mut S,
    ) -> Result<(), SignalError> {
        if chunk.len() != self.leads.len() {
            return Err(SignalError::LeadCount {
                expected: self.leads.len(),
                got: chunk.len(),
            });
        }
        let len = chunk[0].len();
        if let Some((lead, c)) = chunk.iter().enumerate().find(|(_, c)| c.len() != len) {
            return Err(SignalError::RaggedChunk {
                lead,
                expected: len,
                got: c.len(),
            });
        }
        // Pieces of about a second: long enough for tight per-lead
        // loops, short enough that the full-rate history still holds every
        // R peak that stage 2 may need to locate, whatever the chunk size.
        let piece = (self.decimation * PIECE_INTERNAL as u64) as usize;
        let mut at = 0;
        while at < len {
            let end = (at + piece).min(len);
            self.push_piece(chunk, at..end, sink);
            at = end;
        }
        Ok(())
    }

    /// Frees the scratch space that `push` keeps between chunks so that the
    /// per-sample path never allocates (about 6 KB a lead at 500 Hz). For a
    /// caller holding many detectors between chunks (the pipeline: one per
    /// visit in flight), memory counts more than the next push's few
    /// allocations. The beats found do not change.
    pub fn release_scratch(&mut self) {
        for l in &mut self.leads {
            l.held = Vec::new();
            l.x_buf = Vec::new();
            l.e_buf = Vec::new();
            l.env_buf = Vec::new();
            l.slope_buf = Vec::new();
            // It carries the derivative the last piece left unpaired.
            l.d_buf.shrink_to_fit();
        }
        self.fused_buf = Vec::new();
        self.fused_slope_buf = Vec::new();
    }

    fn push_piece<S: DetectionSink + ?Sized>(
        &mut self,
        chunk: &[&[f32]],
        range: std::ops::Range<usize>,
        sink: &mut S,
    ) {
        // Stage 1, lead by lead: decimation and the per-lead envelope, each
        // lead's recurrences in one tight loop.
        let len = range.len() as u64;
        let k = self.front_k;
        let n_new = ((self.n_in + len) / self.decimation - self.n_in / self.decimation) as usize;
        let inv_k = 1.0 / k as f64;
        let inv_len = 1.0 / self.integration_len as f64;
        for (lead, samples) in self.leads.iter_mut().zip(chunk) {
            lead.front_end(&samples[range.clone()], self.n_in, self.phase, k, inv_k);
            lead.envelope_of_decimated(inv_len, self.internal_hz);
            debug_assert_eq!(lead.env_buf.len(), n_new);
        }
        self.n_in += len;
        self.phase = (self.phase + len) % k;
        // Stage 2: block statistics and fusion over runs that end at
        // one-second block boundaries (where the fusion weights change),
        // then decisions in time order.
        let mut j = 0;
        while j < n_new {
            let run = ((self.block_len - self.block_fill) as usize).min(n_new - j);
            self.fusion_run(j..j + run, sink);
            j += run;
        }
    }

    /// Ends the record: decides the candidates still waiting for their
    /// look-ahead window, and a last search-back.
    pub fn finish<S: DetectionSink + ?Sized>(&mut self, sink: &mut S) {
        let end = self.n_int;
        if end > 0 && self.warmup.is_some() {
            self.end_warmup(end - 1, sink);
        }
        // Centres in the last half-window never saw their full look-ahead:
        // what follows the end of the record counts as silence.
        for c in end.saturating_sub(self.half_window)..end {
            let v = self.fused.get(c);
            let before = c.saturating_sub(self.half_window)..c;
            let after = c + 1..end;
            let earliest_max = before.clone().all(|j| self.fused.get(j) < v)
                && after.clone().all(|j| self.fused.get(j) <= v);
            if earliest_max {
                self.consider(c, sink);
            }
        }
        self.search_back(end, true, sink);
    }

    /// Fusion and decisions for the internal samples `range` of this
    /// piece, which all lie in one one-second block.
    fn fusion_run<S: DetectionSink + ?Sized>(
        &mut self,
        range: std::ops::Range<usize>,
        sink: &mut S,
    ) {
        let run = range.len() as u64;
        for lead in self.leads.iter_mut() {
            let env = &lead.env_buf[range.clone()];
            let from = lead.block_values.len();
            lead.block_values
                .extend(env.iter().map(|v| v.max(0.0).to_bits()));
            // Envelopes are non-negative, so their bit patterns order like
            // their values, and an integer maximum vectorises.
            let max_bits = lead.block_values[from..].iter().copied().max();
            lead.block_max = lead.block_max.max(f32::from_bits(max_bits.unwrap_or(0)));
        }
        self.block_fill += run;
        let block_done = self.block_fill == self.block_len;
        if block_done {
            self.block_fill = 0;
        }
        let first = self.n_int;
        let last = first + run - 1;
        self.n_int += run;
        if let Some(warmup) = self.warmup.as_mut() {
            // The first second has no scale yet: keep its envelopes and fuse
            // them once the second is over (a one-off start-up delay).
            for i in range {
                warmup.extend(self.leads.iter().map(|l| (l.env_buf[i], l.slope_buf[i])));
            }
            if block_done {
                self.end_warmup(last, sink);
            }
            return;
        }
        let mut fused = std::mem::take(&mut self.fused_buf);
        let mut fused_slope = std::mem::take(&mut self.fused_slope_buf);
        fused.clear();
        fused.resize(range.len(), 0.0);
        fused_slope.clear();
        fused_slope.resize(range.len(), 0.0);
        for (lead, &c) in self.leads.iter().zip(&self.fuse_coef) {
            if c > 0.0 {
                let env = &lead.env_buf[range.clone()];
                let slope = &lead.slope_buf[range.clone()];
                for (g, &e) in fused.iter_mut().zip(env) {
                    *g += c * e;
                }
                for (h, &s) in fused_slope.iter_mut().zip(slope) {
                    *h += c * s;
                }
            }
        }
        self.fused.put_slice(first, &fused);
        self.fused_slope.put_slice(first, &fused_slope);
        let cap = self.best_lead.len();
        let start = (first & (cap as u64 - 1)) as usize;
        let head = fused.len().min(cap - start);
        self.best_lead[start..start + head].fill(self.fuse_best);
        self.best_lead[..fused.len() - head].fill(self.fuse_best);
        self.decide_run(first, &fused, sink);
        self.fused_buf = fused;
        self.fused_slope_buf = fused_slope;
        if block_done {
            self.close_block(last, self.block_len, sink);
        }
    }

    fn end_warmup<S: DetectionSink + ?Sized>(&mut self, n: u64, sink: &mut S) {
        let Some(warmup) = self.warmup.take() else {
            return;
        };
        self.close_block(n, n + 1, sink);
        let n_leads = self.leads.len();
        for (j, values) in warmup.chunks(n_leads).enumerate() {
            let mut g = 0.0f32;
            let mut h = 0.0f32;
            for (&c, &(env, slope)) in self.fuse_coef.iter().zip(values) {
                if c > 0.0 {
                    g += c * env;
                    h += c * slope;
                }
            }
            self.candidate_step(j as u64, g, h, self.fuse_best, sink);
        }
        let keep = self.half_window + 1;
        self.fused_tail.clear();
        let fused = &self.fused;
        self.fused_tail
            .extend(((n + 1).saturating_sub(keep)..=n).map(|j| fused.get(j)));
    }

    /// The fusion is a weighted mean of the leads' envelopes, each divided
    /// by its QRS height: one coefficient per lead, fixed for a second, so
    /// that the per-sample path has no division.
    fn update_fusion(&mut self) {
        let mut den = 0.0f32;
        let mut best = (0usize, 0.0f32);
        for (li, lead) in self.leads.iter().enumerate() {
            if lead.weight > 0.0 {
                den += lead.weight;
                if lead.weight > best.1 {
                    best = (li, lead.weight);
                }
            }
        }
        for (c, lead) in self.fuse_coef.iter_mut().zip(&self.leads) {
            *c = if lead.weight > 0.0 && den > 0.0 {
                lead.weight / lead.scale / den
            } else {
                0.0
            };
        }
        self.fuse_best = best.0 as u8;
    }

    /// Stores the fused values of internal sample `n`, then decides.
    fn candidate_step<S: DetectionSink + ?Sized>(
        &mut self,
        n: u64,
        g: f32,
        h: f32,
        best: u8,
        sink: &mut S,
    ) {
        self.fused.put(n, g);
        self.fused_slope.put(n, h);
        let mask = self.best_lead.len() as u64 - 1;
        self.best_lead[(n & mask) as usize] = best;
        self.decide(n, sink);
    }

    /// The decisions due once internal sample `n` is known: whether the
    /// centre c = n - H is a candidate, and search-back.
    fn decide<S: DetectionSink + ?Sized>(&mut self, n: u64, sink: &mut S) {
        // The centre is a candidate when it is the earliest maximum of
        // [c - H, c + H]. Such a point is first of all a local maximum,
        // which is rare in a smooth envelope and costs two comparisons to
        // rule out; only then is the whole window checked.
        let hw = self.half_window;
        if n >= hw {
            let c = n - hw;
            let v = self.fused.get(c);
            if (c == 0 || self.fused.get(c - 1) < v)
                && self.fused.get(c + 1) <= v
                && self.is_window_peak(c, v, n)
            {
                self.consider(c, sink);
            }
        }
        let decided_until = n.saturating_sub(hw);
        if decided_until >= self.search_back_due && self.last_beat_at.is_some() {
            self.search_back(decided_until, false, sink);
        }
    }

    /// [`QrsDetector::decide`] for the internal samples from `first` on,
    /// whose fused values `run` are already in the history: the local-maximum
    /// screen runs over a contiguous copy (the last H + 1 values before the
    /// run, then the run) rather than through the history's index masks.
    fn decide_run<S: DetectionSink + ?Sized>(&mut self, first: u64, run: &[f32], sink: &mut S) {
        let hw = self.half_window;
        let keep = hw as usize + 1;
        let mut win = std::mem::take(&mut self.win_buf);
        win.clear();
        win.extend_from_slice(&self.fused_tail);
        win.extend_from_slice(run);
        if self.fused_tail.len() == keep {
            // For n = first + i, the centre n - H is win[i + 1].
            for (i, w) in win.windows(3).take(run.len()).enumerate() {
                let n = first + i as u64;
                let c = n - hw;
                let v = w[1];
                if w[0] < v && w[2] <= v && self.is_window_peak(c, v, n) {
                    self.consider(c, sink);
                }
                if c >= self.search_back_due && self.last_beat_at.is_some() {
                    self.search_back(c, false, sink);
                }
            }
        } else {
            // The record's first H + 1 samples.
            for i in 0..run.len() as u64 {
                self.decide(first + i, sink);
            }
        }
        let from = win.len().saturating_sub(keep);
        self.fused_tail.clear();
        self.fused_tail.extend_from_slice(&win[from..]);
        self.win_buf = win;
    }

    /// Whether `v`, the fused value at `c`, is the earliest maximum of
    /// `[c - H, last]`.
    fn is_window_peak(&self, c: u64, v: f32, last: u64) -> bool {
        // Over contiguous slices and without an early exit, so that the
        // comparisons run several at a time: local maxima of noise are
        // common enough for this to show in the profile.
        let before = self.fused.slices(c.saturating_sub(self.half_window), c);
        let after = self.fused.slices(c + 1, last + 1);
        let below = |ok: bool, x: &f32| ok & (*x < v);
        let not_above = |ok: bool, x: &f32| ok & (*x <= v);
        before.iter().all(|s| s.iter().fold(true, below))
            && after.iter().all(|s| s.iter().fold(true, not_above))
    }

    /// Ends the one-second block that ends at internal index `n` and holds
    /// `len` samples (fewer only when a record ends within its first second).
    fn close_block<S: DetectionSink + ?Sized>(&mut self, n: u64, len: u64, sink: &mut S) {
        let mut usable = false;
        for lead in &mut self.leads {
            let floor = median_of_non_negative(&mut lead.block_values);
            if lead.block_max_hist.len() == SCALE_BLOCKS {
                lead.block_max_hist.pop_front();
                lead.block_floor_hist.pop_front();
            }
            lead.block_max_hist.push_back(lead.block_max);
            lead.block_floor_hist.push_back(floor);
            lead.block_max = 0.0;
            lead.block_values.clear();
            lead.scale = median(&lead.block_max_hist);
            lead.floor = median(&lead.block_floor_hist);
            lead.weight = lead_weight(lead.scale, lead.floor, self.cfg.min_lead_snr);
            usable |= lead.weight > 0.0;
        }
        self.update_fusion();
        if !sink.wants_quality() {
            return;
        }
        let lead_snr = self
            .leads
            .iter()
            .map(|l| {
                if l.floor > 0.0 {
                    l.scale / l.floor
                } else {
                    0.0
                }
            })
            .collect();
        let k = self.decimation;
        let end_sample = (n + 1) * k;
        sink.quality(QualitySegment {
            start_sample: end_sample.saturating_sub(len * k),
            end_sample,
            usable,
            lead_snr,
        });
    }

    fn threshold(&self) -> f32 {
        self.npk + self.cfg.threshold_fraction * (self.spk - self.npk)
    }

    fn candidate_slope(&self, at: u64) -> f32 {
        let from = at.saturating_sub(self.integration_len);
        (from..=at)
            .map(|j| self.fused_slope.get(j))
            .fold(0.0f32, f32::max)
    }

    fn consider<S: DetectionSink + ?Sized>(&mut self, at: u64, sink: &mut S) {
        let strength = self.fused.get(at);
        if strength <= 0.0 {
            return;
        }
        let cand = Candidate {
            at,
            strength,
            slope: self.candidate_slope(at),
        };
        if let Some(last) = self.last_beat_at {
            if at < last + self.refractory {
                return;
            }
        }
        if strength >= self.threshold() && !self.looks_like_t_wave(&cand) {
            self.look_back_before(&cand, sink);
            self.spk = 0.125 * strength.min(3.0 * self.spk) + 0.875 * self.spk;
            self.accept(cand, false, sink);
        } else {
            self.npk = 0.125 * strength + 0.875 * self.npk;
            self.pending.push(cand);
        }
    }

    /// A beat that ends an unusually long RR interval shows that the
    /// interval may hold a missed beat, before the time-based search-back
    /// would have looked: search it now, at half the threshold.
    fn look_back_before<S: DetectionSink + ?Sized>(&mut self, next: &Candidate, sink: &mut S) {
        let Some(last) = self.last_beat_at else {
            return;
        };
        let rr = (next.at - last) as f64;
        if rr < self.cfg.look_back_rr * self.rr_average() {
            return;
        }
        let half = 0.5 * self.threshold();
        let found = self
            .pending
            .iter()
            .filter(|c| c.at >= last + self.refractory && c.at + self.refractory <= next.at)
            .filter(|c| c.strength >= half && !self.looks_like_t_wave(c))
            .copied()
            .max_by(|a, b| a.strength.total_cmp(&b.strength));
        if let Some(cand) = found {
            self.spk = 0.25 * cand.strength.min(3.0 * self.spk) + 0.75 * self.spk;
            self.accept(cand, true, sink);
        }
    }

    fn looks_like_t_wave(&self, cand: &Candidate) -> bool {
        match self.last_beat_at {
            Some(last) if cand.at < last + self.t_wave_window => {
                cand.slope < 0.5 * self.last_beat_slope
            }
            _ => false,
        }
    }

    fn rr_average(&self) -> f64 {
        self.rr_avg
    }

    /// Looks back for a missed beat when the RR interval has run long.
    /// `now` is the latest internal index whose candidates are decided.
    fn search_back<S: DetectionSink + ?Sized>(&mut self, now: u64, at_end: bool, sink: &mut S) {
        loop {
            let Some(last) = self.last_beat_at else {
                return;
            };
            if now < self.search_back_due && !at_end {
                return;
            }
            if self.pending.is_empty() || self.searched_until >= now {
                return;
            }
            self.searched_until = now;
            let half = 0.5 * self.threshold();
            let found = self
                .pending
                .iter()
                .filter(|c| c.at >= last + self.refractory && c.strength >= half)
                .filter(|c| !self.looks_like_t_wave(c))
                .copied()
                .max_by(|a, b| a.strength.total_cmp(&b.strength));
            let Some(cand) = found else {
                return;
            };
            self.spk = 0.25 * cand.strength.min(3.0 * self.spk) + 0.75 * self.spk;
            self.accept(cand, true, sink);
            // Later candidates may hold a second missed beat.
            self.searched_until = 0;
        }
    }

    fn accept<S: DetectionSink + ?Sized>(
        &mut self,
        cand: Candidate,
        search_back: bool,
        sink: &mut S,
    ) {
        if let Some(last) = self.last_beat_at {
            let rr = (cand.at - last) as f64;
            // Pauses and missed beats would drag the average: keep plausible RR.
            let avg = self.rr_average();
            if self.rr_hist.len() < 2 || (0.5 * avg..=1.8 * avg).contains(&rr) {
                if self.rr_hist.len() == 8 {
                    self.rr_hist.pop_front();
                }
                self.rr_hist.push_back(rr);
            }
        }
        if !self.rr_hist.is_empty() {
            self.rr_avg = self.rr_hist.iter().sum::<f64>() / self.rr_hist.len() as f64;
        }
        // Checked for every sample, so computed once per beat.
        self.search_back_due = cand.at
            + (self.cfg.search_back_rr * self.rr_avg).min(self.search_back_max as f64) as u64;
        self.pending.retain(|c| c.at > cand.at);
        self.last_beat_at = Some(cand.at);
        self.last_beat_slope = cand.slope;
        let mut sample = self.locate_r_peak(cand.at);
        if let Some(prev) = self.last_beat_sample {
            sample = sample.max(prev + 1);
        }
        self.last_beat_sample = Some(sample);
        sink.beat(Beat {
            sample,
            strength: cand.strength,
            search_back,
        });
    }

    /// Maps a fused-envelope peak to the R peak in the full-rate signal of
    /// the lead that weighed most there.
    fn locate_r_peak(&self, at: u64) -> u64 {
        let mask = self.best_lead.len() as u64 - 1;
        let lead = &self.leads[self.best_lead[(at & mask) as usize] as usize];
        // The envelope peaks about half a window after the steepest slope;
        // the steepest slope is within a few ms of the R peak.
        let from = at.saturating_sub(self.integration_len);
        let steepest = (from..=at)
            .max_by(|&a, &b| self.fused_slope.get(a).total_cmp(&self.fused_slope.get(b)))
            .unwrap_or(at);
        // Decision sample n holds band-pass samples 2n and 2n + 1.
        let kb = self.front_k as f64;
        let centre_bp = ((2 * steepest) as f64 + 0.5 - self.front_delay).max(0.0);
        let centre = (centre_bp * kb + kb / 2.0) as u64;
        let half = (0.075 * self.fs_hz) as u64;
        let oldest = self.n_in.saturating_sub(lead.raw.capacity() - 1);
        let lo = centre.saturating_sub(half).max(oldest);
        let hi = (centre + half).min(self.n_in.saturating_sub(1));
        if hi <= lo {
            return centre.min(self.n_in.saturating_sub(1));
        }
        let (a, b) = (lead.raw.get(lo), lead.raw.get(hi));
        let span = (hi - lo) as f32;
        let mut best = (lo, -1.0f32);
        let mut t = lo;
        for part in lead.raw.slices(lo, hi + 1) {
            for &v in part {
                let base = a + (b - a) * ((t - lo) as f32 / span);
                let dev = (v - base).abs();
                if dev > best.1 {
                    best = (t, dev);
                }
                t += 1;
            }
        }
        best.0
    }
}

fn lead_weight(scale: f32, mean: f32, min_snr: f32) -> f32 {
    // A flat or disconnected lead has no scale at all.
    if scale <= 1e-6 || mean <= 0.0 {
        return 0.0;
    }
    let snr = scale / mean;
    if snr < min_snr {
        0.0
    } else {
        (snr - min_snr + 0.25).min(8.0)
    }
}

fn median(values: &VecDeque<f32>) -> f32 {
    let mut v = [0.0f32; SCALE_BLOCKS];
    let n = values.len().min(SCALE_BLOCKS);
    for (slot, x) in v.iter_mut().zip(values) {
        *slot = *x;
    }
    v[..n].sort_unstable_by(f32::total_cmp);
    v[n / 2]
}

/// Upper median of non-negative values given as their bit patterns: for
/// non-negative floats the bit patterns sort like the values, and selecting
/// on integers is much cheaper than on floats.
fn median_of_non_negative(bits: &mut [u32]) -> f32 {
    if bits.is_empty() {
        return 0.0;
    }
    let mid = bits.len() / 2;
    f32::from_bits(*bits.select_nth_unstable(mid).1)
}

/// Delay of the detection band-pass for a QRS-like pulse, in samples: found
/// by filtering a 20 ms Gaussian and timing its largest swing, so that it is
/// right for whatever internal rate the decimator chose.
fn bandpass_delay(fs_hz: f64) -> Result<f64, SignalError> {
    let mut bp = DetectionBandpass::new(fs_hz)?;
    let centre = (0.5 * fs_hz) as usize;
    let sigma = 0.010 * fs_hz;
    let mut best = (0usize, 0.0f64);
    let mut prev2 = 0.0;
    let mut prev1 = 0.0;
    for i in 0..(fs_hz as usize) {
        let t = (i as f64 - centre as f64) / sigma;
        let y = bp.step((-0.5 * t * t).exp());
        let d = (y - prev2).abs();
        prev2 = prev1;
        prev1 = y;
        // The pulse's own steepest points are one sigma either side of its
        // centre; measure where the filtered derivative peaks relative to
        // the centre.
        if d > best.1 {
            best = (i, d);
        }
    }
    Ok((best.0 as f64 - centre as f64 + sigma).max(0.0) - 1.0)
}

/// Detects the QRS complexes of a whole record at once: `leads[lead][i]` in
/// millivolts. Returns R-peak sample indices, ascending.
pub fn detect_qrs(leads: &[&[f32]], fs_hz: f64) -> Result<Vec<u64>, SignalError> {
    let mut detector = QrsDetector::new(fs_hz, leads.len())?;
    let mut beats: Vec<Beat> = Vec::new();
    detector.push(leads, &mut beats)?;
    detector.finish(&mut beats);
    Ok(beats.into_iter().map(|b| b.sample).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A crude but physiological test ECG: Gaussian QRS (R), small T wave,
    /// baseline wander. Behaviour only; accuracy is measured on real data.
    fn toy_ecg(fs_hz: f64, seconds: f64, rr_s: f64) -> (Vec<f32>, Vec<u64>) {
        let n = (fs_hz * seconds) as usize;
        let mut x = vec![0.0f32; n];
        let mut r_peaks = Vec::new();
        let mut t = 0.4;
        while t < seconds - 0.4 {
            r_peaks.push((t * fs_hz).round() as u64);
            t += rr_s;
        }
        for (i, v) in x.iter_mut().enumerate() {
            let ts = i as f64 / fs_hz;
            let mut s = 0.3 * (2.0 * std::f64::consts::PI * 0.25 * ts).sin();
            for &r in &r_peaks {
                let dt = ts - r as f64 / fs_hz;
                s += 1.2 * (-0.5 * (dt / 0.012).powi(2)).exp();
                s -= 0.2 * (-0.5 * ((dt - 0.03) / 0.01).powi(2)).exp();
                s += 0.3 * (-0.5 * ((dt - 0.3) / 0.05).powi(2)).exp();
            }
            *v = s as f32;
        }
        (x, r_peaks)
    }

    fn matched(truth: &[u64], found: &[u64], tol: u64) -> usize {
        truth
            .iter()
            .filter(|&&t| found.iter().any(|&f| f.abs_diff(t) <= tol))
            .count()
    }

    #[test]
    fn finds_every_beat_at_all_rates() {
        for fs in [250.0, 360.0, 500.0, 1000.0] {
            let (x, truth) = toy_ecg(fs, 30.0, 0.8);
            let found = detect_qrs(&[&x], fs).unwrap();
            let tol = (0.05 * fs) as u64;
            assert_eq!(
                matched(&truth, &found, tol),
                truth.len(),
                "fs {fs}: {found:?}"
            );
            assert_eq!(
                found.len(),
                truth.len(),
                "fs {fs}: extra beats {found:?} vs {truth:?}"
            );
        }
    }

    #[test]
    fn flat_line_and_silence_give_no_beats() {
        let flat = vec![0.0f32; 5000];
        assert!(detect_qrs(&[&flat], 500.0).unwrap().is_empty());
        let dc = vec![3.2f32; 5000];
        assert!(detect_qrs(&[&dc], 500.0).unwrap().is_empty());
        let gaps = vec![f32::NAN; 5000];
        assert!(detect_qrs(&[&gaps], 500.0).unwrap().is_empty());
    }

    fn white_noise(n: usize, seed: u64, amplitude: f32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                // Sum of uniforms: near-Gaussian, deterministic.
                let mut acc = 0.0f32;
                for _ in 0..4 {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    acc += (s % 10_000) as f32 / 10_000.0 - 0.5;
                }
                acc * amplitude
            })
            .collect()
    }

    #[test]
    fn pure_noise_gives_no_beats_and_an_unusable_quality() {
        for fs in [250.0, 360.0, 500.0, 1000.0] {
            let n = (fs * 30.0) as usize;
            let a = white_noise(n, 7, 0.5);
            let b = white_noise(n, 11, 0.2);
            let mut d = QrsDetector::new(fs, 2).unwrap();
            let mut out = crate::sink::Collect::default();
            d.push(&[&a, &b], &mut out).unwrap();
            d.finish(&mut out);
            let snr: Vec<_> = out.quality.iter().map(|q| q.lead_snr.clone()).collect();
            assert!(
                out.beats.is_empty(),
                "fs {fs}: {} beats from noise; snr {snr:?}",
                out.beats.len()
            );
            assert!(out.quality.iter().all(|q| !q.usable));
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert!(QrsDetector::new(500.0, 0).is_err());
        assert!(QrsDetector::new(f64::INFINITY, 1).is_err());
        let mut d = QrsDetector::new(500.0, 2).unwrap();
        let mut beats: Vec<Beat> = Vec::new();
        let a = [0.0f32; 10];
        let b = [0.0f32; 9];
        assert!(d.push(&[&a], &mut beats).is_err());
        assert!(d.push(&[&a, &b], &mut beats).is_err());
        assert!(d.push(&[&a[..0], &b[..0]], &mut beats).is_ok());
    }

    /// Every beat is reported within the stated bound after its R peak,
    /// measured by pushing one sample at a time.
    #[test]
    fn beats_arrive_within_the_stated_delay() {
        for fs in [250.0, 360.0, 500.0, 1000.0] {
            // A pause (one dropped beat) makes search-back do some work.
            let (mut x, _) = toy_ecg(fs, 20.0, 0.8);
            let gap = (10.0 * fs) as usize;
            for v in &mut x[gap - (0.3 * fs) as usize..gap + (0.3 * fs) as usize] {
                *v = 0.0;
            }
            let mut d = QrsDetector::new(fs, 1).unwrap();
            let bound_samples = (d.delay_bound_ms() / 1000.0 * fs).ceil() as u64;
            let first_pass = (d.first_pass_delay_ms() / 1000.0 * fs).ceil() as u64;
            assert!(d.delay_bound_ms() <= 2500.0 && d.first_pass_delay_ms() <= 500.0);
            let mut beats: Vec<Beat> = Vec::new();
            let mut worst_first_pass = 0;
            for (i, v) in x.iter().enumerate() {
                let before = beats.len();
                d.push(&[std::slice::from_ref(v)], &mut beats).unwrap();
                for b in &beats[before..] {
                    let delay = i as u64 + 1 - b.sample;
                    // The first second is held once to learn the lead scales.
                    if b.sample > fs as u64 {
                        assert!(
                            delay <= bound_samples,
                            "fs {fs}: beat {} after {delay}",
                            b.sample
                        );
                        if !b.search_back {
                            worst_first_pass = worst_first_pass.max(delay);
                        }
                    }
                }
            }
            assert!(beats.len() > 15);
            println!(
                "fs {fs}: first-pass delay worst {:.0} ms (typical {:.0} ms), bound {:.0} ms",
                worst_first_pass as f64 / fs * 1000.0,
                d.first_pass_delay_ms(),
                d.delay_bound_ms()
            );
            // First-pass delay stays near its typical value (50 % margin).
            assert!(
                worst_first_pass <= first_pass * 3 / 2,
                "fs {fs}: {worst_first_pass} vs {first_pass}"
            );
        }
    }

    #[test]
    fn clipping_keeps_the_beats_and_adds_none() {
        let fs = 500.0;
        let (x, truth) = toy_ecg(fs, 20.0, 0.8);
        // An ADC rail at 0.9 mV flattens every R peak's top.
        let clipped: Vec<f32> = x.iter().map(|v| v.min(0.9)).collect();
        let found = detect_qrs(&[&clipped], fs).unwrap();
        assert_eq!(matched(&truth, &found, 25), truth.len());
        assert_eq!(found.len(), truth.len());
    }

    #[test]
    fn a_lead_falling_off_invents_no_beat() {
        let fs = 500.0;
        let (x, truth) = toy_ecg(fs, 30.0, 0.8);
        let (y, _) = toy_ecg(fs, 30.0, 0.8);
        // Lead 1 goes off at 12 s: a jump to the amplifier rail, then flat.
        let off = (12.3 * fs) as usize;
        let y: Vec<f32> = y
            .iter()
            .enumerate()
            .map(|(i, v)| if i < off { *v } else { 5.0 })
            .collect();
        let found = detect_qrs(&[&x, &y], fs).unwrap();
        // The jump itself may mask the one beat 100 ms after it (it wins the
        // refractory window), but every other beat is found and none is added.
        assert!(matched(&truth, &found, 25) >= truth.len() - 1);
        assert!(
            found.len() <= truth.len(),
            "{} beats for {}",
            found.len(),
            truth.len()
        );
        let after: Vec<u64> = truth
            .iter()
            .copied()
            .filter(|&t| t > (13.0 * fs) as u64)
            .collect();
        assert_eq!(
            matched(&after, &found, 25),
            after.len(),
            "beats after the lead fell off"
        );
    }

    #[test]
    fn a_dead_lead_does_not_hide_a_live_one() {
        let fs = 500.0;
        let (x, truth) = toy_ecg(fs, 20.0, 0.75);
        let dead = vec![0.0f32; x.len()];
        let found = detect_qrs(&[&dead, &x], fs).unwrap();
        assert_eq!(matched(&truth, &found, 25), truth.len());
        assert_eq!(found.len(), truth.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any chunking gives exactly the beats of the whole record at once,
        /// also when the scratch space is released between some chunks.
        #[test]
        fn chunking_never_changes_the_beats(
            fs in prop::sample::select(vec![250.0, 360.0, 500.0, 1000.0]),
            cuts in prop::collection::vec(1usize..700, 1..60),
            noise_seed in any::<u64>(),
        ) {
            let (mut x, _) = toy_ecg(fs, 12.0, 0.7);
            // Deterministic pseudo-noise so that candidates near threshold exist.
            let mut s = noise_seed | 1;
            for v in x.iter_mut() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                *v += ((s % 1000) as f32 / 1000.0 - 0.5) * 0.2;
            }
            let y: Vec<f32> = x.iter().map(|v| -0.5 * v).collect();
            let whole = {
                let mut d = QrsDetector::new(fs, 2).unwrap();
                let mut b: Vec<Beat> = Vec::new();
                d.push(&[&x, &y], &mut b).unwrap();
                d.finish(&mut b);
                b
            };
            let mut d = QrsDetector::new(fs, 2).unwrap();
            let mut b: Vec<Beat> = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < x.len() {
                let len = cuts[i % cuts.len()].min(x.len() - at);
                d.push(&[&x[at..at + len], &y[at..at + len]], &mut b).unwrap();
                if i % 3 == 1 {
                    d.release_scratch();
                }
                at += len;
                i += 1;
            }
            d.finish(&mut b);
            prop_assert_eq!(whole, b);
        }
    }
}
