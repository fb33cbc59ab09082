//! `ecgtriage demo`: the whole product on one machine with nothing
//! installed. An embedded broker (rumqttd, in-process, on free loopback
//! ports), firmware-sim's fleet with some STEMI patients, the pipeline, and
//! a cardiologist's view that prints alerts as they arrive. The archive is
//! left for `ecgtriage query`.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ecg_wire::{Alert, CentreId, Message};
use firmware_sim::broker::BrokerUrl;
use firmware_sim::fleet::{self, FleetConfig, FleetOptions};
use firmware_sim::visit::StreamOpts;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::publish::BrokerAddr;
use crate::service::{self, RunSummary, ServiceConfig};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("embedded broker: {0}")]
    Broker(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pipeline: {0}")]
    Pipeline(#[from] service::ServiceError),
    #[error("simulated fleet: {0}")]
    Fleet(#[from] fleet::FleetError),
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub archive_dir: PathBuf,
    pub devices: usize,
    pub stemi_fraction: f64,
    /// Visit arrivals per second across the fleet.
    pub visits_per_s: f64,
    /// Recording time compression (a 10 s ECG streams in 10 / speed s).
    pub stream_speed: f64,
    pub seed: u64,
    pub metrics_addr: Option<SocketAddr>,
    /// The dashboard's address; its URL with a one-time token is printed.
    /// If the port is taken, a free one is used instead.
    pub http: Option<SocketAddr>,
    /// Unacknowledged alerts escalate after this long.
    pub escalate_after: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            duration: Duration::from_secs(60),
            archive_dir: PathBuf::from("ecg-demo-archive"),
            devices: 8,
            stemi_fraction: 0.2,
            visits_per_s: 2.0,
            stream_speed: 4.0,
            seed: 7,
            metrics_addr: None,
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8750))),
            escalate_after: Duration::from_secs(120),
        }
    }
}

/// What the demo did.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoSummary {
    pub pipeline: RunSummary,
    pub alerts_seen: u64,
    pub visits_sent: u64,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

fn free_port() -> Result<u16, DemoError> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

fn server(name: &str, port: u16) -> rumqttd::ServerSettings {
    rumqttd::ServerSettings {
        name: name.to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 512 * 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    }
}

