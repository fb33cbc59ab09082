//! End-to-end test of the archive's openness: an archive written by
//! ecg-archive is read by third-party readers from PyPI (pyarrow and
//! DuckDB, from the venv that run-tests.sh prepares; `$ECG_PYTHON`, default
//! `.venv/bin/python`), which rebuild every visit's samples bit for bit, and
//! `ecgtriage query` agrees with them on counts and on a query filtered by
//! the `date` partition column. The alert lifecycle tables (`alert_acks`
//! with the verdict column, `alert_escalations`) are read with rows in them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ecg_query::archive::time::{Duration, OffsetDateTime};
use ecg_query::archive::{
    AlertAck, AlertEscalation, AlertRow, ArchiveWriter, BeatRow, LeadMeasurement, VisitRecord,
    VisitRow, WriterConfig,
};
use serde_json::Value;

mod common;

/// Deterministic ECG-like samples: a beat-rate wave, baseline wander and
/// pseudo-random noise, plus the int16 extremes so that no clipping or
/// sign error can hide.
fn samples(seed: u64, n_leads: usize, n: usize, fs_hz: u32) -> Vec<Vec<i16>> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 41) as f64 - 20.0
    };
    (0..n_leads)
        .map(|lead| {
            let mut v: Vec<i16> = (0..n)
                .map(|i| {
                    let t = i as f64 / fs_hz as f64;
                    let beat = 900.0
                        * (std::f64::consts::TAU * 1.2 * t + lead as f64)
                            .sin()
                            .powi(15);
                    let wander = 250.0 * (std::f64::consts::TAU * 0.3 * t).sin();
                    (beat + wander + noise()).round() as i16
                })
                .collect();
            if n >= 2 {
                v[0] = i16::MIN;
                v[n - 1] = i16::MAX;
            }
            v
        })
        .collect()
}

fn at_unix(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).expect("valid timestamp")
}

struct Case {
    id: String,
    date: &'static str,
    stemi: bool,
    record: VisitRecord,
}

fn cases() -> Vec<Case> {
    let days = [
        ("2026-11-29", at_unix(1_795_942_800)), // 2026-11-29 09:00 UTC
        ("2026-11-30", at_unix(1_796_047_200)), // 2026-11-30 14:00 UTC
    ];
    (0..7u64)
        .map(|i| {
            let (date, day) = days[(i % 2) as usize];
            let started_at = day + Duration::minutes(i as i64);
            let (fs_hz, n_leads) = if i == 3 { (1000, 2) } else { (500, 12) };
            let stemi = i % 3 == 1;
            let id = format!("00000000-0000-4000-8000-{i:012}");
            let leads: Vec<String> = (0..n_leads).map(|l| format!("L{l}")).collect();
            let samples = samples(i, n_leads, fs_hz as usize * 10, fs_hz);
            let alerts = if stemi {
                vec![AlertRow {
                    alert_id: format!("alert-{i}"),
                    centre_id: "centre-1".into(),
                    territories: vec!["anterior".into()],
                    early: true,
                    escalation_level: 0,
                    acquired_at: started_at,
                    detected_at: started_at + Duration::seconds(4),
                    published_at: started_at + Duration::seconds(4),
                    acked_at: None,
                    acked_by: None,
                }]
            } else {
                vec![]
            };
            let record = VisitRecord {
                visit: VisitRow {
                    visit_id: id.clone(),
                    device_id: format!("dev-{}", i % 3),
                    clinic_id: "clinic-7".into(),
                    patient_pseudonym: format!("k1-{:032x}", i),
                    sex: "male".into(),
                    age_years: Some(50 + i as u8),
                    started_at,
                    received_at: started_at,
                    fs_hz,
                    gain_uv_per_lsb: 1.0,
                    leads: leads.clone(),
                    samples_sha256: None,
                    complete: true,
                    status: if stemi { "stemi_suspected" } else { "no_stemi" }.into(),
                    stemi,
                    stemi_criteria_met: stemi,
                    territories: if stemi {
                        vec!["anterior".into()]
                    } else {
                        vec![]
                    },
                    heart_rate_bpm: Some(72.0),
                    qrs_ms: Some(96.0),
                    quality_ok: true,
                    quality_issues: vec![],
                    mimics: vec![],
                    reasons: vec![],
                    alert_id: stemi.then(|| format!("alert-{i}")),
                    firmware_version: "1.0.0".into(),
                    decided_at: Some(started_at + Duration::seconds(10)),
                },
                beats: (0..12)
                    .map(|b| BeatRow {
                        beat_index: b,
                        r: 200 + b * 400,
                        qrs_on: Some(180 + b * 400),
                        qrs_off: Some(230 + b * 400),
                        rr_ms: (b > 0).then_some(800.0),
                        kind: "normal".into(),
                        used_for_st: true,
                    })
                    .collect(),
                measurements: leads
                    .iter()
                    .map(|l| LeadMeasurement {
                        lead: l.clone(),
                        st_j_uv: Some(if stemi { 250 } else { 20 }),
                        st_j60_uv: None,
                        st_elevation_threshold_uv: Some(100),
                        lead_ok: true,
                        noise_uv: Some(10.0),
                    })
                    .collect(),
                alerts,
                samples,
            };
            Case {
                id,
                date,
                stemi,
                record,
            }
        })
        .collect()
}

