//! The running pipeline: ingestion events through the [`TriageDesk`], its
//! outputs to the broker and the archive, and visits released from the
//! ingest spool only once archived (so a crash at any point replays them).
//!
//! Order per visit: alert (PUBACK awaited) -> result (PUBACK awaited) ->
//! archive append -> archive commit -> `mark_done`. A visit found already
//! archived when it is replayed is released without a second alert.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecg_archive::writer::Appended;
use ecg_archive::{ArchiveWriter, WriterConfig};
use ecg_ingest::{AssemblyEvent, IngestConfig, IngestHandle, IngestStats, VisitKey};
use ecg_wire::{CentreId, Message};
use time::OffsetDateTime;

use crate::metrics::Metrics;
use crate::publish::{BrokerAddr, MqttPublisher, PublishError, Publisher};
use crate::triage_desk::{Output, TriageDesk};

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("ingest: {0}")]
    Ingest(#[from] ecg_ingest::IngestError),
    #[error("archive: {0}")]
    Archive(#[from] ecg_archive::ArchiveError),
    #[error("publishing to {topic}: {source}")]
    Publish {
        topic: String,
        #[source]
        source: PublishError,
    },
    #[error("starting the async runtime: {source}")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("alert lifecycle: {0}")]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    #[error("dashboard on {addr}: {source}")]
    Dashboard {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics endpoint on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("an analysis worker stopped unexpectedly")]
    AnalysisWorker,
    #[error(transparent)]
    Quarantine(#[from] crate::quarantine::QuarantineError),
}

/// Everything a pipeline process needs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub ingest: IngestConfig,
    /// The output connection (alerts, results, dead letters).
    pub output: BrokerAddr,
    pub output_client_id: String,
    pub archive_dir: PathBuf,
    pub archive: WriterConfig,
    pub centre: CentreId,
    pub metrics_addr: Option<SocketAddr>,
    /// Refused input kept whole, in the spool folder's
    /// [`crate::quarantine::QUARANTINE_DIR`].
    pub quarantine: crate::quarantine::QuarantineConfig,
    /// Closed days of the archive merged while running; `None`: never
    /// (`ecgtriage archive compact` then does it).
    pub compaction: Option<crate::compaction::CompactionSchedule>,
}

/// The cardiologists' side of a run: escalation of unacknowledged alerts
/// and the dashboard.
#[derive(Debug, Clone, Default)]
pub struct CardiologistSide {
    pub lifecycle: crate::lifecycle::LifecycleConfig,
    /// Serve the dashboard here.
    pub http: Option<SocketAddr>,
    pub accounts: Vec<ecg_dashboard::Account>,
    /// Print the dashboard's URL with a one-time access token on stdout.
    pub print_token_url: bool,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    pub visits_archived: u64,
    pub visits_incomplete: u64,
    pub alerts: u64,
    pub dead_letters: u64,
    pub replayed_archived: u64,
}

/// Watches the pipeline from outside, for the load harness (`ecgtriage
/// bench`), which measures latency where the work is done rather than
/// guessing it from the broker. Called on the pipeline's task: keep it cheap.
pub trait Probe: Send + Sync {
    /// The ingest is running; its counters say when it is subscribed.
    fn ingest_started(&self, _stats: Arc<IngestStats>) {}
    /// Samples `first_sample..first_sample + n_samples` (per lead) of a
    /// visit went through the analysis.
    fn samples_processed(&self, _key: &VisitKey, _first_sample: u32, _n_samples: usize) {}
    /// A visit ended (complete or not) and its outputs were handed on.
    fn visit_finished(&self, _key: &VisitKey) {}
}

/// Runs until `shutdown` resolves, then stops taking messages, finishes the
/// visits already received, commits the archive and returns.
pub async fn run(
    cfg: ServiceConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, ServiceError> {
    run_with(cfg, CardiologistSide::default(), shutdown).await
}

/// [`run`] with a [`Probe`] watching.
pub async fn run_probed(
    cfg: ServiceConfig,
    probe: Option<Arc<dyn Probe>>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, ServiceError> {
    run_full(cfg, CardiologistSide::default(), probe, shutdown).await
}

/// [`run`] with escalation settings and the dashboard.
pub async fn run_with(
    cfg: ServiceConfig,
    side: CardiologistSide,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, ServiceError> {
    run_full(cfg, side, None, shutdown).await
}

/// [`run`] with escalation settings, the dashboard and a [`Probe`].
pub async fn run_full(
    cfg: ServiceConfig,
    side: CardiologistSide,
    probe: Option<Arc<dyn Probe>>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, ServiceError> {
    let book = crate::lifecycle::AlertBook::open(
        cfg.ingest.spool.dir.join(crate::lifecycle::STATE_FILE),
        side.lifecycle.clone(),
    )?;
    let (acks_tx, acks_rx) = tokio::sync::mpsc::channel(256);
    let hub = ecg_dashboard::Hub::new(
        ecg_dashboard::DashboardConfig {
            accounts: side.accounts.clone(),
            archive_dir: cfg.archive_dir.clone(),
            centre: cfg.centre.to_string(),
            login_throttle: Default::default(),
        },
        acks_tx.clone(),
    );
    for p in book.pending() {
        hub.alert_published(&p.alert, p.level);
    }
    let dashboard_task = match side.http {
        Some(addr) => {
            let (bound, task) = ecg_dashboard::serve(addr, hub.clone())
                .await
                .map_err(|source| ServiceError::Dashboard { addr, source })?;
            tracing::info!(%bound, "dashboard on http://{bound}/");
            if side.print_token_url {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "dashboard: {}", hub.url_with_token(bound));
                let _ = out.flush();
            }
            Some(task)
        }
        None => None,
    };
    let ack_listener = crate::acks::spawn_listener(
        &cfg.output,
        format!("{}-acks", cfg.output_client_id),
        crate::lifecycle::ack_topic(&cfg.centre),
        acks_tx,
    );
    let metrics = Metrics::new();
    let metrics_task = match cfg.metrics_addr {
        Some(addr) => {
            let (bound, task) = crate::metrics::serve(addr, metrics.clone())
                .await
                .map_err(|source| ServiceError::Metrics { addr, source })?;
            tracing::info!(%bound, "metrics on http://{bound}/metrics");
            Some(task)
        }
        None => None,
    };
    let archive_dir = cfg.archive_dir.clone();
    let writer_cfg = cfg.archive.clone();
    let mut writer =
        tokio::task::spawn_blocking(move || ArchiveWriter::open_local(archive_dir, writer_cfg))
            .await
            .expect("archive open does not panic")?;
    // Encoding a batch (delta packing, zstd) happens off this task, so that
    // alerts are not published late behind it; the driver collects what
    // was committed when the writer says a flush is done.
    let flushed = Arc::new(tokio::sync::Notify::new());
    let notify = flushed.clone();
    writer.flush_in_background(move || notify.notify_one())?;
    let quarantine_dir = cfg.ingest.spool.dir.join(crate::quarantine::QUARANTINE_DIR);
    let quarantine_cfg = cfg.quarantine;
    let quarantine = tokio::task::spawn_blocking(move || {
        crate::quarantine::Quarantine::open(quarantine_dir, quarantine_cfg)
    })
    .await
    .expect("quarantine open does not panic")?;
    let compactor = cfg.compaction.clone().map(|schedule| {
        crate::compaction::Compactor::spawn(cfg.archive_dir.clone(), schedule, metrics.clone())
    });
    let publisher = MqttPublisher::connect(&cfg.output, &cfg.output_client_id);
    let (ingest, events) = ecg_ingest::start(cfg.ingest.clone()).await?;
    if let Some(p) = &probe {
        p.ingest_started(ingest.stats());
    }
    tracing::info!(
        broker = %format!("{}:{}", cfg.ingest.host, cfg.ingest.port),
        archive = %cfg.archive_dir.display(),
        centre = %cfg.centre,
        "pipeline running"
    );
    let (analysts, results) = Analysts::start(&cfg.centre, analysis_workers());
    let mut driver = Driver {
        analysts: Some(analysts),
        open: HashMap::new(),
        writer,
        publisher: &publisher,
        ingest: &ingest,
        metrics: metrics.clone(),
        pending: HashMap::new(),
        skip: HashSet::new(),
        published_at: HashMap::new(),
        started_at: HashMap::new(),
        archive_retry_at: None,
        archive_retry_wait: ARCHIVE_RETRY_MIN,
        summary: RunSummary::default(),
        book,
        hub,
        centre: cfg.centre.clone(),
        probe,
        quarantine,
        held_inputs: Vec::new(),
    };
    let result = driver
        .run(events, results, acks_rx, &flushed, shutdown)
        .await;
    let summary = driver.summary;
    drop(driver);
    let finished = ingest.finish().await;
    if let Some(c) = compactor {
        c.stop().await;
    }
    publisher.close().await;
    if let Some(t) = metrics_task {
        t.abort();
    }
    ack_listener.abort();
    if let Some(t) = dashboard_task {
        t.abort();
    }
    result?;
    finished?;
    Ok(summary)
}

/// Analysis workers: the CPU-bound [`TriageDesk`] work (detection,
/// interpretation, the early decision) sharded by visit over threads of
/// their own, so it uses every core and never holds the async runtime.
/// A visit always goes to the same worker, which sees its events in order
/// and returns its outputs in order; the driver alone does the I/O.
struct Analysts {
    inputs: Vec<tokio::sync::mpsc::Sender<AssemblyEvent>>,
    shards: crate::shard::Shards,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One event's outputs, from a worker back to the driver.
struct Analysed {
    outputs: Vec<Output>,
    probed: Option<Probed>,
}

/// What the probe hears once an event's outputs are handed on.
enum Probed {
    Samples {
        key: VisitKey,
        first_sample: u32,
        n: usize,
    },
    Finished(VisitKey),
}

/// Events queued per worker: a few visits' worth of chunks, so a busy
/// worker holds the driver (and through it the ingest's acks) back.
const WORKER_QUEUE: usize = 64;

/// One worker per core, which the analysis of concurrent visits fills.
fn analysis_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8))
}

impl Analysts {
    fn start(
        centre: &CentreId,
        n: usize,
    ) -> (Analysts, tokio::sync::mpsc::UnboundedReceiver<Analysed>) {
        // Unbounded back to the driver: the driver may be waiting on a
        // worker's full queue, and a worker must never wait on the driver.
        // Bounded in practice by the workers' input queues.
        let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut inputs = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let budget = crate::deadletter::SharedDeadLetterBudget::default();
        for i in 0..n.max(1) {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<AssemblyEvent>(WORKER_QUEUE);
            let done_tx = done_tx.clone();
            let mut desk = TriageDesk::sharing(centre.clone(), budget.clone());
            let thread = std::thread::Builder::new()
                .name(format!("ecg-analysis-{i}"))
                .spawn(move || {
                    while let Some(ev) = rx.blocking_recv() {
                        let probed = match &ev {
                            AssemblyEvent::Samples {
                                key,
                                first_sample,
                                leads,
                            } => Some(Probed::Samples {
                                key: key.clone(),
                                first_sample: *first_sample,
                                n: leads.first().map_or(0, Vec::len),
                            }),
                            AssemblyEvent::Complete { key, .. }
                            | AssemblyEvent::Incomplete { key, .. } => {
                                Some(Probed::Finished(key.clone()))
                            }
                            _ => None,
                        };
                        let outputs = desk.handle(ev, OffsetDateTime::now_utc());
                        if done_tx.send(Analysed { outputs, probed }).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawning an analysis thread");
            inputs.push(tx);
            threads.push(thread);
        }
        let shards = crate::shard::Shards::new(inputs.len());
        (
            Analysts {
                inputs,
                shards,
                threads,
            },
            done_rx,
        )
    }

    /// Queues an event on the worker that owns its visit.
    async fn dispatch(&mut self, ev: AssemblyEvent) -> Result<(), ServiceError> {
        let shard = self.shards.route(&ev);
        self.inputs[shard]
            .send(ev)
            .await
            .map_err(|_| ServiceError::AnalysisWorker)
    }

    /// Closes the queues; the workers finish what they hold and stop.
    fn close(self) -> Vec<std::thread::JoinHandle<()>> {
        drop(self.inputs);
        self.threads
    }
}

struct Driver<'a, P: Publisher> {
    /// `None` once the event stream ended and the workers are draining.
    analysts: Option<Analysts>,
    /// Visits being analysed: their acquisition time and rate (the
    /// analysis-lag metric).
    open: HashMap<VisitKey, (OffsetDateTime, u32)>,
    writer: ArchiveWriter,
    publisher: &'a P,
    ingest: &'a IngestHandle,
    metrics: Metrics,
    /// Buffered in the archive, released from the spool at commit.
    pending: HashMap<String, VisitKey>,
    /// Visits already archived by an earlier run, being replayed.
    skip: HashSet<VisitKey>,
    /// alert id -> when the broker acknowledged it.
    published_at: HashMap<String, OffsetDateTime>,
    /// visit -> when its meta reached the pipeline (alert latency).
    started_at: HashMap<VisitKey, Instant>,
    /// Set while the archive cannot be written (a full disk): no new
    /// events are taken until a flush succeeds, so nothing more is acked.
    archive_retry_at: Option<Instant>,
    archive_retry_wait: Duration,
    summary: RunSummary,
    book: crate::lifecycle::AlertBook,
    hub: ecg_dashboard::Hub,
    centre: CentreId,
    probe: Option<Arc<dyn Probe>>,
    quarantine: crate::quarantine::Quarantine,
    /// Refused input to release from the spool once the quarantine is
    /// synced (at the next tick: one sync for a burst, not one each).
    held_inputs: Vec<ecg_ingest::RecordId>,
}

const ARCHIVE_RETRY_MIN: Duration = Duration::from_millis(200);
const ARCHIVE_RETRY_MAX: Duration = Duration::from_secs(2);

/// Errors of the storage under the archive are expected to pass (space
/// freed, a mount back); every other archive error is a bug in what we
/// wrote and stops the pipeline.
fn transient(e: &ecg_archive::ArchiveError) -> bool {
    matches!(e, ecg_archive::ArchiveError::Store(_))
}

impl<P: Publisher> Driver<'_, P> {
    async fn run(
        &mut self,
        mut events: tokio::sync::mpsc::Receiver<AssemblyEvent>,
        mut results: tokio::sync::mpsc::UnboundedReceiver<Analysed>,
        mut acks: tokio::sync::mpsc::Receiver<ecg_dashboard::AckRequest>,
        flushed: &tokio::sync::Notify,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServiceError> {
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut events_open = true;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut workers = Vec::new();
        loop {
            // Biased, in this order: acknowledgements, the timer (archive
            // age flush, escalations) and the stop request are never
            // starved; outputs go before new events, so finished work
            // leaves memory before more is taken in.
            tokio::select! {
                biased;
                Some(req) = acks.recv() => self.acknowledge(req)?,
                _ = tick.tick() => {
                    self.tick()?;
                    self.escalate().await?;
                }
                // A background flush finished: release its visits now
                // rather than at the next tick.
                _ = flushed.notified(), if self.archive_retry_at.is_none() => {
                    self.poll_archive(Instant::now())?;
                }
                _ = &mut shutdown, if !stopping => {
                    tracing::info!("shutting down: no new messages; finishing what was received");
                    stopping = true;
                    self.ingest.stop_intake();
                }
                // Outputs wait, like events, while the archive cannot be
                // written: nothing more is buffered or released meanwhile.
                done = results.recv(), if self.archive_retry_at.is_none() => match done {
                    Some(done) => self.analysed(done).await?,
                    None => break,
                },
                ev = events.recv(), if events_open && self.archive_retry_at.is_none() => match ev {
                    Some(ev) => {
                        self.metrics.event_queue_depth.set(events.len() as i64);
                        self.event(ev).await?;
                    }
                    None => {
                        // The workers finish what they hold; their outputs
                        // still come on `results`, which then closes.
                        events_open = false;
                        if let Some(a) = self.analysts.take() {
                            workers = a.close();
                        }
                    }
                },
            }
        }
        for w in workers {
            if w.join().is_err() {
                return Err(ServiceError::AnalysisWorker);
            }
        }
        // Visits still open have not ended; they stay in the spool and the
        // broker session and are replayed by the next run. Visits the
        // archive could not take stay there too.
        let committed = self.writer.flush()?;
        self.release(committed);
        self.sync_quarantine();
        tracing::info!(
            archived = self.summary.visits_archived,
            alerts = self.summary.alerts,
            open = self.open.len(),
            "pipeline stopped"
        );
        Ok(())
    }

    fn tick(&mut self) -> Result<(), ServiceError> {
        self.poll_archive(Instant::now())?;
        self.sync_quarantine();
        self.metrics
            .quarantine_bytes
            .set(self.quarantine.used_bytes());
        let stats = self.ingest.stats();
        self.metrics
            .messages_received
            .set(stats.received.load(Ordering::Relaxed));
        self.metrics
            .messages_acked
            .set(stats.acked.load(Ordering::Relaxed));
        self.metrics
            .ingest_visits_in_flight
            .set(stats.visits_in_flight.load(Ordering::Relaxed) as i64);
        self.metrics.visits_in_flight.set(self.open.len() as i64);
        self.metrics
            .archive_buffered
            .set(self.writer.buffered() as i64);
        self.metrics
            .spool_errors
            .set(stats.spool_errors.load(Ordering::Relaxed));
        Ok(())
    }

    /// Takes in finished flushes and starts one that is due; while the
    /// archive is failing, retries a full flush once the wait is over.
    fn poll_archive(&mut self, now: Instant) -> Result<(), ServiceError> {
        let flushed = match self.archive_retry_at {
            Some(at) if now < at => Ok(Vec::new()),
            Some(_) => self.writer.flush(),
            None => self.writer.poll(now),
        };
        match flushed {
            Ok(committed) => {
                if self.archive_retry_at.take().is_some() {
                    tracing::info!("archive writable again; taking messages");
                    self.archive_retry_wait = ARCHIVE_RETRY_MIN;
                }
                self.release(committed);
                Ok(())
            }
            Err(e) => self.archive_failed(e),
        }
    }

    /// A transient archive failure holds intake (the spool keeps the
    /// visits, unreleased) and schedules a retry; any other error stops.
    fn archive_failed(&mut self, e: ecg_archive::ArchiveError) -> Result<(), ServiceError> {
        if !transient(&e) {
            return Err(e.into());
        }
        self.metrics.archive_errors.inc();
        let wait = self.archive_retry_wait;
        tracing::error!(error = %e, retry_ms = wait.as_millis() as u64,
            "archive write failed; holding intake until it succeeds");
        self.archive_retry_at = Some(Instant::now() + wait);
        self.archive_retry_wait = (wait * 2).min(ARCHIVE_RETRY_MAX);
        Ok(())
    }

    /// Records an acknowledgement (MQTT or dashboard): out of the pending
    /// book, into the archive's `alert_acks`, onto the dashboard.
    fn acknowledge(&mut self, req: ecg_dashboard::AckRequest) -> Result<(), ServiceError> {
        use crate::lifecycle::AckEffect;
        let effect = self.book.acknowledge(&req.ack)?;
        let outcome = match effect {
            AckEffect::Recorded(alert) => {
                tracing::info!(alert_id = %alert.alert_id, by = %req.ack.by, "alert acknowledged");
                self.writer.append_ack(ecg_archive::AlertAck {
                    alert_id: req.ack.alert_id.to_string(),
                    acked_at: req.ack.at,
                    acked_by: req.ack.by.clone(),
                    verdict: req.ack.verdict.map(|v| v.as_str().to_owned()),
                });
                self.hub.alert_acked(&req.ack);
                ecg_dashboard::AckOutcome::Recorded
            }
            AckEffect::NotPending => ecg_dashboard::AckOutcome::NotPending,
        };
        if let Some(done) = req.done {
            let _ = done.send(outcome);
        }
        Ok(())
    }

    /// Re-publishes every alert unacknowledged past its deadline to the
    /// escalation topic, and records it.
    async fn escalate(&mut self) -> Result<(), ServiceError> {
        let now = OffsetDateTime::now_utc();
        let due = self.book.due(now);
        if due.is_empty() {
            return Ok(());
        }
        let topic = crate::lifecycle::escalation_topic(&self.centre);
        for a in &due {
            self.publish(topic.clone(), a.to_json()).await?;
            tracing::warn!(alert_id = %a.alert_id, level = a.escalation_level, "alert not acknowledged in time: escalated");
            self.writer.append_escalation(ecg_archive::AlertEscalation {
                alert_id: a.alert_id.to_string(),
                centre_id: a.centre_id.to_string(),
                escalated_at: a.published_at,
                escalation_level: a.escalation_level,
            });
            self.hub.alert_escalated(a, a.published_at);
        }
        self.book.commit_escalations(&due, now)?;
        Ok(())
    }

    /// Makes the quarantine durable, then lets the spool forget the refused
    /// input held for it. A failure is counted and logged, and the input is
    /// let go all the same, with its dead letter out: the quarantine must
    /// not stall intake (a full disk holds it through the archive anyway).
    fn sync_quarantine(&mut self) {
        if !self.quarantine.is_synced() {
            if let Err(e) = tokio::task::block_in_place(|| self.quarantine.sync()) {
                self.metrics.quarantine_errors.inc();
                tracing::error!(error = %e, "quarantine sync failed: refused input held there may be lost in a power cut");
            }
        }
        for id in self.held_inputs.drain(..) {
            self.ingest.release(id);
        }
    }

    fn keep_in_quarantine(&mut self, source: &str, day: time::Date, line: &[u8]) {
        use crate::quarantine::Kept;
        match self.quarantine.keep(source, day, line) {
            Ok(Kept::Written) => {
                self.metrics.quarantined.inc();
            }
            Ok(why) => {
                // Said once, then every 10,000: a flood is what fills it.
                let before = self.metrics.quarantine_dropped.inc();
                if before.is_multiple_of(10_000) {
                    tracing::warn!(%source, ?why, dropped = before + 1, dir = %self.quarantine.dir().display(),
                        "refused input not kept whole (its dead letter keeps the first KiB)");
                }
            }
            Err(e) => {
                self.metrics.quarantine_errors.inc();
                tracing::error!(error = %e, %source, "refused input could not be quarantined");
            }
        }
    }

    fn release(&mut self, committed: Vec<String>) {
        // A visit's refused chunks are in the quarantine before the spool
        // lets the visit go.
        if !committed.is_empty() {
            self.sync_quarantine();
        }
        for id in committed {
            if let Some(key) = self.pending.remove(&id) {
                self.metrics.visits_archived.inc();
                self.summary.visits_archived += 1;
                self.ingest.mark_done(key);
            }
        }
    }

    async fn event(&mut self, ev: AssemblyEvent) -> Result<(), ServiceError> {
        self.metrics.events.inc();
        if let AssemblyEvent::Started { key, .. } = &ev {
            if self.writer.is_archived(&key.visit_id.to_string()) {
                // Replayed after a crash that came between the archive
                // commit and the spool release: already alerted and stored.
                self.skip.insert(key.clone());
            } else {
                self.metrics.visits_started.inc();
                self.started_at.insert(key.clone(), Instant::now());
            }
        }
        match &ev {
            AssemblyEvent::Started { key, meta } => {
                self.open
                    .insert(key.clone(), (meta.acquired_at, meta.fs_hz));
            }
            AssemblyEvent::Samples {
                key,
                first_sample,
                leads,
            } => {
                if let Some(&(acquired_at, fs_hz)) = self.open.get(key) {
                    let n = first_sample + leads.first().map_or(0, |l| l.len() as u32);
                    let newest = acquired_at
                        + Duration::from_secs_f64(f64::from(n) / f64::from(fs_hz.max(1)));
                    self.metrics
                        .analysis_lag_s
                        .set((OffsetDateTime::now_utc() - newest).as_seconds_f64());
                }
            }
            AssemblyEvent::Complete { key, .. } | AssemblyEvent::Incomplete { key, .. } => {
                self.open.remove(key);
            }
            AssemblyEvent::Rejected(_) => {}
        }
        if let Some(key) = ev.key() {
            if self.skip.contains(key) {
                if matches!(
                    ev,
                    AssemblyEvent::Complete { .. } | AssemblyEvent::Incomplete { .. }
                ) {
                    let key = key.clone();
                    self.skip.remove(&key);
                    self.summary.replayed_archived += 1;
                    self.ingest.mark_done(key);
                }
                return Ok(());
            }
        }
        match &mut self.analysts {
            Some(a) => a.dispatch(ev).await,
            None => Err(ServiceError::AnalysisWorker),
        }
    }

    /// A worker's outputs for one event, in order.
    async fn analysed(&mut self, done: Analysed) -> Result<(), ServiceError> {
        for out in done.outputs {
            self.output(out).await?;
        }
        match (&self.probe, done.probed) {
            (
                Some(probe),
                Some(Probed::Samples {
                    key,
                    first_sample,
                    n,
                }),
            ) => probe.samples_processed(&key, first_sample, n),
            (Some(probe), Some(Probed::Finished(key))) => probe.visit_finished(&key),
            _ => {}
        }
        Ok(())
    }

    async fn output(&mut self, out: Output) -> Result<(), ServiceError> {
        match out {
            Output::Alert { key, mut alert } => {
                let topic = format!("ecg/v1/alerts/{}", alert.centre_id);
                alert.published_at = OffsetDateTime::now_utc().max(alert.detected_at);
                self.publish(topic, alert.to_json()).await?;
                let acked = OffsetDateTime::now_utc();
                self.published_at
                    .insert(alert.alert_id.to_string(), alert.published_at);
                self.metrics.alerts.inc();
                self.summary.alerts += 1;
                self.book.published(&alert)?;
                self.hub.alert_published(&alert, 0);
                if let Some(t0) = self.started_at.get(&key) {
                    self.metrics
                        .alert_latency_s
                        .observe(t0.elapsed().as_secs_f64());
                }
                self.metrics
                    .alert_age_s
                    .observe((acked - alert.acquired_at).as_seconds_f64().max(0.0));
            }
            Output::Publish { topic, payload } => {
                if topic == crate::triage_desk::DEADLETTER_TOPIC {
                    self.metrics.dead_letters.inc();
                    self.summary.dead_letters += 1;
                }
                self.publish(topic, payload).await?;
            }
            Output::Archive { key, mut record } => {
                self.started_at.remove(&key);
                for a in &mut record.alerts {
                    if let Some(at) = self.published_at.remove(&a.alert_id) {
                        a.published_at = at;
                    }
                }
                if !record.visit.complete {
                    self.metrics.visits_incomplete.inc();
                    self.summary.visits_incomplete += 1;
                }
                let id = record.visit.visit_id.clone();
                self.hub.visit_archived(&record);
                let appended = match tokio::task::block_in_place(|| self.writer.append(*record)) {
                    Ok(a) => a,
                    Err(e) => {
                        // The visit is buffered; only its flush failed.
                        self.pending.insert(id, key);
                        return self.archive_failed(e);
                    }
                };
                match appended {
                    Appended::Duplicate => {
                        if self.writer.is_archived(&id) {
                            self.sync_quarantine();
                            self.ingest.mark_done(key);
                        } else {
                            self.pending.insert(id, key);
                        }
                    }
                    Appended::Buffered => {
                        self.pending.insert(id, key);
                    }
                    Appended::Committed(ids) => {
                        self.pending.insert(id, key);
                        self.release(ids);
                    }
                }
            }
            Output::Release { key } => {
                self.started_at.remove(&key);
                self.sync_quarantine();
                // Not done: the visit may still come whole (its meta at
                // last, or a replay from the quarantine).
                self.ingest.forget(key);
            }
            Output::ReleaseInput { id } => {
                if self.quarantine.is_synced() {
                    self.ingest.release(id);
                } else {
                    self.held_inputs.push(id);
                }
            }
            Output::Quarantine { source, day, line } => {
                self.keep_in_quarantine(&source, day, &line)
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), ServiceError> {
        self.publisher
            .publish(topic.clone(), payload)
            .await
            .map_err(|source| ServiceError::Publish { topic, source })
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a supervisor may send SIGTERM while the pipeline is still
/// connecting, and the default action would kill it without a clean stop.
/// Must be called inside a Tokio runtime.
pub fn termination() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the pipeline on its own runtime until SIGTERM or Ctrl-C, then shuts
/// down gracefully (the blocking entry point of `ecgtriage run`).
pub fn run_until_terminated(cfg: ServiceConfig) -> Result<RunSummary, ServiceError> {
    run_until_terminated_with(cfg, CardiologistSide::default())
}

/// [`run_until_terminated`] with escalation settings and the dashboard.
pub fn run_until_terminated_with(
    cfg: ServiceConfig,
    side: CardiologistSide,
) -> Result<RunSummary, ServiceError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ServiceError::Runtime { source })?;
    // Inside the runtime's context (signal handlers need its driver), but
    // installed now, not when first polled.
    let stop = {
        let _context = rt.enter();
        termination()
    };
    rt.block_on(run_with(cfg, side, stop))
}
