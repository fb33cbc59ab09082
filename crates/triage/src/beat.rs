//! Representative beats: beats of the dominant morphology, aligned and averaged by the
//! median, lead by lead (a lead x time matrix).
//!
//! The median rather than the mean because it ignores the occasional artefact or
//! ectopic sample that survives the morphology selection.

use ndarray::Array2;

/// How far before and after the R peak a beat window reaches.
pub(crate) const PRE_R_S: f64 = 0.30;
pub(crate) const POST_R_S: f64 = 0.65;
/// Half-width of the QRS window used to compare morphologies.
const MORPH_PRE_S: f64 = 0.06;
const MORPH_POST_S: f64 = 0.08;
/// Alignment search around the detector's R peak; detectors jitter by a few samples and
/// an unaligned median beat smears the QRS edges that delineation looks for.
const ALIGN_S: f64 = 0.016;
/// Correlation with the template above which a beat counts as the dominant morphology.
pub(crate) const DOMINANT_CORR: f64 = 0.90;
/// At most this many beats feed a template: 12-lead rest ECGs have ~10-20; long records
/// are subsampled evenly so the work stays bounded.
const MAX_TEMPLATE_BEATS: usize = 120;

/// The beats of one recording sorted by morphology.
#[derive(Debug, Clone)]
pub(crate) struct BeatSet {
    /// Aligned R position of every usable beat (absolute sample index).
    pub r_aligned: Vec<usize>,
    /// Index in the caller's R-peak list.
    pub source: Vec<usize>,
    /// Whether the beat belongs to the dominant morphology.
    pub dominant: Vec<bool>,
    /// The median beat of the dominant beats (`median_beat` of the signals sorted, at
    /// their aligned R), when sorting ended by computing it: the caller's first template.
    pub dominant_median: Option<Array2<f32>>,
}

impl BeatSet {
    pub fn dominant_r(&self) -> Vec<usize> {
        self.r_aligned
            .iter()
            .zip(&self.dominant)
            .filter(|(_, &d)| d)
            .map(|(&r, _)| r)
            .collect()
    }
}

pub(crate) fn samples(fs_hz: f64, seconds: f64) -> usize {
    (fs_hz * seconds).round().max(1.0) as usize
}

/// Median over the windows [r - pre, r + post) of every lead; beats whose window leaves the
/// signal are skipped by the caller. Beats are subsampled evenly above `MAX_TEMPLATE_BEATS`.
///
/// The interpretation's largest cost (one median per lead and sample, several templates
/// per interpretation, an interpretation per chunk while streaming), so the medians are
/// taken [`LANES`] samples at a time: the beats' values as integer keys in
/// `f32::total_cmp` order, put in place by a branch-free comparator network (only the
/// comparators the middle positions depend on) whose compare-exchanges are vector
/// instructions. The result is [`median`]'s, bit for bit.
///
/// Compiled twice: once for AVX2, where a compare-exchange of all [`LANES`] is one
/// `vpminsd` and one `vpmaxsd`, chosen when the processor has it; once portable.
pub(crate) fn median_beat(
    leads: &[&[f32]],
    centres: &[usize],
    pre: usize,
    post: usize,
) -> Array2<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn median_beat_avx2(
            leads: &[&[f32]],
            centres: &[usize],
            pre: usize,
            post: usize,
        ) -> Array2<f32> {
            median_beat_portable(leads, centres, pre, post)
        }
        // SAFETY: the processor has AVX2.
        return unsafe { median_beat_avx2(leads, centres, pre, post) };
    }
    median_beat_portable(leads, centres, pre, post)
}

