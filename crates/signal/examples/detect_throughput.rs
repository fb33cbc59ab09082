//! Times the QRS detector in-process on WFDB records, the same way
//! `benches/compare_sleepecg.py` times sleepecg: records are loaded first,
//! then only detection is timed, best of several repetitions.
//!
//! `cargo run --release -p ecg-signal --example detect_throughput -- [--first-lead] RECORD...`
//! prints one JSON object: samples (per lead), seconds, samples_per_s.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut first_lead_only = false;
    let mut records = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "--first-lead" {
            first_lead_only = true;
        } else {
            records.push(a);
        }
    }
    let mut loaded = Vec::new();
    for r in &records {
        let rec = ecg_wfdb::Record::read(r)?;
        let n = if first_lead_only { 1 } else { rec.n_signals() };
        let leads: Vec<Vec<f32>> = (0..n)
            .map(|i| rec.millivolts(i))
            .collect::<Result<_, _>>()?;
        loaded.push((rec.fs_hz(), leads));
    }
    let samples: usize = loaded.iter().map(|(_, l)| l[0].len()).sum();
    let mut best = f64::INFINITY;
    let mut beats = 0;
    for _ in 0..5 {
        let t = Instant::now();
        beats = 0;
        for (fs, leads) in &loaded {
            let views: Vec<&[f32]> = leads.iter().map(Vec::as_slice).collect();
            beats += ecg_signal::detect_qrs(&views, *fs)?.len();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let n_leads = loaded.first().map_or(0, |(_, l)| l.len());
    println!(
        "{{\"records\": {}, \"leads\": {}, \"samples\": {}, \"beats\": {}, \"seconds\": {:.4}, \"samples_per_s\": {:.0}}}",
        loaded.len(),
        n_leads,
        samples,
        beats,
        best,
        samples as f64 / best
    );
    Ok(())
}
