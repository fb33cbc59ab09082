//! No patient identifier in the archive, end to end: firmware-sim devices
//! (each visit a simulated patient with a resident id and a name, sent only
//! as HMAC(clinic key, id)) -> Mosquitto -> `ecgtriage run` -> Parquet. Then
//! every column of every table, cast to text by DuckDB, and the raw bytes of
//! every file under the archive are searched for every resident id, name
//! and device-side pseudonym; none may be there. The archived pseudonym must
//! be HMAC(pipeline key, device pseudonym). The pipeline's debug log must
//! not show its key or its broker password.
//!
//! Needs Python with DuckDB (`$ECG_PYTHON`, default `.venv/bin/python`, as
//! run-tests.sh prepares).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecg_testkit::{Mosquitto, MosquittoOpts};
use ecg_wire::PseudonymKey;
use firmware_sim::broker::BrokerUrl;
use firmware_sim::fleet::{self, FleetConfig, FleetOptions};
use firmware_sim::visit::StreamOpts;
use serde_json::Value;

const CLINIC_KEY: &str = "clinic-key-of-the-pseudonym-test";
const ARCHIVE_KEY: &str = "archive-key-of-the-pseudonym-test";
const ARCHIVE_KEY_VERSION: u16 = 2;
const PIPELINE_PASSWORD: &str = "pseudonym-test-broker-password";
const VISITS: u64 = 30;

fn ecgtriage() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ecgtriage"))
}

fn python() -> PathBuf {
    let py: PathBuf = std::env::var_os("ECG_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").into());
    let ok = Command::new(&py)
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "Python with duckdb not found at {} (run ./run-tests.sh, which creates .venv, \
         or set ECG_PYTHON)",
        py.display()
    );
    py
}

/// Lists every table folder, casts every column of every table to text in
/// DuckDB and searches it, and searches the raw bytes of every file, for
/// the needles. Prints JSON: the hits, what was scanned, and the visits'
/// (visit_id, patient_pseudonym) pairs.
const SCAN: &str = r#"
import json, os, sys
import duckdb

root, needles_path = sys.argv[1], sys.argv[2]
needles = json.load(open(needles_path, encoding="utf-8"))
con = duckdb.connect()
out = {"hits": [], "tables": {}, "files": 0, "visits": []}
for table in sorted(os.listdir(root)):
    tdir = os.path.join(root, table)
    if not os.path.isdir(tdir):
        continue
    files = [os.path.join(d, f) for d, _, fs in os.walk(tdir) for f in fs if f.endswith(".parquet")]
    if not files:
        continue
    src = "read_parquet(%r, hive_partitioning = true)" % (tdir + "/*/*.parquet")
    cols = [r[0] for r in con.execute("DESCRIBE SELECT * FROM " + src).fetchall()]
    casts = ", ".join('CAST("%s" AS VARCHAR)' % c.replace('"', '""') for c in cols)
    rows = con.execute("SELECT %s FROM %s" % (casts, src)).fetchall()
    cells = 0
    for row in rows:
        for col, value in zip(cols, row):
            if value is None:
                continue
            cells += 1
            for n in needles:
                if n["text"] in value:
                    out["hits"].append({"table": table, "column": col, "needle": n})
    out["tables"][table] = {"columns": cols, "rows": len(rows), "cells": cells}
    if table == "visits":
        out["visits"] = con.execute(
            "SELECT visit_id, patient_pseudonym FROM " + src).fetchall()
for d, _, fs in os.walk(root):
    for f in fs:
        data = open(os.path.join(d, f), "rb").read()
        out["files"] += 1
        for n in needles:
            if n["text"].encode("utf-8") in data:
                out["hits"].append({"file": os.path.relpath(os.path.join(d, f), root), "needle": n})
print(json.dumps(out))
"#;

