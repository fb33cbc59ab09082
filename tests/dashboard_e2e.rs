//! The cardiologists' side end to end, through a real Mosquitto (with the
//! shared harness's passwords and ACL) and the `ecgtriage run` binary:
//! - headless Chromium (Debian's `chromium`, driven by playwright-core from
//!   tests/browser) logs in, sees an alert appear without reloading, opens
//!   the 12-lead view (screenshot kept under the target's tmp folder),
//!   acknowledges it as a confirmed STEMI, opens the figures page, and the
//!   archive records the acknowledgement with its verdict;
//! - an alert nobody acknowledges stays pending across a SIGKILL and a
//!   restart and is escalated to the escalation topic, and an MQTT ack ends
//!   it; both are in the archive, and `ecgtriage export` writes the visit.

mod common;

use std::io::BufRead as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use ecg_wire::{Alert, AlertAck, Message, Verdict};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// Kills a pipeline at once (no graceful stop).
fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A fleet of `visits` visits, every one a STEMI.
fn stemi_fleet(
    s: &Setup,
    visits: u64,
    seed: u64,
) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    let mut cfg = s.fleet(visits, seed);
    cfg.stemi_fraction = 1.0;
    spawn_fleet(cfg)
}

/// The alert ids pending in the pipeline's book (`state` is its snapshot;
/// the journal beside it is read too).
fn pending_ids(state: &Path) -> Vec<String> {
    ecg_pipeline::lifecycle::read_pending(state)
        .expect("the pending-alert book reads")
        .into_iter()
        .map(|p| p.alert.alert_id.to_string())
        .collect()
}

