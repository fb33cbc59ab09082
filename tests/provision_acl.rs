//! `ecgtriage devices provision` against a real private Mosquitto loaded
//! with the provisioned password file and ACL: each identity can do its job
//! and nothing else.
//!
//! "Not delivered" is never judged by a bare timeout: after the forbidden
//! message, an allowed message follows on a path that would deliver after
//! it (same publisher, or a publish already routed), so by the time the
//! allowed one arrives the forbidden one would have arrived too.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ecg_testkit::{Mosquitto, MosquittoOpts};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// What one provisioning run produced, read back from its CSV files.
struct Provisioned {
    devices: Vec<(String, String)>,
    services: HashMap<String, (String, String)>,
}

fn provision(dir: &Path, count: usize, extra: &[&str]) -> Provisioned {
    let out = Command::new(env!("CARGO_BIN_EXE_ecgtriage"))
        .args([
            "devices",
            "provision",
            "--count",
            &count.to_string(),
            "--out",
        ])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let devices: Vec<(String, String)> = std::fs::read_to_string(dir.join("devices.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (d, p) = l.split_once(',').unwrap();
            (d.to_owned(), p.to_owned())
        })
        .collect();
    let services = std::fs::read_to_string(dir.join("services.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<_> = l.split(',').collect();
            (f[0].to_owned(), (f[1].to_owned(), f[2].to_owned()))
        })
        .collect();
    // Secrets never reach the terminal.
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (_, p) in &devices {
        assert!(!printed.contains(p.as_str()), "a password was printed");
    }
    Provisioned { devices, services }
}

/// A connected MQTT client whose received publishes arrive on a channel.
struct Client {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

async fn connect(port: u16, id: &str, user: &str, password: &str) -> Result<Client, String> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_credentials(user, password)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    // The first poll carries the CONNACK: a refusal shows up here.
    match tokio::time::timeout(WAIT, eventloop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
        Ok(Ok(other)) => return Err(format!("unexpected first event {other:?}")),
        Ok(Err(e)) => return Err(format!("{e}")),
        Err(_) => return Err("no CONNACK".into()),
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let client_id = id.to_owned();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(ev) => {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                Err(e) => panic!("{client_id}: connection lost: {e}"),
            }
        }
    });
    Ok(Client { client, rx, task })
}

impl Client {
    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        self.wait_for(|ev| matches!(ev, Event::Incoming(Packet::SubAck(_))))
            .await;
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    async fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
        self.wait_for(|ev| matches!(ev, Event::Incoming(Packet::PubAck(_))))
            .await;
    }

    /// Topics and payloads received until `until` arrives (inclusive).
    async fn received_until(&mut self, until: &str) -> Vec<(String, Vec<u8>)> {
        let mut got = Vec::new();
        loop {
            let ev = self.next().await;
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let done = p.topic == until;
                got.push((p.topic, p.payload.to_vec()));
                if done {
                    return got;
                }
            }
        }
    }

    async fn wait_for(&mut self, want: impl Fn(&Event) -> bool) {
        loop {
            let ev = self.next().await;
            if want(&ev) {
                return;
            }
            // A publish arriving while waiting for an ack would be lost here;
            // tests only subscribe/publish when nothing is in flight to them.
            assert!(
                !matches!(ev, Event::Incoming(Packet::Publish(_))),
                "unexpected delivery while waiting: {ev:?}"
            );
        }
    }

    async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("broker answered in time")
            .expect("event loop alive")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pipeline's identity subscribed to what devices send (not the
/// results it publishes itself) and to acknowledgements.
async fn pipeline_reading_input_and_acks(port: u16, user: &str, password: &str) -> Client {
    let mut pipeline = connect(port, "t-pipeline", user, password).await.unwrap();
    for kind in ["meta", "chunk", "end"] {
        pipeline
            .subscribe(&format!("ecg/v1/dev/+/visit/+/{kind}"))
            .await;
    }
    pipeline.subscribe("ecg/v1/alerts/+/ack").await;
    pipeline
}

fn start_broker(dir: &Path) -> Mosquitto {
    Mosquitto::start(MosquittoOpts {
        password_file: Some(dir.join("mosquitto.passwd")),
        acl: Some(std::fs::read_to_string(dir.join("mosquitto.acl")).unwrap()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Publishes `topic` at QoS 1 on a connection of its own and reports what
/// became of it. Mosquitto 2.0 acknowledges a denied QoS 1 publish and then
/// drops the client, so forbidden publishes never share the test's main
/// connections.
async fn publish_on_own_connection(
    port: u16,
    id: &str,
    user: &str,
    password: &str,
    topic: &str,
) -> String {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_credentials(user, password);
    let (client, mut eventloop) = AsyncClient::new(opts, 4);
    client
        .publish(topic, QoS::AtLeastOnce, false, b"forged".to_vec())
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                // Give the broker its chance to drop us before we leave.
                match tokio::time::timeout(Duration::from_millis(300), eventloop.poll()).await {
                    Ok(Err(e)) => return format!("acked then disconnected ({e})"),
                    _ => return "acked".into(),
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("disconnected ({e})"),
            Err(_) => return "no answer".into(),
        }
    }
}

/// Prints the broker's log when a test fails, while the broker still exists.
struct LogOnPanic<'a>(&'a Mosquitto);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("broker log:\n{}", self.0.log());
        }
    }
}