/// pyarrow reads every table through its hive partitioning and rebuilds
/// the samples; DuckDB counts and runs the date-filtered query. Prints JSON.
const READER_PY: &str = r#"
import json, sys, os
import pyarrow.dataset as ds
import pyarrow as pa
import duckdb

root, truth_dir = sys.argv[1], sys.argv[2]
tables = ["visits", "waveforms", "beats", "measurements", "alerts", "alert_acks", "alert_escalations"]
out = {"pyarrow": {}, "duckdb": {}, "date_type": None}
data = {}
for t in tables:
    # The partition column's type as schemas/archive.md documents it: pyarrow
    # alone would infer a string from the path.
    hive = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
    d = ds.dataset(os.path.join(root, t), format="parquet", partitioning=hive,
                   exclude_invalid_files=False)
    tab = d.to_table()
    data[t] = tab
    out["pyarrow"][t] = tab.num_rows
out["date_type"] = str(data["visits"].schema.field("date").type)

# Rebuild each visit lead by lead from its waveform segments.
wf = data["waveforms"].to_pylist()
visits = data["visits"].to_pylist()
rebuilt, mismatched = 0, []
for v in visits:
    rows = [r for r in wf if r["visit_id"] == v["visit_id"]]
    leads = []
    for li in range(v["n_leads"]):
        segs = sorted((r for r in rows if r["lead_index"] == li), key=lambda r: r["start_sample"])
        lead = []
        for s in segs:
            assert s["start_sample"] == len(lead), (v["visit_id"], li)
            lead.extend(s["samples"])
        assert len(lead) == v["n_samples"], (v["visit_id"], li, len(lead))
        leads.append(pa.array(lead, pa.int16()).buffers()[1].to_pybytes()[: 2 * len(lead)])
    with open(os.path.join(truth_dir, v["visit_id"] + ".bin"), "rb") as f:
        truth = f.read()
    if b"".join(leads) == truth:
        rebuilt += 1
    else:
        mismatched.append(v["visit_id"])
out["rebuilt"], out["mismatched"] = rebuilt, mismatched

con = duckdb.connect()
def scan(t):
    return f"read_parquet('{root}/{t}/*/*.parquet', hive_partitioning = true)"
for t in tables:
    out["duckdb"][t] = con.execute(f"SELECT count(*) FROM {scan(t)}").fetchone()[0]
out["duckdb_stemi_on_date"] = con.execute(
    f"SELECT count(*) FROM {scan('visits')} WHERE date = DATE '2026-11-30' AND stemi").fetchone()[0]
out["duckdb_ids_on_date"] = [r[0] for r in con.execute(
    f"SELECT visit_id FROM {scan('visits')} WHERE date = DATE '2026-11-30' ORDER BY visit_id").fetchall()]
out["duckdb_total_samples"] = con.execute(
    f"SELECT sum(len(samples)) FROM {scan('waveforms')}").fetchone()[0]
# The lifecycle tables: values, nulls and types as written.
out["pyarrow_acks"] = sorted(
    [[r["alert_id"], r["acked_by"], r["verdict"], r["acked_at"].isoformat()]
     for r in data["alert_acks"].to_pylist()])
out["pyarrow_verdict_type"] = str(data["alert_acks"].schema.field("verdict").type)
out["duckdb_acks"] = [list(r) for r in con.execute(
    f"SELECT alert_id, acked_by, verdict FROM {scan('alert_acks')} ORDER BY alert_id").fetchall()]
out["duckdb_escalations"] = [list(r) for r in con.execute(
    f"SELECT alert_id, escalation_level, CAST(escalated_at AS VARCHAR) FROM {scan('alert_escalations')} "
    "ORDER BY alert_id, escalation_level").fetchall()]
out["duckdb_false_alarms"] = con.execute(
    f"SELECT count(*) FROM {scan('alert_acks')} WHERE verdict = 'false_alarm'").fetchone()[0]
