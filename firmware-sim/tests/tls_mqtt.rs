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

/// `firmware-sim play` of LUDB record 10 over the TLS listener, trusting
/// the system's CA store unless `extra` says otherwise.
fn play_command(
    broker: &Mosquitto,
    extra: &[&std::ffi::OsStr],
    device: &str,
    spool: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firmware-sim"));
    cmd.arg("play")
        .arg(ludb_record())
        .args(["--broker", &broker.tls_url().unwrap()])
        .args(["--device", device, "--speed", "1000"])
        .args(extra)
        .arg("--spool-dir")
        .arg(spool);
    cmd
}

/// Plays LUDB record 10 over the TLS listener with the broker's CA given by
/// `--ca`; see [`play_and_check`].
async fn play_over_tls(broker: &Mosquitto, extra: &[&std::ffi::OsStr], device: &str) {
    let ca = broker.tls_files().unwrap().ca.clone();
    let mut args = vec!["--ca".as_ref(), ca.as_os_str()];
    args.extend_from_slice(extra);
    play_and_check(broker, device, |spool| {
        play_command(broker, &args, device, spool)
    })
    .await;
}

/// Runs the play command; the plain-port subscriber rebuilds the visit and
/// its digest must equal the one the device computed from the record.
async fn play_and_check(
    broker: &Mosquitto,
    device: &str,
    command: impl FnOnce(&std::path::Path) -> Command,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Subscriber::start(broker.port(), None, &format!("reader-{device}")).await;
    let out = command(dir.path()).output().unwrap();
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

/// Without `--ca` a device trusts the system's CA store, which
/// `SSL_CERT_FILE` replaces (as for OpenSSL): pointed at the broker's CA
/// the visit arrives, pointed at another CA the device is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_the_system_store_is_trusted_and_only_it() {
    let broker = tls_broker(false);
    let own_ca = broker.tls_files().unwrap().ca.clone();
    play_and_check(&broker, "dev-sys", |spool| {
        let mut cmd = play_command(&broker, &[], "dev-sys", spool);
        cmd.env("SSL_CERT_FILE", &own_ca).env_remove("SSL_CERT_DIR");
        cmd
    })
    .await;

    // A device keeps retrying a link that is down, so the refusal shows as
    // its "link down" line naming the certificate, and nothing arrives.
    let other = tls_broker(false);
    let mut sub = Subscriber::start(broker.port(), None, "reader-untrusting").await;
    let spool = tempfile::tempdir().unwrap();
    let mut child = play_command(&broker, &[], "dev-untrusting", spool.path())
        .env("SSL_CERT_FILE", &other.tls_files().unwrap().ca)
        .env_remove("SSL_CERT_DIR")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let refusal = tokio::task::block_in_place(|| {
        std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(20)).ok())
            .find(|line| line.contains("link down"))
    });
    let _ = child.kill();
    let _ = child.wait();
    let refusal = refusal.expect("the device reported its link down");
    assert!(refusal.to_lowercase().contains("certificate"), "{refusal}");
    sub.drain_for(Duration::from_secs(1)).await;
    assert!(
        sub.visits.is_empty(),
        "a visit arrived through an untrusted link"
    );
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
        ca: Some(own.ca.clone()),
        client_cert: Some((own.client_cert.clone(), own.client_key.clone())),
    };
    // The positive control: the same code path does connect.
    let ok = first_event(&broker, &with_cert, "good").await;
    assert!(
        matches!(ok, Ok(Event::Incoming(Packet::ConnAck(_)))),
        "{ok:?}"
    );

    let wrong_ca = TlsSettings {
        ca: Some(other.tls_files().unwrap().ca.clone()),
        client_cert: with_cert.client_cert.clone(),
    };
    let err = first_event(&broker, &wrong_ca, "wrong-ca")
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let no_cert = TlsSettings {
        ca: Some(own.ca.clone()),
        client_cert: None,
    };
    let refused = first_event(&broker, &no_cert, "no-cert").await;
    assert!(refused.is_err(), "{refused:?}");
}