fn topics(got: &[(String, Vec<u8>)]) -> Vec<&str> {
    got.iter().map(|(t, _)| t.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_acl_confines_devices_and_services() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    let p = provision(&creds, 3, &[]);
    assert_eq!(p.devices.len(), 3);
    let broker = start_broker(&creds);
    let _log = LogOnPanic(&broker);
    let port = broker.port();
    let (dev1, dev1_pw) = &p.devices[0];
    let (dev2, _) = &p.devices[1];
    let (pipe_user, pipe_pw) = &p.services["pipeline"];
    let (card_user, card_pw) = &p.services["cardiologist"];
    let (op_user, op_pw) = &p.services["operator"];
    assert!(!p.services.contains_key("replay"), "made only on request");
    let visit = "0f7d0a36-5d3c-4ac8-9f3e-2a4f5b6c7d8e";

    let mut pipeline = pipeline_reading_input_and_acks(port, pipe_user, pipe_pw).await;
    let mut device = connect(port, "t-dev1", dev1, dev1_pw).await.unwrap();
    let mut cardio = connect(port, "t-cardio", card_user, card_pw).await.unwrap();
    // The device and the cardiologist both try to read what is not theirs.
    device.subscribe("ecg/v1/alerts/#").await;
    device
        .subscribe(&format!("ecg/v1/dev/{dev1}/visit/+/result"))
        .await;
    cardio.subscribe("ecg/v1/dev/#").await;
    cardio.subscribe("ecg/v1/alerts/+").await;
    // Dead letters are the operator's alone; the operator asks for all.
    let deadletter = "ecg/v1/deadletter";
    device.subscribe(deadletter).await;
    cardio.subscribe(deadletter).await;
    let mut operator = connect(port, "t-operator", op_user, op_pw).await.unwrap();
    operator.subscribe("ecg/v1/#").await;

    // A device speaks for itself only: the forged chunk goes first, so it
    // would reach the pipeline before the genuine one.
    let forged = format!("ecg/v1/dev/{dev2}/visit/{visit}/chunk");
    let own = format!("ecg/v1/dev/{dev1}/visit/{visit}/chunk");
    let outcome = publish_on_own_connection(port, "t-dev1-forger", dev1, dev1_pw, &forged).await;
    eprintln!("forged publish: {outcome}");
    device.publish(&own, b"chunk-0").await;
    let got = pipeline.received_until(&own).await;
    assert_eq!(
        got,
        vec![(own.clone(), b"chunk-0".to_vec())],
        "pipeline must see the device's own chunk and nothing forged"
    );

    // A dead letter, an alert from the pipeline, then the device's result:
    // the device gets its result but neither the dead letter nor the alert,
    // which were delivered to it first if at all.
    let alert = "ecg/v1/alerts/county-cpc";
    let result = format!("ecg/v1/dev/{dev1}/visit/{visit}/result");
    pipeline.publish(deadletter, b"{\"dead\":1}").await;
    pipeline.publish(alert, b"{\"alert\":1}").await;
    pipeline.publish(&result, b"{\"result\":1}").await;
    pipeline.publish(deadletter, b"{\"dead\":2}").await;
    let got = device.received_until(&result).await;
    assert_eq!(
        topics(&got),
        [result.as_str()],
        "device must not read alerts or dead letters"
    );

    // The cardiologist reads the alert, and neither the device's chunk, which
    // the broker had routed before the alert was published, nor the dead
    // letter published before it.
    let got = cardio.received_until(alert).await;
    assert_eq!(got, vec![(alert.to_owned(), b"{\"alert\":1}".to_vec())]);

    // The operator reads the dead letters and nothing between them (the
    // alert, the result) or before them (the device's chunk).
    let got = operator.received_until(deadletter).await;
    assert_eq!(got, vec![(deadletter.to_owned(), b"{\"dead\":1}".to_vec())]);
    let got = operator.received_until(deadletter).await;
    assert_eq!(got, vec![(deadletter.to_owned(), b"{\"dead\":2}".to_vec())]);

    // The ack reaches the pipeline; a cardiologist posing as a device does not.
    let ack = "ecg/v1/alerts/county-cpc/ack";
    let posing = format!("ecg/v1/dev/{card_user}/visit/{visit}/chunk");
    publish_on_own_connection(port, "t-cardio-posing", card_user, card_pw, &posing).await;
    cardio.publish(ack, b"{\"ack\":1}").await;
    let got = pipeline.received_until(ack).await;
    assert_eq!(got, vec![(ack.to_owned(), b"{\"ack\":1}".to_vec())]);

    // A device can neither write its own result nor acknowledge an alert;
    // the operator can write nothing at all.
    let end = format!("ecg/v1/dev/{dev1}/visit/{visit}/end");
    publish_on_own_connection(port, "t-dev1-result", dev1, dev1_pw, &result).await;
    publish_on_own_connection(port, "t-dev1-ack", dev1, dev1_pw, ack).await;
    let op_chunk = format!("ecg/v1/dev/{dev1}/visit/{visit}/chunk");
    publish_on_own_connection(port, "t-op-chunk", op_user, op_pw, &op_chunk).await;
    publish_on_own_connection(port, "t-op-ack", op_user, op_pw, ack).await;
    device.publish(&end, b"end").await;
    let got = pipeline.received_until(&end).await;
    assert_eq!(topics(&got), [end.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_unknown_credentials_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    let p = provision(&creds, 2, &[]);
    let broker = start_broker(&creds);
    let (dev1, dev1_pw) = &p.devices[0];
    let (_, dev2_pw) = &p.devices[1];

    assert!(connect(broker.port(), "ok", dev1, dev1_pw).await.is_ok());
    for (id, user, pw) in [
        ("wrong", dev1.as_str(), "not-the-password"),
        ("other", dev1.as_str(), dev2_pw.as_str()),
        ("unknown", "dev-9999", dev1_pw.as_str()),
        ("anon", "", ""),
    ] {
        let err = connect(broker.port(), id, user, pw)
            .await
            .err()
            .unwrap_or_else(|| panic!("{id}: connection accepted"));
        assert!(
            err.contains("refused") || err.contains("Refused"),
            "{id}: {err}"
        );
    }
    // The refusals were the broker's doing, and logged as such.
    assert!(broker.log().contains("not authorised"), "{}", broker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_user_writes_any_devices_input_and_reads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    let p = provision(&creds, 2, &["--replay"]);
    let broker = start_broker(&creds);
    let _log = LogOnPanic(&broker);
    let port = broker.port();
    let (dev2, dev2_pw) = &p.devices[1];
    let (pipe_user, pipe_pw) = &p.services["pipeline"];
    let (card_user, card_pw) = &p.services["cardiologist"];
    let (op_user, op_pw) = &p.services["operator"];
    let (replay_user, replay_pw) = &p.services["replay"];
    assert_eq!(replay_user, "replay");
    let visit = "0f7d0a36-5d3c-4ac8-9f3e-2a4f5b6c7d8e";
    let result = format!("ecg/v1/dev/{dev2}/visit/{visit}/result");
    let alert = "ecg/v1/alerts/county-cpc";
    let ack = "ecg/v1/alerts/county-cpc/ack";
    let deadletter = "ecg/v1/deadletter";

    // Each topic the replay must not write has a reader that may read it.
    let mut pipeline = pipeline_reading_input_and_acks(port, pipe_user, pipe_pw).await;
    let mut device = connect(port, "t-dev2", dev2, dev2_pw).await.unwrap();
    device.subscribe(&result).await;
    let mut cardio = connect(port, "t-cardio", card_user, card_pw).await.unwrap();
    cardio.subscribe(alert).await;
    let mut operator = connect(port, "t-operator", op_user, op_pw).await.unwrap();
    operator.subscribe(deadletter).await;
    let mut replay = connect(port, "t-replay", replay_user, replay_pw)
        .await
        .unwrap();
    replay.subscribe("ecg/v1/#").await;

    // The replay reads nothing: what the pipeline published (and was
    // acknowledged) before the replay's own publish would reach the replay
    // before its PUBACK, and `publish` fails on any delivery while it waits.
    for topic in [result.as_str(), alert, deadletter] {
        pipeline.publish(topic, b"first").await;
    }
    let mut sent = Vec::new();
    for kind in ["meta", "chunk", "end"] {
        let topic = format!("ecg/v1/dev/{dev2}/visit/{visit}/{kind}");
        replay.publish(&topic, kind.as_bytes()).await;
        sent.push((topic, kind.as_bytes().to_vec()));
    }
    let got = pipeline.received_until(&sent[2].0).await;
    assert_eq!(got, sent, "the replay writes any device's input");

    // It writes nothing else: each forbidden write goes first, then an
    // allowed message on the same path, which arrives after it if it did.
    for (i, topic) in [result.as_str(), alert, ack, deadletter].iter().enumerate() {
        let id = format!("t-replay-forbidden-{i}");
        publish_on_own_connection(port, &id, replay_user, replay_pw, topic).await;
    }
    for topic in [result.as_str(), alert, deadletter] {
        pipeline.publish(topic, b"second").await;
    }
    for (reader, topic) in [
        (&mut device, result.as_str()),
        (&mut cardio, alert),
        (&mut operator, deadletter),
    ] {
        let got = reader.received_until(topic).await;
        assert_eq!(got, vec![(topic.to_owned(), b"first".to_vec())]);
        let got = reader.received_until(topic).await;
        assert_eq!(got, vec![(topic.to_owned(), b"second".to_vec())], "{topic}");
    }
    // The cardiologist's ack follows the forbidden one on its way.
    cardio.publish(ack, b"ack").await;
    let got = pipeline.received_until(ack).await;
    assert_eq!(got, vec![(ack.to_owned(), b"ack".to_vec())]);
}
