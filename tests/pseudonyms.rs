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

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use ecg_wire::PseudonymKey;
use firmware_sim::fleet::FleetOptions;
use serde_json::Value;

const CLINIC_KEY: &str = "clinic-key-of-the-pseudonym-test";
const ARCHIVE_KEY_VERSION: u16 = 2;
const VISITS: u64 = 30;

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
    let out = Command::new(python("duckdb"))
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

#[test]
fn no_patient_identifier_or_device_pseudonym_reaches_the_archive() {
    let s = Setup::new(6, &[]);
    let dir = s.dir.path();
    let archive = s.archive();
    let log = dir.join("pipeline.log");
    // The key version comes from the file, the key itself from the env.
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        format!("pseudonym_key_version = {ARCHIVE_KEY_VERSION}\n"),
    )
    .unwrap();
    let mut run = pipeline_command(&s.broker.url_with("pipeline", "from-env"), dir)
        .arg("--config")
        .arg(&config)
        .args(["--visit-timeout-s", "30"])
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("ecgtriage run starts");
    wait_subscribed_log(&mut run, &log);

    let clinic_key = PseudonymKey::new(1, CLINIC_KEY.as_bytes()).unwrap();
    let mut cfg = s.fleet(VISITS, 77);
    cfg.stemi_fraction = 0.3;
    let truth = run_fleet_with(
        cfg,
        FleetOptions {
            pseudonym_key: clinic_key.clone(),
            ..FleetOptions::default()
        },
    );
    wait_for_archive(&archive, truth.len(), Duration::from_secs(180));
    let status = sigterm(&mut run);
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
    let report = scan(&archive, &all, dir);

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
