//! What the end-to-end tests share: a private Mosquitto with per-device
//! passwords and an ACL, `ecgtriage run` as a child process, an alert
//! watcher, firmware-sim's fleet, and the checks against its truth file.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecg_testkit::{Mosquitto, MosquittoOpts, TlsOpts};
use ecg_wire::{Alert, Message, SamplesDigest};
use firmware_sim::broker::BrokerUrl;
use firmware_sim::fleet::{self, DeviceSpec, FleetConfig, FleetOptions};
use firmware_sim::visit::StreamOpts;

pub const PIPELINE_PASSWORD: &str = "pipeline-secret";
pub const WATCHER_PASSWORD: &str = "watcher-secret";
pub const CENTRE: &str = "centre-e2e";
pub const ARCHIVE_KEY: &str = "e2e-archive-pseudonym-key";

pub fn ecgtriage() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ecgtriage"))
}

/// Devices may only speak for themselves; the pipeline reads every device
/// and writes results, alerts and dead letters; the watcher reads alerts
/// and dead letters.
pub const ACL: &str = "\
pattern write ecg/v1/dev/%u/visit/+/meta
pattern write ecg/v1/dev/%u/visit/+/chunk
pattern write ecg/v1/dev/%u/visit/+/end
pattern read ecg/v1/dev/%u/visit/+/result
user pipeline
topic read ecg/v1/dev/#
topic write ecg/v1/dev/+/visit/+/result
topic write ecg/v1/alerts/+
topic write ecg/v1/deadletter
user watcher
topic read ecg/v1/alerts/#
topic read ecg/v1/deadletter
";

pub struct Setup {
    pub broker: Mosquitto,
    pub devices: Vec<DeviceSpec>,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// A broker with `devices` numbered devices (4 clinics), plus the
    /// pipeline, the watcher and `extra_users`, under [`ACL`].
    pub fn new(devices: usize, extra_users: &[(&str, &str)]) -> Setup {
        Setup::with_broker(devices, extra_users, "", None)
    }

