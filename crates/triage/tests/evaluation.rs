//! Reproducible evaluation on the real records in `/work/shared/data` (or `$ECG_DATA`):
//!
//! ```text
//! cargo test -p ecg-triage --release --test evaluation -- --ignored --nocapture
//! ```
//!
//! - `delineation_vs_ludb`: global QRS onset/offset of the representative-beat delineation
//!   (R peaks from the signal core's detector) against LUDB's per-lead expert annotations
//!   (global reference: earliest onset, latest offset across the 12 leads).
//! - `triage_vs_labels`: Se / Sp of `stemi` against `labels/stemi_dev.csv`, false alarms by
//!   category; and as the pipeline alerts, the early decision of the streamed record
//!   counting too (an alert sent cannot be taken back).
//! - `st_on_real_beats_with_known_offset`: semi-synthetic, real LUDB "normal" records with an
//!   ST shift of known size added after the reference QRS end; kept apart from the real
//!   results.
//! - `qrs_duration_vs_muse`: clinical and global QRS duration (and QT) against GE MUSE's
//!   measurements in the Chapman headers.
//! - `streaming_screen`: every labelled record streamed in half-second chunks (R peaks
//!   0.3 s late), the window's readings with and without the beat screen: how many, and
//!   where the early decisions come.
//! - `every_record_answers`: every record in the data folder gets an answer, no panic.
//! - `explain_records`: per-lead measurements, median beats and reasons of the acute-MI
//!   records (or of `$ECG_RECORDS`, comma-separated), to see how a record is read.
//!
//! They assert nothing about the figures (they are measured, not fitted); they fail only
//! if a record cannot be read or interpreted.

use std::path::{Path, PathBuf};

use ecg_triage::{interpret_detecting, Interpretation, Interpreter, LeadSignal, Patient, Sex};

fn data_dir() -> PathBuf {
    std::env::var_os("ECG_DATA").map_or_else(|| PathBuf::from("/work/shared/data"), PathBuf::from)
}

struct Loaded {
    fs_hz: f64,
    labels: Vec<String>,
    signals: Vec<Vec<f32>>,
    patient: Patient,
}

fn load(path: &Path) -> Loaded {
    let rec = ecg_wfdb::Record::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let labels: Vec<String> = rec.lead_names().iter().map(|s| s.to_string()).collect();
    let signals = (0..rec.n_signals())
        .map(|i| {
            rec.millivolts(i)
                .unwrap_or_else(|_| vec![f32::NAN; rec.n_samples()])
        })
        .collect();
    let h = rec.header();
    let patient = Patient {
        sex: h.sex().map(|s| match s {
            ecg_wfdb::Sex::Male => Sex::Male,
            ecg_wfdb::Sex::Female => Sex::Female,
        }),
        age_years: h.age_years().map(f64::from),
    };
    Loaded {
        fs_hz: rec.fs_hz(),
        labels,
        signals,
        patient,
    }
}

