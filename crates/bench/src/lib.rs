//! `ecgtriage bench`: a simulated fleet through a real MQTT broker and the
//! whole pipeline (ingest, analysis, alerts, archive), measured against
//! the broker's own ceiling in the same run.
//!
//! - [`pool`]: waveforms generated before the clock starts.
//! - [`fleet`]: firmware-sim devices streaming the planned visits, with
//!   publish timestamps.
//! - [`ceiling`]: the same fleet into a do-nothing subscriber.
//! - [`verify`]: the archive checked against the truth (lost, duplicated).
//! - [`pipeline_process`]: the pipeline in a process of its own, reporting
//!   its events on a pipe.
//! - [`stats`]: percentiles, peak RSS and CPU time.
//!
//! The pipeline runs in its own process (this executable again), so that
//! its peak RSS and CPU time are its own; the fleet, the waveform pool and
//! the harness stay in this one.

pub mod ceiling;
pub mod fleet;
pub mod pipeline_process;
pub mod pool;
pub mod stats;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecg_pipeline::service;
use ecg_wire::{Alert, Message, VisitId};
use firmware_sim::broker::BrokerUrl;
use rumqttc::{Event, Packet};
use serde::Serialize;

pub use fleet::Pace;
pub use stats::Percentiles;

/// Why a bench run failed (as opposed to measuring something bad).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("setting up: {0}")]
    Setup(String),
    #[error("broker: {0}")]
    Broker(String),
    #[error("fleet: {0}")]
    Fleet(String),
    #[error("pipeline: {0}")]
    Pipeline(String),
    #[error("checking the archive: {0}")]
    Verify(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub visits: u64,
    pub pace: Pace,
    pub devices: usize,
    /// `mqtt://[user:pass@]host:port`; `None` starts a private Mosquitto
    /// on a free loopback port.
    pub broker: Option<String>,
    /// Distinct visits generated before the clock starts.
    pub pool: usize,
    pub stemi_fraction: f64,
    pub seed: u64,
    pub chunk_s: f64,
    /// Give up when nothing moves for this long.
    pub stall: Duration,
    /// Where the archive, spools and truth go (a fresh temp dir inside).
    pub work_root: Option<PathBuf>,
    /// Keep the work dir (archive, truth) after the run.
    pub keep: bool,
    /// Where the simulated devices keep their on-device spools (one file
    /// per message, as the firmware does). `None`: `/dev/shm` when it
    /// exists, else the work dir. Real devices write their own flash, not
    /// the server's disk: on the server's journaled disk the fleet's file
    /// churn took 40 % of the run's CPU (profile of 2026-11-29). The
    /// pipeline's spool and archive always stay in the work dir.
    pub device_spool_root: Option<PathBuf>,
    /// At `max` pace, the most visits started and not yet through the
    /// pipeline: the rest of the year waits on the devices, not in the
    /// broker (Mosquitto held 18.5 GB for a year sent at once, more than
    /// this 24 GB machine can spare beside the run).
    pub max_ahead: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            visits: 100,
            pace: Pace::Max,
            devices: 16,
            broker: None,
            pool: 64,
            stemi_fraction: 0.1,
            seed: 42,
            chunk_s: 1.0,
            stall: Duration::from_secs(120),
            work_root: None,
            keep: false,
            max_ahead: 1000,
            device_spool_root: None,
        }
    }
}