fn scan(archive: &Path, needles: &[(String, String)], work: &Path) -> Value {
    let needles_path = work.join("needles.json");
    let list: Vec<Value> = needles
        .iter()
        .map(|(kind, text)| serde_json::json!({"kind": kind, "text": text}))
        .collect();
    std::fs::write(&needles_path, serde_json::to_vec(&list).unwrap()).unwrap();
    let out = Command::new(python())
        .args(["-c", SCAN])
        .arg(archive)
        .arg(&needles_path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("scan prints JSON")
}

fn archived_count(archive: &Path) -> usize {
    if !archive.join("visits").exists() {
        return 0;
    }
    let out = Command::new(ecgtriage())
        .args([
            "query",
            "SELECT count(*) AS n FROM visits",
            "--format",
            "json",
        ])
        .arg("--archive")
        .arg(archive)
        .output()
        .expect("ecgtriage query runs");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.first()
        .and_then(|r| r["n"].as_u64())
        .unwrap_or_default() as usize
}

#[test]
fn no_patient_identifier_or_device_pseudonym_reaches_the_archive() {
    let mut devices = fleet::numbered_devices(6, 3);
    let mut users = vec![("pipeline".to_owned(), PIPELINE_PASSWORD.to_owned())];
    for (i, d) in devices.iter_mut().enumerate() {
        let p = format!("pseudo-dev-{i}");
        d.password = Some(p.clone());
        users.push((d.device_id.to_string(), p));
    }
    let broker = Mosquitto::start(MosquittoOpts {
        users,
        ..Default::default()
    })
    .expect("mosquitto starts (install mosquitto to run this test)");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let log = dir.path().join("pipeline.log");
    // The key version comes from the file, the key itself from the env.
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!("pseudonym_key_version = {ARCHIVE_KEY_VERSION}\ncentre = \"centre-p\"\n"),
    )
    .unwrap();
    let mut run = Command::new(ecgtriage())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--broker")
        .arg(format!(
            "mqtt://pipeline:from-env@127.0.0.1:{}",
            broker.port()
        ))
        .arg("--archive")
        .arg(&archive)
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .args(["--client-id", "pseudonym-test", "--visit-timeout-s", "30"])
        .env(ecg_pipeline::config::PASSWORD_ENV, PIPELINE_PASSWORD)
        .env(ecg_pipeline::config::PSEUDONYM_KEY_ENV, ARCHIVE_KEY)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("ecgtriage run starts");

    let truth_path = dir.path().join("truth.jsonl");
    let clinic_key = PseudonymKey::new(1, CLINIC_KEY.as_bytes()).unwrap();
    let cfg = FleetConfig {
        broker: BrokerUrl::parse(&broker.url()).unwrap(),
        devices,
        visits: Some(VISITS),
        annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
        speed: 12.0 * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
        stemi_fraction: 0.3,
        seed: 77,
        truth: Some(truth_path.clone()),
        spool_root: dir.path().join("devices"),
        stream: StreamOpts {
            speed: 20.0,
            ..StreamOpts::default()
        },
        progress: false,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(fleet::run_with(
        cfg,
        FleetOptions {
            tls: None,
            pseudonym_key: clinic_key.clone(),
        },
    ))
    .expect("fleet runs");
    let truth: Vec<Value> = std::fs::read_to_string(&truth_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(truth.len() as u64, VISITS);

    let t0 = Instant::now();
    while archived_count(&archive) < truth.len() && t0.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(500));
    }
    Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = run.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "ecgtriage run: {status}\n{log_text}");

    // What the clinic knows and what the device sent: none of it may be
    // stored. The hex part of a pseudonym is searched on its own too, in
    // case something re-formats it.
    let mut needles: Vec<(String, String)> = Vec::new();
    let mut device_pseudonyms = BTreeMap::new();
    for t in &truth {
        let local_id = t["patient_local_id"].as_str().unwrap().to_owned();
        let name = t["patient_name"].as_str().unwrap().to_owned();
        let pseudo = t["patient_pseudonym"].as_str().unwrap().to_owned();
        assert_eq!(local_id.len(), 18, "{local_id}");
        assert_eq!(
            pseudo,
            clinic_key.pseudonymise(local_id.as_bytes()).to_string(),
            "the device pseudonym is HMAC(clinic key, resident id)"
        );
        needles.push(("local_id".into(), local_id));
        needles.push(("name".into(), name));
        needles.push(("device_pseudonym_hex".into(), pseudo[3..].to_owned()));
        needles.push(("device_pseudonym".into(), pseudo.clone()));
        device_pseudonyms.insert(t["visit_id"].as_str().unwrap().to_owned(), pseudo);
    }
    let distinct: HashSet<&String> = needles.iter().map(|(_, t)| t).collect();
    assert!(
        distinct.len() > 3 * truth.len(),
        "patients are not distinct"
    );

    // Positive control: the same scan must find what is meant to be there.
    let archive_key = PseudonymKey::new(ARCHIVE_KEY_VERSION, ARCHIVE_KEY.as_bytes()).unwrap();
    let (first_visit, first_pseudo) = device_pseudonyms.iter().next().unwrap();
    let first_archived = archive_key
        .pseudonymise(first_pseudo.as_bytes())
        .to_string();
    let controls = vec![
        ("control_visit".to_owned(), first_visit.clone()),
        ("control_pseudonym".to_owned(), first_archived.clone()),
    ];
    let mut all = needles.clone();
    all.extend(controls);
    let report = scan(&archive, &all, dir.path());

    let tables = report["tables"].as_object().unwrap();
    for t in ["visits", "waveforms", "beats", "measurements", "alerts"] {
        let info = tables
            .get(t)
            .unwrap_or_else(|| panic!("table {t} not scanned: {report}"));
        assert!(info["cells"].as_u64().unwrap() > 0, "{t} is empty");
    }
    let hits = report["hits"].as_array().unwrap();
    let kind = |h: &Value| h["needle"]["kind"].as_str().unwrap().to_owned();
    let leaks: Vec<&Value> = hits
        .iter()
        .filter(|h| !kind(h).starts_with("control"))
        .collect();
    assert!(
        leaks.is_empty(),
        "patient identifiers in the archive: {leaks:#?}"
    );
    for control in ["control_visit", "control_pseudonym"] {
        assert!(
            hits.iter()
                .any(|h| kind(h) == control && h["table"] == "visits"),
            "the scan did not find {control}; it would not find a leak either: {report}"
        );
    }

    // Every archived pseudonym is HMAC(archive key, device pseudonym).
    let visits = report["visits"].as_array().unwrap();
    assert_eq!(visits.len(), truth.len());
    for v in visits {
        let visit_id = v[0].as_str().unwrap();
        let stored = v[1].as_str().unwrap();
        let device = &device_pseudonyms[visit_id];
        assert_eq!(
            stored,
            archive_key.pseudonymise(device.as_bytes()).to_string(),
            "visit {visit_id}"
        );
    }

    // Secrets stay out of the logs, even at debug level.
    assert!(log_text.len() > 200, "the debug log is empty: {log_text}");
    for secret in [ARCHIVE_KEY, PIPELINE_PASSWORD] {
        assert!(
            !log_text.contains(secret),
            "a secret is in the pipeline's log"
        );
    }
}