fn run(l: &Loaded) -> Interpretation {
    let leads: Vec<LeadSignal<'_>> = l
        .labels
        .iter()
        .zip(&l.signals)
        .map(|(label, s)| LeadSignal {
            label,
            samples_mv: s,
        })
        .collect();
    interpret_detecting(l.fs_hz, &leads, l.patient).expect("interpretation")
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Global reference QRS complexes of one LUDB record: (onset, peak, offset) per beat.
fn ludb_reference(path: &Path) -> Vec<(u64, u64, u64)> {
    let leads = [
        "i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6",
    ];
    let mut per_lead: Vec<Vec<(u64, u64, u64)>> = Vec::new();
    for l in leads {
        let ann = ecg_wfdb::read_annotations(path, l).expect("LUDB annotation");
        let mut q = Vec::new();
        for w in ann.windows(3) {
            if w[0].symbol() == "(" && w[1].symbol() == "N" && w[2].symbol() == ")" {
                q.push((w[0].sample, w[1].sample, w[2].sample));
            }
        }
        per_lead.push(q);
    }
    let anchor = per_lead
        .iter()
        .max_by_key(|q| q.len())
        .cloned()
        .unwrap_or_default();
    anchor
        .iter()
        .map(|&(_, p, _)| {
            let mut on = u64::MAX;
            let mut off = 0;
            for q in &per_lead {
                for &(a, b, c) in q {
                    if b.abs_diff(p) <= 60 {
                        on = on.min(a);
                        off = off.max(c);
                    }
                }
            }
            (on, p, off)
        })
        .collect()
}

#[test]
#[ignore = "reads the real records; run with --ignored"]
fn delineation_vs_ludb() {
    let dir = data_dir().join("ludb");
    let mut ids: Vec<u32> = std::fs::read_dir(&dir)
        .expect("ludb folder")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".hea")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    let (mut on_err, mut off_err) = (Vec::new(), Vec::new());
    let (mut rec_on, mut rec_off) = (Vec::new(), Vec::new());
    let mut unmatched = 0usize;
    println!("record  beats  onset_ms(mean)  offset_ms(mean)");
    for id in ids {
        let path = dir.join(id.to_string());
        let l = load(&path);
        let fs = l.fs_hz;
        let interp = run(&l);
        let reference = ludb_reference(&path);
        let (mut ron, mut roff) = (Vec::new(), Vec::new());
        for &(on, p, off) in &reference {
            let Some(b) = interp
                .beats
                .iter()
                .find(|b| (b.r as u64).abs_diff(p) <= (0.1 * fs) as u64)
            else {
                unmatched += 1;
                continue;
            };
            ron.push((b.qrs_on as f64 - on as f64) / fs * 1000.0);
            roff.push((b.qrs_off as f64 - off as f64) / fs * 1000.0);
        }
        if ron.is_empty() {
            continue;
        }
        let (mon, _) = mean_sd(&ron);
        let (moff, _) = mean_sd(&roff);
        println!("{id:>6}  {:>5}  {mon:>14.1}  {moff:>15.1}", ron.len());
        rec_on.push(mon);
        rec_off.push(moff);
        on_err.extend(ron);
        off_err.extend(roff);
    }
    let (m1, s1) = mean_sd(&on_err);
    let (m2, s2) = mean_sd(&off_err);
    let (m3, s3) = mean_sd(&rec_on);
    let (m4, s4) = mean_sd(&rec_off);
    println!(
        "\nGlobal QRS delineation vs LUDB (detector R peaks), errors in ms (ours - reference):"
    );
    println!("                 n      onset mean +- SD     offset mean +- SD");
    println!(
        "per beat   {:>6}      {m1:>6.1} +- {s1:>5.1}      {m2:>6.1} +- {s2:>5.1}",
        on_err.len()
    );
    println!(
        "per record {:>6}      {m3:>6.1} +- {s3:>5.1}      {m4:>6.1} +- {s4:>5.1}",
        rec_on.len()
    );
    println!("reference beats without a detected beat: {unmatched}");
    println!("targets: |mean| <= 5 ms, SD <= 10 ms (onset), <= 11.6 ms (offset)");
}

/// `labels/stemi_dev.csv`: (record, label, category) per scored line.
fn labelled_records(data: &Path) -> Vec<(String, String, String)> {
    let csv = std::fs::read_to_string(data.join("labels/stemi_dev.csv")).expect("labels");
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f.len() >= 4).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

