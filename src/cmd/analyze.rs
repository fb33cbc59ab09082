//! `ecgtriage analyze RECORD [--sex male|female] [--age YEARS] [--json]`: 12-lead
//! interpretation of one record (file reading here; the interpretation is pure, in ecg-triage).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use ecg_triage::{interpret_detecting, Interpretation, LeadSignal, Patient, Sex};

#[derive(clap::Args)]
pub struct Args {
    /// WFDB record path without extension (e.g. data/ludb/24).
    pub record: PathBuf,
    /// Patient sex (overrides the header): male or female.
    #[arg(long)]
    pub sex: Option<String>,
    /// Patient age in years (overrides the header).
    #[arg(long)]
    pub age: Option<f64>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rec = ecg_wfdb::Record::read(&args.record)
        .with_context(|| format!("reading record {}", args.record.display()))?;
    let labels: Vec<String> = rec.lead_names().iter().map(|s| s.to_string()).collect();
    // Non-voltage channels (a blood-pressure line) are not ECG leads: left out.
    let mut names = Vec::new();
    let mut signals = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        if let Ok(mv) = rec.millivolts(i) {
            names.push(label.as_str());
            signals.push(mv);
        }
    }
    anyhow::ensure!(
        !signals.is_empty(),
        "record {} has no voltage signal",
        args.record.display()
    );
    let header = rec.header();
    let sex = match &args.sex {
        Some(s) => Some(s.parse::<Sex>()?),
        None => header.sex().map(|s| match s {
            ecg_wfdb::Sex::Male => Sex::Male,
            ecg_wfdb::Sex::Female => Sex::Female,
        }),
    };
    let age_years = args.age.or_else(|| header.age_years().map(f64::from));
    if let Some(age) = age_years {
        anyhow::ensure!(
            (0.0..=130.0).contains(&age),
            "age {age} is not a plausible age in years"
        );
    }
    let leads: Vec<LeadSignal<'_>> = names
        .iter()
        .zip(&signals)
        .map(|(label, s)| LeadSignal {
            label,
            samples_mv: s,
        })
        .collect();
    let interp = interpret_detecting(rec.fs_hz(), &leads, Patient { sex, age_years })
        .with_context(|| format!("interpreting {}", args.record.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &interp)?;
        writeln!(out)?;
    } else {
        write!(
            out,
            "{}",
            text_report(&args.record.display().to_string(), &interp)
        )?;
    }
    Ok(())
}

fn text_report(record: &str, i: &Interpretation) -> String {
    let mut s = String::new();
    let verdict = if !i.quality.ok {
        "POOR SIGNAL: repeat the ECG"
    } else if i.stemi {
        "SUSPECTED STEMI (acute coronary occlusion): alert the chest-pain centre"
    } else {
        "no suspected STEMI"
    };
    s.push_str(&format!("{record}: {verdict}\n"));
    s.push_str(&format!(
        "  4th-UDMI STEMI criteria met: {}\n",
        if i.stemi_criteria_met { "yes" } else { "no" }
    ));
    if !i.territories.is_empty() {
        let t: Vec<String> = i.territories.iter().map(|t| t.to_string()).collect();
        s.push_str(&format!("  territories: {}\n", t.join(", ")));
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    s.push_str(&format!(
        "  heart rate {} bpm, QRS {} ms, QT {} ms, {} beats\n",
        opt(i.heart_rate_bpm),
        opt(i.qrs_ms),
        opt(i.qt_ms),
        i.beats.len()
    ));
    if !i.mimics.is_empty() {
        let m: Vec<String> = i.mimics.iter().map(|m| m.to_string()).collect();
        s.push_str(&format!("  mimics: {}\n", m.join(", ")));
    }
    if !i.quality.ok {
        s.push_str(&format!(
            "  quality issues: {}\n",
            i.quality.issues.join("; ")
        ));
    }
    s.push_str("  lead   ST@J uV   ST@J+60 uV\n");
    // Standard display order first, then any extra leads (V7-V9, V3R, V4R).
    let mut order: Vec<&str> = ecg_triage::STANDARD_LEADS
        .iter()
        .map(|l| l.label())
        .collect();
    let extra: Vec<&str> = i
        .leads
        .keys()
        .map(String::as_str)
        .filter(|k| !order.contains(k))
        .collect();
    order.extend(extra);
    for lead in order {
        if let Some(m) = i.leads.get(lead) {
            s.push_str(&format!(
                "  {lead:<5} {:>8.0} {:>12.0}\n",
                m.st_j_uv, m.st_j60_uv
            ));
        }
    }
    s.push_str("  reasons:\n");
    for r in &i.reasons {
        s.push_str(&format!("   - {r}\n"));
    }
    s
}