#[inline(always)]
fn median_beat_portable(
    leads: &[&[f32]],
    centres: &[usize],
    pre: usize,
    post: usize,
) -> Array2<f32> {
    let len = pre + post;
    let step = centres.len().div_ceil(MAX_TEMPLATE_BEATS).max(1);
    let used: Vec<usize> = centres.iter().step_by(step).copied().collect();
    let mut out = Array2::<f32>::zeros((leads.len(), len));
    let n = used.len();
    if n == 0 {
        return out;
    }
    // One row per beat, one lane per sample; lanes past a short last block keep
    // whatever they held and are never read.
    let mut block = vec![[0i32; LANES]; n];
    let network = median_network(n);
    for (li, lead) in leads.iter().enumerate() {
        let mut t = 0;
        while t < len {
            let w = LANES.min(len - t);
            for (row, &r) in block.iter_mut().zip(&used) {
                let from = r - pre + t;
                for (k, &x) in row.iter_mut().zip(&lead[from..from + w]) {
                    *k = order_key(x);
                }
            }
            compare_exchange_lanes(&mut block, &network);
            for l in 0..w {
                out[[li, t + l]] = if n % 2 == 1 {
                    from_order_key(block[n / 2][l])
                } else {
                    0.5 * (from_order_key(block[n / 2 - 1][l]) + from_order_key(block[n / 2][l]))
                };
            }
            t += w;
        }
    }
    out
}

/// Samples whose medians are taken together.
const LANES: usize = 8;

