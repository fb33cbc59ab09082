//! TLS end to end against a real Mosquitto: `ecgtriage run` over mqtts://
//! (CA file plus a client certificate), firmware-sim devices over mqtts://
//! and a cardiologist-side alert watcher over mqtts://; every visit is
//! archived. And the pipeline refuses, with its reason and without a panic,
//! a port that does not speak TLS and a broker whose certificate another
//! CA signed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecg_testkit::{Mosquitto, MosquittoOpts, TlsOpts};
use firmware_sim::broker::{BrokerUrl, TlsSettings};
use firmware_sim::fleet::{self, FleetConfig, FleetOptions};
use firmware_sim::visit::StreamOpts;

const PIPELINE_PASSWORD: &str = "tls-pipeline-secret";
const ARCHIVE_KEY: &str = "tls-test-archive-key-0123456789";

fn ecgtriage() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ecgtriage"))
}

fn tls_broker(require_client_cert: bool, users: Vec<(String, String)>) -> Mosquitto {
    Mosquitto::start(MosquittoOpts {
        users,
        tls: Some(TlsOpts {
            require_client_cert,
        }),
        ..Default::default()
    })
    .expect("mosquitto starts with a TLS listener (install mosquitto to run this test)")
}

/// `ecgtriage run` with `extra` flags; stderr goes to `log`.
fn pipeline(dir: &Path, broker_url: &str, extra: &[&Path], flags: &[&str], log: &Path) -> Child {
    let mut cmd = Command::new(ecgtriage());
    cmd.args(["run", "--broker", broker_url])
        .arg("--archive")
        .arg(dir.join("archive"))
        .arg("--spool")
        .arg(dir.join("spool"))
        .args(["--centre", "centre-tls", "--client-id", "tls-pipeline"])
        .args(["--visit-timeout-s", "30"]);
    for (flag, path) in flags.iter().zip(extra) {
        cmd.arg(flag).arg(path);
    }
    cmd.env(ecg_pipeline::config::PASSWORD_ENV, PIPELINE_PASSWORD)
        .env(ecg_pipeline::config::PSEUDONYM_KEY_ENV, ARCHIVE_KEY)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("ecgtriage run starts")
}

/// Waits for the process to exit on its own; kills it after `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if t0.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_exit(child, Duration::from_secs(60)).expect("ecgtriage run exits after SIGTERM")
}

fn archived_ids(archive: &Path) -> Vec<String> {
    if !archive.join("visits").exists() {
        return Vec::new();
    }
    let out = Command::new(ecgtriage())
        .args(["query", "SELECT visit_id FROM visits", "--format", "json"])
        .arg("--archive")
        .arg(archive)
        .output()
        .expect("ecgtriage query runs");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return Vec::new();
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    rows.iter()
        .filter_map(|r| r["visit_id"].as_str().map(str::to_owned))
        .collect()
}

/// A cardiologist-side client: subscribes to the alerts over mqtts with a
/// client certificate and counts what it receives.
fn watch_alerts_tls(port: u16, tls: &TlsSettings) -> Arc<Mutex<Vec<String>>> {
    let config = tls.client_config().expect("watcher TLS config");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use rumqttc::{
                AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
            };
            let mut opts = MqttOptions::new("tls-watcher", "127.0.0.1", port);
            opts.set_credentials("watcher", "watcher-secret")
                .set_clean_session(false)
                .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)))
                .set_max_packet_size(256 * 1024, 256 * 1024);
            let (client, mut ev) = AsyncClient::new(opts, 16);
            client
                .subscribe("ecg/v1/alerts/+", QoS::AtLeastOnce)
                .await
                .unwrap();
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let a = <ecg_wire::Alert as ecg_wire::Message>::from_json(&p.payload)
                            .expect("alert JSON");
                        out.lock().unwrap().push(a.visit_id.to_string());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    });
    seen
}