print(json.dumps(out))
"#;

fn ecgtriage_query(archive: &Path, sql: &str, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ecgtriage"))
        .args(["query", sql, "--format", format, "--archive"])
        .arg(archive)
        .output()
        .expect("run ecgtriage query");
    assert!(
        out.status.success(),
        "ecgtriage query {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 output")
}

fn query_json(archive: &Path, sql: &str) -> Vec<Value> {
    let text = ecgtriage_query(archive, sql, "json");
    match serde_json::from_str(&text) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("not a JSON array from {sql:?}: {other:?}\n{text}"),
    }
}

fn count(archive: &Path, table: &str) -> u64 {
    let rows = query_json(archive, &format!("SELECT count(*) AS n FROM {table}"));
    rows[0]["n"].as_u64().expect("count")
}

#[test]
fn pyarrow_and_duckdb_read_the_archive_and_query_agrees() {
    let py = common::python("pyarrow, duckdb");
    let dir = tempfile_dir("interop");
    let archive = dir.join("archive");
    let truth = dir.join("truth");
    std::fs::create_dir_all(&truth).unwrap();

    let cases = cases();
    // Three visits per batch: several batches, two dates.
    let config = WriterConfig {
        max_visits: 3,
        segment_s: 4,
        ..WriterConfig::new("itest")
    };
    let mut writer = ArchiveWriter::open_local(&archive, config).unwrap();
    for c in &cases {
        writer.append(c.record.clone()).unwrap();
        if c.stemi {
            // Acknowledged 3 minutes after acquisition; the first alert
            // with a verdict, the next without one (escalated twice first).
            let alert = &c.record.alerts[0];
            let first = c.id == cases.iter().find(|c| c.stemi).unwrap().id;
            writer.append_ack(AlertAck {
                alert_id: alert.alert_id.clone(),
                acked_at: alert.acquired_at + Duration::minutes(3),
                acked_by: format!("dr-{}", alert.alert_id),
                verdict: first.then(|| "false_alarm".to_string()),
            });
            if !first {
                for level in 1..=2u8 {
                    writer.append_escalation(AlertEscalation {
                        alert_id: alert.alert_id.clone(),
                        centre_id: alert.centre_id.clone(),
                        escalated_at: alert.published_at + Duration::seconds(60 * i64::from(level)),
                        escalation_level: level,
                    });
                }
            }
        }
        let bytes: Vec<u8> = c
            .record
            .samples
            .iter()
            .flatten()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        std::fs::write(truth.join(format!("{}.bin", c.id)), bytes).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    readers_agree(&py, &archive, &truth, &cases);

    // Compacted: each day's batches (three and two) become one, and every
    // reader still sees the same rows, bit for bit.
    let out = Command::new(env!("CARGO_BIN_EXE_ecgtriage"))
        .args(["archive", "compact", "--before", "2026-12-01", "--archive"])
        .arg(&archive)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("visits date=2026-11-29: 3 batches"), "{text}");
    assert!(text.contains("visits date=2026-11-30: 2 batches"), "{text}");
    for day in ["2026-11-29", "2026-11-30"] {
        let files = std::fs::read_dir(archive.join("visits").join(format!("date={day}")))
            .unwrap()
            .count();
        assert_eq!(files, 1, "{day}");
    }
    let (sound, report) = common::verify_archive(&archive);
    assert!(sound, "{report}");
    assert_eq!(report["visits"], cases.len(), "{report}");
    assert_eq!(report["warnings"], 0, "{report}");
    readers_agree(&py, &archive, &truth, &cases);

    let _ = std::fs::remove_dir_all(&dir);
}

