//! Development aid: the detector on MIT-BIH records resampled to other
//! rates (linear interpolation, no anti-alias filter: a check that the
//! detector behaves the same at every rate, not a resampler), scored as
//! `eval_qrs` scores the originals.
//!
//! `cargo run --release -p ecg-signal --example rate_check -- RECORD...`
use std::path::PathBuf;

use ecg_ec57::Comparison;

fn resample(x: &[f32], fs_in: f64, fs_out: f64) -> Vec<f32> {
    let n_out = ((x.len() as f64 - 1.0) * fs_out / fs_in).floor() as usize;
    (0..n_out)
        .map(|i| {
            let t = i as f64 * fs_in / fs_out;
            let j = t.floor() as usize;
            let f = (t - j as f64) as f32;
            x[j] + (x[(j + 1).min(x.len() - 1)] - x[j]) * f
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let records: Vec<PathBuf> = std::env::args()
        .skip(1)
        .map(|a| PathBuf::from(a).with_extension(""))
        .collect();
    for fs_out in [250.0, 360.0, 500.0, 1000.0] {
        let mut rows = Vec::new();
        for record in &records {
            let rec = ecg_wfdb::Record::read(record)?;
            let ann = ecg_wfdb::read_annotations(record, "atr")?;
            let fs_in = rec.fs_hz();
            let scale = |s: u64| (s as f64 * fs_out / fs_in).round() as u64;
            let leads: Vec<Vec<f32>> = (0..rec.n_signals())
                .filter_map(|i| rec.millivolts(i).ok())
                .map(|x| resample(&x, fs_in, fs_out))
                .collect();
            let n_out = leads[0].len() as u64;
            let views: Vec<&[f32]> = leads.iter().map(Vec::as_slice).collect();
            let detected = ecg_signal::detect_qrs(&views, fs_out)?;
            let reference: Vec<u64> = ann
                .iter()
                .filter(|a| a.is_beat())
                .map(|a| scale(a.sample))
                .filter(|&s| s < n_out)
                .collect();
            let markers = ann.iter().filter_map(|a| match a.symbol() {
                "[" => Some((scale(a.sample), true)),
                "]" => Some((scale(a.sample), false)),
                _ => None,
            });
            let excluded = ecg_ec57::episodes(markers, n_out);
            let window = ecg_ec57::match_window(fs_out);
            let (result, _) = ecg_ec57::compare_detailed(&reference, &detected, window, &excluded);
            rows.push(result);
        }
        let gross: Comparison = rows.iter().copied().sum();
        let worst = rows
            .iter()
            .map(|r| r.sensitivity_pct().min(r.positive_predictivity_pct()))
            .fold(f64::INFINITY, f64::min);
        println!(
            "fs {fs_out:>6}: FN {:>4} FP {:>4}  Se {:.3}  +P {:.3}  worst record {worst:.2}",
            gross.false_negatives,
            gross.false_positives,
            gross.sensitivity_pct(),
            gross.positive_predictivity_pct()
        );
    }
    Ok(())
}
