//! TLS end to end against a real Mosquitto: `ecgtriage run` over mqtts://
//! (CA file plus a client certificate), firmware-sim devices over mqtts://
//! and a cardiologist-side alert watcher over mqtts://; every visit is
//! archived. And the pipeline refuses, with its reason and without a panic,
//! a port that does not speak TLS and a broker whose certificate another
//! CA signed.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use ecg_testkit::TlsOpts;
use firmware_sim::broker::{BrokerUrl, TlsSettings};
use firmware_sim::fleet::FleetOptions;

fn tls_setup(devices: usize, require_client_cert: bool) -> Setup {
    Setup::with_broker(
        devices,
        &[],
        "",
        Some(TlsOpts {
            require_client_cert,
        }),
    )
}

/// `ecgtriage run` against `broker_url` with TLS `flags` (each followed by
/// its file); stderr goes to `log`.
fn pipeline(dir: &Path, broker_url: &str, files: &[&Path], flags: &[&str], log: &Path) -> Child {
    let mut cmd = pipeline_command(broker_url, dir);
    cmd.args(["--visit-timeout-s", "30"]);
    for (flag, path) in flags.iter().zip(files) {
        cmd.arg(flag).arg(path);
    }
    cmd.env("RUST_LOG", "info")
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("ecgtriage run starts")
}

#[test]
fn pipeline_devices_and_watcher_over_mqtts_archive_every_visit() {
    // The broker wants a certificate signed by its CA from every client.
    let s = tls_setup(4, true);
    let broker = &s.broker;
    let files = broker.tls_files().unwrap().clone();
    let tls_port = broker.tls_port().unwrap();
    let url = format!("mqtts://pipeline:from-env@127.0.0.1:{tls_port}");
    let dir = s.dir.path();
    let log = dir.join("pipeline.log");
    let client_tls = TlsSettings {
        ca: Some(files.ca.clone()),
        client_cert: Some((files.client_cert.clone(), files.client_key.clone())),
    };
    // A cardiologist-side client with its own certificate.
    let seen = watch_with(
        tls_port,
        Some(rumqttc::TlsConfiguration::Rustls(
            client_tls.client_config().expect("watcher TLS config"),
        )),
    );
    let mut run = pipeline(
        dir,
        &url,
        &[&files.ca, &files.client_cert, &files.client_key],
        &["--ca", "--client-cert", "--client-key"],
        &log,
    );
    wait_subscribed_log(&mut run, &log);

    let mut cfg = s.fleet(24, 5);
    cfg.broker = BrokerUrl::parse_with_tls(&broker.tls_url().unwrap(), Some(client_tls.clone()))
        .unwrap()
        .0;
    cfg.stemi_fraction = 0.5;
    let truth = run_fleet_with(
        cfg,
        FleetOptions {
            tls: Some(client_tls),
            ..FleetOptions::default()
        },
    );
    let expected: HashSet<String> = truth
        .iter()
        .map(|v| v["visit_id"].as_str().unwrap().to_owned())
        .collect();
    let got: HashSet<String> =
        wait_for_archive(&s.archive(), expected.len(), Duration::from_secs(180))
            .into_iter()
            .collect();
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
    while seen.lock().unwrap().alerts.is_empty() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let alerted: Vec<String> = seen
        .lock()
        .unwrap()
        .alerts
        .iter()
        .map(|a| a.visit_id.to_string())
        .collect();
    assert!(
        !alerted.is_empty(),
        "no alert reached the TLS watcher:\n{text}"
    );
    assert!(alerted.iter().all(|v| expected.contains(v)), "{alerted:?}");
}

#[test]
fn pipeline_refuses_a_plaintext_port_and_a_broker_of_another_ca() {
    let a = tls_setup(0, false);
    let b = tls_setup(0, false);
    let (a, b) = (&a.broker, &b.broker);
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
    wait_for_log(&mut run, &log, "start with the good CA", |l| {
        l.contains("pipeline running")
    });
    let status = sigterm(&mut run);
    assert!(status.success(), "good CA: {status}");
}