#[test]
#[ignore = "reads the real records; run with --ignored"]
fn triage_vs_labels() {
    let data = data_dir();
    let (mut tp, mut fn_, mut tn) = (0, 0, 0);
    let mut fp: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    // Per category: QRS >= 120 ms by the clinical and by the global duration, and the
    // records called intraventricular conduction delay.
    let mut wide: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    let mut repeat = 0;
    // As the pipeline alerts: an early decision while the record streams cannot be
    // taken back, so a record alerts when either the early or the final reading does.
    let (mut tp_sent, mut fp_sent) = (0, 0);
    let mut withdrawn = Vec::new();
    println!("record                                     label  stemi  criteria  quality  mimics / reasons");
    for (rec, label, cat) in labelled_records(&data) {
        let (rec, label, cat) = (rec.as_str(), label.as_str(), cat.as_str());
        let l = load(&data.join(rec));
        let i = run(&l);
        let early = detected_r_peaks(&l).and_then(|r| stream(&l, &r, true).1);
        let sent = i.stemi || early.is_some();
        if early.is_some() && !i.stemi {
            withdrawn.push(format!("{rec} (label {label})"));
        }
        match label {
            "1" => tp_sent += usize::from(sent),
            "0" => fp_sent += usize::from(sent),
            _ => {}
        }
        if !i.quality.ok {
            repeat += 1;
            println!(
                "{rec:<42} {label:>5}  repeat: {}",
                i.quality.issues.join("; ")
            );
        }
        let mimics: Vec<String> = i.mimics.iter().map(|m| m.to_string()).collect();
        let show = label == "1" || i.stemi;
        if show {
            println!(
                "{rec:<42} {label:>5}  {:>5}  {:>8}  {:>7}  [{}] {}",
                i.stemi,
                i.stemi_criteria_met,
                i.quality.ok,
                mimics.join(", "),
                i.reasons.join(" | ")
            );
        }
        match label {
            "1" => {
                if i.stemi {
                    tp += 1
                } else {
                    fn_ += 1
                }
            }
            "0" => {
                let w = wide.entry(cat.to_string()).or_default();
                w.0 += usize::from(i.qrs_ms.is_some_and(|q| q >= 120.0));
                w.1 += usize::from(i.qrs_global_ms.is_some_and(|q| q >= 120.0));
                w.2 += usize::from(
                    i.mimics
                        .contains(&ecg_triage::Mimic::IntraventricularConductionDelay),
                );
                let e = fp.entry(cat.to_string()).or_default();
                e.1 += 1;
                if i.stemi {
                    e.0 += 1;
                } else {
                    tn += 1;
                }
            }
            _ => {}
        }
    }
    let n_fp: usize = fp.values().map(|v| v.0).sum();
    println!(
        "\nSe {}/{} = {:.1}%",
        tp,
        tp + fn_,
        100.0 * tp as f64 / (tp + fn_).max(1) as f64
    );
    println!(
        "Sp {}/{} = {:.1}%",
        tn,
        tn + n_fp,
        100.0 * tn as f64 / (tn + n_fp).max(1) as f64
    );
    println!(
        "as the pipeline alerts (early or final, streamed in half-second chunks): Se {}/{}, Sp {}/{}",
        tp_sent,
        tp + fn_,
        tn + n_fp - fp_sent,
        tn + n_fp
    );
    println!(
        "early alerts that the whole recording withdrew: {}",
        if withdrawn.is_empty() {
            "none".to_string()
        } else {
            withdrawn.join(", ")
        }
    );
    println!("answered 'repeat the ECG' (quality gate): {repeat}");
    println!("false alarms by category (and QRS >= 120 ms: clinical / global; called IVCD):");
    for (cat, (n_fp, n)) in &fp {
        let (c, g, ivcd) = wide.get(cat).copied().unwrap_or_default();
        println!("  {cat:<12} {n_fp:>3} / {n:>3}    wide {c:>3} / {g:>3}   IVCD {ivcd:>3}");
    }
}