/// The machine-readable summary: exactly the keys of issue 7, in order.
#[derive(Debug, Clone, Serialize)]
pub struct JsonLine {
    pub visits: u64,
    pub wall_s: f64,
    pub samples_per_s: f64,
    pub ceiling_samples_per_s: f64,
    pub ratio_to_ceiling: f64,
    pub bytes_per_sample: f64,
    pub lost: u64,
    pub duplicated: u64,
    pub chunk_latency_ms: Percentiles,
    pub alert_latency_ms: Percentiles,
    pub peak_rss_mb: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub json: JsonLine,
    pub verdict: verify::Verdict,
    pub pipeline: service::RunSummary,
    pub ceiling_wall_s: f64,
    pub planned_samples: u64,
    pub wire_bytes: u64,
    pub alerts_received: u64,
    pub stemi_planned: u64,
    /// Alerts that arrived before the visit's last chunk was published
    /// (the early decision); counted as 0 ms.
    pub early_alerts: u64,
    pub chunks_measured: u64,
    pub chunks_unmatched: u64,
    /// The pipeline process's RSS once subscribed, before any visit.
    pub rss_baseline_mb: Option<f64>,
    /// CPU time of the pipeline process over its whole life.
    pub pipeline_cpu_s: Option<f64>,
    pub stalled: bool,
    pub work_dir: Option<PathBuf>,
}

/// The pipeline process's observer: chunk latency where the analysis
/// finishes it.
struct Harness {
    stamps: Arc<fleet::Stamps>,
    chunk_samples: u32,
    chunk_ms: Mutex<Vec<f64>>,
    unmatched: AtomicU64,
    finished: Arc<AtomicU64>,
    /// Set once the pipeline's ingest is subscribed: its RSS then.
    subscribed: Mutex<Option<Option<f64>>>,
}

impl pipeline_process::Listener for Harness {
    fn subscribed(&self, rss_mb: Option<f64>) {
        *self.subscribed.lock().unwrap_or_else(|e| e.into_inner()) = Some(rss_mb);
    }

    fn chunk(&self, visit: VisitId, first_sample: u32, n_samples: usize, at: Instant) {
        let cs = self.chunk_samples.max(1);
        let end = first_sample.saturating_add(n_samples as u32);
        // Chunks start on multiples of the chunk length; an event may
        // carry several chunks once a late one fills a gap.
        let mut s = first_sample.div_ceil(cs) * cs;
        let mut got = Vec::new();
        while s < end {
            match self.stamps.take_chunk(visit, s) {
                Some(t) => got.push(at.saturating_duration_since(t).as_secs_f64() * 1e3),
                None => {
                    self.unmatched.fetch_add(1, Ordering::Relaxed);
                }
            }
            s += cs;
        }
        self.chunk_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(got);
    }

    fn finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// The on-call cardiologist acknowledges every alert as it arrives, as
/// the chest-pain centre does: left unacknowledged, a year's alerts would
/// pile up pending and escalate every five minutes, a load that no real
/// run carries.
fn acknowledge(client: &rumqttc::AsyncClient, alert: &Alert) {
    let ack = ecg_wire::AlertAck {
        alert_id: alert.alert_id,
        by: "bench-cardiologist".into(),
        at: time::OffsetDateTime::now_utc(),
        verdict: None,
    };
    let topic = ecg_wire::topic::Topic::AlertAck {
        centre_id: alert.centre_id.clone(),
    }
    .to_string();
    let client = client.clone();
    // Not awaited on the polling task: a full request channel would wait
    // for the very poll that empties it.
    tokio::spawn(async move {
        let _ = client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, ack.to_json())
            .await;
    });
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Runs the benchmark on its own runtime; `say` gets the human-readable
/// progress lines.
pub fn run_blocking(opts: BenchOptions, say: &dyn Fn(&str)) -> Result<Outcome, BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("async runtime: {e}")))?;
    let out = rt.block_on(run(opts, say));
    rt.shutdown_timeout(Duration::from_secs(2));
    out
}