#[test]
fn unacknowledged_alert_escalates_also_after_a_restart_and_an_mqtt_ack_ends_it() {
    let s = Setup::with_cardiologists(2);
    let (seen, client) = watch_as_cardiologist(s.broker.port());
    let data = s.dir.path();

    // First run: escalation far away; killed once an alert is pending.
    let mut p1 = s.start_pipeline_in(data, &["--escalate-after-s", "3600"]);
    let fleet = stemi_fleet(&s, 2, 11);
    let alert_topic = format!("ecg/v1/alerts/{CENTRE}");
    wait_until("an alert", Duration::from_secs(180), || {
        seen.lock().unwrap().iter().any(|(t, _)| *t == alert_topic)
    });
    let alert: Alert = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(t, _)| *t == alert_topic)
        .unwrap()
        .1
        .clone();
    let state = data.join("spool").join("alerts-pending.json");
    let id = alert.alert_id.to_string();
    wait_until("the pending alert on disk", Duration::from_secs(60), || {
        pending_ids(&state).contains(&id)
    });
    fleet.join().unwrap();
    sigkill(&mut p1);
    let escalation_topic = format!("ecg/v1/alerts/{CENTRE}/escalation");
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|(t, _)| *t == escalation_topic),
        "nothing may escalate within 3600 s"
    );

    // Second run: the same state, escalation after 1 s.
    let mut p2 = s.start_pipeline_in(data, &["--escalate-after-s", "1"]);
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

    // A cardiologist acknowledges over MQTT, calling it a false alarm; the
    // pipeline records it.
    let ack = AlertAck {
        alert_id: alert.alert_id,
        by: "dr.mqtt".into(),
        at: ecg_query::archive::time::OffsetDateTime::now_utc(),
        verdict: Some(Verdict::FalseAlarm),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client.publish(
        format!("ecg/v1/alerts/{CENTRE}/ack"),
        rumqttc::QoS::AtLeastOnce,
        false,
        ack.to_json(),
    ))
    .unwrap();
    wait_until("the ack to be recorded", Duration::from_secs(60), || {
        !pending_ids(&state).contains(&id)
    });
    assert!(sigterm(&mut p2).success());

    let archive = s.archive();
    let acks = query(
        &archive,
        "SELECT alert_id, acked_by, verdict FROM alert_acks",
    );
    assert!(
        acks.iter().any(|r| r["alert_id"] == id.as_str()
            && r["acked_by"] == "dr.mqtt"
            && r["verdict"] == "false_alarm"),
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
    // The figures count it: escalated, acknowledged, a false alarm.
    let t = query(
        &archive,
        &format!("SELECT escalated_to, verdict, acked_by, alert_to_ack_s FROM alert_timeline WHERE alert_id = '{id}'"),
    );
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0]["escalated_to"].as_u64().unwrap() >= 1);
    assert_eq!(t[0]["verdict"], "false_alarm");
    assert!(t[0]["alert_to_ack_s"].as_f64().unwrap() > 0.0);
    let f = query(
        &archive,
        &format!(
            "SELECT sum(false_alarms) AS f, sum(escalated) AS e FROM centre_figures WHERE clinic_id = '{}'",
            alert.clinic_id
        ),
    );
    assert!(f[0]["f"].as_u64().unwrap() >= 1, "{f:?}");
    assert!(f[0]["e"].as_u64().unwrap() >= 1, "{f:?}");

    // `ecgtriage export`: the visit as a WFDB record that `analyze` reads.
    let out_dir = data.join("export");
    let out = Command::new(ecgtriage())
        .args([
            "export",
            &alert.visit_id.to_string(),
            "--format",
            "wfdb",
            "--archive",
        ])
        .arg(&archive)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let analyzed = Command::new(ecgtriage())
        .args(["analyze", &record, "--json"])
        .output()
        .unwrap();
    assert!(
        analyzed.status.success(),
        "{}",
        String::from_utf8_lossy(&analyzed.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&analyzed.stdout).unwrap();
    // The exported record is the archived one: same 12 leads, same rate.
    assert!(!a["leads"].as_object().unwrap().is_empty(), "{a}");
    let hea = std::fs::read_to_string(format!("{record}.hea")).unwrap();
    assert!(
        hea.lines().next().unwrap().split(' ').nth(1) == Some("12"),
        "{hea}"
    );
    let fhir = Command::new(ecgtriage())
        .args([
            "export",
            &alert.visit_id.to_string(),
            "--format",
            "fhir",
            "--archive",
        ])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(fhir.status.success());
    let obs: serde_json::Value = serde_json::from_slice(&fhir.stdout).unwrap();
    assert_eq!(obs["resourceType"], "Observation");
    assert_eq!(obs["component"].as_array().unwrap().len(), 12);
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
    let s = Setup::with_cardiologists(2);
    let data = s.dir.path();
    let (user, password) = ("dr.chen", "correct horse battery staple");
    let config = data.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "archive_flush_s = 0.5\n\n[[accounts]]\nuser = \"{user}\"\npassword_hash = \"{}\"\n",
            ecg_dashboard::hash_password(password).unwrap()
        ),
    )
    .unwrap();
    let http_port = free_port();
    let mut pipeline = s.start_pipeline_in(
        data,
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
    let figures_shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-figures.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut node = Command::new("node")
        .arg(browser_dir.join("dashboard.js"))
        .current_dir(&browser_dir)
        .env("DASH_URL", format!("http://127.0.0.1:{http_port}"))
        .env("DASH_USER", user)
        .env("DASH_PASSWORD", password)
        .env("SCREENSHOT", &screenshot)
        .env("FIGURES_SCREENSHOT", &figures_shot)
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
    let fleet = stemi_fleet(&s, 2, 5);
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
    assert!(
        r["status"].as_str().unwrap().contains("(confirmed)"),
        "verdict shown: {r}"
    );
    assert!(
        r["figureRows"].as_u64().unwrap() >= 1,
        "the figures page lists the month: {r}"
    );
    let png = std::fs::metadata(&screenshot).expect("screenshot written");
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
    println!("12-lead screenshot: {}", screenshot.display());

    assert!(sigterm(&mut pipeline).success());
    let alert_id = r["alertId"].as_str().unwrap();
    let acks = query(
        &s.archive(),
        "SELECT alert_id, acked_by, verdict FROM alert_acks",
    );
    assert!(
        acks.iter().any(|a| a["alert_id"] == alert_id
            && a["acked_by"] == user
            && a["verdict"] == "confirmed"),
        "ack not archived: {acks:?}"
    );
    let pending = pending_ids(&data.join("spool").join("alerts-pending.json"));
    assert!(
        !pending.iter().any(|p| p == alert_id),
        "still pending: {pending:?}"
    );
}
