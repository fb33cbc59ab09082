//! Devices over `mqtts://` against a real private Mosquitto with a TLS
//! listener and a throwaway CA: visits arrive intact, with or without a
//! client certificate, and a client that does not trust the broker's CA (or
//! lacks a required client certificate) never gets a session.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Subscriber;
use ecg_testkit::{Mosquitto, MosquittoOpts, TlsOpts};
use firmware_sim::broker::{BrokerUrl, TlsSettings};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};

fn tls_broker(require_client_cert: bool) -> Mosquitto {
    Mosquitto::start(MosquittoOpts {
        tls: Some(TlsOpts {
            require_client_cert,
        }),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn ludb_record() -> PathBuf {
    let record = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ludb/10");
    assert!(
        record.with_extension("hea").exists(),
        "LUDB record {} missing (shared/data must sit beside the repository)",
        record.display()
    );
    record
}

/// Plays LUDB record 10 over the TLS listener; the plain-port subscriber
/// rebuilds the visit and its digest must equal the one the device computed
/// from the record.
async fn play_over_tls(broker: &Mosquitto, extra: &[&std::ffi::OsStr], device: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Subscriber::start(broker.port(), None, &format!("reader-{device}")).await;
    let files = broker.tls_files().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .arg("play")
        .arg(ludb_record())
        .args(["--broker", &broker.tls_url().unwrap()])
        .args(["--device", device, "--speed", "1000"])
        .arg("--ca")
        .arg(&files.ca)
        .args(extra)
        .arg("--spool-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", broker.log());
    assert_eq!(sub.wait_for(1, Duration::from_secs(20)).await, 1);
    let visit = sub.visits.values().next().unwrap();
    assert!(visit.is_complete());
    assert_eq!(visit.device, device);
    let digest = visit.digest().to_string();
    assert!(
        stderr.contains(&format!("sha256 {digest}")),
        "received digest {digest} differs from the device's: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_over_mqtts_arrive_intact() {
    let broker = tls_broker(false);
    play_over_tls(&broker, &[], "dev-tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_over_mqtts_with_a_client_certificate_arrive_intact() {
    let broker = tls_broker(true);
    let files = broker.tls_files().unwrap().clone();
    play_over_tls(
        &broker,
        &[
            "--client-cert".as_ref(),
            files.client_cert.as_os_str(),
            "--client-key".as_ref(),
            files.client_key.as_os_str(),
        ],
        "dev-mtls",
    )
    .await;
}

/// The first event of a fresh TLS connection: a CONNACK, or the error.
async fn first_event(broker: &Mosquitto, tls: &TlsSettings, id: &str) -> Result<Event, String> {
    let url = BrokerUrl::parse_with_tls(&broker.tls_url().unwrap(), Some(tls.clone()))
        .unwrap()
        .0;
    let mut opts = MqttOptions::new(id, url.host, url.port);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        tls.client_config().unwrap(),
    )));
    let (_client, mut eventloop) = AsyncClient::new(opts, 4);
    tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
        .await
        .expect("handshake settled within 10 s")
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_the_ca_or_a_required_certificate_are_refused() {
    let broker = tls_broker(true);
    let other = tls_broker(false); // a different throwaway CA
    let own = broker.tls_files().unwrap();
    let with_cert = TlsSettings {
        ca: own.ca.clone(),
        client_cert: Some((own.client_cert.clone(), own.client_key.clone())),
    };
    // The positive control: the same code path does connect.
    let ok = first_event(&broker, &with_cert, "good").await;
    assert!(
        matches!(ok, Ok(Event::Incoming(Packet::ConnAck(_)))),
        "{ok:?}"
    );

    let wrong_ca = TlsSettings {
        ca: other.tls_files().unwrap().ca.clone(),
        client_cert: with_cert.client_cert.clone(),
    };
    let err = first_event(&broker, &wrong_ca, "wrong-ca")
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let no_cert = TlsSettings {
        ca: own.ca.clone(),
        client_cert: None,
    };
    let refused = first_event(&broker, &no_cert, "no-cert").await;
    assert!(refused.is_err(), "{refused:?}");
}
