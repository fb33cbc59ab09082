//! Development aid: lists a record's missed and false beats with the
//! reference annotations around them. `cargo run --release -p ecg-signal --example
//! qrs_debug -- RECORD`
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let record = PathBuf::from(std::env::args().nth(1).expect("RECORD"));
    let rec = ecg_wfdb::Record::read(&record)?;
    let ann = ecg_wfdb::read_annotations(&record, "atr")?;
    let leads: Vec<Vec<f32>> = (0..rec.n_signals())
        .map(|i| rec.millivolts(i))
        .collect::<Result<_, _>>()?;
    let views: Vec<&[f32]> = leads.iter().map(Vec::as_slice).collect();
    let mut det = ecg_signal::QrsDetector::new(rec.fs_hz(), views.len())?;
    let mut out = ecg_signal::sink::Collect::default();
    det.push(&views, &mut out)?;
    det.finish(&mut out);
    let beats: Vec<u64> = out.beats.iter().map(|b| b.sample).collect();
    let reference: Vec<u64> = ann
        .iter()
        .filter(|a| a.is_beat())
        .map(|a| a.sample)
        .collect();
    let w = ecg_ec57::match_window(rec.fs_hz());
    let markers = ann.iter().filter_map(|a| match a.symbol() {
        "[" => Some((a.sample, true)),
        "]" => Some((a.sample, false)),
        _ => None,
    });
    let excluded = ecg_ec57::episodes(markers, rec.n_samples() as u64);
    let (_, m) = ecg_ec57::compare_detailed(&reference, &beats, w, &excluded);
    let fs = rec.fs_hz();
    let around = |s: u64| -> String {
        ann.iter()
            .filter(|a| a.sample + 2 * fs as u64 >= s && a.sample <= s + 2 * fs as u64)
            .map(|a| format!("{}{:+}", a.symbol(), (a.sample as i64 - s as i64)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let q = |s: u64| -> String {
        out.quality
            .iter()
            .find(|q| q.start_sample <= s && s < q.end_sample)
            .map(|q| format!("snr {:.1?}", q.lead_snr))
            .unwrap_or_default()
    };
    if let (Some(a), Some(b)) = (std::env::args().nth(2), std::env::args().nth(3)) {
        let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
        let mut csv = String::new();
        for i in a..b.min(leads[0].len()) {
            let row: Vec<String> = leads.iter().map(|l| l[i].to_string()).collect();
            csv.push_str(&format!("{i},{}\n", row.join(",")));
        }
        std::fs::write("/tmp/qrs_dump.csv", csv)?;
        let marks: Vec<String> = ann
            .iter()
            .filter(|x| x.sample >= a as u64 && x.sample < b as u64)
            .map(|x| format!("A,{},{}", x.sample, x.symbol()))
            .chain(
                beats
                    .iter()
                    .filter(|&&x| x >= a as u64 && x < b as u64)
                    .map(|x| format!("D,{x},")),
            )
            .collect();
        std::fs::write("/tmp/qrs_marks.csv", marks.join("\n"))?;
    }
    for s in &m.missed {
        println!("FN {s} ({:.1}s) {} | {}", *s as f64 / fs, around(*s), q(*s));
    }
    for s in &m.extra {
        let b = out.beats.iter().find(|b| b.sample == *s).unwrap();
        println!(
            "FP {s} ({:.1}s) str {:.2} sb {} | {} | {}",
            *s as f64 / fs,
            b.strength,
            b.search_back,
            around(*s),
            q(*s)
        );
    }
    Ok(())
}
