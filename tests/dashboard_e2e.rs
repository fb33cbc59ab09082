//! The cardiologists' side end to end, through a real Mosquitto and the
//! `ecgtriage run` binary:
//! - headless Chromium (Debian's `chromium`, driven by playwright-core from
//!   tests/browser) logs in, sees an alert appear without reloading, opens
//!   the 12-lead view (screenshot kept under target/tmp), acknowledges, and
//!   the archive records the acknowledgement;
//! - an alert nobody acknowledges stays pending across a SIGKILL and a
//!   restart and is escalated to the escalation topic, and an MQTT ack ends
//!   it; both are in the archive.
//!
//! The binary is `target/<profile>/ecgtriage` (built by `cargo test
//! --workspace`; else `cargo build -p ecgtriage` first).

use std::io::BufRead as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecg_testkit::{Mosquitto, MosquittoOpts};
use ecg_wire::{Alert, AlertAck, Message};
use firmware_sim::broker::BrokerUrl;
use firmware_sim::fleet::{self, FleetConfig};
use firmware_sim::visit::StreamOpts;

fn ecgtriage() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_ecgtriage") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("ecgtriage");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p ecgtriage` first",
        bin.display()
    );
    bin
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Pipeline {
    child: Child,
}

impl Pipeline {
    fn start(dir: &Path, broker_port: u16, extra: &[&str]) -> Pipeline {
        let child = Command::new(ecgtriage())
            .arg("run")
            .arg("--broker")
            .arg(format!("mqtt://127.0.0.1:{broker_port}"))
            .arg("--archive")
            .arg(dir.join("archive"))
            .arg("--spool")
            .arg(dir.join("spool"))
            .args(["--client-id", "dash-e2e", "--log-format", "json"])
            .env(
                ecg_pipeline::config::PSEUDONYM_KEY_ENV,
                "dash-e2e-archive-key",
            )
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ecgtriage run starts");
        Pipeline { child }
    }

    fn signal(&mut self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        let t0 = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no exit after {sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `visits` STEMI visits through the broker (in a thread).
fn run_fleet(
    dir: &Path,
    broker: &Mosquitto,
    visits: u64,
    seed: u64,
) -> std::thread::JoinHandle<()> {
    let cfg = FleetConfig {
        broker: BrokerUrl::parse(&broker.url()).unwrap(),
        devices: fleet::numbered_devices(2, 2),
        visits: Some(visits),
        annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
        speed: 2.0 * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
        stemi_fraction: 1.0,
        seed,
        truth: None,
        spool_root: dir.join(format!("devices-{seed}")),
        stream: StreamOpts {
            speed: 5.0,
            ..StreamOpts::default()
        },
        progress: false,
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(fleet::run(cfg)).expect("fleet runs");
    })
}

fn query(archive: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = Command::new(ecgtriage())
        .args(["query", sql, "--format", "json", "--archive"])
        .arg(archive)
        .output()
        .expect("ecgtriage query runs");
    assert!(
        out.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("query output {text}: {e}"))
}

/// The alert ids pending in the pipeline's state file.
fn pending_ids(state: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(state).expect("state file");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["pending"]
        .as_object()
        .expect("pending map")
        .keys()
        .cloned()
        .collect()
}

/// Collects (topic, alert) from the centre's alert and escalation topics.
type Seen = Arc<Mutex<Vec<(String, Alert)>>>;

fn watch(port: u16, centre: &str) -> (Seen, rumqttc::AsyncClient) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let mut opts = MqttOptions::new(format!("watch-{centre}"), "127.0.0.1", port);
    opts.set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut ev) = AsyncClient::new(opts, 16);
    let c = client.clone();
    let filters = [
        format!("ecg/v1/alerts/{centre}"),
        format!("ecg/v1/alerts/{centre}/escalation"),
    ];
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            c.subscribe(f.clone(), QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let a = Alert::from_json(&p.payload).expect("alerts follow the schema");
                        out.lock().unwrap().push((p.topic.clone(), a));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    });
    for _ in 0..2 {
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("watcher subscribed");
    }
    (seen, client)
}

