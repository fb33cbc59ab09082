//! The simulated clinics' case mix read by the triage, as the pipeline reads it: which
//! synthetic conditions alert. Synthetic signals test behaviour, never accuracy (that is
//! measured on real records, `crates/triage/tests/evaluation.rs`): a textbook mimic
//! must not alert, a designed STEMI must, and normal tracings rarely.
//!
//! `cargo test --release -p ecg-pipeline --test synthetic_case_mix -- --nocapture` prints
//! the table; `ECG_CASE_MIX_VISITS` sets the number of visits (default 2,000).

use std::collections::BTreeMap;

use ecg_triage::{interpret_detecting, LeadSignal, Patient, Sex};
use firmware_sim::synth::{self, Condition};

/// The fleet's default share of STEMI visits.
const STEMI_FRACTION: f64 = 0.1;

#[derive(Default)]
struct Tally {
    visits: u32,
    alerts: u32,
    criteria_met: u32,
    repeat: u32,
}

fn name(c: Condition) -> &'static str {
    match c {
        Condition::Normal => "normal",
        Condition::Stemi(_) => "stemi",
        Condition::Lbbb => "lbbb",
        Condition::Rbbb => "rbbb",
        Condition::Lvh => "lvh",
        Condition::EarlyRepolarisation => "early_repol",
        Condition::Paced => "paced",
    }
}

#[test]
fn mimics_do_not_alert_and_stemis_do() {
    let visits: u64 = std::env::var("ECG_CASE_MIX_VISITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut wrong: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for seed in 0..visits {
        let mut rng = synth::visit_rng(seed);
        let (spec, v) = synth::case_mix_visit(&mut rng, STEMI_FRACTION).unwrap();
        let mv: Vec<Vec<f32>> = v
            .samples
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&s| f32::from(s) * v.uv_per_lsb / 1000.0)
                    .collect()
            })
            .collect();
        let leads: Vec<LeadSignal> = v
            .lead_names
            .iter()
            .zip(&mv)
            .map(|(label, s)| LeadSignal {
                label,
                samples_mv: s,
            })
            .collect();
        let patient = Patient {
            sex: Some(match spec.sex {
                synth::Sex::Male => Sex::Male,
                synth::Sex::Female => Sex::Female,
            }),
            age_years: Some(f64::from(spec.age_years)),
        };
        let out = interpret_detecting(f64::from(v.fs_hz), &leads, patient).unwrap();
        let c = name(spec.condition);
        let t = tally.entry(c).or_default();
        t.visits += 1;
        t.alerts += u32::from(out.stemi);
        t.criteria_met += u32::from(out.stemi_criteria_met);
        t.repeat += u32::from(!out.quality.ok);
        if out.quality.ok && out.stemi != spec.condition.is_stemi() {
            wrong
                .entry(c)
                .or_default()
                .push(format!("seed {seed}: {}", out.reasons.join(" | ")));
        }
    }
    println!(
        "{visits} visits of the fleet's case mix (STEMI fraction {STEMI_FRACTION}, its noise):"
    );
    println!("condition      visits  alerts  criteria met  repeat");
    for (c, t) in &tally {
        println!(
            "{c:12} {:8} {:7} {:13} {:7}",
            t.visits, t.alerts, t.criteria_met, t.repeat
        );
    }
    for (c, w) in &wrong {
        println!("== {c}: {} wrong answers", w.len());
        for line in w.iter().take(5) {
            println!("  {line}");
        }
    }

    let (mut mimic_visits, mut mimic_alerts) = (0, 0);
    for (c, t) in tally
        .iter()
        .filter(|(c, _)| !matches!(**c, "normal" | "stemi"))
    {
        assert!(t.visits >= 5, "too few {c} visits to judge: {}", t.visits);
        mimic_visits += t.visits;
        mimic_alerts += t.alerts;
    }
    // Textbook LBBB, RBBB, LVH, early repolarisation and pacing: at most 3 % alert (the
    // 4-variable formula, and a paced beat whose QRS end falls inside the QRS, still can).
    assert!(
        mimic_alerts * 100 <= 3 * mimic_visits,
        "{mimic_alerts} of {mimic_visits} mimics alert"
    );
    let stemi = &tally["stemi"];
    let readable = stemi.visits - stemi.repeat;
    assert!(
        stemi.alerts * 100 >= 95 * readable,
        "{} of {readable} readable STEMIs alert",
        stemi.alerts
    );
    // Normal tracings with up to 1.5 mm of J-point elevation: the 4-variable formula's
    // published specificity is about 90 % where it applies.
    let normal = &tally["normal"];
    assert!(
        normal.alerts * 100 <= 10 * normal.visits,
        "{} of {} normal visits alert",
        normal.alerts,
        normal.visits
    );
}
