//! Pacemaker stimulus artefacts. Found so that a paced rhythm is recognised, and cut out
//! before the beats are measured: a stimulus is the steepest thing in the tracing, and left
//! in, the detector and the delineation take it for the QRS.

use crate::beat::samples;

/// Widest needle taken for a stimulus. Pulses last 0.1-1 ms; the recorder's anti-alias
/// filter spreads them over a few samples. No QRS rises and falls back within this.
const MAX_WIDTH_S: f64 = 0.004;
/// Smallest height of a needle (from the straight line joining its neighbours). Muscle
/// noise stays an order of magnitude below; unipolar stimuli reach several mV, bipolar
/// ones are smaller and often filtered away (the old second-difference test in `mimic`
/// still looks for those).
const MIN_HEIGHT_MV: f32 = 0.3;
/// After the needle the signal is back within this fraction of its height of where it
/// was before: a step (an electrode pop, a saturation) is not a stimulus. Loose enough
/// for a stimulus on a steep stretch (a fusion beat's upstroke).
const RETURN_FRACTION: f32 = 0.5;

/// Samples scanned at once for a steep step.
const SCAN_BLOCK: usize = 64;

/// Sample ranges `[start, end)` of needles in any lead, merged across leads, in order.
pub(crate) fn find(signals: &[&[f32]], fs_hz: f64) -> Vec<(usize, usize)> {
    let w_max = samples(fs_hz, MAX_WIDTH_S);
    // A needle of height h over at most w_max samples has a step of at least this on its
    // rising edge: one subtraction rules out nearly every sample.
    let min_step = (1.0 - RETURN_FRACTION) * MIN_HEIGHT_MV / w_max as f32;
    // At a high rate that step is tiny and every noisy sample passes it; a needle's samples
    // and its two neighbours also span at least its height (see `needle_at`), so a block
    // whose samples (and the widest needle's past its end) span less holds none.
    let mut found = Vec::new();
    for x in signals {
        let n = x.len();
        let mut t = 1;
        while t + 1 < n {
            // Blocks without a step that large are skipped whole; the test has no early
            // exit so that it compiles to vector code (this runs at every window reading).
            let end = (t + SCAN_BLOCK).min(n - 1);
            let steep = x[t - 1..end - 1]
                .iter()
                .zip(&x[t..end])
                .fold(false, |any, (a, b)| any | ((b - a).abs() >= min_step));
            let reach_end = (end + w_max).min(n);
            if !steep || spans_less_than_a_needle(&x[t - 1..reach_end]) {
                t = end;
                continue;
            }
            while t < end {
                if (x[t] - x[t - 1]).abs() < min_step {
                    t += 1;
                    continue;
                }
                match needle_at(x, t, w_max) {
                    Some(w) => {
                        found.push((t, t + w));
                        t += w + 1;
                    }
                    None => t += 1,
                }
            }
        }
    }
    found.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(found.len());
    for (s, e) in found {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Room for rounding in the bounds below, so that they never rule out a needle that the
/// exact test would find.
fn slack(magnitude: f32) -> f32 {
    1e-5 * magnitude.abs() + 1e-6
}

fn spans_less_than_a_needle(x: &[f32]) -> bool {
    let (lo, hi) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    hi - lo + slack(lo.abs().max(hi.abs())) < MIN_HEIGHT_MV
}

/// The width of the narrowest needle starting at `t`, if there is one.
fn needle_at(x: &[f32], t: usize, w_max: usize) -> Option<usize> {
    let before = x[t - 1];
    // Widths that run past the signal's end cannot be needles.
    let w_end = w_max.min(x.len().saturating_sub(t + 1));
    // The exact test costs O(w) per width, O(w_max^2) per start: at 10-20 kHz on a noisy
    // lead that took seconds. The line lies between `before` and `after`, so the height is
    // at most how far the samples go above the lower or below the higher of the two: an
    // O(1) bound that rules out almost every width.
    if spans_less_than_a_needle(&x[t - 1..=t + w_end]) {
        return None;
    }
    let (mut top, mut bottom) = (f32::NEG_INFINITY, f32::INFINITY);
    (1..=w_end).find(|&w| {
        top = top.max(x[t + w - 1]);
        bottom = bottom.min(x[t + w - 1]);
        let after = x[t + w];
        let gap = (after - before).abs();
        let bound = (top - before.min(after)).max(before.max(after) - bottom);
        let room = slack(before.abs() + after.abs() + bound);
        if bound + room < MIN_HEIGHT_MV || gap > RETURN_FRACTION * bound + room {
            return false;
        }
        let mut height = 0f32;
        for (i, &v) in x[t..t + w].iter().enumerate() {
            let line = before + (after - before) * (i + 1) as f32 / (w + 1) as f32;
            height = height.max((v - line).abs());
        }
        height >= MIN_HEIGHT_MV && gap <= RETURN_FRACTION * height
    })
}

/// The signals with every needle replaced by the straight line joining its neighbours.
pub(crate) fn remove(signals: &[&[f32]], needles: &[(usize, usize)]) -> Vec<Vec<f32>> {
    signals
        .iter()
        .map(|x| {
            let mut y = x.to_vec();
            for &(s, e) in needles {
                let (Some(&before), Some(&after)) =
                    (s.checked_sub(1).and_then(|i| x.get(i)), x.get(e))
                else {
                    continue;
                };
                let w = e - s;
                for (i, v) in y[s..e].iter_mut().enumerate() {
                    *v = before + (after - before) * (i + 1) as f32 / (w + 1) as f32;
                }
            }
            y
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QRS-like bump of 2 mV (sigma 20 ms) with a 1-sample, 0.8 mV needle on its steep
    /// upstroke, 8 ms before its peak, at 500 Hz.
    fn paced_beat() -> Vec<f32> {
        let fs = 500.0;
        let mut x: Vec<f32> = (0..500)
            .map(|i| {
                let t = (i as f32 / fs - 0.5) / 0.02;
                2.0 * (-t * t).exp()
            })
            .collect();
        x[246] += 0.8;
        x
    }

    #[test]
    fn a_needle_is_found_and_cut_out_and_the_qrs_left_alone() {
        let x = paced_beat();
        let needles = find(&[&x], 500.0);
        assert_eq!(needles, vec![(246, 247)]);
        let y = remove(&[&x], &needles).pop().unwrap();
        assert!((y[246] - (x[245] + x[247]) / 2.0).abs() < 1e-6);
        assert_eq!(&y[..246], &x[..246]);
        assert_eq!(&y[247..], &x[247..]);
    }

    /// `find` as it was before its bounds: the exact test at every width of every start
    /// that steps by `min_step`. The bounds may only save time, never change an answer.
    fn find_exhaustively(x: &[f32], fs_hz: f64) -> Vec<(usize, usize)> {
        let w_max = samples(fs_hz, MAX_WIDTH_S);
        let min_step = (1.0 - RETURN_FRACTION) * MIN_HEIGHT_MV / w_max as f32;
        let mut found = Vec::new();
        let mut t = 1;
        while t + 1 < x.len() {
            let before = x[t - 1];
            let w_end = w_max.min(x.len() - (t + 1));
            let needle = ((x[t] - before).abs() >= min_step)
                .then(|| {
                    (1..=w_end).find(|&w| {
                        let after = x[t + w];
                        let height = x[t..t + w]
                            .iter()
                            .enumerate()
                            .map(|(i, &v)| {
                                (v - (before + (after - before) * (i + 1) as f32 / (w + 1) as f32))
                                    .abs()
                            })
                            .fold(0f32, f32::max);
                        height >= MIN_HEIGHT_MV
                            && (after - before).abs() <= RETURN_FRACTION * height
                    })
                })
                .flatten();
            match needle {
                Some(w) => {
                    found.push((t, t + w));
                    t += w + 1;
                }
                None => t += 1,
            }
        }
        found
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Noise from quiet to needle-strewn, on an offset, with steps, ramps and spikes of
        /// any height and width, at clinic rates and at the wire's highest.
        #[test]
        fn the_bounds_change_no_answer(
            seed: u64,
            fs_hz in proptest::sample::select(vec![250.0, 500.0, 1000.0, 2000.0, 10_000.0]),
            noise_mv in 0.0f32..0.4,
            offset_mv in -50f32..50.0,
            len in 2usize..4000,
            events in proptest::collection::vec((0f64..1.0, -3f32..3.0, 0usize..60, 0u8..3), 0..12),
        ) {
            let mut s = seed | 1;
            let mut x: Vec<f32> = (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    offset_mv + noise_mv * ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
                })
                .collect();
            for (at, height_mv, width, kind) in events {
                let start = (at * len as f64) as usize;
                let end = (start + width + 1).min(len);
                for (i, v) in x[start..end].iter_mut().enumerate() {
                    *v += match kind {
                        0 => height_mv,
                        1 => height_mv * i as f32 / (width + 1) as f32,
                        _ => if i == 0 { height_mv } else { 0.0 },
                    };
                }
            }
            // Across leads `find` merges overlapping needles; one lead at a time it must
            // return exactly what the exhaustive search does.
            proptest::prop_assert_eq!(find(&[&x], fs_hz), find_exhaustively(&x, fs_hz));
        }
    }

    #[test]
    fn steps_small_blips_and_steep_qrs_are_not_needles() {
        let fs = 1000.0;
        // A step of 1 mV (an electrode pop that stays), a 0.1 mV blip, and a QRS whose
        // upstroke is 2 mV in 10 ms.
        let mut x = vec![0f32; 1000];
        for v in &mut x[100..] {
            *v += 1.0;
        }
        x[300] += 0.1;
        for (i, v) in x[500..540].iter_mut().enumerate() {
            let t = i as f32;
            *v += if t < 10.0 {
                0.2 * t
            } else {
                2.0 - 0.0667 * (t - 10.0)
            };
        }
        assert!(find(&[&x], fs).is_empty());
    }
}