/// `# KEY: N` in a Chapman header: GE MUSE's measurements (`QRSDuration`, `QTInterval`).
fn muse_ms(path: &Path, key: &str) -> Option<f64> {
    let hea = std::fs::read_to_string(path.with_extension("hea")).ok()?;
    let prefix = format!("# {key}:");
    hea.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
#[ignore = "reads the real records; run with --ignored"]
fn qrs_duration_vs_muse() {
    let dir = data_dir().join("chapman");
    let (mut d_clin, mut d_glob) = (Vec::new(), Vec::new());
    let (mut d_clin_n, mut d_glob_n) = (Vec::new(), Vec::new());
    let mut d_qt = Vec::new();
    println!("record                          MUSE  clinical  global  (ms)");
    for path in records_in(&dir) {
        let Some(muse) = muse_ms(&path, "QRSDuration") else {
            continue;
        };
        let l = load(&path);
        let i = run(&l);
        let (Some(c), Some(g)) = (i.qrs_ms, i.qrs_global_ms) else {
            println!(
                "{:<30} {muse:>5}  not measured",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            continue;
        };
        println!(
            "{:<30} {muse:>5.0}  {c:>8.0}  {g:>6.0}   {}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            i.mimics
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let (Some(q), Some(mq)) = (i.qt_ms, muse_ms(&path, "QTInterval")) {
            d_qt.push(q - mq);
        }
        d_clin.push(c - muse);
        d_glob.push(g - muse);
        if muse < 110.0 {
            d_clin_n.push(c - muse);
            d_glob_n.push(g - muse);
        }
    }
    let show = |name: &str, v: &[f64]| {
        let (m, s) = mean_sd(v);
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        let med = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "{name:<34} n {:>3}  mean {m:>6.1} +- {s:>5.1}  median {med:>6.1}  range {:.0}..{:.0}",
            v.len(),
            sorted.first().copied().unwrap_or(f64::NAN),
            sorted.last().copied().unwrap_or(f64::NAN)
        );
    };
    println!("\nQRS duration - GE MUSE's (ms):");
    show("clinical, all records", &d_clin);
    show("global (J point), all records", &d_glob);
    show("clinical, MUSE QRS < 110 ms", &d_clin_n);
    show("global (J point), MUSE QRS < 110 ms", &d_glob_n);
    println!("QT interval - GE MUSE's (ms):");
    show("QT, all records", &d_qt);
}

fn records_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "hea").then(|| p.with_extension(""))
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
#[ignore = "reads the real records; run with --ignored"]
fn every_record_answers() {
    let data = data_dir();
    let mut n = 0;
    let mut repeat = 0;
    let mut alerts = 0;
    for db in ["ludb", "ptb", "cinc", "chapman", "mitdb"] {
        for path in records_in(&data.join(db)) {
            let l = load(&path);
            let i = run(&l);
            n += 1;
            repeat += usize::from(!i.quality.ok);
            alerts += usize::from(i.stemi);
        }
    }
    println!("{n} records answered: {alerts} alerts, {repeat} 'repeat the ECG'");
    assert!(n > 0);
}

#[test]
#[ignore = "reads the real records; run with --ignored"]
fn st_on_real_beats_with_known_offset() {
    let data = data_dir();
    let shift_uv = 150.0f32;
    let (mut err_j, mut err_60) = (Vec::new(), Vec::new());
    let mut detected = 0;
    let mut tried = 0;
    for (rec, _, cat) in labelled_records(&data) {
        if cat != "normal" || !rec.starts_with("ludb/") {
            continue;
        }
        let path = data.join(&rec);
        let mut l = load(&path);
        let base = run(&l);
        if !base.quality.ok {
            continue;
        }
        let reference = ludb_reference(&path);
        let fs = l.fs_hz;
        // Raise V2-V4 by `shift_uv` from each reference QRS end for 250 ms, with 20 ms
        // raised-cosine ramps at both ends (an injury current's plateau).
        let ramp = (0.02 * fs) as usize;
        let plateau = (0.25 * fs) as usize;
        for lead in ["V2", "V3", "V4"] {
            let li = l
                .labels
                .iter()
                .position(|x| x.eq_ignore_ascii_case(lead))
                .expect("lead");
            let x = &mut l.signals[li];
            let n = x.len();
            // Every beat, including those before and after the annotated stretch.
            let rr = base
                .beats
                .windows(2)
                .map(|w| w[1].r - w[0].r)
                .min()
                .unwrap_or(n);
            for b in &base.beats {
                let start = b.qrs_off.saturating_sub(ramp);
                for k in 0..(2 * ramp + plateau).min(rr) {
                    let t = start + k;
                    if t >= n {
                        break;
                    }
                    let g = if k < ramp {
                        0.5 - 0.5 * (std::f32::consts::PI * k as f32 / ramp as f32).cos()
                    } else if k < ramp + plateau {
                        1.0
                    } else {
                        0.5 + 0.5
                            * (std::f32::consts::PI * (k - ramp - plateau) as f32 / ramp as f32)
                                .cos()
                    };
                    x[t] += g * shift_uv / 1000.0;
                }
            }
        }
        let _ = reference;
        let shifted = run(&l);
        tried += 1;
        detected += usize::from(shifted.stemi_criteria_met);
        for lead in ["V2", "V3", "V4"] {
            let (a, b) = (&base.leads[lead], &shifted.leads[lead]);
            err_j.push((b.st_j_uv - a.st_j_uv - shift_uv) as f64);
            err_60.push((b.st_j60_uv - a.st_j60_uv - shift_uv) as f64);
        }
    }
    let (mj, sj) = mean_sd(&err_j);
    let (m6, s6) = mean_sd(&err_60);
    println!(
        "semi-synthetic: +{shift_uv} uV ST plateau added to V2-V4 of {tried} LUDB normal records"
    );
    println!("  change measured - added, ST@J:    {mj:6.1} +- {sj:5.1} uV");
    println!("  change measured - added, ST@J+60: {m6:6.1} +- {s6:5.1} uV");
    println!("  4th-UDMI criteria met after the shift: {detected}/{tried} (1.5 mm in V2-V3 is the threshold for women / unknown sex)");
}

/// Per-lead measurements and reasons for the records named in `$ECG_RECORDS`
/// (comma-separated, relative to the data folder; default: the acute-MI records of
/// `labels/stemi_dev.csv`), to see how a record is read rather than only the verdict.
#[test]
#[ignore = "reads the real records; run with --ignored"]
fn explain_records() {
    let data = data_dir();
    let records: Vec<String> = match std::env::var("ECG_RECORDS") {
        Ok(s) => s.split(',').map(str::to_string).collect(),
        Err(_) => std::fs::read_to_string(data.join("labels/stemi_dev.csv"))
            .expect("labels")
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                (f.len() >= 4 && f[2] == "1").then(|| f[1].to_string())
            })
            .collect(),
    };
    for rec in records {
        let l = load(&data.join(&rec));
        let i = run(&l);
        println!(
            "\n== {rec}: stemi {} criteria {} quality {} | HR {:.0} QRS {:.0} ms (global {:.0}) QT {:.0} ms | {:?}",
            i.stemi,
            i.stemi_criteria_met,
            i.quality.ok,
            i.heart_rate_bpm.unwrap_or(f64::NAN),
            i.qrs_ms.unwrap_or(f64::NAN),
            i.qrs_global_ms.unwrap_or(f64::NAN),
            i.qt_ms.unwrap_or(f64::NAN),
            i.patient
        );
        println!("lead     STj  STj60      R      S      Q   Qms   term      T");
        for (name, m) in &i.leads {
            println!(
                "{name:<5} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>5.0} {:>6.0} {:>6.0}",
                m.st_j_uv, m.st_j60_uv, m.r_uv, m.s_uv, m.q_uv, m.q_ms, m.terminal_uv, m.t_uv
            );
        }
        for r in &i.reasons {
            println!("  - {r}");
        }
        print_median_beats(&l, &i);
        if rec.starts_with("ludb/") {
            let fs = l.fs_hz;
            let reference = ludb_reference(&data.join(&rec));
            let d: Vec<String> = reference
                .iter()
                .filter_map(|&(on, p, off)| {
                    let b = i.beats.iter().find(|b| (b.r as u64).abs_diff(p) <= 50)?;
                    Some(format!(
                        "{:+.0}/{:+.0}",
                        (b.qrs_on as f64 - on as f64) / fs * 1000.0,
                        (b.qrs_off as f64 - off as f64) / fs * 1000.0
                    ))
                })
                .collect();
            println!(
                "  QRS onset/offset vs LUDB (ms, ours - reference): {}",
                d.join(" ")
            );
        }
    }
}