/// The comparators `(i, j)`, `i < j`, after which positions `(n - 1) / 2` and `n / 2` of
/// `n` values hold what they would hold sorted: Batcher's odd-even merge sort, less every
/// comparator that cannot reach those two positions: 35 for 12 beats, 1,124 for 120,
/// where a transposition sort takes n(n - 1)/2 (66 and 7,140).
fn median_network(n: usize) -> Vec<(usize, usize)> {
    let mut all = Vec::new();
    let mut p = 1;
    while p < n {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < n {
                for i in 0..k.min(n - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        all.push((i + j, i + j + k));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    // Backwards from the outputs: a comparator matters when it writes a position that a
    // later kept comparator (or the output) reads.
    let mut needed = vec![false; n];
    if n > 0 {
        needed[(n - 1) / 2] = true;
        needed[n / 2] = true;
    }
    let mut kept: Vec<(usize, usize)> = all
        .into_iter()
        .rev()
        .filter(|&(i, j)| {
            let keep = needed[i] || needed[j];
            if keep {
                needed[i] = true;
                needed[j] = true;
            }
            keep
        })
        .collect();
    kept.reverse();
    kept
}

/// Applies `network` to every lane of `rows` (one row per value to order).
#[inline(always)]
fn compare_exchange_lanes(rows: &mut [[i32; LANES]], network: &[(usize, usize)]) {
    for &(i, j) in network {
        let (a, b) = rows.split_at_mut(j);
        let (x, y) = (&mut a[i], &mut b[0]);
        for l in 0..LANES {
            let (lo, hi) = (x[l].min(y[l]), x[l].max(y[l]));
            x[l] = lo;
            y[l] = hi;
        }
    }
}

pub(crate) fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// An integer whose order is `f32::total_cmp`'s: the median beat sorts one short column
/// per lead and sample, and integer keys sort several times faster than float compares.
fn order_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ ((((b >> 31) as u32) >> 1) as i32)
}

/// The inverse of [`order_key`] (the transform only flips bits below the sign).
fn from_order_key(k: i32) -> f32 {
    f32::from_bits((k ^ ((((k >> 31) as u32) >> 1) as i32)) as u32)
}

/// The template's QRS window, lead by lead, mean removed, and its sum of squares: the
/// same for every beat and lag of one pass, so it is prepared once.
#[derive(Debug, Clone)]
struct TemplateQrs {
    rows: Vec<Vec<f64>>,
    syy: f64,
}

impl TemplateQrs {
    fn new(template: &Array2<f32>, t_origin: usize, m_pre: usize, m_post: usize) -> TemplateQrs {
        let n = (m_pre + m_post) as f64;
        let rows: Vec<Vec<f64>> = template
            .rows()
            .into_iter()
            .map(|row| {
                let y: Vec<f32> = (0..m_pre + m_post)
                    .map(|k| row[t_origin - m_pre + k])
                    .collect();
                let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
                y.iter().map(|&v| v as f64 - my).collect()
            })
            .collect();
        let syy = rows.iter().flatten().map(|b| b * b).sum();
        TemplateQrs { rows, syy }
    }

    /// The lag in `-align..=align` at which a beat's QRS (all leads concatenated, mean
    /// removed per lead) best matches the template's in Pearson correlation, and that
    /// correlation; the first lag wins ties.
    ///
    /// Every lag's correlation reads the same few samples, so each lead's span is
    /// converted once, and the beat's sums and sums of squares slide along it:
    /// as the template's rows have zero mean, the covariance is a plain dot product,
    /// the only per-lag work.
    ///
    /// Compiled twice, like [`median_beat`]: with AVX2 the eight running sums of
    /// [`dot`] are two 4-lane registers, each lane adding the same products in the same
    /// order as the portable build's (no fused multiply-add), so the result is the
    /// same to the bit.
    fn best_lag(&self, leads: &[&[f32]], r: usize, align: usize, m_pre: usize) -> (f64, isize) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn best_lag_avx2(
                qrs: &TemplateQrs,
                leads: &[&[f32]],
                r: usize,
                align: usize,
                m_pre: usize,
            ) -> (f64, isize) {
                qrs.best_lag_portable(leads, r, align, m_pre)
            }
            // SAFETY: the processor has AVX2.
            return unsafe { best_lag_avx2(self, leads, r, align, m_pre) };
        }
        self.best_lag_portable(leads, r, align, m_pre)
    }

    #[inline(always)]
    fn best_lag_portable(
        &self,
        leads: &[&[f32]],
        r: usize,
        align: usize,
        m_pre: usize,
    ) -> (f64, isize) {
        let lags = 2 * align + 1;
        let (mut sxy, mut sx2) = (vec![0.0f64; lags], vec![0.0f64; lags]);
        let mut span = Vec::new();
        for (lead, y) in leads.iter().zip(&self.rows) {
            let width = y.len();
            let from = r - align - m_pre;
            span.clear();
            span.extend(
                lead[from..from + width + 2 * align]
                    .iter()
                    .map(|&v| v as f64),
            );
            // Centred, so that the sums of squares do not cancel on a lead far from zero.
            let centre = span.iter().sum::<f64>() / span.len() as f64;
            span.iter_mut().for_each(|v| *v -= centre);
            let (mut sum, mut sq) = (0.0, 0.0);
            for &v in &span[..width] {
                sum += v;
                sq += v * v;
            }
            for k in 0..lags {
                if k > 0 {
                    let (gone, new) = (span[k - 1], span[k - 1 + width]);
                    sum += new - gone;
                    sq += new * new - gone * gone;
                }
                sxy[k] += dot(&span[k..k + width], y);
                sx2[k] += sq - sum * sum / width as f64;
            }
        }
        let mut best = (f64::MIN, 0isize);
        for k in 0..lags {
            // A flat beat has no shape to match (its sum of squares about the mean is
            // zero but for rounding).
            let c = if sx2[k] <= 1e-12 || self.syy <= 0.0 {
                0.0
            } else {
                sxy[k] / (sx2[k] * self.syy).sqrt()
            };
            if c > best.0 {
                best = (c, k as isize - align as isize);
            }
        }
        best
    }
}

/// Eight running sums, so that the compiler can use vector instructions and several
/// additions are in flight at once (one strict sum can neither be reordered nor overlap).
#[inline(always)]
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Whether a beat at R peak `r` has room for its window and its alignment inside a
/// signal of `n_samples`: only such beats can enter a representative beat.
pub(crate) fn usable(r: usize, n_samples: usize, fs_hz: f64) -> bool {
    let align = samples(fs_hz, ALIGN_S);
    let margin = align + samples(fs_hz, PRE_R_S).max(samples(fs_hz, MORPH_PRE_S));
    r >= margin && r + samples(fs_hz, POST_R_S) + align < n_samples
}

