//! Every rejected input reaches `ecg/v1/deadletter` with its reason, and the
//! `ecgtriage_dead_letters_total` counter counts it: the fuzz corpora of
//! ecg-wire (every `err-*` chunk, every refused JSON message), a topic that
//! is not a visit topic and a meta published on another device's topic are
//! sent to a running `ecgtriage run` through Mosquitto. Afterwards a normal
//! device still gets its visits archived.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use ecg_wire::DeadLetter;

const VISIT: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const FLOODER_PASSWORD: &str = "flooder-secret";

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

/// A broker with `devices` devices and a flooder: a client allowed to write
/// any device topic, what a broken or hostile device firmware with valid
/// credentials can send; and a watcher of the dead-letter topic.
fn with_flooder(devices: usize) -> (Setup, std::sync::Arc<std::sync::Mutex<Watched>>) {
    let s = Setup::with_broker(
        devices,
        &[("flooder", FLOODER_PASSWORD)],
        "user flooder\ntopic write ecg/v1/dev/#\n",
        None,
    );
    let seen = watch(s.broker.port());
    wait_subscribed(&seen);
    (s, seen)
}

/// Publishes `messages` as the flooder, then waits (2 minutes at most) until
/// the watcher has seen as many dead letters.
fn flood(port: u16, messages: &[(String, Vec<u8>)], seen: &std::sync::Mutex<Watched>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use rumqttc::{AsyncClient, MqttOptions, QoS};
        let mut opts = MqttOptions::new("dl-flooder", "127.0.0.1", port);
        opts.set_credentials("flooder", FLOODER_PASSWORD)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(opts, 256);
        let poll = tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        for (topic, payload) in messages {
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                .await
                .unwrap();
        }
        let t0 = Instant::now();
        while seen.lock().unwrap().dead_letters.len() < messages.len()
            && t0.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        poll.abort();
    });
}

fn dead_letters(seen: &std::sync::Mutex<Watched>) -> Vec<DeadLetter> {
    seen.lock()
        .unwrap()
        .dead_letters
        .iter()
        .map(|v| serde_json::from_value(v.clone()).expect("dead letters follow the schema"))
        .collect()
}