    /// [`Setup::new`] with `extra_acl` appended to [`ACL`] and, when
    /// `tls` is set, a second, TLS-only listener.
    pub fn with_broker(
        devices: usize,
        extra_users: &[(&str, &str)],
        extra_acl: &str,
        tls: Option<TlsOpts>,
    ) -> Setup {
        let mut devices = fleet::numbered_devices(devices, 4);
        let mut users = vec![
            ("pipeline".to_owned(), PIPELINE_PASSWORD.to_owned()),
            ("watcher".to_owned(), WATCHER_PASSWORD.to_owned()),
        ];
        for (u, p) in extra_users {
            users.push(((*u).to_owned(), (*p).to_owned()));
        }
        for (i, d) in devices.iter_mut().enumerate() {
            let p = format!("pw-{i}-device");
            d.password = Some(p.clone());
            users.push((d.device_id.to_string(), p));
        }
        let broker = Mosquitto::start(MosquittoOpts {
            users,
            acl: Some(format!("{ACL}{extra_acl}")),
            tls,
            ..Default::default()
        })
        .expect("mosquitto starts (install mosquitto to run this test)");
        Setup {
            broker,
            devices,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// `ecgtriage run` with its archive and spool in the test's folder.
    pub fn start_pipeline(&self) -> Child {
        self.start_pipeline_in(self.dir.path(), &[])
    }

    /// `ecgtriage run` with archive and spool under `data`, plus `extra`
    /// flags; returns once the broker keeps the devices' messages for it
    /// (see [`wait_ready`]). Its log goes on to the test's stderr.
    pub fn start_pipeline_in(&self, data: &Path, extra: &[&str]) -> Child {
        let url = self.broker.url_with("pipeline", "not-this-one");
        let mut child = pipeline_command(&url, data)
            .args(["--log-format", "json"])
            .args(if extra.contains(&"--visit-timeout-s") {
                &[][..]
            } else {
                &["--visit-timeout-s", "30"][..]
            })
            .args(extra)
            // Ingest's connection lines are what tells that it is ready.
            .env("RUST_LOG", "warn,ecg_ingest::source=info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("ecgtriage run starts");
        wait_ready(&mut child);
        child
    }

    /// The fleet's settings: `visits` visits at about 12 arrivals a
    /// second, each 10 s ECG streamed in 0.5 s, a quarter STEMI.
    pub fn fleet(&self, visits: u64, seed: u64) -> FleetConfig {
        fleet_config(
            &self.broker.url(),
            self.devices.clone(),
            self.dir.path(),
            visits,
            seed,
        )
    }
}

/// `ecgtriage run` against `broker_url` (its password comes from the
/// environment, [`PIPELINE_PASSWORD`]) with archive and spool under
/// `data`, logging warnings to the inherited stderr; callers add flags and
/// may redirect stderr or change `RUST_LOG` before spawning.
pub fn pipeline_command(broker_url: &str, data: &Path) -> Command {
    let mut cmd = Command::new(ecgtriage());
    cmd.args(["run", "--broker", broker_url])
        .arg("--archive")
        .arg(data.join("archive"))
        .arg("--spool")
        .arg(data.join("spool"))
        .args(["--centre", CENTRE, "--client-id", "e2e-pipeline"])
        .env(ecg_pipeline::config::PASSWORD_ENV, PIPELINE_PASSWORD)
        .env(ecg_pipeline::config::PSEUDONYM_KEY_ENV, ARCHIVE_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

pub fn fleet_config(
    url: &str,
    devices: Vec<DeviceSpec>,
    dir: &Path,
    visits: u64,
    seed: u64,
) -> FleetConfig {
    FleetConfig {
        broker: BrokerUrl::parse(url).unwrap(),
        devices,
        visits: Some(visits),
        annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
        speed: 12.0 * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
        stemi_fraction: 0.25,
        seed,
        truth: Some(dir.join(format!("truth-{seed}.jsonl"))),
        spool_root: dir.join(format!("devices-{seed}")),
        stream: StreamOpts {
            speed: 20.0,
            ..StreamOpts::default()
        },
        progress: false,
    }
}

/// Runs a fleet to its end (blocking) and returns its truth lines.
pub fn run_fleet(cfg: FleetConfig) -> Vec<serde_json::Value> {
    run_fleet_with(cfg, FleetOptions::default())
}

/// [`run_fleet`] with TLS or a clinic pseudonym key.
pub fn run_fleet_with(cfg: FleetConfig, opts: FleetOptions) -> Vec<serde_json::Value> {
    let truth = cfg.truth.clone().expect("a truth file");
    let visits = cfg.visits.expect("a visit count");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt.block_on(fleet::run_with(cfg, opts)).expect("fleet runs");
    assert_eq!(summary.visits, visits);
    std::fs::read_to_string(truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs a fleet on a thread.
pub fn spawn_fleet(cfg: FleetConfig) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    std::thread::spawn(move || run_fleet(cfg))
}

/// What the watcher saw.
#[derive(Default)]
pub struct Watched {
    pub alerts: Vec<Alert>,
    pub dead_letters: Vec<serde_json::Value>,
    /// SUBACKs received: 2 once both subscriptions are in place.
    pub subacks: usize,
}

/// Waits until the watcher's subscriptions are in place, so that nothing
/// published afterwards can pass it by.
pub fn wait_subscribed(seen: &Mutex<Watched>) {
    let t0 = Instant::now();
    while seen.lock().unwrap().subacks < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the watcher did not subscribe"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Subscribes as `watcher` with a persistent session and collects alerts
/// and dead letters.
pub fn watch(port: u16) -> Arc<Mutex<Watched>> {
    watch_with(port, None)
}

/// [`watch`], over TLS when `tls` is given (then `port` is the broker's
/// TLS port).
pub fn watch_with(port: u16, tls: Option<rumqttc::TlsConfiguration>) -> Arc<Mutex<Watched>> {
    let seen = Arc::new(Mutex::new(Watched::default()));
    let out = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
            let mut opts = MqttOptions::new("e2e-watcher", "127.0.0.1", port);
            opts.set_credentials("watcher", WATCHER_PASSWORD)
                .set_clean_session(false)
                .set_max_packet_size(1024 * 1024, 1024 * 1024);
            if let Some(tls) = tls {
                opts.set_transport(Transport::tls_with_config(tls));
            }
            let (client, mut ev) = AsyncClient::new(opts, 16);
            client
                .subscribe("ecg/v1/alerts/+", QoS::AtLeastOnce)
                .await
                .unwrap();
            client
                .subscribe("ecg/v1/deadletter", QoS::AtLeastOnce)
                .await
                .unwrap();
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic == "ecg/v1/deadletter" {
                            let v =
                                serde_json::from_slice(&p.payload).expect("dead letters are JSON");
                            out.lock().unwrap().dead_letters.push(v);
                        } else {
                            let a = Alert::from_json(&p.payload).expect("alerts follow the schema");
                            assert_eq!(p.topic, format!("ecg/v1/alerts/{CENTRE}"));
                            out.lock().unwrap().alerts.push(a);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => out.lock().unwrap().subacks += 1,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    });
    seen
}

/// `ecgtriage archive verify --json`: whether it passed, and its report.
pub fn verify_archive(archive: &Path) -> (bool, serde_json::Value) {
    let out = Command::new(ecgtriage())
        .args(["archive", "verify", "--json", "--archive"])
        .arg(archive)
        .output()
        .expect("ecgtriage archive verify runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "archive verify printed {text:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

pub fn query(archive: &Path, sql: &str) -> Vec<serde_json::Value> {
    try_query(archive, sql).unwrap_or_else(|e| panic!("query failed: {e}"))
}

/// [`query`], its failure returned: a query may trip over a file that a
/// compaction running meanwhile retires (README, "Small files").
pub fn try_query(archive: &Path, sql: &str) -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new(ecgtriage())
        .args(["query", sql, "--format", "json", "--archive"])
        .arg(archive)
        .output()
        .expect("ecgtriage query runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("query output {text}: {e}")))
}

pub fn archived_ids(archive: &Path) -> Vec<String> {
    if !archive.join("visits").exists() {
        return Vec::new();
    }
    try_query(archive, "SELECT visit_id FROM visits")
        .unwrap_or_else(|e| panic!("query failed: {e}"))
        .into_iter()
        .map(|r| r["visit_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether a line of the pipeline's log says that the broker now keeps the
/// devices' messages for it: its subscription was confirmed, or it resumed
/// a session that has one. A device message published before that has no
/// session to wait in and is dropped by the broker, as MQTT says.
fn says_ready(line: &str) -> bool {
    line.contains("subscribed")
        || (line.contains("connected to broker")
            && (line.contains("session_present=true") || line.contains("\"session_present\":true")))
}

/// Reads the stderr of a pipeline started by [`Setup::start_pipeline_in`]
/// on a thread that passes every line on to the test's stderr, and waits
/// until a line [`says_ready`].
fn wait_ready(run: &mut Child) {
    use std::io::BufRead;
    let stderr = run.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if says_ready(&line) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    let t0 = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the pipeline's stderr closed before it was ready (it exited?)")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        assert!(
            run.try_wait().unwrap().is_none(),
            "the pipeline exited before it was ready"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the pipeline was not ready within 60 s"
        );
    }
}

/// Waits until the pipeline writing `log` (at level info or below) is
/// subscribed (see [`says_ready`]).
pub fn wait_subscribed_log(run: &mut Child, log: &Path) {
    wait_for_log(run, log, "subscribe", says_ready);
}

/// Waits until a line of `log`, written by `run`, passes `found`; panics
/// with the log if `run` exits first or after 60 s, naming `what` it
/// waited for.
pub fn wait_for_log(run: &mut Child, log: &Path, what: &str, found: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(&found) {
            return;
        }
        assert!(
            run.try_wait().unwrap().is_none(),
            "the pipeline exited before it could {what}:\n{text}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the pipeline did not {what} within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `n` distinct visits are archived (or `timeout`, after which
/// the caller's checks say what is missing).
pub fn wait_for_archive(archive: &Path, n: usize, timeout: Duration) -> Vec<String> {
    wait_for_archived(archive, timeout, |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= n
    })
}

/// Waits until every visit of `truth` is archived (or `timeout`), whatever
/// else is: a count would also count visits of devices not in `truth`.
pub fn wait_for_visits(
    archive: &Path,
    truth: &[serde_json::Value],
    timeout: Duration,
) -> Vec<String> {
    wait_for_archived(archive, timeout, |ids| {
        let archived: HashSet<&str> = ids.iter().map(String::as_str).collect();
        truth.iter().all(|t| {
            t["visit_id"]
                .as_str()
                .is_some_and(|id| archived.contains(id))
        })
    })
}

/// The archived visit ids once `enough` says so, or at `timeout`.
fn wait_for_archived(
    archive: &Path,
    timeout: Duration,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let ids = archived_ids(archive);
        if enough(&ids) || t0.elapsed() > timeout {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sends SIGTERM (once the child catches it) and waits up to a minute for
/// the exit.
pub fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    wait_until_catching_sigterm(child);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_exit(child, Duration::from_secs(60)).expect("no exit 60 s after SIGTERM")
}

/// Waits for the child to exit on its own; kills it after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if t0.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the child has installed its SIGTERM handler (Linux: bit 15
/// of `SigCgt` in /proc/PID/status), so a SIGTERM sent right after a start
/// tests the graceful stop and not the default action. Returns at once
/// where /proc is missing, or if the child has exited.
fn wait_until_catching_sigterm(child: &mut Child) {
    let status = format!("/proc/{}/status", child.id());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        let Ok(text) = std::fs::read_to_string(&status) else {
            return;
        };
        let caught = text
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok());
        match caught {
            Some(mask) if mask & (1 << (15 - 1)) != 0 => return,
            None => return,
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("the child did not install a SIGTERM handler within 60 s");
}

/// Every truth visit archived exactly once, complete and bit-exact, and
/// nothing else archived.
pub fn check_archive(archive: &Path, truth: &[serde_json::Value], ids: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "archived more than once: {twice:?}");
    let known: HashSet<&str> = truth
        .iter()
        .map(|t| t["visit_id"].as_str().unwrap())
        .collect();
    let strangers: Vec<_> = counts.keys().filter(|id| !known.contains(*id)).collect();
    assert!(
        strangers.is_empty(),
        "archived but never sent: {strangers:?}"
    );
    for t in truth {
        let id = t["visit_id"].as_str().unwrap();
        assert_eq!(counts.get(id), Some(&1), "visit {id} not archived");
        let samples = ecg_archive::read_visit_samples(archive, id).expect("samples read back");
        let digest = SamplesDigest::of_leads(samples.iter().map(Vec::as_slice));
        assert_eq!(
            digest.to_string(),
            t["samples_sha256"].as_str().unwrap(),
            "visit {id}: samples differ from the truth"
        );
        assert_eq!(samples[0].len() as u64, t["n_samples"].as_u64().unwrap());
    }
    let incomplete = query(
        archive,
        "SELECT visit_id, status FROM visits WHERE NOT complete",
    );
    assert!(
        incomplete.is_empty(),
        "not archived complete: {incomplete:?}"
    );
}

/// [`check_archive`], plus: every visit that the interpretation flags on the
/// archived samples alone (gain from the visits table) has an alert, and at
/// least one is flagged (else the check would prove nothing).
pub fn check_all(archive: &Path, truth: &[serde_json::Value], ids: &[String], alerts: &[Alert]) {
    check_archive(archive, truth, ids);
    // The operator's own check agrees: every file reads whole, every visit
    // rebuilds to the digest its device sent, nothing is there twice.
    let (ok, report) = verify_archive(archive);
    assert!(ok, "ecgtriage archive verify found errors: {report}");
    assert_eq!(
        report["visits"].as_u64(),
        Some(truth.len() as u64),
        "{report}"
    );
    assert_eq!(
        report["visits_matching_digest"].as_u64(),
        Some(truth.len() as u64),
        "{report}"
    );
    let rows = query(
        archive,
        "SELECT visit_id, gain_uv_per_lsb, fs_hz, sex, age_years FROM visits",
    );
    let alerted: HashSet<String> = alerts.iter().map(|a| a.visit_id.to_string()).collect();
    let mut flagged = 0;
    for r in &rows {
        let id = r["visit_id"].as_str().unwrap();
        let gain_mv = r["gain_uv_per_lsb"].as_f64().unwrap() / 1000.0;
        let fs = r["fs_hz"].as_f64().unwrap();
        let samples = ecg_archive::read_visit_samples(archive, id).unwrap();
        let mv: Vec<Vec<f32>> = samples
            .iter()
            .map(|l| l.iter().map(|&c| (f64::from(c) * gain_mv) as f32).collect())
            .collect();
        let labels = ecg_wire::Lead::STANDARD_12.map(|l| l.name());
        let leads: Vec<ecg_triage::LeadSignal<'_>> = labels
            .iter()
            .zip(&mv)
            .map(|(l, s)| ecg_triage::LeadSignal {
                label: l,
                samples_mv: s,
            })
            .collect();
        let patient = ecg_triage::Patient {
            sex: match r["sex"].as_str() {
                Some("male") => Some(ecg_triage::Sex::Male),
                Some("female") => Some(ecg_triage::Sex::Female),
                _ => None,
            },
            age_years: r["age_years"].as_f64(),
        };
        let interp = ecg_triage::interpret_detecting(fs, &leads, patient).unwrap();
        if interp.stemi {
            flagged += 1;
            assert!(
                alerted.contains(id),
                "visit {id} is flagged STEMI but was not alerted"
            );
        }
    }
    let stemi_truth = truth
        .iter()
        .filter(|t| t["stemi"].as_bool().unwrap())
        .count();
    let distinct: HashSet<_> = alerts.iter().map(|a| a.alert_id).collect();
    eprintln!(
        "{} visits archived; {stemi_truth} STEMI in truth; {flagged} flagged by the one-shot interpretation; {} alerts ({} distinct)",
        rows.len(),
        alerts.len(),
        distinct.len()
    );
    assert!(
        flagged > 0,
        "no STEMI flagged at all: the test would prove nothing"
    );
}

/// Reads one counter or gauge from the pipeline's Prometheus endpoint;
/// None while the endpoint does not answer.
pub fn metric(addr: &str, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name || k == format!("{name}_total")).then(|| v.trim().parse().ok())?
    })
}

/// A loopback address with a free port (for the metrics endpoint).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The Python that has `modules` (`$ECG_PYTHON`, else the `.venv` that
/// run-tests.sh creates).
pub fn python(modules: &str) -> PathBuf {
    let py: PathBuf = std::env::var_os("ECG_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").into());
    let ok = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "Python with {modules} not found at {} (run ./run-tests.sh, which creates .venv, \
         or set ECG_PYTHON)",
        py.display()
    );
    py
}

/// The cardiologists' side, added to [`ACL`] by [`Setup::with_cardiologists`]:
/// the pipeline publishes escalations and reads acknowledgements; the
/// `cardiologist` user reads alerts and escalations and acknowledges.
pub const CARDIOLOGIST_PASSWORD: &str = "cardiologist-secret";
pub const CARDIOLOGIST_ACL: &str = "\
user pipeline
topic write ecg/v1/alerts/+/escalation
topic read ecg/v1/alerts/+/ack
user cardiologist
topic read ecg/v1/alerts/#
topic write ecg/v1/alerts/+/ack
";

impl Setup {
    /// As [`Setup::new`] with no extra users, plus the `cardiologist` user
    /// and [`CARDIOLOGIST_ACL`].
    pub fn with_cardiologists(devices: usize) -> Setup {
        Setup::with_broker(
            devices,
            &[("cardiologist", CARDIOLOGIST_PASSWORD)],
            CARDIOLOGIST_ACL,
            None,
        )
    }
}

/// (topic, alert) as the `cardiologist` user sees them.
pub type SeenAlerts = Arc<Mutex<Vec<(String, Alert)>>>;

/// Subscribes as `cardiologist` to `ecg/v1/alerts/#` (alerts and
/// escalations) once connected; returns what it sees and the client, for
/// publishing acknowledgements. Returns once subscribed.
pub fn watch_as_cardiologist(port: u16) -> (SeenAlerts, rumqttc::AsyncClient) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let seen: SeenAlerts = Arc::default();
    let out = seen.clone();
    let mut opts = MqttOptions::new("e2e-cardiologist", "127.0.0.1", port);
    opts.set_credentials("cardiologist", CARDIOLOGIST_PASSWORD)
        .set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut ev) = AsyncClient::new(opts, 16);
    let c = client.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.subscribe("ecg/v1/alerts/#", QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        // Acks travel under ecg/v1/alerts/# too.
                        if let Ok(a) = Alert::from_json(&p.payload) {
                            out.lock().unwrap().push((p.topic.clone(), a));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("cardiologist subscribed");
    (seen, client)
}
