//! One device against a real private Mosquitto: WFDB playback delivers the
//! record's samples, and the disk spool carries unsent messages across a
//! device restart.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Subscriber;
use ecg_testkit::{Mosquitto, MosquittoOpts};
use ecg_wire::{Lead, SamplesDigest};
use firmware_sim::broker::BrokerUrl;
use firmware_sim::device::Link;

fn broker() -> Mosquitto {
    Mosquitto::start(MosquittoOpts::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_streams_a_ludb_record_with_its_samples_and_gain() {
    let record = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ludb/10");
    assert!(
        record.with_extension("hea").exists(),
        "LUDB record {} missing (shared/data must sit beside the repository)",
        record.display()
    );
    let broker = broker();
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Subscriber::start(broker.port(), None, "test-reader-play").await;
    let out = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .arg("play")
        .arg(&record)
        .args([
            "--broker",
            &broker.url(),
            "--device",
            "dev-ludb",
            "--speed",
            "1000",
        ])
        .arg("--spool-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sub.wait_for(1, Duration::from_secs(20)).await, 1);
    let visit = sub.visits.values().next().unwrap();
    let meta = visit.meta.as_ref().unwrap();
    assert_eq!(visit.device, "dev-ludb");
    assert_eq!(meta.fs_hz, 500);
    assert_eq!(meta.leads.iter().collect::<Vec<_>>(), Lead::STANDARD_12);

    // Independently: the record's physical values, which the received
    // samples times the meta's gain must reproduce within half an LSB (LUDB
    // record 10 has a different gain per lead, so the device rescales).
    let rec = ecg_wfdb::Record::read(&record).unwrap();
    let received = visit.leads();
    let gain = meta.gain_uv_per_lsb;
    for (lead, got) in Lead::STANDARD_12.into_iter().zip(&received) {
        let i = rec
            .signal_index(lead.name())
            .expect("LUDB has the 12 leads");
        let mv = rec.millivolts(i).unwrap();
        assert_eq!(got.len(), mv.len(), "{lead} length");
        let worst_uv = got
            .iter()
            .zip(&mv)
            .map(|(&s, &m)| (f64::from(s) * gain - f64::from(m) * 1000.0).abs())
            .fold(0.0, f64::max);
        assert!(
            worst_uv <= gain / 2.0 + 1e-3,
            "{lead}: off by {worst_uv} uV at gain {gain}"
        );
    }
    assert_eq!(
        visit.end.as_ref().unwrap().samples_sha256,
        SamplesDigest::of_leads(received.iter().map(Vec::as_slice)),
        "the end message digests what was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_messages_survive_a_device_restart() {
    let mut broker = broker();
    let mut sub = Subscriber::start(broker.port(), None, "test-reader-spool").await;
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("dev-r");
    let visit = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let topic = |k: &str| format!("ecg/v1/dev/dev-r/visit/{visit}/{k}");
    let chunk = |seq: u32| {
        let id: ecg_wire::VisitId = visit.parse().unwrap();
        let leads: ecg_wire::LeadSet = [Lead::I].into_iter().collect();
        ecg_wire::Chunk::new(id, seq, seq * 4, leads, vec![seq as i16; 4])
            .unwrap()
            .to_bytes()
    };

    // The link is down while the device records: everything goes to disk,
    // then the device loses power.
    broker.stop().unwrap();
    let mut link = Link::open("dev-r", &url, spool.clone()).await.unwrap();
    for seq in 0..5 {
        link.publish(topic("chunk"), chunk(seq)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    link.crash();
    let left = std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(left, 5, "all unsent messages are on disk");

    // Broker back, device rebooted: the spool is replayed and emptied.
    broker.restart().unwrap();
    let link = Link::open("dev-r", &url, spool.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), link.drain())
        .await
        .expect("spool acknowledged");
    link.close().await;
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    // The subscriber reconnects to the restarted broker on its own time.
    for _ in 0..100 {
        if sub
            .visits
            .values()
            .next()
            .is_some_and(|v| v.chunks.len() >= 5)
        {
            break;
        }
        sub.drain_for(Duration::from_millis(200)).await;
    }
    sub.drain_for(Duration::from_millis(200)).await;
    let v = sub.visits.values().next().expect("visit seen");
    let seqs: Vec<u32> = v.chunks.keys().copied().collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
}