/// Aligns every beat on the median template and marks the dominant morphology.
/// Two passes: the first template is the median of all beats (dominant as long as the
/// dominant morphology is the majority), the second only of the beats that matched it.
pub(crate) fn sort_beats(leads: &[&[f32]], r_peaks: &[usize], fs_hz: f64) -> BeatSet {
    let n_samples = leads.first().map_or(0, |l| l.len());
    let pre = samples(fs_hz, PRE_R_S);
    let post = samples(fs_hz, POST_R_S);
    let align = samples(fs_hz, ALIGN_S);
    let m_pre = samples(fs_hz, MORPH_PRE_S);
    let m_post = samples(fs_hz, MORPH_POST_S);
    let mut source = Vec::new();
    let mut r_usable = Vec::new();
    for (i, &r) in r_peaks.iter().enumerate() {
        if usable(r, n_samples, fs_hz) {
            source.push(i);
            r_usable.push(r);
        }
    }
    let mut set = BeatSet {
        r_aligned: r_usable.clone(),
        source,
        dominant: vec![true; r_usable.len()],
        dominant_median: None,
    };
    if r_usable.len() < 2 {
        return set;
    }
    // The passes compare QRS windows only: their templates need no more than that
    // window, a seventh of the whole beat's.
    let mut template = median_beat(leads, &r_usable, m_pre, m_post);
    for pass in 0..2 {
        let qrs = TemplateQrs::new(&template, m_pre, m_pre, m_post);
        let mut corr = Vec::with_capacity(r_usable.len());
        for (k, &r) in r_usable.iter().enumerate() {
            let best = qrs.best_lag(leads, r, align, m_pre);
            set.r_aligned[k] = (r as isize + best.1) as usize;
            corr.push(best.0);
        }
        let mut threshold = DOMINANT_CORR;
        // A noisy but regular recording may never reach 0.9; keep the best-matching
        // majority instead of throwing every beat away.
        while threshold > 0.5 && corr.iter().filter(|&&c| c >= threshold).count() * 2 < corr.len() {
            threshold -= 0.05;
        }
        for (d, &c) in set.dominant.iter_mut().zip(&corr) {
            *d = c >= threshold;
        }
        let dom = set.dominant_r();
        if dom.is_empty() {
            return set;
        }
        if pass == 0 {
            template = median_beat(leads, &dom, m_pre, m_post);
        } else {
            set.dominant_median = Some(median_beat(leads, &dom, pre, post));
        }
    }
    set
}

/// Aligns single beats on a template's QRS the way [`sort_beats`] does.
#[derive(Debug, Clone)]
pub(crate) struct Aligner {
    qrs: TemplateQrs,
    m_pre: usize,
    m_post: usize,
    align: usize,
}

impl Aligner {
    /// `template` is lead x time with R at `origin`, leads in the order later given.
    pub fn new(template: &Array2<f32>, origin: usize, fs_hz: f64) -> Aligner {
        let m_pre = samples(fs_hz, MORPH_PRE_S);
        let m_post = samples(fs_hz, MORPH_POST_S);
        Aligner {
            qrs: TemplateQrs::new(template, origin, m_pre, m_post),
            m_pre,
            m_post,
            align: samples(fs_hz, ALIGN_S),
        }
    }

    /// The R position best matching the template within the alignment search around
    /// `r`, and that match's correlation; `None` when the search leaves the signals.
    pub fn align(&self, leads: &[&[f32]], r: usize) -> Option<(usize, f64)> {
        let n = leads.iter().map(|l| l.len()).min()?;
        if r < self.align + self.m_pre || r + self.align + self.m_post > n {
            return None;
        }
        let best = self.qrs.best_lag(leads, r, self.align, self.m_pre);
        Some(((r as isize + best.1) as usize, best.0))
    }

