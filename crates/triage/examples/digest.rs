//! A digest of the interpretation of every 12-lead record in the data folder, to show
//! that a change meant only to be faster (or a refactoring) leaves every answer as it was:
//!
//! ```text
//! cargo run --release -p ecg-triage --example digest > before.txt
//! # change, then
//! cargo run --release -p ecg-triage --example digest > after.txt
//! diff before.txt after.txt
//! ```
//!
//! Per record: a hash of the whole interpretation (every float to the bit) and a coarse
//! one (decision, quality, mimics, reasons, beats), for a change that may move
//! measurements by rounding but should not move answers. The data folder is
//! `/work/shared/data`, or `$ECG_DATA`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use ecg_triage::{interpret_detecting, LeadSignal, Patient};

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn main() {
    let data = std::env::var_os("ECG_DATA")
        .map_or_else(|| PathBuf::from("/work/shared/data"), PathBuf::from);
    let mut whole = DefaultHasher::new();
    let mut n = 0;
    for dir in ["ludb", "ptb", "chapman", "cinc"] {
        let Ok(entries) = std::fs::read_dir(data.join(dir)) else {
            eprintln!("{}: not found, skipped", data.join(dir).display());
            continue;
        };
        let mut records: Vec<PathBuf> = entries
            .filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "hea").then(|| p.with_extension(""))
            })
            .collect();
        records.sort();
        for path in records {
            let name = format!(
                "{dir}/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            let rec = match ecg_wfdb::Record::read(&path) {
                Ok(r) => r,
                Err(e) => {
                    println!("{name} unreadable: {e}");
                    continue;
                }
            };
            let labels: Vec<String> = rec.lead_names().iter().map(|s| s.to_string()).collect();
            let signals: Vec<Vec<f32>> = (0..rec.n_signals())
                .map(|i| {
                    rec.millivolts(i)
                        .unwrap_or_else(|_| vec![f32::NAN; rec.n_samples()])
                })
                .collect();
            let leads: Vec<LeadSignal<'_>> = labels
                .iter()
                .zip(&signals)
                .map(|(label, s)| LeadSignal {
                    label,
                    samples_mv: s,
                })
                .collect();
            let out = interpret_detecting(rec.fs_hz(), &leads, Patient::default());
            let full = format!("{out:?}");
            let coarse = match &out {
                Ok(i) => format!(
                    "{} {} {} {:?} {:?} {:?}",
                    i.stemi,
                    i.stemi_criteria_met,
                    i.quality.ok,
                    i.mimics,
                    i.reasons,
                    i.beats
                        .iter()
                        .map(|b| (b.r, b.qrs_on, b.qrs_off, b.dominant))
                        .collect::<Vec<_>>()
                ),
                Err(e) => e.to_string(),
            };
            full.hash(&mut whole);
            n += 1;
            println!("{name} {:016x} coarse {:016x}", hash(&full), hash(&coarse));
        }
    }
    println!("all {n} records {:016x}", whole.finish());
}