/// pyarrow, DuckDB and `ecgtriage query` read the archive of `cases` and
/// agree with the truth and with each other.
fn readers_agree(py: &Path, archive: &Path, truth: &Path, cases: &[Case]) {
    let out = Command::new(py)
        .arg("-c")
        .arg(READER_PY)
        .arg(archive)
        .arg(truth)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python reader failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py_out: Value = serde_json::from_slice(&out.stdout).expect("python JSON");

    // The third-party readers see every visit, bit for bit.
    assert_eq!(py_out["mismatched"], Value::Array(vec![]), "{py_out}");
    assert_eq!(py_out["rebuilt"].as_u64(), Some(cases.len() as u64));
    assert_eq!(py_out["date_type"], "date32[day]", "{py_out}");

    let total_samples: usize = cases
        .iter()
        .map(|c| c.record.samples.iter().map(Vec::len).sum::<usize>())
        .sum();
    let expected: BTreeMap<&str, u64> = [
        ("visits", cases.len() as u64),
        (
            "beats",
            cases.iter().map(|c| c.record.beats.len() as u64).sum(),
        ),
        (
            "measurements",
            cases
                .iter()
                .map(|c| c.record.measurements.len() as u64)
                .sum(),
        ),
        ("alerts", cases.iter().filter(|c| c.stemi).count() as u64),
        (
            "alert_acks",
            cases.iter().filter(|c| c.stemi).count() as u64,
        ),
        (
            "alert_escalations",
            2 * (cases.iter().filter(|c| c.stemi).count() as u64 - 1),
        ),
    ]
    .into();
    for (table, n) in &expected {
        assert_eq!(
            py_out["pyarrow"][table].as_u64(),
            Some(*n),
            "pyarrow {table}"
        );
    }
    // ecgtriage query agrees with pyarrow and DuckDB on every table.
    for table in [
        "visits",
        "waveforms",
        "beats",
        "measurements",
        "alerts",
        "alert_acks",
        "alert_escalations",
    ] {
        let ours = count(archive, table);
        assert_eq!(
            Some(ours),
            py_out["pyarrow"][table].as_u64(),
            "{table} vs pyarrow"
        );
        assert_eq!(
            Some(ours),
            py_out["duckdb"][table].as_u64(),
            "{table} vs duckdb"
        );
    }
    assert_eq!(
        py_out["duckdb_total_samples"].as_u64(),
        Some(total_samples as u64)
    );

    // The lifecycle tables, value by value, in pyarrow, DuckDB and ours.
    let stemi: Vec<&Case> = cases.iter().filter(|c| c.stemi).collect();
    assert!(stemi.len() >= 2, "the cases need two alerts");
    let want_acks: Vec<Value> = stemi
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let a = &c.record.alerts[0];
            serde_json::json!([
                a.alert_id,
                format!("dr-{}", a.alert_id),
                if k == 0 {
                    Value::from("false_alarm")
                } else {
                    Value::Null
                }
            ])
        })
        .collect();
    assert_eq!(py_out["pyarrow_verdict_type"], "string", "{py_out}");
    assert_eq!(py_out["duckdb_acks"], Value::Array(want_acks.clone()));
    let py_acks = py_out["pyarrow_acks"].as_array().unwrap();
    for (got, want) in py_acks.iter().zip(&want_acks) {
        assert_eq!(
            got.as_array().unwrap()[..3],
            want.as_array().unwrap()[..],
            "{got}"
        );
    }
    let acked_at = (stemi[0].record.alerts[0].acquired_at + Duration::minutes(3)).unix_timestamp();
    assert!(
        py_acks[0][3].as_str().unwrap().starts_with(
            &ecg_query::archive::time::OffsetDateTime::from_unix_timestamp(acked_at)
                .unwrap()
                .date()
                .to_string()
        ),
        "{py_acks:?}"
    );
    assert_eq!(py_out["duckdb_false_alarms"], 1);
    let esc = py_out["duckdb_escalations"].as_array().unwrap();
    assert_eq!(esc.len(), 2 * (stemi.len() - 1), "{esc:?}");
    assert_eq!(esc[0][1], 1);
    assert_eq!(esc[1][1], 2);
    let ours = query_json(
        archive,
        "SELECT alert_id, acked_by, verdict FROM alert_acks ORDER BY alert_id",
    );
    let ours: Vec<Value> = ours
        .iter()
        .map(|r| serde_json::json!([r["alert_id"], r["acked_by"], r["verdict"]]))
        .collect();
    assert_eq!(ours, want_acks);
    // The figures views see the same: one false alarm, all read in time.
    let f = query_json(
        archive,
        "SELECT sum(alerts) AS alerts, sum(false_alarms) AS fa, sum(read_within_10_min) AS read, \
         sum(escalated) AS esc FROM centre_figures",
    );
    assert_eq!(f[0]["alerts"].as_u64(), Some(stemi.len() as u64), "{f:?}");
    assert_eq!(f[0]["fa"], 1);
    assert_eq!(f[0]["read"].as_u64(), Some(stemi.len() as u64));
    assert_eq!(f[0]["esc"].as_u64(), Some(stemi.len() as u64 - 1));
    let rows = query_json(
        archive,
        "SELECT sum(cardinality(samples)) AS n FROM waveforms",
    );
    assert_eq!(rows[0]["n"].as_u64(), Some(total_samples as u64));

    // The partition column filters, and agrees with DuckDB and the truth.
    let day = "2026-11-30";
    let want_ids: Vec<&str> = cases
        .iter()
        .filter(|c| c.date == day)
        .map(|c| c.id.as_str())
        .collect();
    let rows = query_json(
        archive,
        &format!("SELECT visit_id, date FROM visits WHERE date = '{day}' ORDER BY visit_id"),
    );
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["visit_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want_ids);
    assert!(rows.iter().all(|r| r["date"] == day), "{rows:?}");
    let duck_ids: Vec<&str> = py_out["duckdb_ids_on_date"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids, duck_ids);
    let rows = query_json(
        archive,
        &format!("SELECT count(*) AS n FROM visits WHERE date = '{day}' AND stemi"),
    );
    let want_stemi = cases.iter().filter(|c| c.date == day && c.stemi).count() as u64;
    assert_eq!(rows[0]["n"].as_u64(), Some(want_stemi));
    assert_eq!(py_out["duckdb_stemi_on_date"].as_u64(), Some(want_stemi));

    // The other formats print the same rows.
    let csv = ecgtriage_query(
        archive,
        &format!("SELECT visit_id, leads FROM visits WHERE date = '{day}' ORDER BY visit_id"),
        "csv",
    );
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("visit_id,leads"));
    assert_eq!(lines.count(), want_ids.len());
    let table = ecgtriage_query(archive, "SELECT count(*) AS n FROM alerts", "table");
    assert!(
        table.contains(&format!("| {} ", expected["alerts"])),
        "{table}"
    );
}

