//! Development aid: the detector on every LUDB record (500 Hz, 12 leads,
//! 10 s) against the QRS peaks annotated in lead II, EC57 150 ms window.
//! Records' first and last annotated QRS bound the scored span, because
//! LUDB leaves the cut-off complexes at the edges unannotated.
//! `cargo run --release -p ecg-signal --example ludb_check -- DATA/ludb`
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "../shared/data/ludb".into()),
    );
    let mut total = ecg_ec57::Comparison::default();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "hea"))
        .map(|p| p.with_extension(""))
        .collect();
    names.sort();
    for rec_path in &names {
        let rec = ecg_wfdb::Record::read(rec_path)?;
        let ann = ecg_wfdb::read_annotations(rec_path, "ii")?;
        let reference: Vec<u64> = ann
            .iter()
            .filter(|a| a.symbol() == "N")
            .map(|a| a.sample)
            .collect();
        let (Some(&first), Some(&last)) = (reference.first(), reference.last()) else {
            continue;
        };
        let leads: Vec<Vec<f32>> = (0..rec.n_signals())
            .map(|i| rec.millivolts(i))
            .collect::<Result<_, _>>()?;
        let views: Vec<&[f32]> = leads.iter().map(Vec::as_slice).collect();
        let detected = ecg_signal::detect_qrs(&views, rec.fs_hz())?;
        let w = ecg_ec57::match_window(rec.fs_hz());
        let excluded = [0..first.saturating_sub(w), last + w + 1..u64::MAX];
        let c = ecg_ec57::compare(&reference, &detected, w, &excluded);
        if c.false_negatives + c.false_positives > 0 {
            println!(
                "{}: TP {} FN {} FP {}",
                rec_path.display(),
                c.true_positives,
                c.false_negatives,
                c.false_positives
            );
        }
        total = total + c;
    }
    println!(
        "LUDB {} records: TP {} FN {} FP {}  Se {:.3}%  +P {:.3}%",
        names.len(),
        total.true_positives,
        total.false_negatives,
        total.false_positives,
        total.sensitivity_pct(),
        total.positive_predictivity_pct()
    );
    Ok(())
}
