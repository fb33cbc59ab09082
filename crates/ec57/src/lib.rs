//! ANSI/AAMI EC57 beat-by-beat comparison: reference beat annotations
//! against detected beats, matched one to one within a window (150 ms for
//! QRS detection), with excluded intervals (ventricular flutter and
//! fibrillation) left out of the comparison, as EC57 prescribes.
//!
//! Pure functions over sample indices; reading annotation files is the
//! caller's business (WFDB annotations convert to [`Mark`]s).

use std::ops::Range;

/// Outcome of comparing one record (or the gross sum of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub true_positives: u64,
    pub false_negatives: u64,
    pub false_positives: u64,
}

/// The header of the per-record table that [`Comparison::table_row`] fills.
pub fn table_header() -> String {
    format!(
        "{:<12} {:>7} {:>7} {:>5} {:>5} {:>8} {:>8}",
        "record", "beats", "TP", "FN", "FP", "Se%", "+P%"
    )
}

impl Comparison {
    /// One line of the per-record table (see [`table_header`]).
    pub fn table_row(&self, name: &str) -> String {
        format!(
            "{:<12} {:>7} {:>7} {:>5} {:>5} {:>8.3} {:>8.3}",
            name,
            self.reference_beats(),
            self.true_positives,
            self.false_negatives,
            self.false_positives,
            self.sensitivity_pct(),
            self.positive_predictivity_pct()
        )
    }