#[test]
fn pipeline_devices_and_watcher_over_mqtts_archive_every_visit() {
    let mut devices = fleet::numbered_devices(4, 2);
    let mut users = vec![
        ("pipeline".to_owned(), PIPELINE_PASSWORD.to_owned()),
        ("watcher".to_owned(), "watcher-secret".to_owned()),
    ];
    for (i, d) in devices.iter_mut().enumerate() {
        let p = format!("tls-device-{i}");
        d.password = Some(p.clone());
        users.push((d.device_id.to_string(), p));
    }
    // The broker wants a certificate signed by its CA from every client.
    let broker = tls_broker(true, users);
    let files = broker.tls_files().unwrap().clone();
    let tls_port = broker.tls_port().unwrap();
    let url = format!("mqtts://pipeline:from-env@127.0.0.1:{tls_port}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pipeline.log");
    let client_tls = TlsSettings {
        ca: files.ca.clone(),
        client_cert: Some((files.client_cert.clone(), files.client_key.clone())),
    };
    let alerts = watch_alerts_tls(tls_port, &client_tls);
    let mut run = pipeline(
        dir.path(),
        &url,
        &[&files.ca, &files.client_cert, &files.client_key],
        &["--ca", "--client-cert", "--client-key"],
        &log,
    );

    let truth = dir.path().join("truth.jsonl");
    let cfg = FleetConfig {
        broker: BrokerUrl::parse_with_tls(&broker.tls_url().unwrap(), Some(client_tls.clone()))
            .unwrap()
            .0,
        devices,
        visits: Some(24),
        annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
        speed: 12.0 * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
        stemi_fraction: 0.5,
        seed: 5,
        truth: Some(truth.clone()),
        spool_root: dir.path().join("devices"),
        stream: StreamOpts {
            speed: 20.0,
            ..StreamOpts::default()
        },
        progress: false,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt
        .block_on(fleet::run_with(
            cfg,
            FleetOptions {
                tls: Some(client_tls),
                ..FleetOptions::default()
            },
        ))
        .expect("the fleet streams over mqtts");
    assert_eq!(summary.visits, 24);
    let expected: HashSet<String> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["visit_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let archive = dir.path().join("archive");
    let t0 = Instant::now();
    let mut got: HashSet<String> = HashSet::new();
    while got.len() < expected.len() && t0.elapsed() < Duration::from_secs(180) {
        got = archived_ids(&archive).into_iter().collect();
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = sigterm(&mut run);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "ecgtriage run exited with {status}:\n{text}"
    );
    assert_eq!(
        got, expected,
        "not every visit was archived over TLS:\n{text}"
    );
    assert!(
        text.contains("broker certificate trusted"),
        "no TLS check logged:\n{text}"
    );
    // Half the visits are STEMI by construction: the watcher, a TLS client
    // with its own certificate, must have heard some alert.
    let t0 = Instant::now();
    while alerts.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let alerted = alerts.lock().unwrap().clone();
    assert!(
        !alerted.is_empty(),
        "no alert reached the TLS watcher:\n{text}"
    );
    assert!(alerted.iter().all(|v| expected.contains(v)), "{alerted:?}");
}

#[test]
fn pipeline_refuses_a_plaintext_port_and_a_broker_of_another_ca() {
    let a = tls_broker(false, Vec::new());
    let b = tls_broker(false, Vec::new());
    let ca_a = a.tls_files().unwrap().ca.clone();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // TLS spoken to the plain MQTT listener.
        (
            "plaintext",
            format!("mqtts://pipeline:x@127.0.0.1:{}", a.port()),
        ),
        // B's certificate is signed by B's throwaway CA, not A's.
        (
            "unknown-ca",
            format!("mqtts://pipeline:x@127.0.0.1:{}", b.tls_port().unwrap()),
        ),
    ];
    for (name, url) in &cases {
        let work = dir.path().join(name);
        std::fs::create_dir_all(&work).unwrap();
        let log = work.join("pipeline.log");
        let mut run = pipeline(&work, url, &[&ca_a], &["--ca"], &log);
        let status = wait_exit(&mut run, Duration::from_secs(60));
        let text = std::fs::read_to_string(&log).unwrap();
        let status = status.unwrap_or_else(|| panic!("{name}: still running after 60 s:\n{text}"));
        assert!(!status.success(), "{name}: exited successfully:\n{text}");
        assert_eq!(status.code(), Some(1), "{name}: {status}:\n{text}");
        assert!(!text.contains("panicked"), "{name}: panic:\n{text}");
        assert!(
            text.contains("refusing to start") && text.contains("TLS handshake"),
            "{name}: no clear reason:\n{text}"
        );
        if *name == "unknown-ca" {
            assert!(
                text.contains("UnknownIssuer") || text.contains("invalid peer certificate"),
                "{name}: the certificate problem is not named:\n{text}"
            );
        }
        assert!(
            !work.join("archive").join("visits").exists(),
            "{name}: archived something"
        );
    }
    // The same CA on A's TLS port is accepted (the refusals above are about
    // the servers, not a broken CA file): the run starts and stops cleanly.
    let work = dir.path().join("good");
    std::fs::create_dir_all(&work).unwrap();
    let log = work.join("pipeline.log");
    let url = format!("mqtts://pipeline:x@127.0.0.1:{}", a.tls_port().unwrap());
    let mut run = pipeline(&work, &url, &[&ca_a], &["--ca"], &log);
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("pipeline running")
    {
        assert!(
            run.try_wait().unwrap().is_none(),
            "good CA: exited early:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(t0.elapsed() < Duration::from_secs(60), "good CA: no start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = sigterm(&mut run);
    assert!(status.success(), "good CA: {status}");
}