    /// How many samples `align` reads before and after the `r` it is given.
    pub fn reach(&self) -> (usize, usize) {
        (self.align + self.m_pre, self.align + self.m_post)
    }
}

/// Removes baseline wander by linear interpolation between isoelectric knots (one per beat,
/// in the PR segment). Unlike a high-pass filter this leaves the ST segment untouched.
pub(crate) fn remove_baseline(lead: &[f32], knots: &[usize], half_width: usize) -> Vec<f32> {
    let level = |c: usize| -> f32 {
        let a = c.saturating_sub(half_width);
        let b = (c + half_width + 1).min(lead.len());
        if a >= b {
            return 0.0;
        }
        lead[a..b].iter().sum::<f32>() / (b - a) as f32
    };
    let mut pts: Vec<(usize, f32)> = knots
        .iter()
        .filter(|&&k| k < lead.len())
        .map(|&k| (k, level(k)))
        .collect();
    pts.sort_by_key(|&(k, _)| k);
    let (Some(&(t_first, y_first)), Some(&(_, y_last))) = (pts.first(), pts.last()) else {
        return lead.to_vec();
    };
    // Segment by segment, so that each inner loop is straight-line arithmetic the compiler
    // turns into vector instructions.
    let mut out = Vec::with_capacity(lead.len());
    out.extend(lead[..=t_first].iter().map(|&x| x - y_first));
    for w in pts.windows(2) {
        let ((t0, y0), (t1, y1)) = (w[0], w[1]);
        let span = (t1 - t0).max(1) as f32;
        let from = t0.max(t_first + 1);
        out.extend(
            lead[from.min(t1)..t1]
                .iter()
                .zip(from - t0..)
                .map(|(&x, dt)| x - (y0 + (y1 - y0) * dt as f32 / span)),
        );
    }
    let done = out.len();
    out.extend(lead[done..].iter().map(|&x| x - y_last));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_beat_is_the_float_median_bit_for_bit() {
        // Values with ties, both zeros, subnormals and extremes, in every beat count up to
        // past the sorting network's lane width.
        let special = [0.0f32, -0.0, 1e-40, -1e-40, f32::MAX, f32::MIN, 0.5, 0.5];
        let sig: Vec<f32> = (0..4000u32)
            .map(|i| {
                let h = i.wrapping_mul(2_654_435_761) >> 7;
                if h % 5 == 0 {
                    special[(h / 5 % 8) as usize]
                } else {
                    (h % 2001) as f32 / 1000.0 - 1.0
                }
            })
            .collect();
        let other: Vec<f32> = sig.iter().rev().copied().collect();
        let leads = [sig.as_slice(), other.as_slice()];
        let (pre, post) = (7, 12);
        for n in (1..=40).chain([63, 64, 65, 119, 120]) {
            let centres: Vec<usize> = (0..n).map(|k| 20 + k * 31).collect();
            let m = median_beat(&leads, &centres, pre, post);
            for (li, lead) in leads.iter().enumerate() {
                for t in 0..pre + post {
                    let mut column: Vec<f32> = centres.iter().map(|&r| lead[r - pre + t]).collect();
                    assert_eq!(
                        m[[li, t]].to_bits(),
                        median(&mut column).to_bits(),
                        "{n} beats, lead {li}, t {t}"
                    );
                }
            }
        }
        for &x in &special {
            assert_eq!(from_order_key(order_key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn the_median_network_orders_the_middle_of_every_zero_one_input() {
        // The zero-one principle: a comparator network that orders every 0/1 input orders
        // every input.
        for n in 1..=16usize {
            let net = median_network(n);
            for bits in 0u32..1 << n {
                let mut v: Vec<u32> = (0..n).map(|k| bits >> k & 1).collect();
                for &(i, j) in &net {
                    if v[i] > v[j] {
                        v.swap(i, j);
                    }
                }
                let ones = bits.count_ones() as usize;
                let sorted = |k: usize| u32::from(k >= n - ones);
                assert_eq!(v[(n - 1) / 2], sorted((n - 1) / 2), "n {n}, input {bits:b}");
                assert_eq!(v[n / 2], sorted(n / 2), "n {n}, input {bits:b}");
            }
        }
        // Fewer comparators than the transposition sort it replaced (n rounds of n/2).
        assert!(median_network(12).len() < 12 * 11 / 2);
    }

    #[test]
    fn the_vector_and_the_portable_code_agree() {
        let sig: Vec<f32> = (0..3000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 9) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let leads = [sig.as_slice(), &sig[7..]];
        let centres: Vec<usize> = (0..23).map(|k| 100 + k * 97).collect();
        let (pre, post) = (40, 60);
        let dispatched = median_beat(&leads, &centres, pre, post);
        let portable = median_beat_portable(&leads, &centres, pre, post);
        assert_eq!(dispatched.mapv(f32::to_bits), portable.mapv(f32::to_bits));
    }

    #[test]
    fn best_lag_is_the_pearson_correlation_of_the_concatenated_leads() {
        let noise = |i: u32| ((i.wrapping_mul(2_654_435_761) >> 9) % 2001) as f32 / 1e4;
        // Far from zero, to show that the sums do not cancel.
        let a: Vec<f32> = (0..600u32)
            .map(|i| 40.0 + (i as f32 * 0.07).sin() + noise(i))
            .collect();
        let b: Vec<f32> = (0..600u32)
            .map(|i| (i as f32 * 0.05).cos() - noise(i + 9))
            .collect();
        let flat = vec![3.0f32; 600];
        let leads = [a.as_slice(), b.as_slice(), flat.as_slice()];
        let (m_pre, m_post, align) = (30, 40, 8);
        let template = median_beat(&leads, &[300], 60, 60);
        let qrs = TemplateQrs::new(&template, 60, m_pre, m_post);
        for r in [280usize, 300, 313] {
            let pearson = |lag: isize| {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                for (lead, row) in leads.iter().zip(template.rows()) {
                    let from = (r as isize + lag) as usize - m_pre;
                    let w = &lead[from..from + m_pre + m_post];
                    let mw = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
                    x.extend(w.iter().map(|&v| v as f64 - mw));
                    let t: Vec<f64> = (0..m_pre + m_post)
                        .map(|k| row[60 - m_pre + k] as f64)
                        .collect();
                    let mt = t.iter().sum::<f64>() / t.len() as f64;
                    y.extend(t.iter().map(|v| v - mt));
                }
                let sxy: f64 = x.iter().zip(&y).map(|(p, q)| p * q).sum();
                let sxx: f64 = x.iter().map(|p| p * p).sum();
                let syy: f64 = y.iter().map(|q| q * q).sum();
                sxy / (sxx * syy).sqrt()
            };
            let (c, lag) = qrs.best_lag(&leads, r, align, m_pre);
            let best = (-8..=8).map(pearson).fold(f64::MIN, f64::max);
            assert!((c - best).abs() < 1e-9, "r {r}: {c} against {best}");
            assert!((pearson(lag) - c).abs() < 1e-9);
        }
        // A flat beat matches nothing.
        let flat_leads = [flat.as_slice(), flat.as_slice(), flat.as_slice()];
        assert_eq!(qrs.best_lag(&flat_leads, 300, align, m_pre).0, 0.0);
        // The dispatched (vector) build and the portable one agree to the bit,
        // with a QRS window that leaves a remainder after the eight lanes.
        for (m_pre, m_post) in [(30, 40), (27, 38)] {
            let qrs = TemplateQrs::new(&template, 60, m_pre, m_post);
            for r in 270..330 {
                let (c, lag) = qrs.best_lag(&leads, r, align, m_pre);
                let (pc, plag) = qrs.best_lag_portable(&leads, r, align, m_pre);
                assert_eq!((c.to_bits(), lag), (pc.to_bits(), plag), "r {r}");
            }
        }
    }

    fn synthetic_beat(t: f64) -> f32 {
        // Gaussian QRS at t=0 and a T wave at 0.3 s.
        (1.5 * (-(t / 0.012).powi(2)).exp() + 0.3 * (-((t - 0.3) / 0.05).powi(2)).exp()) as f32
    }

    #[test]
    fn ectopic_beats_are_not_dominant_and_jitter_is_aligned() {
        let fs = 500.0;
        let n = 5000;
        let rs: Vec<usize> = (1..9).map(|k| k * 500 + 100).collect();
        let mut x = vec![0f32; n];
        for (k, &r) in rs.iter().enumerate() {
            for (t, v) in x.iter_mut().enumerate() {
                let dt = (t as f64 - r as f64) / fs;
                if k == 3 {
                    // A wide inverted ectopic complex.
                    *v -= (1.0 * (-(dt / 0.05).powi(2)).exp()) as f32;
                } else {
                    *v += synthetic_beat(dt);
                }
            }
        }
        let jittered: Vec<usize> = rs.iter().enumerate().map(|(k, &r)| r + (k % 3)).collect();
        let set = sort_beats(&[&x], &jittered, fs);
        assert_eq!(set.r_aligned.len(), 8);
        assert!(!set.dominant[3]);
        // Aligned on the template: every dominant beat sits at the same offset from truth.
        let shift = set.r_aligned[0] as isize - rs[0] as isize;
        assert!(shift.abs() <= 2);
        for k in [0usize, 1, 2, 4, 5, 6, 7] {
            assert!(set.dominant[k]);
            assert_eq!(
                set.r_aligned[k] as isize - rs[k] as isize,
                shift,
                "beat {k}"
            );
        }
    }

    #[test]
    fn baseline_between_knots_is_removed() {
        let x: Vec<f32> = (0..1000).map(|t| 0.001 * t as f32).collect();
        let y = remove_baseline(&x, &[100, 500, 900], 5);
        assert!(y[300].abs() < 1e-4);
        assert!(y[700].abs() < 1e-4);
    }

    #[test]
    fn baseline_is_the_line_through_the_knots_sample_by_sample() {
        let x: Vec<f32> = (0..400u32)
            .map(|t| ((t.wrapping_mul(2_654_435_761) >> 9) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        // Unsorted, repeated, at both ends and past the end.
        let knots = [250, 3, 3, 120, 0, 250, 399, 180, 181, 1000];
        let y = remove_baseline(&x, &knots, 2);
        let level = |c: usize| {
            let (a, b) = (c.saturating_sub(2), (c + 3).min(x.len()));
            x[a..b].iter().sum::<f32>() / (b - a) as f32
        };
        let mut pts: Vec<(usize, f32)> = knots
            .iter()
            .filter(|&&k| k < x.len())
            .map(|&k| (k, level(k)))
            .collect();
        pts.sort_by_key(|p| p.0);
        for (t, (&xt, &yt)) in x.iter().zip(&y).enumerate() {
            let seg = pts.iter().rposition(|p| p.0 <= t).unwrap_or(0);
            let base = if t <= pts[0].0 {
                pts[0].1
            } else if seg + 1 == pts.len() {
                pts[seg].1
            } else {
                let ((t0, y0), (t1, y1)) = (pts[seg], pts[seg + 1]);
                y0 + (y1 - y0) * (t - t0) as f32 / (t1 - t0) as f32
            };
            assert_eq!(yt.to_bits(), (xt - base).to_bits(), "t {t}");
        }
        assert_eq!(y.len(), x.len());
    }
}