#[test]
fn unacknowledged_alert_escalates_also_after_a_restart_and_an_mqtt_ack_ends_it() {
    let broker = Mosquitto::start(MosquittoOpts::default()).expect("mosquitto starts");
    let dir = tempfile::tempdir().unwrap();
    let centre = "centre-esc";
    let (seen, client) = watch(broker.port(), centre);

    // First run: escalation far away; killed once an alert is pending.
    let mut p1 = Pipeline::start(
        dir.path(),
        broker.port(),
        &["--centre", centre, "--escalate-after-s", "3600"],
    );
    let fleet = run_fleet(dir.path(), &broker, 2, 11);
    let alert_topic = format!("ecg/v1/alerts/{centre}");
    wait_until("an alert", Duration::from_secs(180), || {
        seen.lock().unwrap().iter().any(|(t, _)| *t == alert_topic)
    });
    let alert = seen.lock().unwrap()[0].1.clone();
    let state = dir.path().join("spool").join("alerts-pending.json");
    let id = alert.alert_id.to_string();
    wait_until("the pending alert on disk", Duration::from_secs(60), || {
        state.exists() && pending_ids(&state).contains(&id)
    });
    fleet.join().unwrap();
    p1.signal("-KILL");
    let escalation_topic = format!("ecg/v1/alerts/{centre}/escalation");
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|(t, _)| *t == escalation_topic),
        "nothing may escalate within 3600 s"
    );

    // Second run: the same state, escalation after 1 s.
    let mut p2 = Pipeline::start(
        dir.path(),
        broker.port(),
        &["--centre", centre, "--escalate-after-s", "1"],
    );
    wait_until("the escalation", Duration::from_secs(120), || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(t, a)| *t == escalation_topic && a.alert_id == alert.alert_id)
    });
    let escalated: Vec<Alert> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, a)| *t == escalation_topic && a.alert_id == alert.alert_id)
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(escalated[0].escalation_level, 1);
    assert_eq!(escalated[0].visit_id, alert.visit_id);
    assert!(escalated[0].published_at > alert.published_at);
    assert!(escalated
        .windows(2)
        .all(|w| w[1].escalation_level > w[0].escalation_level));

    // A cardiologist acknowledges over MQTT; the pipeline records it.
    let ack = AlertAck {
        alert_id: alert.alert_id,
        by: "dr.mqtt".into(),
        at: time::OffsetDateTime::now_utc(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client.publish(
        format!("ecg/v1/alerts/{centre}/ack"),
        rumqttc::QoS::AtLeastOnce,
        false,
        ack.to_json(),
    ))
    .unwrap();
    wait_until("the ack to be recorded", Duration::from_secs(60), || {
        !pending_ids(&state).contains(&id)
    });
    p2.signal("-TERM");

    let archive = dir.path().join("archive");
    let acks = query(&archive, "SELECT alert_id, acked_by FROM alert_acks");
    assert!(
        acks.iter()
            .any(|r| r["alert_id"] == id.as_str() && r["acked_by"] == "dr.mqtt"),
        "{acks:?}"
    );
    let esc = query(
        &archive,
        "SELECT alert_id, escalation_level FROM alert_escalations ORDER BY escalation_level",
    );
    assert!(
        esc.iter()
            .any(|r| r["alert_id"] == id.as_str() && r["escalation_level"] == 1),
        "{esc:?}"
    );
    let alerts = query(&archive, "SELECT alert_id FROM alerts");
    assert!(alerts.iter().any(|r| r["alert_id"] == id.as_str()));
}

#[test]
fn chromium_logs_in_sees_the_alert_live_opens_the_12_lead_and_acknowledges() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "run `npm ci` in tests/browser (./run-tests.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} missing: apt-get install chromium (./run-tests.sh does)"
    );
    let broker = Mosquitto::start(MosquittoOpts::default()).expect("mosquitto starts");
    let dir = tempfile::tempdir().unwrap();
    let (user, password) = ("dr.chen", "correct horse battery staple");
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "centre = \"centre-ui\"\narchive_flush_s = 0.5\n\n[[accounts]]\nuser = \"{user}\"\npassword_hash = \"{}\"\n",
            ecg_dashboard::hash_password(password).unwrap()
        ),
    )
    .unwrap();
    let http_port = free_port();
    let mut pipeline = Pipeline::start(
        dir.path(),
        broker.port(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--http",
            &format!("127.0.0.1:{http_port}"),
        ],
    );
    wait_until("the dashboard", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", http_port)).is_ok()
    });

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-12-lead.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut node = Command::new("node")
        .arg(browser_dir.join("dashboard.js"))
        .current_dir(&browser_dir)
        .env("DASH_URL", format!("http://127.0.0.1:{http_port}"))
        .env("DASH_USER", user)
        .env("DASH_PASSWORD", password)
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let (tx, rx) = mpsc::channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(180));
    assert_eq!(
        ready.as_deref(),
        Ok("READY"),
        "the browser did not log in (see its stderr)"
    );
    // Only now do the clinics start: the alert must arrive on a page that
    // is already open.
    let fleet = run_fleet(dir.path(), &broker, 2, 5);
    let result = rx
        .recv_timeout(Duration::from_secs(400))
        .expect("the browser finished (see its stderr)");
    let status = node.wait().unwrap();
    assert!(status.success(), "browser script failed: {result}");
    let json = result.strip_prefix("RESULT ").expect("RESULT line");
    let r: serde_json::Value = serde_json::from_str(json).unwrap();
    fleet.join().unwrap();

    assert_eq!(r["leads"], 13, "12 leads and the rhythm strip: {r}");
    assert!(
        r["criteria"].as_u64().unwrap() >= 1,
        "criteria leads highlighted: {r}"
    );
    assert!(r["stRows"].as_u64().unwrap() >= 1, "ST values shown: {r}");
    assert!(r["reasons"].as_u64().unwrap() >= 1, "reasons shown: {r}");
    let png = std::fs::metadata(&screenshot).expect("screenshot written");
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
    println!("12-lead screenshot: {}", screenshot.display());

    pipeline.signal("-TERM");
    let alert_id = r["alertId"].as_str().unwrap();
    let acks = query(
        &dir.path().join("archive"),
        "SELECT alert_id, acked_by FROM alert_acks",
    );
    assert!(
        acks.iter()
            .any(|a| a["alert_id"] == alert_id && a["acked_by"] == user),
        "ack not archived: {acks:?}"
    );
    let pending = pending_ids(&dir.path().join("spool").join("alerts-pending.json"));
    assert!(
        !pending.iter().any(|p| p == alert_id),
        "still pending: {pending:?}"
    );
}
