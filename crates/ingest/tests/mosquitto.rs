//! The ingest against a real, private Mosquitto (ecg-testkit) fed by
//! firmware-sim's fleet: every visit arrives complete with the truth digest,
//! also when the ingest is killed mid-run and restarted on its spool and
//! persistent session.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ecg_ingest::{start, AssemblyEvent, IngestConfig, IngestHandle};
use ecg_testkit::{Mosquitto, MosquittoOpts};
use ecg_wire::SamplesDigest;
use firmware_sim::broker::BrokerUrl;
use firmware_sim::fleet::{self, DeviceSpec, FleetConfig};
use firmware_sim::visit::{Faults, StreamOpts};
use tokio::sync::mpsc::Receiver;

const INGEST: (&str, &str) = ("ingest", "ingest-pw");
const ACL: &str = "pattern write ecg/v1/dev/%u/#\n\nuser ingest\ntopic read ecg/v1/dev/#\n";

fn truth_digests(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .expect("truth file")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("truth JSON");
            (
                v["visit_id"].as_str().unwrap().to_owned(),
                v["samples_sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn fleet_config(
    port: u16,
    devices: Vec<DeviceSpec>,
    visits: u64,
    speed: f64,
    dir: &Path,
    faults: Faults,
) -> FleetConfig {
    FleetConfig {
        broker: BrokerUrl {
            host: "127.0.0.1".into(),
            port,
            user: None,
        },
        devices,
        visits: Some(visits),
        annual_visits: 300_000_000.0,
        speed,
        stemi_fraction: 0.3,
        seed: 5,
        truth: Some(dir.join("truth.jsonl")),
        spool_root: dir.join("device-spool"),
        stream: StreamOpts {
            chunk_s: 1.0,
            speed,
            faults,
        },
        progress: false,
    }
}

fn ingest_config(port: u16, dir: &Path, creds: bool) -> IngestConfig {
    let mut cfg = IngestConfig::new("127.0.0.1", port, "ingest-test", dir.join("ingest-spool"));
    if creds {
        cfg.credentials = Some((INGEST.0.into(), INGEST.1.into()));
    }
    // Small segments so rotation and deletion happen within a test.
    cfg.spool.segment_bytes = 256 << 10;
    cfg.receive_maximum = 32;
    cfg
}

async fn wait_subscribed(h: &IngestHandle, broker: &Mosquitto) {
    let stats = h.stats();
    for _ in 0..200 {
        if stats.subscriptions.load(Ordering::Relaxed) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("ingest never subscribed; broker log:\n{}", broker.log());
}

#[derive(Default)]
struct Seen {
    /// Per visit: Complete events seen, whether each matched its end's
    /// digest, and the digest of the samples received.
    complete: HashMap<String, (u32, bool, String)>,
    incomplete: Vec<String>,
    rejected: Vec<String>,
}

impl Seen {
    /// Takes events (marking visits done) until `n` visits completed, the
    /// deadline passes or, with `for_at_most`, that time passed.
    async fn take(
        &mut self,
        events: &mut Receiver<AssemblyEvent>,
        ingest: &IngestHandle,
        n: usize,
        for_at_most: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + for_at_most;
        while self.complete.len() < n {
            let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await else {
                return;
            };
            match e {
                AssemblyEvent::Complete {
                    key,
                    samples,
                    digest_ok,
                    end,
                    ..
                } => {
                    let digest = SamplesDigest::of_leads(samples.iter().map(Vec::as_slice));
                    let entry = self.complete.entry(key.visit_id.to_string()).or_insert((
                        0,
                        true,
                        digest.to_string(),
                    ));
                    entry.0 += 1;
                    entry.1 &= digest_ok && digest == end.samples_sha256;
                    ingest.mark_done(key);
                }
                AssemblyEvent::Incomplete { key, reason, .. } => {
                    self.incomplete.push(format!("{key}: {reason}"));
                    ingest.mark_done(key);
                }
                AssemblyEvent::Rejected(r) => {
                    self.rejected.push(format!("{}: {}", r.topic, r.reason));
                    if let Some(id) = r.spooled {
                        ingest.release(id);
                    }
                }
                AssemblyEvent::Started { .. } | AssemblyEvent::Samples { .. } => {}
            }
        }
    }
}

/// Each visit completed once, digest verified, samples equal to the truth.
fn check_against_truth(seen: &Seen, truth: &HashMap<String, String>) {
    for (visit, (count, ok, digest)) in &seen.complete {
        assert_eq!(*count, 1, "{visit} completed {count} times");
        assert!(ok, "{visit}: samples do not hash to the end's digest");
        let want = truth
            .get(visit)
            .unwrap_or_else(|| panic!("{visit} not in the truth file"));
        assert_eq!(want, digest, "{visit}: samples differ from the truth");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_visits_all_arrive_complete_with_the_truth_digest() {
    let devices: Vec<(String, String)> = (1..=8)
        .map(|i| (format!("dev-{i:04}"), format!("pw-{i}")))
        .collect();
    let mut users = devices.clone();
    users.push((INGEST.0.into(), INGEST.1.into()));
    let broker = Mosquitto::start(MosquittoOpts {
        users,
        acl: Some(ACL.into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("test broker: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let (ingest, mut events) = start(ingest_config(broker.port(), dir.path(), true))
        .await
        .unwrap();
    wait_subscribed(&ingest, &broker).await;

    let specs: Vec<DeviceSpec> = fleet::numbered_devices(8, 3)
        .into_iter()
        .zip(&devices)
        .map(|(mut d, (_, pw))| {
            d.password = Some(pw.clone());
            d
        })
        .collect();
    // Duplicates and reordering from the devices, as QoS 1 allows.
    let faults = Faults {
        duplicate_p: 0.1,
        reorder_p: 0.1,
        ..Faults::default()
    };
    let n = 60;
    let summary = fleet::run(fleet_config(
        broker.port(),
        specs,
        n,
        1_000_000.0,
        dir.path(),
        faults,
    ))
    .await
    .expect("fleet runs");
    assert_eq!(summary.visits, n);

    let truth = truth_digests(&dir.path().join("truth.jsonl"));
    let mut seen = Seen::default();
    seen.take(&mut events, &ingest, n as usize, Duration::from_secs(40))
        .await;
    assert_eq!(
        seen.complete.len(),
        n as usize,
        "incomplete: {:?}",
        seen.incomplete
    );
    check_against_truth(&seen, &truth);
    assert!(seen.incomplete.is_empty(), "{:?}", seen.incomplete);
    assert!(seen.rejected.is_empty(), "{:?}", seen.rejected);

    let stats = ingest.stats();
    let spooled = stats.spooled.load(Ordering::Relaxed);
    let fsyncs = stats.fsyncs.load(Ordering::Relaxed);
    eprintln!(
        "received {} spooled {spooled} fsyncs {fsyncs} acked {} segments {}",
        stats.received.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed),
        stats.spool_segments.load(Ordering::Relaxed),
    );
    assert!(spooled >= n * 12, "every message spooled");
    assert!(
        stats.acked.load(Ordering::Relaxed) >= spooled,
        "every spooled message acked"
    );
    // Every visit is done: the spool shrinks to its open segment (once the
    // last done markers are durable: generous on a loaded machine).
    for _ in 0..1000 {
        if stats.spool_segments.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.spool_segments.load(Ordering::Relaxed), 1);
    ingest.stop_intake();
    while events.recv().await.is_some() {}
    ingest.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_and_restarted_every_visit_completes_exactly_once() {
    let broker = Mosquitto::start(MosquittoOpts::default()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = ingest_config(broker.port(), dir.path(), false);
    let (ingest, mut events) = start(cfg.clone()).await.unwrap();
    wait_subscribed(&ingest, &broker).await;

    // 4 devices x 4 visits of 10 s streamed at 5x: about 8 s of traffic.
    let n = 16u64;
    let fleet = tokio::spawn(fleet::run(fleet_config(
        broker.port(),
        fleet::numbered_devices(4, 2),
        n,
        5.0,
        dir.path(),
        Faults::default(),
    )));
    let mut seen = Seen::default();
    seen.take(
        &mut events,
        &ingest,
        n as usize,
        Duration::from_millis(3500),
    )
    .await;
    let before_kill = seen.complete.len();
    // Let the done markers reach the spool, then kill everything at once,
    // with messages in flight and unread events in the channel. (A marker
    // not yet durable at a crash replays its visit, as it should, which
    // this test would count as a second completion.)
    let marked =
        seen.complete.values().map(|c| u64::from(c.0)).sum::<u64>() + seen.incomplete.len() as u64;
    let stats = ingest.stats();
    for _ in 0..200 {
        if stats.marked_done.load(Ordering::Relaxed) >= marked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stats.marked_done.load(Ordering::Relaxed),
        marked,
        "done markers durable before the kill"
    );
    let received_first = ingest.stats().received.load(Ordering::Relaxed);
    ingest.abort();
    drop(events);
    tokio::time::sleep(Duration::from_millis(800)).await;

    let (ingest, mut events) = start(cfg).await.unwrap();
    let replayed = ingest.stats().replayed.load(Ordering::Relaxed);
    let summary = fleet.await.unwrap().expect("fleet runs");
    assert_eq!(summary.visits, n);
    let truth = truth_digests(&dir.path().join("truth.jsonl"));
    seen.take(&mut events, &ingest, n as usize, Duration::from_secs(40))
        .await;
    eprintln!(
        "{before_kill} visits done before the kill after {received_first} messages; \
         {replayed} messages replayed from the spool"
    );
    assert!(before_kill < n as usize, "the kill came mid-run");
    assert!(replayed > 0, "the spool held unfinished visits at the kill");
    assert_eq!(
        seen.complete.len(),
        n as usize,
        "incomplete: {:?}",
        seen.incomplete
    );
    check_against_truth(&seen, &truth);
    assert!(seen.incomplete.is_empty(), "{:?}", seen.incomplete);
    assert!(seen.rejected.is_empty(), "{:?}", seen.rejected);
    ingest.stop_intake();
    while events.recv().await.is_some() {}
    ingest.finish().await.unwrap();
}

/// A backlog stays in the broker while the pipeline is behind: the ingest
/// stops reading while too many messages wait for their ack, although the
/// broker (Mosquitto 2.0) sends past the receive maximum once acks flow.
/// Then it takes the rest as the pipeline catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_stays_in_the_broker_while_the_pipeline_is_behind() {
    let broker = Mosquitto::start(MosquittoOpts::default()).expect("mosquitto");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ingest_config(broker.port(), dir.path(), false);
    cfg.events_capacity = 8;
    let unacked_max = usize::from(cfg.receive_maximum).max(cfg.max_batch);
    let max_batch = cfg.max_batch;
    let (ingest, mut events) = start(cfg).await.expect("ingest starts");
    wait_subscribed(&ingest, &broker).await;

    // Messages the assembler rejects: one event each, which nobody reads yet.
    const N: usize = 4000;
    let (client, mut eventloop) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("flooder", "127.0.0.1", broker.port()),
        N + 16,
    );
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let topic =
                format!("ecg/v1/dev/flooder/visit/0b7c6f5e-2d1a-4c3b-9a8f-7e6d5c4b{i:04x}/chunk");
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, vec![0u8; 2000])
                .await
                .unwrap();
        }
        let mut acked = 0;
        while acked < N {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                eventloop.poll().await.unwrap()
            {
                acked += 1;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(120), sender)
        .await
        .expect("the broker took the flood")
        .unwrap();

    // Everything the ingest can hold while its events wait: the events
    // channel, the one record the assembler waits to pass on, the records
    // channel, the batch the spooler acked and waits to pass on, and the
    // messages received and not yet acked. The poller stops at twice
    // `unacked_max` of those when acks wait to be sent (see `Unacked`), and
    // a poll that sends an ack may read: the bound is the sum, exactly.
    let stats = ingest.stats();
    let bound = 8 + 1 + 2 * max_batch + max_batch + 2 * unacked_max;
    let mut last = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stats.received.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let held = stats.received.load(Ordering::Relaxed) as usize;
    assert!(
        held <= bound,
        "{held} of {N} messages taken while the pipeline took none (bound {bound})"
    );

    // The pipeline catches up, more slowly than the broker sends: while it
    // does, the messages received and not yet acked stay bounded too
    // (before 2026-11-30 every ack let more in, and they piled up: a poll
    // that sends an ack also reads, and this broker sends on).
    let watched = stats.clone();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch_on = watching.clone();
    let watcher = tokio::spawn(async move {
        let mut most = 0u64;
        while watch_on.load(Ordering::Relaxed) {
            let received = watched.received.load(Ordering::Relaxed);
            let acked = watched.acked.load(Ordering::Relaxed);
            most = most.max(received.saturating_sub(acked));
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        most
    });
    let mut rejected = 0;
    while rejected < N {
        if rejected % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Some(AssemblyEvent::Rejected(r))) => {
                if let Some(id) = r.spooled {
                    ingest.release(id);
                }
                rejected += 1;
            }
            Ok(Some(_)) => {}
            other => panic!(
                "after {rejected} rejections: {:?}; received {} spooled {} acked {} connects {} errors {}",
                other.map(|e| e.is_some()),
                stats.received.load(Ordering::Relaxed),
                stats.spooled.load(Ordering::Relaxed),
                stats.acked.load(Ordering::Relaxed),
                stats.connects.load(Ordering::Relaxed),
                stats.connection_errors.load(Ordering::Relaxed),
            ),
        }
    }
    assert_eq!(stats.received.load(Ordering::Relaxed) as usize, N);
    watching.store(false, Ordering::Relaxed);
    let most_unacked = watcher.await.unwrap() as usize;
    let unacked_bound = 2 * unacked_max + 64;
    assert!(
        most_unacked <= unacked_bound,
        "{most_unacked} messages received and not yet acked at once (bound {unacked_bound})"
    );
    ingest.finish().await.unwrap();
}

/// Refused input stays in the spool until the pipeline releases it (after
/// its dead letter): killed before then, the ingest replays it, although
/// the segments around it could go; released, it is not replayed
/// (`spool::tests` checks that without a crash's timing). Before 2026-12-01 input that named no
/// visit pinned nothing, and its segment went at the next rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_input_is_replayed_after_a_crash_until_released() {
    let broker = Mosquitto::start(MosquittoOpts::default()).expect("mosquitto");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ingest_config(broker.port(), dir.path(), false);
    // About four refused messages per segment.
    cfg.spool.segment_bytes = 4096;
    let (ingest, mut events) = start(cfg.clone()).await.expect("ingest starts");
    wait_subscribed(&ingest, &broker).await;

    const N: usize = 12;
    let topic = |i: usize| format!("ecg/v1/dev/flooder/visit/junk-{i:02}/chunk");
    let (client, mut eventloop) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("flooder", "127.0.0.1", broker.port()),
        N + 4,
    );
    for i in 0..N {
        // One at a time, so that they arrive (and are spooled) in order.
        client
            .publish(
                topic(i),
                rumqttc::QoS::AtLeastOnce,
                false,
                vec![i as u8; 1000],
            )
            .await
            .unwrap();
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                eventloop.poll().await.unwrap()
            {
                break;
            }
        }
    }
    let mut held = Vec::new();
    while held.len() < N {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(AssemblyEvent::Rejected(r))) => {
                assert_eq!(r.topic, topic(held.len()));
                held.push(r.spooled.expect("refused input is handed on, held"));
            }
            other => panic!(
                "after {} rejections: {:?}",
                held.len(),
                other.map(|e| e.is_some())
            ),
        }
    }
    // Dead letters out for the first half only, then a crash.
    for id in held.drain(..N / 2) {
        ingest.release(id);
    }
    let stats = ingest.stats();
    // Segments [0-3] [4-7] [8-11]: the first can go. Wait for that, and
    // for the broker to have every ack (else it sends some again).
    for _ in 0..200 {
        if stats.spool_segments.load(Ordering::Relaxed) <= 2
            && stats.acked.load(Ordering::Relaxed) >= N as u64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    ingest.abort();
    drop(events);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (ingest, mut events) = start(cfg).await.expect("ingest restarts");
    let mut replayed = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
        if let AssemblyEvent::Rejected(r) = e {
            replayed.push(r.topic.clone());
            if let Some(id) = r.spooled {
                ingest.release(id);
            }
        }
    }
    for i in N / 2..N {
        assert!(
            replayed.contains(&topic(i)),
            "{} not replayed; replayed: {replayed:?}",
            topic(i)
        );
    }
    // [0-3] went: the spool keeps what is needed, not everything. Of
    // [4-7], 4 and 5 were released: they come again only when the crash
    // took their release markers with it (not yet written from the buffer).
    for i in 0..4 {
        assert!(!replayed.contains(&topic(i)), "{replayed:?}");
    }
    let n = ingest.stats().replayed.load(Ordering::Relaxed);
    assert!((6..=8).contains(&n), "{n} replayed: {replayed:?}");
    ingest.stop_intake();
    while events.recv().await.is_some() {}
    ingest.finish().await.unwrap();
}
