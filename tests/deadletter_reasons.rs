//! Every rejected input reaches `ecg/v1/deadletter` with its reason, and the
//! `ecgtriage_dead_letters_total` counter counts it: the fuzz corpora of
//! ecg-wire (every `err-*` chunk, every refused JSON message), a topic that
//! is not a visit topic and a meta published on another device's topic are
//! sent to a running `ecgtriage run` through Mosquitto. Afterwards a normal
//! device still gets its visits archived.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use ecg_testkit::{Mosquitto, MosquittoOpts};
use ecg_wire::DeadLetter;
use firmware_sim::broker::BrokerUrl;
use firmware_sim::fleet::{self, FleetConfig};
use firmware_sim::visit::StreamOpts;

const VISIT: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

fn ecgtriage() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ecgtriage"))
}

fn wire_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/wire/fuzz-corpus");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// An input and the reason codes it may be dead-lettered with.
struct Bad {
    name: String,
    topic: String,
    payload: Vec<u8>,
    codes: &'static [&'static str],
}

fn bad_inputs() -> Vec<Bad> {
    let topic = |kind: &str| format!("ecg/v1/dev/dev-dl/visit/{VISIT}/{kind}");
    let mut out = Vec::new();
    for (name, payload) in wire_corpus() {
        let (t, codes): (String, &'static [&'static str]) =
            if name.starts_with("err-") && name.ends_with(".bin") {
                (topic("chunk"), &["bad_chunk"])
            } else if name.starts_with("err-meta-") || name.starts_with("any-") {
                (topic("meta"), &["bad_json", "invalid_message", "too_large"])
            } else if name.starts_with("err-end-") {
                (topic("end"), &["bad_json", "invalid_message", "too_large"])
            } else {
                continue;
            };
        out.push(Bad {
            name,
            topic: t,
            payload,
            codes,
        });
    }
    let meta = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples/visit-meta.json"),
    )
    .unwrap();
    // The example's device is dev-0042; on dev-dl's topic it speaks for
    // another device.
    out.push(Bad {
        name: "meta-of-another-device".into(),
        topic: topic("meta"),
        payload: meta,
        codes: &["topic_mismatch"],
    });
    out.push(Bad {
        name: "visit-id-not-a-uuid".into(),
        topic: "ecg/v1/dev/dev-dl/visit/not-a-uuid/meta".into(),
        payload: b"{}".to_vec(),
        codes: &["bad_topic"],
    });
    out.push(Bad {
        name: "unknown-message-kind".into(),
        topic: format!("ecg/v1/dev/dev-dl/visit/{VISIT}/status"),
        payload: b"{}".to_vec(),
        codes: &["bad_topic"],
    });
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_rejected_input_is_dead_lettered_with_its_reason_and_counted() {
    let broker = Mosquitto::start(MosquittoOpts::default())
        .expect("mosquitto starts (install mosquitto to run this test)");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let metrics_port = free_port();
    let log = dir.path().join("pipeline.log");
    let mut run = Command::new(ecgtriage())
        .args(["run", "--broker", &broker.url()])
        .arg("--archive")
        .arg(&archive)
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .args(["--client-id", "dl-pipeline", "--visit-timeout-s", "30"])
        .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
        .env(
            ecg_pipeline::config::PSEUDONYM_KEY_ENV,
            "dead-letter-test-archive-key",
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("ecgtriage run starts");
    let t0 = Instant::now();
    while metric(metrics_port, "ecgtriage_dead_letters_total").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no metrics endpoint"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let bad = bad_inputs();
    assert!(bad.len() >= 40, "the corpus is missing: {}", bad.len());
    let letters: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new("dl-watcher", "127.0.0.1", broker.port());
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (watcher, mut wev) = AsyncClient::new(opts, 64);
        watcher
            .subscribe("ecg/v1/deadletter", QoS::AtLeastOnce)
            .await
            .unwrap();
        let sink = letters.clone();
        let n_bad = bad.len();
        let watch = tokio::spawn(async move {
            loop {
                match wev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let dl: DeadLetter =
                            serde_json::from_slice(&p.payload).expect("dead letters are JSON");
                        let mut v = sink.lock().unwrap();
                        v.push(dl);
                        if v.len() >= n_bad {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {}
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        // Publish only once the watcher's subscription is in place: a
        // second client's SUBACK comes after the first's.
        let mut opts = MqttOptions::new("dl-flooder", "127.0.0.1", broker.port());
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (flood, mut fev) = AsyncClient::new(opts, 256);
        let flood_loop = tokio::spawn(async move {
            loop {
                if fev.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        for b in &bad {
            flood
                .publish(b.topic.clone(), QoS::AtLeastOnce, false, b.payload.clone())
                .await
                .unwrap();
        }
        let _ = tokio::time::timeout(Duration::from_secs(120), watch).await;
        flood_loop.abort();
    });

    let letters = letters.lock().unwrap().clone();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    // Match each input to its dead letter by topic, length and payload.
    let mut unmatched: Vec<&DeadLetter> = letters.iter().collect();
    let mut codes: HashMap<String, usize> = HashMap::new();
    for b in &bad {
        let pos = unmatched.iter().position(|dl| {
            let prefix = base64::engine::general_purpose::STANDARD
                .decode(&dl.payload_b64)
                .unwrap();
            dl.topic == b.topic
                && dl.payload_len == b.payload.len() as u64
                && b.payload.starts_with(&prefix)
        });
        let Some(pos) = pos else {
            panic!(
                "{}: no dead letter ({} received for {} inputs)\n{log_text}",
                b.name,
                letters.len(),
                bad.len()
            );
        };
        let dl = unmatched.remove(pos);
        let code = serde_json::to_value(dl.reason_code).unwrap();
        let code = code.as_str().unwrap();
        assert!(
            b.codes.contains(&code),
            "{}: dead-lettered as {code} ({}), expected one of {:?}",
            b.name,
            dl.reason,
            b.codes
        );
        assert!(!dl.reason.trim().is_empty(), "{}: empty reason", b.name);
        *codes.entry(code.to_owned()).or_default() += 1;
    }
    assert!(
        unmatched.is_empty(),
        "unexpected dead letters: {unmatched:?}"
    );
    eprintln!("dead letters by reason: {codes:?}");

    // The counter counts exactly these.
    let t0 = Instant::now();
    let counted = loop {
        let n = metric(metrics_port, "ecgtriage_dead_letters_total").unwrap_or(0.0);
        if n as usize >= bad.len() || t0.elapsed() > Duration::from_secs(30) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(counted as usize, bad.len(), "dead_letters_total");

    // The barrage disturbed nobody: a device's visits are still archived.
    let truth = dir.path().join("truth.jsonl");
    let cfg = FleetConfig {
        broker: BrokerUrl::parse(&broker.url()).unwrap(),
        devices: fleet::numbered_devices(2, 1),
        visits: Some(4),
        annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
        speed: 12.0 * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
        stemi_fraction: 0.0,
        seed: 3,
        truth: Some(truth),
        spool_root: dir.path().join("devices"),
        stream: StreamOpts {
            speed: 20.0,
            ..StreamOpts::default()
        },
        progress: false,
    };
    rt.block_on(fleet::run(cfg)).expect("fleet runs");
    let t0 = Instant::now();
    let archived = loop {
        let n = metric(metrics_port, "ecgtriage_visits_archived_total").unwrap_or(0.0);
        if n >= 4.0 || t0.elapsed() > Duration::from_secs(120) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    run.kill().ok();
    run.wait().ok();
    assert_eq!(archived, 4.0, "visits after the barrage\n{log_text}");
}