    /// Sensitivity Se = TP / (TP + FN), in percent (100 when there is nothing to find).
    pub fn sensitivity_pct(&self) -> f64 {
        pct(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// Positive predictivity +P = TP / (TP + FP), in percent.
    pub fn positive_predictivity_pct(&self) -> f64 {
        pct(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    pub fn reference_beats(&self) -> u64 {
        self.true_positives + self.false_negatives
    }
}

impl std::ops::Add for Comparison {
    type Output = Comparison;
    fn add(self, o: Comparison) -> Comparison {
        Comparison {
            true_positives: self.true_positives + o.true_positives,
            false_negatives: self.false_negatives + o.false_negatives,
            false_positives: self.false_positives + o.false_positives,
        }
    }
}

impl std::iter::Sum for Comparison {
    fn sum<I: Iterator<Item = Comparison>>(iter: I) -> Comparison {
        iter.fold(Comparison::default(), |a, b| a + b)
    }
}

fn pct(num: u64, den: u64) -> f64 {
    if den == 0 {
        100.0
    } else {
        100.0 * num as f64 / den as f64
    }
}

/// The EC57 match window for QRS detection, in samples at `fs_hz`.
pub fn match_window(fs_hz: f64) -> u64 {
    (0.150 * fs_hz).round() as u64
}

/// Turns a stream of episode markers into excluded sample ranges: an
/// episode opens at a `[` marker and closes at the next `]`; one still open
/// at the end of the record runs to `record_end`.
pub fn episodes(
    markers: impl IntoIterator<Item = (u64, bool)>,
    record_end: u64,
) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut open: Option<u64> = None;
    for (sample, is_start) in markers {
        match (is_start, open) {
            (true, None) => open = Some(sample),
            (false, Some(start)) => {
                out.push(start..sample.saturating_add(1));
                open = None;
            }
            // A repeated `[` or a stray `]`: keep the first opening.
            _ => {}
        }
    }
    if let Some(start) = open {
        out.push(start..record_end.max(start + 1));
    }
    out
}

/// What a reference annotation means to the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A beat (WFDB's beat codes).
    Beat,
    /// `[`: a ventricular flutter or fibrillation episode starts.
    EpisodeStart,
    /// `]`: it ends.
    EpisodeEnd,
    /// Anything else (rhythm changes, comments, noise marks).
    Other,
}

impl From<&ecg_wfdb::Annotation> for Mark {
    fn from(a: &ecg_wfdb::Annotation) -> Mark {
        match a.symbol() {
            _ if a.is_beat() => Mark::Beat,
            "[" => Mark::EpisodeStart,
            "]" => Mark::EpisodeEnd,
            _ => Mark::Other,
        }
    }
}

/// A whole record scored as EC57 prescribes: the reference beats from its
/// annotations (sample, mark), flutter/fibrillation episodes left out, the
/// QRS match window at `fs_hz`; `n_samples` ends an episode left open.
pub fn score_record(
    annotations: impl IntoIterator<Item = (u64, Mark)>,
    n_samples: u64,
    fs_hz: f64,
    detected: &[u64],
) -> (Comparison, Mismatches) {
    let mut reference = Vec::new();
    let mut markers = Vec::new();
    for (sample, mark) in annotations {
        match mark {
            Mark::Beat => reference.push(sample),
            Mark::EpisodeStart => markers.push((sample, true)),
            Mark::EpisodeEnd => markers.push((sample, false)),
            Mark::Other => {}
        }
    }
    let excluded = episodes(markers, n_samples);
    compare_detailed(&reference, detected, match_window(fs_hz), &excluded)
}

/// Compares detected beats with reference beats. Both must be sample
/// indices at the same rate; they need not be sorted. A reference beat and
/// a detection match when they are at most `window` samples apart; each is
/// matched at most once, nearest first. Beats of either side inside an
/// `excluded` range are not counted.
pub fn compare(
    reference: &[u64],
    detected: &[u64],
    window: u64,
    excluded: &[Range<u64>],
) -> Comparison {
    compare_detailed(reference, detected, window, excluded).0
}

/// Beats that did not match: reference beats missed (false negatives) and
/// detections with no reference beat (false positives), ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatches {
    pub missed: Vec<u64>,
    pub extra: Vec<u64>,
}

/// [`compare`], also returning which beats did not match.
pub fn compare_detailed(
    reference: &[u64],
    detected: &[u64],
    window: u64,
    excluded: &[Range<u64>],
) -> (Comparison, Mismatches) {
    let keep = |s: &u64| !excluded.iter().any(|r| r.contains(s));
    let mut refs: Vec<u64> = reference.iter().copied().filter(keep).collect();
    let mut dets: Vec<u64> = detected.iter().copied().filter(keep).collect();
    refs.sort_unstable();
    dets.sort_unstable();

    // Candidate pairs within the window, matched greedily by distance: the
    // closest pairs are the least ambiguous, so they are settled first.
    let mut pairs: Vec<(u64, usize, usize)> = Vec::new();
    let mut lo = 0;
    for (ri, &r) in refs.iter().enumerate() {
        while lo < dets.len() && dets[lo] + window < r {
            lo += 1;
        }
        let mut di = lo;
        while di < dets.len() && dets[di] <= r + window {
            pairs.push((dets[di].abs_diff(r), ri, di));
            di += 1;
        }
    }
    pairs.sort_unstable();
    let mut ref_used = vec![false; refs.len()];
    let mut det_used = vec![false; dets.len()];
    let mut tp = 0;
    for (_, ri, di) in pairs {
        if !ref_used[ri] && !det_used[di] {
            ref_used[ri] = true;
            det_used[di] = true;
            tp += 1;
        }
    }
    let unmatched = |beats: &[u64], used: &[bool]| -> Vec<u64> {
        beats
            .iter()
            .zip(used)
            .filter(|(_, u)| !**u)
            .map(|(b, _)| *b)
            .collect()
    };
    let comparison = Comparison {
        true_positives: tp,
        false_negatives: refs.len() as u64 - tp,
        false_positives: dets.len() as u64 - tp,
    };
    let mismatches = Mismatches {
        missed: unmatched(&refs, &ref_used),
        extra: unmatched(&dets, &det_used),
    };
    (comparison, mismatches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_shifted_detections() {
        let r = [100, 400, 700, 1000];
        let c = compare(&r, &[105, 395, 700, 1054], 54, &[]);
        assert_eq!(
            (c.true_positives, c.false_negatives, c.false_positives),
            (4, 0, 0)
        );
        let c = compare(&r, &[105, 395, 700, 1055], 54, &[]);
        assert_eq!(
            (c.true_positives, c.false_negatives, c.false_positives),
            (3, 1, 1)
        );
    }

    #[test]
    fn one_detection_matches_one_beat_only() {
        // Two reference beats 60 samples apart, one detection between them.
        let c = compare(&[100, 160], &[130], 54, &[]);
        assert_eq!(
            (c.true_positives, c.false_negatives, c.false_positives),
            (1, 1, 0)
        );
        // Double detection of one beat: one false positive.
        let (c, m) = compare_detailed(&[100, 900], &[95, 110], 54, &[]);
        assert_eq!(
            (c.true_positives, c.false_negatives, c.false_positives),
            (1, 1, 1)
        );
        assert_eq!(
            m,
            Mismatches {
                missed: vec![900],
                extra: vec![110]
            }
        );
    }

    #[test]
    fn nearest_pairs_win() {
        // Greedy-left matching would pair 100 with 140 and lose 180.
        let c = compare(&[100, 180], &[60, 140], 54, &[]);
        assert_eq!(c.true_positives, 2);
    }

    #[test]
    fn flutter_episodes_are_left_out() {
        let ex = episodes([(1000, true), (2000, false)], 5000);
        assert_eq!(ex, vec![1000..2001]);
        let c = compare(&[500, 1500, 2500], &[500, 1200, 1300, 2500], 54, &ex);
        assert_eq!(
            (c.true_positives, c.false_negatives, c.false_positives),
            (2, 0, 0)
        );
        assert_eq!(episodes([(10, true)], 50), vec![10..50]);
        assert_eq!(
            episodes([(10, false), (20, true), (30, true), (40, false)], 50),
            vec![20..41]
        );
    }

    #[test]
    fn percentages() {
        let c = Comparison {
            true_positives: 998,
            false_negatives: 2,
            false_positives: 1,
        };
        assert!((c.sensitivity_pct() - 99.8).abs() < 1e-9);
        assert!((c.positive_predictivity_pct() - 100.0 * 998.0 / 999.0).abs() < 1e-9);
        assert_eq!(Comparison::default().sensitivity_pct(), 100.0);
        assert_eq!(match_window(360.0), 54);
    }
}
