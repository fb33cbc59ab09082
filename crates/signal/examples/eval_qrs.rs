//! EC57 evaluation of the detector without the `ecgtriage` binary (whose
//! build pulls DataFusion): the same steps as `ecgtriage eval-qrs` (every
//! voltage lead fused, ventricular flutter/fibrillation episodes between `[`
//! and `]` left out, the EC57 match window), so that detector work can be
//! checked in seconds.
//!
//! `cargo run --release -p ecg-signal --example eval_qrs -- RECORD...`
//! (records with or without extension; a shell glob's repeats are dropped).

use std::path::PathBuf;

use ecg_ec57::Comparison;

fn main() -> anyhow::Result<()> {
    let mut records: Vec<PathBuf> = Vec::new();
    for a in std::env::args().skip(1) {
        let p = PathBuf::from(a);
        let record = match p.extension().and_then(|e| e.to_str()) {
            Some("dat" | "hea" | "atr" | "xws" | "mat" | "qrs") => p.with_extension(""),
            _ => p,
        };
        if !records.contains(&record) {
            records.push(record);
        }
    }
    println!("{}", ecg_ec57::table_header());
    let mut rows = Vec::new();
    for record in &records {
        let rec = ecg_wfdb::Record::read(record)?;
        let ann = ecg_wfdb::read_annotations(record, "atr")?;
        // As `ecgtriage detect`: every signal that converts to millivolts.
        let leads: Vec<Vec<f32>> = (0..rec.n_signals())
            .filter_map(|i| rec.millivolts(i).ok())
            .take(ecg_signal::qrs::MAX_LEADS)
            .collect();
        let views: Vec<&[f32]> = leads.iter().map(Vec::as_slice).collect();
        let detected = ecg_signal::detect_qrs(&views, rec.fs_hz())?;
        let (result, _) = ecg_ec57::score_record(
            ann.iter().map(|a| (a.sample, ecg_ec57::Mark::from(a))),
            rec.n_samples() as u64,
            rec.fs_hz(),
            &detected,
        );
        let name = record.file_name().map_or_else(
            || record.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        println!("{}", result.table_row(&name));
        rows.push(result);
    }
    let gross: Comparison = rows.iter().copied().sum();
    println!("{}", gross.table_row("gross"));
    let worst = rows
        .iter()
        .map(|r| r.sensitivity_pct().min(r.positive_predictivity_pct()))
        .fold(f64::INFINITY, f64::min);
    println!("worst record (min of Se, +P): {worst:.3}");
    Ok(())
}