/// A coarse print of each lead's median beat (raw signal, relative to the mean over the
/// 20 ms before QRS onset), every 20 ms from 100 ms before QRS onset, in uV.
fn print_median_beats(l: &Loaded, i: &Interpretation) {
    let fs = l.fs_hz;
    let ms = |x: f64| (x * fs / 1000.0).round() as usize;
    let beats: Vec<_> = i
        .beats
        .iter()
        .filter(|b| b.qrs_on >= ms(140.0) && b.qrs_on + ms(620.0) < l.signals[0].len())
        .collect();
    if beats.is_empty() {
        return;
    }
    let qrs = i
        .beats
        .iter()
        .map(|b| b.qrs_off - b.qrs_on)
        .max()
        .unwrap_or(0);
    println!(
        "  median beats, uV every 20 ms from QRS onset - 100 ms (QRS onset at column 5, offset ~ column {:.0})",
        5.0 + (qrs as f64 / fs * 1000.0) / 20.0
    );
    for (name, x) in l.labels.iter().zip(&l.signals) {
        let mut row = Vec::new();
        for k in 0..36 {
            let mut v: Vec<f32> = beats
                .iter()
                .map(|b| {
                    let base: f32 =
                        x[b.qrs_on - ms(20.0)..b.qrs_on].iter().sum::<f32>() / ms(20.0) as f32;
                    x[b.qrs_on - ms(100.0) + ms(20.0 * k as f64)] - base
                })
                .collect();
            v.sort_by(f32::total_cmp);
            row.push(format!("{:5.0}", 1000.0 * v[v.len() / 2]));
        }
        println!("  {name:<4}{}", row.join(""));
    }
}

