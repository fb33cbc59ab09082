//! The fleet against a real, private Mosquitto (started by ecg-testkit on a
//! free loopback port): per-device passwords and the ACL of the issue, an
//! independent subscriber rebuilding every visit, a broker restart in the
//! middle of visits, and a device refused another device's topic.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{read_truth, Subscriber};
use ecg_testkit::{Mosquitto, MosquittoOpts};
use rumqttc::{AsyncClient, MqttOptions, QoS};

const READER: (&str, &str) = ("reader", "reader-pw");
const ACL: &str = "pattern write ecg/v1/dev/%u/#\n\nuser reader\ntopic read ecg/v1/dev/#\n";

fn device_creds(n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| (format!("dev-{i:02}"), format!("pw-{i}-{}", i * 7919)))
        .collect()
}

fn broker_with_acl(devices: &[(String, String)]) -> Mosquitto {
    let mut users = devices.to_vec();
    users.push((READER.0.into(), READER.1.into()));
    Mosquitto::start(MosquittoOpts {
        users,
        acl: Some(ACL.into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("cannot start the test broker: {e}"))
}

fn write_csv(dir: &Path, devices: &[(String, String)]) -> std::path::PathBuf {
    let path = dir.join("devices.csv");
    let body: String = devices.iter().map(|(d, p)| format!("{d},{p}\n")).collect();
    std::fs::write(&path, format!("device_id,password\n{body}")).unwrap();
    path
}

fn fleet_cmd(broker: &Mosquitto, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firmware-sim"));
    cmd.arg("fleet")
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{}", broker.port()))
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .args(args);
    cmd
}

/// Every truth line has a rebuilt visit with the same samples, and vice versa.
fn check_against_truth(sub: &Subscriber, truth_path: &Path, expected: usize) {
    let truth = read_truth(truth_path);
    assert_eq!(truth.len(), expected, "truth lines");
    assert_eq!(sub.visits.len(), expected, "visits seen by the subscriber");
    for (id, v) in &sub.visits {
        assert!(v.is_complete(), "visit {id} incomplete");
        let t = truth
            .get(&id.to_string())
            .unwrap_or_else(|| panic!("visit {id} not in the truth file"));
        let leads = v.leads();
        assert_eq!(t["device_id"], v.device.as_str(), "visit {id} device");
        assert_eq!(t["n_leads"], leads.len(), "visit {id} leads");
        assert_eq!(t["n_samples"], leads[0].len(), "visit {id} samples");
        assert_eq!(
            t["samples_sha256"],
            v.digest().to_string(),
            "visit {id}: rebuilt samples differ from the truth"
        );
        assert_eq!(v.end.as_ref().unwrap().samples_sha256, v.digest());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_with_credentials_delivers_200_visits_matching_the_truth() {
    let devices = device_creds(20);
    let broker = broker_with_acl(&devices);
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), &devices);
    let truth = dir.path().join("t.jsonl");
    let mut sub = Subscriber::start(broker.port(), Some(READER), "test-reader-a").await;

    let out = fleet_cmd(&broker, dir.path(), &["--credentials"])
        .arg(&csv)
        .args([
            "--visits", "200", "--speed", "1000000", "--seed", "7", "--truth",
        ])
        .arg(&truth)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fleet failed: {stderr}\nbroker log:\n{}",
        broker.log()
    );
    assert!(stderr.contains("summary: visits 200"), "{stderr}");

    let complete = sub.wait_for(200, Duration::from_secs(60)).await;
    assert_eq!(complete, 200, "complete visits; fleet said:\n{stderr}");
    sub.drain_for(Duration::from_millis(300)).await;
    check_against_truth(&sub, &truth, 200);
    let devices_used: std::collections::HashSet<_> =
        sub.visits.values().map(|v| v.device.clone()).collect();
    assert!(
        devices_used.len() > 10,
        "visits spread over devices: {devices_used:?}"
    );
    // Nothing is left unacknowledged in any device's spool.
    for d in &devices {
        let spool = dir.path().join("spool").join(&d.0);
        let left = std::fs::read_dir(&spool).map(|r| r.count()).unwrap_or(0);
        assert_eq!(left, 0, "{} spool has {left} files", d.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_visit_loses_nothing() {
    let mut broker = Mosquitto::start(MosquittoOpts::default()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.jsonl");
    let mut sub = Subscriber::start(broker.port(), None, "test-reader-b").await;

    // 4 devices x 3 visits of 10 s at speed 5: about 6 s of streaming; the
    // high annual rate makes all 12 visits arrive within the first second.
    let child = fleet_cmd(&broker, dir.path(), &["--devices", "4", "--visits", "12"])
        .args([
            "--speed",
            "5",
            "--annual-visits",
            "300000000",
            "--seed",
            "11",
            "--truth",
        ])
        .arg(&truth)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The broker stops once visits are streaming (the fleet's start,
    // connects and synthesis take a while on a loaded machine).
    let mut partial = 0;
    for _ in 0..100 {
        sub.drain_for(Duration::from_millis(100)).await;
        partial = sub
            .visits
            .values()
            .filter(|v| !v.chunks.is_empty() && v.end.is_none())
            .count();
        if partial > 0 {
            break;
        }
    }
    broker.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.restart().unwrap();

    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "fleet failed: {stderr}");
    assert!(
        partial > 0,
        "the broker was stopped while visits were streaming"
    );
    let complete = sub.wait_for(12, Duration::from_secs(30)).await;
    assert_eq!(
        complete, 12,
        "complete visits after the restart; fleet said:\n{stderr}"
    );
    sub.drain_for(Duration::from_millis(300)).await;
    check_against_truth(&sub, &truth, 12);
    eprintln!(
        "{partial} visits were mid-stream at the stop; fleet: {}",
        stderr.lines().last().unwrap_or("")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_still_deliver_every_visit() {
    let broker = Mosquitto::start(MosquittoOpts::default()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.jsonl");
    let mut sub = Subscriber::start(broker.port(), None, "test-reader-faults").await;
    let out = fleet_cmd(&broker, dir.path(), &["--devices", "3", "--visits", "15"])
        .args([
            "--speed",
            "20",
            "--annual-visits",
            "300000000",
            "--seed",
            "5",
        ])
        .args([
            "--dup-prob",
            "0.3",
            "--reorder-prob",
            "0.3",
            "--clock-skew-s",
            "-90",
        ])
        .args([
            "--link-drop-every-s",
            "0.4",
            "--link-outage-s",
            "0.3",
            "--truth",
        ])
        .arg(&truth)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fleet failed: {stderr}");
    assert_eq!(
        sub.wait_for(15, Duration::from_secs(30)).await,
        15,
        "{stderr}"
    );
    sub.drain_for(Duration::from_millis(300)).await;
    check_against_truth(&sub, &truth, 15);
    let dups: u32 = sub.visits.values().map(|v| v.duplicates).sum();
    assert!(dups > 0, "duplicates were injected");
    let summary = stderr.lines().last().unwrap_or("");
    assert!(
        !summary.contains("reconnects 0 "),
        "links were dropped: {summary}"
    );
    eprintln!("{dups} duplicate chunks seen; fleet: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_publish_on_another_devices_topic() {
    let devices = device_creds(2);
    let broker = broker_with_acl(&devices);
    let mut sub = Subscriber::start(broker.port(), Some(READER), "test-reader-c").await;

    let mut opts = MqttOptions::new(devices[0].0.clone(), "127.0.0.1", broker.port());
    opts.set_credentials(devices[0].0.clone(), devices[0].1.clone());
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(_) => {}
                Err(e) => {
                    eprintln!("device link error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let meta = |dev: &str, visit: &str| {
        format!(
            r#"{{"device_id":"{dev}","clinic_id":"c1","visit_id":"{visit}","patient_pseudonym":"k1-9f86d081884c7d659a2feaa0c55ad015","sex":"male","leads":["I"],"fs_hz":500,"gain_uv_per_lsb":1.0,"acquired_at":"2026-01-01T00:00:00Z","chunk_samples":500,"firmware_version":"t"}}"#
        )
    };
    let (own, other) = (devices[0].0.as_str(), devices[1].0.as_str());
    // Own-topic messages before and after are the control: they must
    // arrive, proving the path works and that the foreign message had time
    // to arrive too.
    let sends = [
        (own, "0f8fad5b-d9cb-469f-a165-70867728950a"),
        (other, "0f8fad5b-d9cb-469f-a165-70867728950b"),
        (own, "0f8fad5b-d9cb-469f-a165-70867728950c"),
    ];
    for (dev, visit) in sends {
        client
            .publish(
                format!("ecg/v1/dev/{dev}/visit/{visit}/meta"),
                QoS::AtLeastOnce,
                false,
                meta(dev, visit),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Until the last control has arrived (a reconnect may delay it), then
    // a moment for anything after it.
    for _ in 0..50 {
        if sub.visits.keys().any(|id| id.to_string() == sends[2].1) {
            break;
        }
        sub.drain_for(Duration::from_millis(200)).await;
    }
    sub.drain_for(Duration::from_millis(300)).await;
    poller.abort();
    let mut seen: Vec<String> = sub
        .visits
        .iter()
        .map(|(id, v)| format!("{}:{id}", v.device))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            format!("{own}:{}", sends[0].1),
            format!("{own}:{}", sends[2].1)
        ],
        "only the device's own topic is delivered; broker log:\n{}",
        broker.log()
    );
}
