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
            if !steep {
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

/// The width of the narrowest needle starting at `t`, if there is one.
fn needle_at(x: &[f32], t: usize, w_max: usize) -> Option<usize> {
    let before = x[t - 1];
    // Widths that run past the signal's end cannot be needles.
    let w_end = w_max.min(x.len().saturating_sub(t + 1));
    (1..=w_end).find(|&w| {
        let after = x[t + w];
        let mut height = 0f32;
        for (i, &v) in x[t..t + w].iter().enumerate() {
            let line = before + (after - before) * (i + 1) as f32 / (w + 1) as f32;
            height = height.max((v - line).abs());
        }
        height >= MIN_HEIGHT_MV && (after - before).abs() <= RETURN_FRACTION * height
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