#[test]
fn every_rejected_input_is_dead_lettered_with_its_reason_and_counted() {
    let (s, seen) = with_flooder(2);
    let metrics = free_addr();
    let mut run = s.start_pipeline_in(s.dir.path(), &["--metrics", &metrics]);
    let t0 = Instant::now();
    while metric(&metrics, "ecgtriage_dead_letters_total").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no metrics endpoint"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let bad = bad_inputs();
    assert!(bad.len() >= 40, "the corpus is missing: {}", bad.len());
    let inputs: Vec<(String, Vec<u8>)> = bad
        .iter()
        .map(|b| (b.topic.clone(), b.payload.clone()))
        .collect();
    flood(s.broker.port(), &inputs, &seen);

    let letters = dead_letters(&seen);
    let log_text = "(the pipeline's log is in the test's stderr)";
    // Match each input to its dead letter by topic, length and payload.
    let mut unmatched: Vec<&DeadLetter> = letters.iter().collect();
    let mut codes: HashMap<String, usize> = HashMap::new();
    for b in &bad {
        let pos = unmatched.iter().position(|dl| {
            let prefix = dl.payload_prefix().unwrap();
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
        let n = metric(&metrics, "ecgtriage_dead_letters_total").unwrap_or(0.0);
        if n as usize >= bad.len() || t0.elapsed() > Duration::from_secs(30) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(counted as usize, bad.len(), "dead_letters_total");
    // Each one a device could have sent is also kept whole, before its
    // dead letter went out.
    let whole = bad
        .iter()
        .filter(|b| b.payload.len() <= ecg_pipeline::quarantine::KEPT_PAYLOAD_MAX_BYTES)
        .count();
    let quarantined = metric(&metrics, "ecgtriage_quarantined_messages_total");
    assert_eq!(
        quarantined.map(|n| n as usize),
        Some(whole),
        "quarantined_messages_total"
    );

    // The barrage disturbed nobody: a device's visits are still archived.
    let mut cfg = s.fleet(4, 3);
    cfg.stemi_fraction = 0.0;
    run_fleet(cfg);
    let t0 = Instant::now();
    let archived = loop {
        let n = metric(&metrics, "ecgtriage_visits_archived_total").unwrap_or(0.0);
        if n >= 4.0 || t0.elapsed() > Duration::from_secs(120) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    run.kill().ok();
    run.wait().ok();
    assert_eq!(archived, 4.0, "visits after the barrage\n{log_text}");
}

/// A device that sends a visit's chunks and end but never its meta: the
/// pipeline cannot read samples without the meta's lead set and rate, so
/// when the visit times out every one of its messages is dead-lettered as
/// `unknown_visit`, whole topic, length and payload prefix, instead of being
/// dropped with a log line; and kept whole in the spool folder's quarantine,
/// so the ECG can still be recovered.
#[test]
fn a_visit_whose_meta_never_comes_is_dead_lettered_message_by_message() {
    let (s, seen) = with_flooder(0);
    let mut run = s.start_pipeline_in(s.dir.path(), &["--visit-timeout-s", "2"]);

    let visit = "6a1f4c2e-93b7-4d15-8e0a-2b7c9d3f5e81".parse().unwrap();
    let (_, sent) = visit_without_meta("dev-orphan", visit, 7);
    assert!(
        sent[0].1.len() > ecg_wire::message::DEADLETTER_PAYLOAD_MAX_BYTES,
        "a chunk longer than a dead letter's prefix"
    );

    flood(s.broker.port(), &sent, &seen);
    run.kill().ok();
    run.wait().ok();

    let letters = dead_letters(&seen);
    assert_eq!(
        letters.len(),
        sent.len(),
        "one dead letter per message of the visit: {letters:?}"
    );
    for ((t, p), dl) in sent.iter().zip(&letters) {
        let prefix = dl.payload_prefix().unwrap();
        assert_eq!(&dl.topic, t);
        assert_eq!(dl.payload_len, p.len() as u64);
        assert!(!prefix.is_empty() && p.starts_with(&prefix), "{dl:?}");
        assert_eq!(
            serde_json::to_value(dl.reason_code).unwrap(),
            "unknown_visit",
            "{dl:?}"
        );
        assert!(dl.reason.contains("meta never arrived"), "{}", dl.reason);
    }
    // Each line is written before its dead letter is published.
    let dir = s
        .dir
        .path()
        .join("spool")
        .join(ecg_pipeline::quarantine::QUARANTINE_DIR);
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|e| ecg_pipeline::quarantine::read_file(&e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(kept.len(), sent.len(), "{kept:?}");
    for ((t, p), m) in sent.iter().zip(&kept) {
        assert_eq!(&m.topic, t);
        assert_eq!(&m.payload().unwrap(), p, "kept whole");
    }
}

/// Messages as (topic, payload).
type Messages = Vec<(String, Vec<u8>)>;

/// A 12-lead visit of two 1 s chunks at 500 Hz on `device`'s topics, its
/// chunks and end but not its meta; its samples vary with `mix`.
fn visit_without_meta(
    device: &str,
    visit: ecg_wire::VisitId,
    mix: usize,
) -> (Vec<Vec<i16>>, Messages) {
    use ecg_wire::{Chunk, LeadSet, Message, SamplesDigest, VisitEnd};
    let topic = |kind: &str| format!("ecg/v1/dev/{device}/visit/{visit}/{kind}");
    let per_lead = 500usize;
    let leads: Vec<Vec<i16>> = (0..12)
        .map(|l| {
            (0..2 * per_lead)
                .map(|i| ((i * mix + l * 13) % 400) as i16 - 200)
                .collect()
        })
        .collect();
    let mut sent: Messages = (0..2u32)
        .map(|seq| {
            let from = seq as usize * per_lead;
            let samples: Vec<i16> = leads
                .iter()
                .flat_map(|l| l[from..from + per_lead].to_vec())
                .collect();
            let chunk = Chunk::new(visit, seq, from as u32, LeadSet::STANDARD_12, samples)
                .unwrap()
                .with_last(seq == 1);
            (topic("chunk"), chunk.to_bytes())
        })
        .collect();
    let end = VisitEnd {
        visit_id: visit,
        n_chunks: 2,
        n_samples: (2 * per_lead) as u32,
        samples_sha256: SamplesDigest::of_leads(leads.iter().map(Vec::as_slice)),
    };
    sent.push((topic("end"), end.to_json()));
    (leads, sent)
}

/// Publishes one message as the flooder and returns once the broker has
/// acknowledged it.
fn publish_acked(port: u16, topic: &str, payload: Vec<u8>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut opts = MqttOptions::new("dl-one", "127.0.0.1", port);
        opts.set_credentials("flooder", FLOODER_PASSWORD)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(opts, 8);
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        let acked = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
                    break;
                }
            }
        })
        .await;
        assert!(acked.is_ok(), "no PUBACK for {topic}");
    });
}