/// The signal core's R peaks on the record's 12-lead channels (missing samples as 0),
/// as the pipeline's detector sees them; `None` when it refuses the record.
fn detected_r_peaks(l: &Loaded) -> Option<Vec<usize>> {
    let finite: Vec<Vec<f32>> = l
        .signals
        .iter()
        .zip(&l.labels)
        .filter(|(_, name)| ecg_triage::LeadName::parse(name).is_some())
        .map(|(s, _)| {
            s.iter()
                .map(|&v| if v.is_finite() { v } else { 0.0 })
                .collect()
        })
        .take(ecg_signal::qrs::MAX_LEADS)
        .collect();
    let views: Vec<&[f32]> = finite.iter().map(Vec::as_slice).collect();
    let r = ecg_signal::detect_qrs(&views, l.fs_hz).ok()?;
    Some(
        r.into_iter()
            .filter_map(|x| usize::try_from(x).ok())
            .collect(),
    )
}

/// Streams a record; returns the window readings and the early decision's sample.
fn stream(l: &Loaded, r_peaks: &[usize], screening: bool) -> (usize, Option<usize>) {
    let labels: Vec<&str> = l.labels.iter().map(String::as_str).collect();
    let mut it = Interpreter::new(l.fs_hz, &labels, l.patient)
        .expect("interpreter")
        .with_screening(screening);
    let n = l.signals[0].len();
    let chunk = (l.fs_hz / 2.0) as usize;
    let delay = (l.fs_hz * 0.3) as usize;
    let mut decided = None;
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let parts: Vec<&[f32]> = l.signals.iter().map(|x| &x[start..end]).collect();
        let r: Vec<usize> = r_peaks
            .iter()
            .copied()
            .filter(|&r| (r + delay).min(n - 1) >= start && (r + delay).min(n - 1) < end)
            .collect();
        if let Some(d) = it.push(&parts, &r).expect("push") {
            decided.get_or_insert(d.at_sample);
        }
        start = end;
    }
    (it.window_interpretations(), decided)
}

#[test]
#[ignore = "evaluation on real records: run with --ignored --nocapture"]
fn streaming_screen() {
    let data = data_dir();
    let (mut reads_on, mut reads_off, mut beats) = (0, 0, 0);
    let (mut same, mut differ) = (0, 0);
    println!("record                                     beats  reads on/off  early on/off (s)");
    for (rec, _, _) in labelled_records(&data) {
        let l = load(&data.join(&rec));
        let Some(r) = detected_r_peaks(&l) else {
            continue;
        };
        let (on, at_on) = stream(&l, &r, true);
        let (off, at_off) = stream(&l, &r, false);
        reads_on += on;
        reads_off += off;
        beats += r.len();
        let secs =
            |a: Option<usize>| a.map_or("-".to_string(), |x| format!("{:.1}", x as f64 / l.fs_hz));
        if at_on == at_off {
            same += 1;
        } else {
            differ += 1;
        }
        if at_on.is_some() || at_off.is_some() || on * 2 > off {
            println!(
                "{:<42} {:>5}  {:>5} / {:<5}  {} / {}",
                rec,
                r.len(),
                on,
                off,
                secs(at_on),
                secs(at_off)
            );
        }
    }
    println!(
        "\n{beats} beats: window readings {reads_on} with the screen, {reads_off} without; \
         early decision at the same sample (or none both ways) on {same} records, different on {differ}"
    );
}