#[test]
fn query_on_missing_or_empty_archive_is_clear() {
    let dir = tempfile_dir("empty");
    let missing = dir.join("nope");
    let out = Command::new(env!("CARGO_BIN_EXE_ecgtriage"))
        .args(["query", "SELECT 1", "--archive"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no archive"), "{err}");

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for table in [
        "visits",
        "waveforms",
        "beats",
        "measurements",
        "alerts",
        "alert_acks",
    ] {
        assert_eq!(count(&empty, table), 0, "{table}");
    }
    let text = ecgtriage_query(
        &empty,
        "SELECT * FROM visits WHERE date = '2026-01-01'",
        "table",
    );
    assert_eq!(text, "(0 rows)\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_file_is_named_when_a_query_trips_over_it() {
    let dir = tempfile_dir("damaged");
    let archive = dir.join("archive");
    let config = WriterConfig {
        max_visits: 3,
        ..WriterConfig::new("itest")
    };
    let mut writer = ArchiveWriter::open_local(&archive, config).unwrap();
    for c in cases() {
        writer.append(c.record).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    assert_eq!(count(&archive, "visits"), 7);

    // A failing disk cuts a file short: DataFusion says only "Corrupt
    // footer"; the error must say which file.
    let day = archive.join("visits").join("date=2026-11-30");
    let file = std::fs::read_dir(&day)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 5]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ecgtriage"))
        .args(["query", "SELECT count(*) FROM visits", "--archive"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let key = file
        .strip_prefix(&archive)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(err.contains(&key), "{err}");
    assert!(err.contains("ecgtriage archive verify"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compact_says_clearly_what_it_cannot_do() {
    let dir = tempfile_dir("compact-errors");
    let archive = dir.join("archive");
    let compact = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ecgtriage"))
            .args(["archive", "compact", "--archive"])
            .arg(&archive)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = compact(&[]);
    assert!(!ok && text.contains("no archive"), "{text}");

    let config = WriterConfig {
        max_visits: 1,
        ..WriterConfig::new("itest")
    };
    let mut writer = ArchiveWriter::open_local(&archive, config).unwrap();
    for c in cases() {
        writer.append(c.record).unwrap();
    }
    drop(writer);
    for (args, says) in [
        (
            &["--before", "2026-13-01"][..],
            "--before \"2026-13-01\" is not a date",
        ),
        (&["--max-mib", "0"][..], "--max-mib must be at least 1"),
    ] {
        let (ok, text) = compact(args);
        assert!(!ok && text.contains(says), "{args:?}: {text}");
    }
    // A damaged batch stays as it is, named, and fails the run; the rest
    // of its day is merged.
    let day = archive.join("waveforms").join("date=2026-11-29");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&day)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    std::fs::write(&files[0], b"PAR1 cut short").unwrap();
    let (ok, text) = compact(&["--before", "2026-12-01"]);
    let key = files[0]
        .strip_prefix(&archive)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("error: {key}: not a readable Parquet file")),
        "{text}"
    );
    assert!(text.contains("visits date=2026-11-29: 3 batches"), "{text}");
    assert!(text.contains("1 file left as they are"), "{text}");
    assert_eq!(count(&archive, "visits"), 7);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecgtriage-archive-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
