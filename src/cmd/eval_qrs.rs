//! `ecgtriage eval-qrs RECORD...`: EC57 beat-by-beat evaluation of the
//! detector against each record's `.atr` reference annotations.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ecg_ec57::Comparison;

#[derive(clap::Args)]
pub struct Args {
    /// WFDB record paths without extension; paths with an extension
    /// (`100.dat`, `100.atr`, as a shell glob gives) are reduced to records.
    #[arg(required = true)]
    pub records: Vec<PathBuf>,
    /// Also list, per record, the sample indices of missed beats (FN) and
    /// false detections (FP).
    #[arg(long)]
    pub list_errors: bool,
}

struct Row {
    name: String,
    result: Comparison,
    mismatches: ecg_ec57::Mismatches,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let records = unique_records(&args.records);
    let rows = evaluate_all(&records)?;
    println!("{}", ecg_ec57::table_header());
    for row in &rows {
        println!("{}", row.result.table_row(&row.name));
        if args.list_errors {
            println!("  FN at {:?}", row.mismatches.missed);
            println!("  FP at {:?}", row.mismatches.extra);
        }
    }
    let gross: Comparison = rows.iter().map(|r| r.result).sum();
    println!("{}", gross.table_row("gross"));
    Ok(())
}

/// Accepts records given with or without an extension, keeping the order of
/// first appearance and dropping repeats.
fn unique_records(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let record = match p.extension().and_then(|e| e.to_str()) {
            Some("dat" | "hea" | "atr" | "xws" | "mat" | "qrs") => p.with_extension(""),
            _ => p.clone(),
        };
        if !out.contains(&record) {
            out.push(record);
        }
    }
    out
}

/// Evaluates records on all cores; rows come back in the given order.
fn evaluate_all(records: &[PathBuf]) -> anyhow::Result<Vec<Row>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<anyhow::Result<Row>>> = (0..records.len()).map(|_| None).collect();
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(records.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(record) = records.get(i) else { break };
                let row = evaluate(record);
                if let Ok(mut slots) = slots.lock() {
                    slots[i] = Some(row);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("evaluation worker died"))))
        .collect()
}

fn evaluate(record: &Path) -> anyhow::Result<Row> {
    let annotations = ecg_wfdb::read_annotations(record, "atr")
        .with_context(|| format!("reading reference annotations of {}", record.display()))?;
    let header_fs = ecg_wfdb::Record::read(record)
        .with_context(|| format!("reading record {}", record.display()))?;
    let detected = super::detect::detect_record(record)?;
    let (result, mismatches) = ecg_ec57::score_record(
        annotations
            .iter()
            .map(|a| (a.sample, ecg_ec57::Mark::from(a))),
        header_fs.n_samples() as u64,
        header_fs.fs_hz(),
        &detected,
    );
    let name = record.file_name().map_or_else(
        || record.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Row {
        name,
        result,
        mismatches,
    })
}