/// `ecgtriage quarantine` with `args`, its exit status, stdout and stderr.
fn quarantine(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(ecgtriage())
        .arg("quarantine")
        .args(args)
        .env_remove(ecg_pipeline::config::PASSWORD_ENV)
        .output()
        .expect("ecgtriage quarantine runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What the quarantine keeps can be recovered: the chunks and end of a
/// visit whose meta was lost are refused and kept; `quarantine list` names
/// them; once the device has sent its meta, `quarantine replay` publishes
/// them again and the visit is archived whole and bit-exact. A second
/// replay archives nothing twice; an identity that may not write device
/// topics is refused with the reason and publishes nothing.
#[test]
fn a_refused_visit_is_recovered_by_replaying_the_quarantine() {
    let (s, seen) = with_flooder(0);
    let mut run = s.start_pipeline_in(s.dir.path(), &["--visit-timeout-s", "8"]);
    let port = s.broker.port();
    let spool = s.dir.path().join("spool");
    let spool_arg = spool.to_str().unwrap();

    let visit: ecg_wire::VisitId = "3c9e2a71-5b4d-4f08-9a6e-1d2b3c4d5e6f".parse().unwrap();
    let topic = |kind: &str| format!("ecg/v1/dev/dev-lost/visit/{visit}/{kind}");
    let (leads, sent) = visit_without_meta("dev-lost", visit, 11);
    // No meta: after the visit timeout, each message is refused and kept.
    flood(port, &sent, &seen);
    assert_eq!(dead_letters(&seen).len(), 3);

    let (ok, out, err) = quarantine(&["list", "--json", "--spool", spool_arg]);
    assert!(ok, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["by_reason"]["unknown_visit"], 3, "{listed}");
    assert_eq!(listed["by_device"]["dev-lost"], 3, "{listed}");
    let topics: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["payload_intact"], true, "{m}");
            m["topic"].as_str().unwrap()
        })
        .collect();
    let want: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, want, "in reception order");
    let (ok, out, _) = quarantine(&["list", "--spool", spool_arg, "--reason", "bad_chunk"]);
    assert!(ok && out.contains("0 messages kept"), "{out}");
    let (ok, _, err) = quarantine(&["list", "--spool", spool_arg, "--reason", "nonsense"]);
    assert!(!ok && err.contains("--reason \"nonsense\""), "{err}");
    let missing = s.dir.path().join("no-such-spool");
    let (ok, _, err) = quarantine(&["list", "--spool", missing.to_str().unwrap()]);
    assert!(!ok && err.contains("no spool folder"), "{err}");
    // A dry run lists what it would send, in order, without connecting.
    let (ok, out, err) = quarantine(&[
        "replay",
        "--dry-run",
        "--spool",
        spool_arg,
        "--broker",
        &format!("mqtt://watcher:{WATCHER_PASSWORD}@127.0.0.1:{port}"),
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.matches("would publish ecg/v1/dev/dev-lost/").count(),
        3,
        "{out}"
    );

    // The watcher may not write device topics: refused, named, nothing sent.
    let (ok, out, err) = quarantine(&[
        "replay",
        "--spool",
        spool_arg,
        "--broker",
        &format!("mqtt://watcher:{WATCHER_PASSWORD}@127.0.0.1:{port}"),
    ]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("not authorized") && err.contains("after 0 published"),
        "{err}\nbroker log:\n{}",
        s.broker.log()
    );

    // The device sends its meta at last (a repaired firmware); the replay
    // follows within the visit timeout.
    let mut meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples/visit-meta.json"),
        )
        .unwrap(),
    )
    .unwrap();
    meta["device_id"] = "dev-lost".into();
    meta["visit_id"] = visit.to_string().into();
    meta["acquired_at"] = ecg_archive::time::OffsetDateTime::now_utc()
        .format(&ecg_archive::time::format_description::well_known::Rfc3339)
        .unwrap()
        .into();
    publish_acked(port, &topic("meta"), serde_json::to_vec(&meta).unwrap());
    let replay_as_flooder = || {
        quarantine(&[
            "replay",
            "--spool",
            spool_arg,
            "--device",
            "dev-lost",
            "--broker",
            &format!("mqtt://flooder:{FLOODER_PASSWORD}@127.0.0.1:{port}"),
        ])
    };
    let (ok, out, err) = replay_as_flooder();
    assert!(
        ok && out.contains("3 messages"),
        "{out}{err}\nbroker log:\n{}",
        s.broker.log()
    );
    let ids = wait_for_archive(&s.archive(), 1, Duration::from_secs(60));
    assert_eq!(ids, [visit.to_string()], "broker log:\n{}", s.broker.log());
    let samples = ecg_archive::read_visit_samples(&s.archive(), &visit.to_string()).unwrap();
    assert_eq!(samples, leads, "recovered bit-exact");
    let rows = query(&s.archive(), "SELECT complete FROM visits");
    assert_eq!(rows[0]["complete"], true, "{rows:?}");

    // Again: the pipeline has the visit and drops what it already has.
    let (ok, out, err) = replay_as_flooder();
    assert!(ok && out.contains("3 messages"), "{out}{err}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(archived_ids(&s.archive()), [visit.to_string()]);
    assert_eq!(dead_letters(&seen).len(), 3, "nothing refused again");
    run.kill().ok();
    run.wait().ok();
}