/// The benchmark: ceiling first (no pipeline subscribed), then the
/// pipeline run, then the archive check.
pub async fn run(opts: BenchOptions, say: &dyn Fn(&str)) -> Result<Outcome, BenchError> {
    if opts.visits == 0 {
        return Err(BenchError::Setup("--visits must be at least 1".into()));
    }
    if let Pace::Rate(r) = opts.pace {
        if !(r.is_finite() && r > 0.0) {
            return Err(BenchError::Setup(format!("--rate {r} must be > 0")));
        }
    }
    let devices = opts.devices.max(1);
    let work = match &opts.work_root {
        Some(root) => tempfile::Builder::new()
            .prefix("ecg-bench-")
            .tempdir_in(root),
        None => tempfile::Builder::new().prefix("ecg-bench-").tempdir(),
    }
    .map_err(|e| BenchError::Setup(format!("work dir: {e}")))?;

    // The broker: ours unless one is given.
    let (_mosquitto, broker) = match &opts.broker {
        Some(url) => (
            None,
            BrokerUrl::parse(url).map_err(|e| BenchError::Setup(format!("--broker: {e}")))?,
        ),
        None => {
            let m = ecg_testkit::Mosquitto::start(ecg_testkit::MosquittoOpts::default())
                .map_err(|e| BenchError::Broker(e.to_string()))?;
            let url = BrokerUrl::parse(&m.url()).map_err(|e| BenchError::Setup(e.to_string()))?;
            say(&format!(
                "broker: private Mosquitto on {} (unlimited QoS 1 queues)",
                m.url()
            ));
            (Some(m), url)
        }
    };

    // Waveforms before any clock.
    let t = Instant::now();
    let pool_n = opts
        .pool
        .clamp(1, opts.visits.min(usize::MAX as u64) as usize);
    let pool = Arc::new(pool::generate(
        pool_n,
        opts.stemi_fraction,
        opts.seed,
        opts.chunk_s,
    )?);
    let plan = Arc::new(fleet::plan(opts.visits, devices, pool.len(), opts.seed));
    let planned_samples: u64 = plan.iter().map(|p| pool[p.pool].total_samples()).sum();
    let stemi_planned = plan.iter().filter(|p| pool[p.pool].stemi).count() as u64;
    let truth: HashMap<String, ecg_wire::SamplesDigest> = plan
        .iter()
        .map(|p| (p.visit_id.to_string(), pool[p.pool].digest))
        .collect();
    let v0 = &pool[0];
    say(&format!(
        "generated {} distinct visits in {:.1} s ({} leads x {} samples at {} Hz, {} chunks each); \
         {} visits planned on {} devices ({} with a STEMI), {:.1} M samples",
        pool.len(),
        t.elapsed().as_secs_f64(),
        v0.leads.len(),
        v0.n_samples,
        v0.fs_hz,
        v0.chunks.len(),
        opts.visits,
        devices,
        stemi_planned,
        planned_samples as f64 / 1e6
    ));

    let shm = std::path::Path::new("/dev/shm");
    let device_root = match &opts.device_spool_root {
        Some(root) => Some(root.clone()),
        None if shm.is_dir() => Some(shm.to_path_buf()),
        None => None,
    };
    let device_spools = match device_root {
        Some(root) => Some(
            tempfile::Builder::new()
                .prefix("ecg-bench-devices-")
                .tempdir_in(root)
                .map_err(|e| BenchError::Setup(format!("device spool dir: {e}")))?,
        ),
        None => None,
    };
    let device_dir = device_spools
        .as_ref()
        .map_or_else(|| work.path().to_path_buf(), |d| d.path().to_path_buf());
    say(&format!(
        "device spools in {}; pipeline spool and archive in {}",
        device_dir.display(),
        work.path().display()
    ));
    let fleet_run = |prefix: &str, spool: &str, pace: Pace, stamps, lead| fleet::FleetRun {
        broker: broker.clone(),
        devices,
        device_prefix: prefix.to_owned(),
        spool_root: device_dir.join(spool),
        pace,
        chunk_s: opts.chunk_s,
        seed: opts.seed,
        stamps,
        lead,
    };

    // 1. The ceiling, as fast as the broker carries it, whatever the pace
    //    of the pipeline run: the reference is what the broker can do.
    let ceiling = ceiling::measure(
        &broker,
        fleet_run("bench-dev", "ceiling-devices", Pace::Max, None, None),
        plan.clone(),
        pool.clone(),
        opts.stall,
    )
    .await?;
    let ceiling_sps = planned_samples as f64 / ceiling.wall.as_secs_f64();
    say(&format!(
        "ceiling: {} messages to a do-nothing subscriber in {:.2} s: {:.0} samples/s ({:.1} visits/s)",
        ceiling.messages,
        ceiling.wall.as_secs_f64(),
        ceiling_sps,
        opts.visits as f64 / ceiling.wall.as_secs_f64()
    ));

    // 2. The pipeline.
    let archive_dir = pipeline_process::archive_dir(work.path());
    let stamps = Arc::new(fleet::Stamps::default());
    let harness = Arc::new(Harness {
        stamps: stamps.clone(),
        chunk_samples: v0.chunk_samples as u32,
        chunk_ms: Mutex::new(Vec::with_capacity(
            (opts.visits as usize).saturating_mul(v0.chunks.len()),
        )),
        unmatched: AtomicU64::new(0),
        finished: Arc::new(AtomicU64::new(0)),
        subscribed: Mutex::new(None),
    });
    let (client, mut alerts_loop) = ceiling::subscribed_client(
        &broker,
        "ecg-bench-cardiologist",
        ecg_wire::topic::ALERTS_FILTER,
    )
    .await?;
    let alerts: Arc<Mutex<HashMap<VisitId, Instant>>> = Arc::default();
    let alert_sink = alerts.clone();
    let acker = client.clone();
    let alert_task = tokio::spawn(async move {
        loop {
            match alerts_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = Instant::now();
                    if let Ok(a) = Alert::from_json(&p.payload) {
                        alert_sink
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(a.visit_id)
                            .or_insert(now);
                        acknowledge(&acker, &a);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });

    let mut pipeline =
        pipeline_process::PipelineProcess::spawn(&broker, work.path(), harness.clone())?;
    // The ingest must hold its subscription before the first visit, or
    // the broker has nowhere to queue it.
    let t = Instant::now();
    let rss_baseline_mb = loop {
        if let Some(rss) = *harness.subscribed.lock().unwrap_or_else(|e| e.into_inner()) {
            break rss;
        }
        if pipeline.exited() || t.elapsed() > Duration::from_secs(30) {
            return Err(match pipeline.stop() {
                Err(e) => e,
                Ok(_) => {
                    BenchError::Broker("the pipeline's ingest did not subscribe within 30 s".into())
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let run = fleet_run(
        "bench-dev",
        "devices",
        opts.pace,
        Some(stamps.clone()),
        Some((harness.finished.clone(), opts.max_ahead.max(1))),
    );
    let fleet = fleet::Fleet::connect(&run).await?;
    say(&format!(
        "pipeline run: {} visits, {} ...",
        opts.visits,
        match opts.pace {
            Pace::Max => format!(
                "as fast as possible, at most {} visits ahead of the pipeline",
                opts.max_ahead.max(1)
            ),
            Pace::Rate(r) => format!("{r} visits/s (Poisson), each streamed in real time"),
        }
    ));
    let t0 = Instant::now();
    let cpu0 = stats::process_cpu_s();
    let streamer = tokio::spawn(async move { fleet.stream(&run, plan, pool).await });
    let mut last = (0u64, Instant::now());
    let mut next_report = Instant::now() + Duration::from_secs(10);
    let mut stalled = false;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let done = harness.finished.load(Ordering::Relaxed);
        if done >= opts.visits {
            break;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            say(&format!(
                "  {:.0} s: {done}/{} visits through the pipeline",
                t0.elapsed().as_secs_f64(),
                opts.visits
            ));
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > opts.stall {
            say(&format!(
                "stalled: no visit finished for {} s; stopping with {done}/{}",
                opts.stall.as_secs(),
                opts.visits
            ));
            stalled = true;
            break;
        }
    }
    let end = tokio::task::spawn_blocking(move || pipeline.stop())
        .await
        .map_err(|e| BenchError::Setup(format!("pipeline process: {e}")))??;
    let summary = end.summary.unwrap_or_default();
    let wall = t0.elapsed();
    let bench_cpu_s = match (cpu0, stats::process_cpu_s()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let peak_rss_mb = end.peak_rss_mb;
    if let (Some(cpu), Some(bench_cpu)) = (end.cpu_s, bench_cpu_s) {
        say(&format!(
            "pipeline run: {:.1} s wall; the pipeline process used {cpu:.1} s CPU ({:.1} ms per visit), this process (fleet, harness) {bench_cpu:.1} s; broker not included",
            wall.as_secs_f64(),
            cpu * 1e3 / opts.visits as f64
        ));
    }
    let wire_bytes = if stalled {
        streamer.abort();
        0
    } else {
        streamer
            .await
            .map_err(|e| BenchError::Fleet(format!("fleet task: {e}")))??
    };
    // The last alert may still be on its way to the subscriber.
    tokio::time::sleep(Duration::from_millis(500)).await;
    alert_task.abort();
    let _ = client.disconnect().await;

    let t = Instant::now();
    let verdict = verify::check(&archive_dir, &truth)?;
    say(&format!(
        "archive checked in {:.1} s: {} intact, {} lost ({} with other samples), {} duplicated, {} unknown; {:.1} MB on disk",
        t.elapsed().as_secs_f64(),
        verdict.intact,
        verdict.lost,
        verdict.corrupt,
        verdict.duplicated,
        verdict.unknown,
        mb(verdict.bytes_on_disk)
    ));

    let alert_rx = std::mem::take(&mut *alerts.lock().unwrap_or_else(|e| e.into_inner()));
    let mut early = 0;
    let alert_ms: Vec<f64> = alert_rx
        .iter()
        .filter_map(|(visit, rx)| {
            let last = stamps.last_chunk(*visit)?;
            if *rx < last {
                early += 1;
            }
            Some(rx.saturating_duration_since(last).as_secs_f64() * 1e3)
        })
        .collect();
    let chunk_ms = std::mem::take(&mut *harness.chunk_ms.lock().unwrap_or_else(|e| e.into_inner()));
    let chunks_measured = chunk_ms.len() as u64;
    let wall_s = wall.as_secs_f64();
    let samples_per_s = verdict.samples as f64 / wall_s;
    let json = JsonLine {
        visits: opts.visits,
        wall_s: stats::round3(wall_s),
        samples_per_s: samples_per_s.round(),
        ceiling_samples_per_s: ceiling_sps.round(),
        ratio_to_ceiling: stats::round_sig3(samples_per_s / ceiling_sps),
        bytes_per_sample: if verdict.samples > 0 {
            stats::round3(verdict.bytes_on_disk as f64 / verdict.samples as f64)
        } else {
            0.0
        },
        lost: verdict.lost,
        duplicated: verdict.duplicated,
        chunk_latency_ms: Percentiles::of(chunk_ms),
        alert_latency_ms: Percentiles::of(alert_ms),
        peak_rss_mb,
    };
    let work_dir = if opts.keep { Some(work.keep()) } else { None };
    Ok(Outcome {
        json,
        verdict,
        pipeline: summary,
        ceiling_wall_s: ceiling.wall.as_secs_f64(),
        planned_samples,
        wire_bytes,
        alerts_received: alert_rx.len() as u64,
        stemi_planned,
        early_alerts: early,
        chunks_measured,
        chunks_unmatched: harness.unmatched.load(Ordering::Relaxed),
        rss_baseline_mb,
        pipeline_cpu_s: end.cpu_s,
        stalled,
        work_dir,
    })
}
