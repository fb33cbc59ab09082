//! `ecgtriage detect RECORD [--out FILE]`: R-peak sample indices as CSV.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// WFDB record path without extension (e.g. data/mitdb/100).
    pub record: PathBuf,
    /// Write the CSV here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let beats = detect_record(&args.record)?;
    let mut csv = String::with_capacity(beats.len() * 8 + 8);
    csv.push_str("sample\n");
    for b in &beats {
        csv.push_str(&b.to_string());
        csv.push('\n');
    }
    match &args.out {
        Some(path) => {
            std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(csv.as_bytes())?,
    }
    Ok(())
}

/// Reads a record and detects its beats on every voltage lead.
pub fn detect_record(record: &std::path::Path) -> anyhow::Result<Vec<u64>> {
    let rec = ecg_wfdb::Record::read(record)
        .with_context(|| format!("reading record {}", record.display()))?;
    let leads = voltage_leads(&rec);
    anyhow::ensure!(
        !leads.is_empty(),
        "record {} has no voltage signal to detect beats on",
        record.display()
    );
    let views: Vec<&[f32]> = leads.iter().map(Vec::as_slice).collect();
    ecg_signal::detect_qrs(&views, rec.fs_hz())
        .with_context(|| format!("detecting beats in {}", record.display()))
}

/// Every signal in millivolts; non-voltage signals (e.g. blood pressure)
/// are skipped, and the detector's fusion itself weighs down leads that
/// carry no usable ECG.
fn voltage_leads(rec: &ecg_wfdb::Record) -> Vec<Vec<f32>> {
    (0..rec.n_signals())
        .filter_map(|i| rec.millivolts(i).ok())
        .take(ecg_signal::qrs::MAX_LEADS)
        .collect()
}