/// Starts rumqttd on a thread of its own: devices speak MQTT 3.1.1 on
/// `v4_port`, the pipeline's ingest MQTT 5 on `v5_port`; one router joins
/// them.
fn start_broker(v4_port: u16, v5_port: u16) -> Result<(), DemoError> {
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server("v4-1", v4_port))])),
        v5: Some(HashMap::from([("1".to_owned(), server("v5-1", v5_port))])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(io("starting the broker thread"))?;
    for port in [v4_port, v5_port] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(DemoError::Broker(format!(
                    "not listening on 127.0.0.1:{port} after 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn alert_line(a: &Alert) -> String {
    let mut leads: Vec<(String, i32)> = a
        .leads
        .iter()
        .filter(|(_, st)| st.st_j_uv.abs() >= 100)
        .map(|(l, st)| (l.to_string(), st.st_j_uv))
        .collect();
    leads.sort_by_key(|(_, v)| -v.abs());
    let leads: Vec<String> = leads
        .iter()
        .take(6)
        .map(|(l, v)| format!("{l} {v:+} uV"))
        .collect();
    let territories: Vec<String> = a
        .territories
        .iter()
        .map(|t| {
            serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    let after_s = (a.published_at - a.acquired_at).as_seconds_f64();
    format!(
        "ALERT suspected STEMI  {}  device {} (clinic {})  visit {}  territories: {}  ST at J: {}  {} decision, {:.1} s after acquisition",
        a.published_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        a.device_id,
        a.clinic_id,
        a.visit_id,
        territories.join(", "),
        if leads.is_empty() { "-".to_owned() } else { leads.join(", ") },
        if a.early { "early" } else { "final" },
        after_s,
    )
}

/// The cardiologists' screen: subscribes to every centre's alerts and
/// prints each new alert id once.
fn watch_alerts(port: u16, seen: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut opts = MqttOptions::new("ecg-demo-dashboard", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let mut printed = std::collections::HashSet::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client
                        .subscribe(ecg_wire::topic::ALERTS_FILTER, QoS::AtLeastOnce)
                        .await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => match Alert::from_json(&p.payload) {
                    Ok(a) => {
                        if printed.insert(a.alert_id) {
                            seen.fetch_add(1, Ordering::Relaxed);
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{}", alert_line(&a));
                            let _ = out.flush();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, topic = %p.topic, "unreadable alert"),
                },
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// Runs the demo for `opts.duration` (or until Ctrl-C), then stops the
/// fleet, lets the pipeline finish the visits in flight and returns.
pub async fn run(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let v4_port = free_port()?;
    let v5_port = free_port()?;
    start_broker(v4_port, v5_port)?;
    tracing::info!(v4_port, v5_port, "embedded broker listening on loopback");
    let work = tempfile::Builder::new()
        .prefix("ecg-demo-")
        .tempdir()
        .map_err(io("creating the demo's working directory"))?;

    let mut ingest = ecg_ingest::IngestConfig::new(
        "127.0.0.1",
        v5_port,
        "ecg-demo-pipeline",
        work.path().join("ingest-spool"),
    );
    ingest.assembly.visit_timeout = Duration::from_secs(10);
    let mut archive = ecg_archive::WriterConfig::new("demo");
    archive.pseudonym_key = Some(
        ecg_wire::PseudonymKey::new(1, crate::config::DEMO_PSEUDONYM_KEY.as_bytes())
            .expect("the demo key is long enough"),
    );
    archive.max_age = Duration::from_secs(1);
    let cfg = ServiceConfig {
        ingest,
        output: BrokerAddr {
            host: "127.0.0.1".into(),
            port: v4_port,
            credentials: None,
            tls: None,
        },
        output_client_id: "ecg-demo-pipeline-out".into(),
        archive_dir: opts.archive_dir.clone(),
        archive,
        centre: CentreId::new("centre-1").expect("valid id"),
        metrics_addr: opts.metrics_addr,
        quarantine: crate::quarantine::QuarantineConfig::default(),
        // As `ecgtriage run`: a demo archive kept with `--archive` across
        // days is merged like a real one.
        compaction: Some(Default::default()),
    };
    let seen = Arc::new(AtomicU64::new(0));
    let watcher = watch_alerts(v4_port, seen.clone());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = opts.http.map(|addr| {
        if TcpListener::bind(addr).is_ok() {
            addr
        } else {
            SocketAddr::new(addr.ip(), 0)
        }
    });
    let side = service::CardiologistSide {
        lifecycle: crate::lifecycle::LifecycleConfig {
            escalate_after: opts.escalate_after,
            ..Default::default()
        },
        http,
        accounts: Vec::new(),
        print_token_url: true,
    };
    let progress = Arc::new(Progress::default());
    let probe: Arc<dyn service::Probe> = progress.clone();
    let mut pipeline = tokio::spawn(service::run_full(cfg, side, Some(probe), async {
        let _ = stop_rx.await;
    }));

    // The broker is new and keeps nothing for a subscriber it has not yet
    // seen: devices streaming before the pipeline's subscription would
    // have their first visits acked and dropped (a loaded machine showed
    // 24 of 26 visits archived).
    let subscribed = tokio::select! {
        ok = progress.wait_subscribed(SUBSCRIBE_WAIT) => ok,
        ended = &mut pipeline => {
            return Err(match ended {
                Ok(Err(e)) => e.into(),
                Ok(Ok(_)) => DemoError::Broker("the pipeline stopped before it subscribed".into()),
                Err(e) => DemoError::Broker(format!("pipeline task: {e}")),
            });
        }
    };
    if !subscribed {
        let _ = stop_tx.send(());
        let _ = pipeline.await;
        return Err(DemoError::Broker(format!(
            "the pipeline did not subscribe within {} s",
            SUBSCRIBE_WAIT.as_secs()
        )));
    }
    let fleet_cfg = FleetConfig {
        broker: BrokerUrl {
            host: "127.0.0.1".into(),
            port: v4_port,
            user: None,
        },
        devices: fleet::numbered_devices(opts.devices.max(1), opts.devices.div_ceil(2).max(1)),
        visits: None,
        annual_visits: fleet::DEFAULT_ANNUAL_VISITS,
        speed: opts.visits_per_s * 365.25 * 24.0 * 3600.0 / fleet::DEFAULT_ANNUAL_VISITS,
        stemi_fraction: opts.stemi_fraction,
        seed: opts.seed,
        truth: None,
        spool_root: work.path().join("devices"),
        stream: StreamOpts {
            speed: opts.stream_speed,
            ..StreamOpts::default()
        },
        progress: false,
    };
    let (fleet_stop, fleet_stopped) = tokio::sync::watch::channel(false);
    let fleet = tokio::spawn(fleet::run_with(
        fleet_cfg,
        FleetOptions {
            stop: Some(fleet_stopped),
            ..FleetOptions::default()
        },
    ));
    println!(
        "demo: broker on 127.0.0.1:{v4_port} (devices, MQTT 3.1.1) and :{v5_port} (pipeline, MQTT 5); \
         {} devices, STEMI fraction {}, for {} s; archive {}",
        opts.devices,
        opts.stemi_fraction,
        opts.duration.as_secs(),
        opts.archive_dir.display()
    );
    // The fleet stops taking new visits a little before the end, so the
    // visits in flight are streamed to their end and archived whole.
    let drain = Duration::from_secs_f64(
        (10.0 / opts.stream_speed + 3.0).min(opts.duration.as_secs_f64() / 2.0),
    );
    tokio::select! {
        _ = tokio::time::sleep(opts.duration.saturating_sub(drain)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = fleet_stop.send(true);
    let mut fleet = fleet;
    // On a loaded machine the last visits may stream late: a grace past
    // the duration, rather than visits cut off and lost to the archive.
    let visits_sent = match tokio::time::timeout(drain + DRAIN_GRACE, &mut fleet).await {
        Ok(Ok(Ok(summary))) => {
            // The pipeline finishes (and so archives at its stop) every
            // visit the broker has acked.
            let all = progress.wait_for(summary.visits, DRAIN_GRACE).await;
            if !all {
                tracing::warn!(
                    sent = summary.visits,
                    finished = progress.count(),
                    "the pipeline had not finished every visit sent when the demo stopped"
                );
            }
            summary.visits
        }
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "the demo fleet failed");
            0
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the demo fleet's task failed");
            0
        }
        Err(_) => {
            tracing::warn!("the fleet's last visits did not finish streaming in time; cut off");
            fleet.abort();
            0
        }
    };
    let _ = stop_tx.send(());
    let summary = pipeline
        .await
        .map_err(|e| DemoError::Broker(format!("pipeline task: {e}")))??;
    // Give the dashboard a moment for the last alert.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watcher.abort();
    Ok(DemoSummary {
        pipeline: summary,
        alerts_seen: seen.load(Ordering::Relaxed),
        visits_sent,
    })
}

/// How long past its duration the demo waits for its last visits.
const DRAIN_GRACE: Duration = Duration::from_secs(15);
/// How long the pipeline may take to subscribe before the fleet starts.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(60);

/// Counts the visits the pipeline finished, and says when its ingest is
/// subscribed.
#[derive(Default)]
struct Progress {
    count: AtomicU64,
    changed: tokio::sync::Notify,
    ingest: std::sync::OnceLock<Arc<ecg_ingest::IngestStats>>,
}

impl Progress {
    fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Until the ingest holds its subscription (true) or `timeout` passed
    /// (false). Polled: the ingest counts its SUBACKs and notifies nobody.
    async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let subscribed = self
                .ingest
                .get()
                .is_some_and(|s| s.subscriptions.load(Ordering::Relaxed) > 0);
            if subscribed {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Until `n` visits are finished (true) or `timeout` passed (false).
    async fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.count() >= n {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }
}

impl service::Probe for Progress {
    fn ingest_started(&self, stats: Arc<ecg_ingest::IngestStats>) {
        let _ = self.ingest.set(stats);
    }

    fn visit_finished(&self, _key: &ecg_ingest::VisitKey) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

/// Runs the demo on its own runtime (the blocking entry point of
/// `ecgtriage demo`).
pub fn run_blocking(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("starting the async runtime"))?;
    let summary = rt.block_on(run(opts))?;
    // rumqttd's threads never return; do not wait for them.
    rt.shutdown_background();
    Ok(summary)
}
