//! End to end through a real Mosquitto (per-device passwords and an ACL):
//! firmware-sim's fleet -> `ecgtriage run` (the binary) -> alerts and the
//! Parquet archive, checked against the fleet's truth file; the same with
//! the pipeline SIGKILLed three times; and `ecgtriage demo`.
//!
//! The binary is `CARGO_BIN_EXE_ecgtriage` when this file runs as a test of
//! the root package, else `target/<profile>/ecgtriage` next to this test's
//! own executable (build it first: `cargo build -p ecgtriage`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecg_testkit::{Mosquitto, MosquittoOpts};
use ecg_wire::{Alert, Message, SamplesDigest};
use firmware_sim::broker::BrokerUrl;
use firmware_sim::fleet::{self, DeviceSpec, FleetConfig};
use firmware_sim::visit::StreamOpts;

const DEVICES: usize = 16;
const PIPELINE_PASSWORD: &str = "pipeline-secret";

fn ecgtriage() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_ecgtriage") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/ecgtriage
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("ecgtriage");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p ecgtriage` first",
        bin.display()
    );
    bin
}

struct Setup {
    broker: Mosquitto,
    devices: Vec<DeviceSpec>,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let mut devices = fleet::numbered_devices(DEVICES, 4);
    let mut users = vec![
        ("pipeline".to_owned(), PIPELINE_PASSWORD.to_owned()),
        ("watcher".to_owned(), "watcher-secret".to_owned()),
    ];
    for (i, d) in devices.iter_mut().enumerate() {
        let p = format!("pw-{i}-device");
        d.password = Some(p.clone());
        users.push((d.device_id.to_string(), p));
    }
    // Devices may only speak for themselves; the pipeline reads every
    // device and writes results, alerts and dead letters; the watcher only
    // reads alerts.
    let acl = "\
pattern write ecg/v1/dev/%u/visit/+/meta
pattern write ecg/v1/dev/%u/visit/+/chunk
pattern write ecg/v1/dev/%u/visit/+/end
pattern read ecg/v1/dev/%u/visit/+/result
user pipeline
topic read ecg/v1/dev/#
topic write ecg/v1/dev/+/visit/+/result
topic write ecg/v1/alerts/+
topic write ecg/v1/deadletter
user watcher
topic read ecg/v1/alerts/#
"
    .to_owned();
    let broker = Mosquitto::start(MosquittoOpts {
        users,
        acl: Some(acl),
        ..Default::default()
    })
    .expect("mosquitto starts (install mosquitto to run this test)");
    Setup {
        broker,
        devices,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn start_pipeline(s: &Setup) -> Child {
    Command::new(ecgtriage())
        .args(["run", "--broker"])
        .arg(format!(
            "mqtt://pipeline:not-this-one@127.0.0.1:{}",
            s.broker.port()
        ))
        .arg("--archive")
        .arg(s.dir.path().join("archive"))
        .arg("--spool")
        .arg(s.dir.path().join("spool"))
        .args(["--centre", "centre-e2e", "--client-id", "e2e-pipeline"])
        .args(["--visit-timeout-s", "30", "--log-format", "json"])
        .env(ecg_pipeline::config::PASSWORD_ENV, PIPELINE_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ecgtriage run starts")
}

/// Subscribes as `watcher` with a persistent session and collects alerts.
fn watch_alerts(port: u16) -> Arc<Mutex<Vec<Alert>>> {
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let out = alerts.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
            let mut opts = MqttOptions::new("e2e-watcher", "127.0.0.1", port);
            opts.set_credentials("watcher", "watcher-secret")
                .set_clean_session(false)
                .set_max_packet_size(256 * 1024, 256 * 1024);
            let (client, mut ev) = AsyncClient::new(opts, 16);
            client
                .subscribe("ecg/v1/alerts/+", QoS::AtLeastOnce)
                .await
                .unwrap();
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let a = Alert::from_json(&p.payload).expect("alerts follow the schema");
                        assert_eq!(p.topic, "ecg/v1/alerts/centre-e2e");
                        out.lock().unwrap().push(a);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    });
    alerts
}

/// Runs the fleet (blocking) and returns the truth lines.
fn run_fleet(s: &Setup, visits: u64, seed: u64) -> Vec<serde_json::Value> {
    let truth = s.dir.path().join("truth.jsonl");
    let cfg = FleetConfig {
        broker: BrokerUrl::parse(&s.broker.url()).unwrap(),
        devices: s.devices.clone(),
        visits: Some(visits),
        annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
        // About 12 visit arrivals a second, each 10 s ECG streamed in 0.5 s.
        speed: 12.0 * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
        stemi_fraction: 0.25,
        seed,
        truth: Some(truth.clone()),
        spool_root: s.dir.path().join("devices"),
        stream: StreamOpts {
            speed: 20.0,
            ..StreamOpts::default()
        },
        progress: false,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt.block_on(fleet::run(cfg)).expect("fleet runs");
    assert_eq!(summary.visits, visits);
    std::fs::read_to_string(truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn query(archive: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = Command::new(ecgtriage())
        .args(["query", sql, "--format", "json", "--archive"])
        .arg(archive)
        .output()
        .expect("ecgtriage query runs");
    assert!(
        out.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("query output {text}: {e}"))
}

fn archived_ids(archive: &Path) -> Vec<String> {
    if !archive.join("visits").exists() {
        return Vec::new();
    }
    query(archive, "SELECT visit_id FROM visits")
        .into_iter()
        .map(|r| r["visit_id"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_for_archive(archive: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let ids = archived_ids(archive);
        let distinct: HashSet<&String> = ids.iter().collect();
        if distinct.len() >= n || t0.elapsed() > timeout {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no exit 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every visit archived exactly once and bit-exact; every visit that the
/// interpretation flags on the archived samples alone has its alert.
fn check(archive: &Path, truth: &[serde_json::Value], ids: &[String], alerts: &[Alert]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "archived more than once: {twice:?}");
    let _ = alerts;
    for t in truth {
        let id = t["visit_id"].as_str().unwrap();
        assert_eq!(counts.get(id), Some(&1), "visit {id} not archived");
        let samples = ecg_archive::read_visit_samples(archive, id).expect("samples read back");
        let digest = SamplesDigest::of_leads(samples.iter().map(Vec::as_slice));
        assert_eq!(
            digest.to_string(),
            t["samples_sha256"].as_str().unwrap(),
            "visit {id}: samples differ from the truth"
        );
        assert_eq!(samples[0].len() as u64, t["n_samples"].as_u64().unwrap());
    }
}

#[test]
fn run_archives_every_visit_once_and_alerts_every_flagged_stemi() {
    let s = setup();
    let alerts = watch_alerts(s.broker.port());
    let mut pipeline = start_pipeline(&s);
    let truth = run_fleet(&s, 200, 11);
    let archive = s.dir.path().join("archive");
    let ids = wait_for_archive(&archive, truth.len(), Duration::from_secs(180));
    let status = sigterm(&mut pipeline);
    assert!(status.success(), "ecgtriage run exited with {status}");
    std::thread::sleep(Duration::from_millis(500));
    let alerts = alerts.lock().unwrap().clone();
    check_all(&archive, &truth, &ids, &alerts);
}

#[test]
fn sigkilled_three_times_loses_nothing_and_archives_once() {
    let s = setup();
    let alerts = watch_alerts(s.broker.port());
    let archive = s.dir.path().join("archive");
    let fleet = {
        let (port, devices, dir) = (s.broker.url(), s.devices.clone(), s.dir.path().to_owned());
        std::thread::spawn(move || {
            let s2 = FleetOnly {
                url: port,
                devices,
                dir,
            };
            s2.run(200, 23)
        })
    };
    let mut pipeline = start_pipeline(&s);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(2500));
        pipeline.kill().unwrap(); // SIGKILL
        pipeline.wait().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        pipeline = start_pipeline(&s);
    }
    let truth = fleet.join().expect("fleet thread");
    let ids = wait_for_archive(&archive, truth.len(), Duration::from_secs(180));
    let status = sigterm(&mut pipeline);
    assert!(status.success(), "ecgtriage run exited with {status}");
    std::thread::sleep(Duration::from_millis(500));
    let alerts = alerts.lock().unwrap().clone();
    check_all(&archive, &truth, &ids, &alerts);
}

struct FleetOnly {
    url: String,
    devices: Vec<DeviceSpec>,
    dir: PathBuf,
}

impl FleetOnly {
    fn run(self, visits: u64, seed: u64) -> Vec<serde_json::Value> {
        let truth = self.dir.join("truth.jsonl");
        let cfg = FleetConfig {
            broker: BrokerUrl::parse(&self.url).unwrap(),
            devices: self.devices,
            visits: Some(visits),
            annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
            speed: 12.0 * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
            stemi_fraction: 0.25,
            seed,
            truth: Some(truth.clone()),
            spool_root: self.dir.join("devices"),
            stream: StreamOpts {
                speed: 20.0,
                ..StreamOpts::default()
            },
            progress: false,
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(fleet::run(cfg)).expect("fleet runs");
        std::fs::read_to_string(truth)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// [`check`], plus: every visit that the interpretation flags on the
/// archived samples alone (gain from the visits table) has an alert.
fn check_all(archive: &Path, truth: &[serde_json::Value], ids: &[String], alerts: &[Alert]) {
    check(archive, truth, ids, alerts);
    let rows = query(
        archive,
        "SELECT visit_id, gain_uv_per_lsb, fs_hz, sex, age_years FROM visits",
    );
    let alerted: HashSet<String> = alerts.iter().map(|a| a.visit_id.to_string()).collect();
    let mut flagged = 0;
    let mut stemi_truth = 0;
    for r in &rows {
        let id = r["visit_id"].as_str().unwrap();
        let gain_mv = r["gain_uv_per_lsb"].as_f64().unwrap() / 1000.0;
        let fs = r["fs_hz"].as_f64().unwrap();
        let samples = ecg_archive::read_visit_samples(archive, id).unwrap();
        let mv: Vec<Vec<f32>> = samples
            .iter()
            .map(|l| l.iter().map(|&c| (f64::from(c) * gain_mv) as f32).collect())
            .collect();
        let labels = ecg_wire::Lead::STANDARD_12.map(|l| l.name());
        let leads: Vec<ecg_triage::LeadSignal<'_>> = labels
            .iter()
            .zip(&mv)
            .map(|(l, s)| ecg_triage::LeadSignal {
                label: l,
                samples_mv: s,
            })
            .collect();
        let patient = ecg_triage::Patient {
            sex: match r["sex"].as_str() {
                Some("male") => Some(ecg_triage::Sex::Male),
                Some("female") => Some(ecg_triage::Sex::Female),
                _ => None,
            },
            age_years: r["age_years"].as_f64(),
        };
        let interp = ecg_triage::interpret_detecting(fs, &leads, patient).unwrap();
        if interp.stemi {
            flagged += 1;
            assert!(
                alerted.contains(id),
                "visit {id} is flagged STEMI but was not alerted"
            );
        }
    }
    for t in truth {
        stemi_truth += usize::from(t["stemi"].as_bool().unwrap());
    }
    let distinct: HashSet<_> = alerts.iter().map(|a| a.alert_id).collect();
    eprintln!(
        "{} visits archived; {stemi_truth} STEMI in truth; {flagged} flagged by the one-shot interpretation; {} alerts ({} distinct)",
        rows.len(),
        alerts.len(),
        distinct.len()
    );
    assert!(
        flagged > 0,
        "no STEMI flagged at all: the test would prove nothing"
    );
}

#[test]
fn demo_prints_an_alert_and_leaves_a_queryable_archive() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let out = Command::new(ecgtriage())
        .args(["demo", "--duration", "20", "--archive"])
        .arg(&archive)
        .stdin(Stdio::null())
        .output()
        .expect("ecgtriage demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ALERT"), "no alert printed:\n{stdout}");
    assert!(stdout.contains("ecgtriage query"), "{stdout}");
    assert!(
        stdout.contains("dashboard: http://127.0.0.1:") && stdout.contains("/?token="),
        "no dashboard URL with a one-time token:\n{stdout}"
    );
    let n = query(&archive, "SELECT count(*) AS n FROM visits");
    assert!(n[0]["n"].as_u64().unwrap() >= 1, "{n:?}");
}
