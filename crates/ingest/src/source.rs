//! The MQTT source: subscribes to the device topics with an MQTT 5
//! persistent session, spools every message durably, acknowledges it only
//! then, and feeds the assembler.
//!
//! Three tasks, joined by bounded channels:
//!
//! ```text
//! poller --publishes--> spooler --records--> assembler --events--> pipeline
//!   ^ (EventLoop)          | append, fsync, ack     ^ tick (timeouts)
//!   +---- acks via client -+   <--mark_done/release-+-- IngestHandle
//! ```
//!
//! Only the poller touches the EventLoop, and it never awaits a request on
//! the client: rumqttc deadlocks when the polling task blocks on a full
//! request channel, nor on the spooler: the forward channel is unbounded.
//! The poller bounds it itself, by not polling while too many received
//! messages wait for their ack (the broker's receive maximum alone did
//! not). The spooler acks; backpressure from a slow pipeline stops the
//! acks, which stops the poller, and TCP stops the broker.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::assembly::{Assembler, AssemblyConfig, AssemblyEvent, VisitKey};
use crate::spool::{Received, RecordId, Spool, SpoolConfig, SpoolError};

/// Everything the ingest needs. Its `Debug` hides the password.
#[derive(Clone)]
pub struct IngestConfig {
    pub host: String,
    pub port: u16,
    /// MQTT user and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// TLS to the broker (`mqtts://`); `None` is plain TCP.
    pub tls: Option<TlsConfiguration>,
    /// Stable across restarts: the broker keeps the session under it.
    pub client_id: String,
    /// Subscription filter; `$share/<group>/ecg/v1/dev/+/visit/+/+` spreads
    /// visits over several ingest processes (each with its own spool).
    pub filter: String,
    /// How long the broker keeps the session (and queues QoS 1 messages)
    /// while this client is away.
    pub session_expiry: Duration,
    /// MQTT 5 receive maximum: unacknowledged messages the broker may send.
    pub receive_maximum: u16,
    pub keep_alive: Duration,
    /// Largest packet accepted from the broker.
    pub max_packet_bytes: u32,
    /// Messages per fsync at most (group commit).
    pub max_batch: usize,
    /// How often abandoned visits are looked for.
    pub tick_interval: Duration,
    /// Capacity of the event channel to the pipeline.
    pub events_capacity: usize,
    /// Reconnect backoff: first and largest wait.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub spool: SpoolConfig,
    pub assembly: AssemblyConfig,
}

impl IngestConfig {
    /// Defaults for a broker at `host:port`, spooling under `spool_dir`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        client_id: impl Into<String>,
        spool_dir: impl Into<std::path::PathBuf>,
    ) -> IngestConfig {
        IngestConfig {
            host: host.into(),
            port,
            credentials: None,
            tls: None,
            client_id: client_id.into(),
            filter: ecg_wire::topic::DEVICE_FILTER.to_owned(),
            session_expiry: Duration::from_secs(7 * 24 * 3600),
            receive_maximum: 256,
            keep_alive: Duration::from_secs(30),
            max_packet_bytes: 1 << 20,
            max_batch: 256,
            tick_interval: Duration::from_millis(500),
            events_capacity: 1024,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            spool: SpoolConfig::new(spool_dir),
            assembly: AssemblyConfig::default(),
        }
    }
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("tls", &self.tls.is_some())
            .field("client_id", &self.client_id)
            .field("filter", &self.filter)
            .field("session_expiry", &self.session_expiry)
            .field("receive_maximum", &self.receive_maximum)
            .field("keep_alive", &self.keep_alive)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("max_batch", &self.max_batch)
            .field("tick_interval", &self.tick_interval)
            .field("events_capacity", &self.events_capacity)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("spool", &self.spool)
            .field("assembly", &self.assembly)
            .finish()
    }
}

/// Why the ingest could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("ingest task failed: {0}")]
    Task(String),
    #[error("bad ingest setting: {0}")]
    Config(String),
}

/// Counters, readable while running.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Publishes taken from the broker.
    pub received: AtomicU64,
    /// Messages appended to the spool.
    pub spooled: AtomicU64,
    /// fsyncs (each covers a batch).
    pub fsyncs: AtomicU64,
    pub acked: AtomicU64,
    /// Messages of visits already done, acked without spooling.
    pub skipped_done: AtomicU64,
    /// Messages replayed from the spool at start.
    pub replayed: AtomicU64,
    /// Connection errors (each followed by a reconnect attempt).
    pub connection_errors: AtomicU64,
    /// Successful connections (the first one included).
    pub connects: AtomicU64,
    /// Subscriptions the broker confirmed (SUBACK): the ingest is receiving.
    pub subscriptions: AtomicU64,
    /// Visits open in the assembler.
    pub visits_in_flight: AtomicU64,
    /// Spool segment files.
    pub spool_segments: AtomicU64,
    /// Failed spool writes or fsyncs (each retried; a full disk, say).
    pub spool_errors: AtomicU64,
    /// Visits marked done durably in the spool: after a crash they are not
    /// replayed.
    pub marked_done: AtomicU64,
}

enum Command {
    Done(VisitKey),
    Forget(VisitKey),
    Release(RecordId),
}

/// Controls a running ingest. Dropping it without [`IngestHandle::finish`]
/// aborts every task at once, like a crash: the spool and the broker session
/// make that safe.
pub struct IngestHandle {
    commands: mpsc::UnboundedSender<Command>,
    stop: watch::Sender<bool>,
    stats: Arc<IngestStats>,
    tasks: Vec<JoinHandle<Result<(), IngestError>>>,
}

impl IngestHandle {
    /// The pipeline finished the visit (archived it, whatever its outcome):
    /// its spooled messages may go and it will not be replayed. Call it for
    /// every `Complete` and `Incomplete` event once handled.
    pub fn mark_done(&self, key: VisitKey) {
        // Fails only when the spooler has stopped, which `finish` reports.
        let _ = self.commands.send(Command::Done(key));
    }

    /// The visit was closed before its meta and its messages refused: they
    /// may go and are not replayed, but what comes for it later is taken
    /// in ([`Spool::forget`]), unlike after [`IngestHandle::mark_done`].
    pub fn forget(&self, key: VisitKey) {
        let _ = self.commands.send(Command::Forget(key));
    }

    /// The pipeline is done with refused input ([`crate::Rejection::spooled`]):
    /// its dead letter is out, or was not to be sent. Until then a crash
    /// replays the message and it is refused again.
    pub fn release(&self, id: RecordId) {
        let _ = self.commands.send(Command::Release(id));
    }

    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// Stops taking messages: disconnects from the broker (unacknowledged
    /// messages stay queued in the session); what is already received is
    /// still spooled and assembled, then the event stream ends.
    pub fn stop_intake(&self) {
        let _ = self.stop.send(true);
    }

    /// After the event stream ended and every `mark_done` was issued:
    /// syncs the spool and waits for the tasks. Calls `stop_intake` first.
    pub async fn finish(mut self) -> Result<(), IngestError> {
        self.stop_intake();
        let tasks = std::mem::take(&mut self.tasks);
        // Closing the command channel lets the spooler end once its inputs
        // are drained.
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.commands, closed));
        let mut first_error = None;
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(IngestError::Task(e.to_string()));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Kills every task without flushing anything (crash simulation).
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for IngestHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens the spool, replays it, connects and starts the tasks. Events come
/// on the returned receiver; the stream ends after `stop_intake`.
pub async fn start(
    cfg: IngestConfig,
) -> Result<(IngestHandle, mpsc::Receiver<AssemblyEvent>), IngestError> {
    if cfg.receive_maximum == 0 || cfg.max_batch == 0 || cfg.events_capacity == 0 {
        return Err(IngestError::Config(
            "receive_maximum, max_batch and events_capacity must be >= 1".into(),
        ));
    }
    let (spool, replay) = open_spool(&cfg.spool, SPOOL_LOCK_WAIT).await?;
    let stats = Arc::new(IngestStats::default());
    stats.replayed.store(replay.len() as u64, Ordering::Relaxed);
    stats
        .spool_segments
        .store(spool.segment_count() as u64, Ordering::Relaxed);

    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    // Acks queue here while the poller is not polling (see `Unacked`): room
    // for far more than it lets in, so that the spooler does not wait.
    let window = ACK_QUEUE;
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(
            cfg.session_expiry.as_secs().min(u32::MAX as u64) as u32
        ))
        .set_receive_maximum(Some(cfg.receive_maximum))
        .set_max_packet_size(Some(cfg.max_packet_bytes))
        .set_keep_alive(cfg.keep_alive)
        .set_manual_acks(true)
        .set_request_channel_capacity(window);
    if let Some((u, p)) = &cfg.credentials {
        opts.set_credentials(u.clone(), p.clone());
    }
    if let Some(tls) = &cfg.tls {
        opts.set_transport(Transport::tls_with_config(tls.clone()));
    }
    let (client, eventloop) = AsyncClient::new(opts, window);

    // The poller never waits on the spooler, which may itself wait for the
    // poller to drain acks (the rumqttc deadlock): the channel is unbounded,
    // and the poller stops polling while `unacked.max` publishes it received
    // wait for their ack. The broker's flow control is not enough: Mosquitto
    // 2.0.11 sends more than the session's receive maximum once acks flow
    // (1,006 instead of 356 for receive maximum 256 and 100 acks), and under
    // a backlog the whole backlog came into memory (8 GB for a year of visits).
    let (fwd_tx, fwd_rx) = mpsc::unbounded_channel::<(Publish, OffsetDateTime)>();
    let unacked = Arc::new(Unacked {
        count: AtomicUsize::new(0),
        unsent: AtomicUsize::new(0),
        max: usize::from(cfg.receive_maximum).max(cfg.max_batch),
        acked: Notify::new(),
    });
    let (rec_tx, rec_rx) = mpsc::channel::<(RecordId, Received)>(cfg.max_batch * 2);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(cfg.events_capacity);
    let (stop_tx, stop_rx) = watch::channel(false);

    let assembler = Assembler::new(cfg.assembly.clone());
    let tasks = vec![
        tokio::spawn(assemble(
            assembler,
            replay,
            rec_rx,
            events_tx,
            cmd_tx.clone(),
            cfg.tick_interval,
            stats.clone(),
        )),
        tokio::spawn(spool_and_ack(
            spool,
            client.clone(),
            fwd_rx,
            unacked.clone(),
            cmd_rx,
            rec_tx,
            cfg.max_batch,
            stats.clone(),
        )),
        tokio::spawn(poll(
            eventloop,
            client,
            cfg.filter.clone(),
            fwd_tx,
            unacked,
            stop_rx,
            cfg.backoff_min,
            cfg.backoff_max,
            stats.clone(),
        )),
    ];
    Ok((
        IngestHandle {
            commands: cmd_tx,
            stop: stop_tx,
            stats,
            tasks,
        },
        events_rx,
    ))
}

/// How long a start waits for the spool of a process that is ending: a
/// restart right after a crash or a kill may come before the old process
/// has let go of it.
const SPOOL_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the spool on a blocking thread (a replay reads every segment),
/// waiting up to `wait` while another process holds it.
async fn open_spool(
    cfg: &SpoolConfig,
    wait: Duration,
) -> Result<(Spool, Vec<(RecordId, Received)>), IngestError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        let c = cfg.clone();
        let opened = tokio::task::spawn_blocking(move || Spool::open(c))
            .await
            .map_err(|e| IngestError::Task(format!("opening the spool: {e}")))?;
        match opened {
            Err(SpoolError::InUse { .. }) if tokio::time::Instant::now() < deadline => {
                if !said {
                    said = true;
                    tracing::warn!(dir = %cfg.dir.display(), wait_s = wait.as_secs(),
                        "the spool is in use by another process; waiting for it to let go");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Capacity of the client's request channel, which carries the spooler's
/// acks (a few dozen bytes each) to the poller.
const ACK_QUEUE: usize = 1 << 16;

/// Publishes received and not yet acknowledged by the spooler, and acks
/// the spooler issued that the poller has not sent yet. The poller polls
/// while the first is under `max`, or while acks wait and the first is
/// under twice `max`: acks only leave when it polls, but a poll that sends
/// an ack may also read, and this broker sends on as acks flow, so without
/// the second bound every batch of acks let more in than it acked (86,000
/// messages held in an 8,000-visit run). Past it the waiting acks leave
/// with the spooler's next ones, which free room (the spooler takes from
/// what was received, never from the network). The acks wait in a channel
/// that the poller empties before it fills, so the spooler never waits.
struct Unacked {
    count: AtomicUsize,
    unsent: AtomicUsize,
    /// The poller stops polling at this many with no ack to send, and at
    /// twice as many in any case.
    max: usize,
    acked: Notify,
}

impl Unacked {
    /// Until the poller may poll again.
    async fn room(&self) {
        loop {
            let acked = self.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            let count = self.count.load(Ordering::Acquire);
            let unsent = self.unsent.load(Ordering::Acquire);
            if count < self.max || (unsent > 0 && count < 2 * self.max) || unsent >= ACK_QUEUE / 2 {
                return;
            }
            acked.await;
        }
    }

    fn received(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn acked(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.unsent.fetch_add(1, Ordering::AcqRel);
        self.acked.notify_one();
    }

    fn ack_sent(&self) {
        let _ = self
            .unsent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// rumqttc drops the acks still queued when a connection breaks (the
    /// broker sends those messages again).
    fn connection_lost(&self) {
        self.unsent.store(0, Ordering::Release);
    }
}

/// Resolves once a stop is requested (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        let now = *stop.borrow_and_update();
        if now || stop.changed().await.is_err() {
            return;
        }
    }
}

/// The one task that polls the EventLoop. It forwards publishes and
/// otherwise only reconnects (rumqttc reconnects on the next poll after an
/// error; we wait a backoff first).
#[allow(clippy::too_many_arguments)]
async fn poll(
    mut eventloop: rumqttc::v5::EventLoop,
    client: AsyncClient,
    filter: String,
    forward: mpsc::UnboundedSender<(Publish, OffsetDateTime)>,
    unacked: Arc<Unacked>,
    mut stop: watch::Receiver<bool>,
    backoff_min: Duration,
    backoff_max: Duration,
    stats: Arc<IngestStats>,
) -> Result<(), IngestError> {
    let mut backoff = backoff_min;
    loop {
        // Not reading while the spooler is behind leaves the rest in the
        // broker (TCP flow control). The spooler's first ack resumes the
        // poller, so its acks never wait long in the request channel.
        tokio::select! {
            _ = unacked.room() => {}
            _ = stopped(&mut stop) => {}
        }
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = stopped(&mut stop) => {
                // Unacked messages stay in the session; the spooler acks
                // what it already has, which the broker may or may not get.
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while eventloop.poll().await.is_ok() {}
                })
                .await;
                return Ok(());
            }
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(mut p))) => {
                // Topic and payload share rumqttc's read buffer, allocated
                // in pieces of up to 128 KB, each kept whole while any
                // message read into it waits: their own copies let it go
                // (heaptrack: 200 MB of read buffers for a few hundred
                // messages waiting in an 8,000-visit run).
                p.topic = p.topic.to_vec().into();
                p.payload = p.payload.to_vec().into();
                stats.received.fetch_add(1, Ordering::Relaxed);
                unacked.received();
                if forward.send((p, OffsetDateTime::now_utc())).is_err() {
                    return Ok(()); // the spooler stopped; it reports why
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                backoff = backoff_min;
                tracing::info!(session_present = ack.session_present, "connected to broker");
                if !ack.session_present {
                    // A new session has no subscription (first start, or
                    // the old session expired).
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "cannot queue the subscription");
                    }
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::PubAck(_))) => unacked.ack_sent(),
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                stats.subscriptions.fetch_add(1, Ordering::Relaxed);
                // From here on the broker keeps the devices' messages for us.
                tracing::info!(filter = %filter, "subscribed");
            }
            Ok(_) => {}
            Err(e) => {
                stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                unacked.connection_lost();
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "broker connection lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => return Ok(()),
                }
                backoff = (backoff * 2).min(backoff_max);
            }
        }
    }
}

/// Appends each batch of publishes to the spool, fsyncs once, acks them and
/// passes them on; applies `mark_done` and `release` between batches.
#[allow(clippy::too_many_arguments)]
async fn spool_and_ack(
    spool: Spool,
    client: AsyncClient,
    mut publishes: mpsc::UnboundedReceiver<(Publish, OffsetDateTime)>,
    unacked: Arc<Unacked>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    records: mpsc::Sender<(RecordId, Received)>,
    max_batch: usize,
    stats: Arc<IngestStats>,
) -> Result<(), IngestError> {
    let mut spool = OffThread {
        segments: spool.segment_count(),
        spool: Some(spool),
    };
    let mut batch = Vec::with_capacity(max_batch);
    let mut intake_open = true;
    let mut commands_open = true;
    let mut records = Some(records);
    while intake_open || commands_open {
        tokio::select! {
            n = publishes.recv_many(&mut batch, max_batch), if intake_open => {
                if n == 0 {
                    intake_open = false;
                    // Nothing more to assemble: let the event stream end.
                    records = None;
                    continue;
                }
                let Some(passed) =
                    spool_until_durable(&mut spool, &mut batch, &publishes, &stats).await?
                else {
                    // Stopping while the spool cannot be written: these
                    // messages stay unacknowledged in the broker session.
                    batch.clear();
                    intake_open = false;
                    records = None;
                    continue;
                };
                for (publish, _) in batch.drain(..) {
                    // Counted first: the poller, which empties the channel
                    // this may wait on, polls again when that frees room.
                    unacked.acked();
                    if client.ack(&publish).await.is_ok() {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(tx) = &records {
                    for r in passed {
                        if tx.send(r).await.is_err() {
                            records = None;
                            break;
                        }
                    }
                }
            }
            cmd = commands.recv(), if commands_open => {
                let Some(cmd) = cmd else {
                    commands_open = false;
                    continue;
                };
                let mut cmds = vec![cmd];
                while let Ok(cmd) = commands.try_recv() {
                    cmds.push(cmd);
                }
                apply_until_durable(&mut spool, cmds, &stats).await?;
            }
        }
        stats
            .spool_segments
            .store(spool.segments as u64, Ordering::Relaxed);
    }
    spool.run(|s| s.sync()).await??;
    Ok(())
}

/// The spool, worked on the runtime's blocking threads: a batch's appends
/// and fsync take milliseconds, which on a runtime thread would hold up
/// the tasks that publish alerts.
struct OffThread {
    /// `None` only while a work is under way.
    spool: Option<Spool>,
    /// The spool's segments after the last work.
    segments: usize,
}

impl OffThread {
    async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Result<T, IngestError> {
        let mut spool = self
            .spool
            .take()
            .ok_or_else(|| IngestError::Task("the spool was lost with a failed write".into()))?;
        let (spool, out) = tokio::task::spawn_blocking(move || {
            let out = work(&mut spool);
            (spool, out)
        })
        .await
        .map_err(|e| IngestError::Task(format!("spool write: {e}")))?;
        self.segments = spool.segment_count();
        self.spool = Some(spool);
        Ok(out)
    }
}

/// A failed write or sync leaves the spool as at its last sync.
fn rollback_if_failed<T>(spool: &mut Spool, result: &Result<T, SpoolError>) {
    if result.is_err() {
        if let Err(e) = spool.rollback() {
            tracing::error!(error = %e, "spool rollback failed");
        }
    }
}

fn apply(spool: &mut Spool, cmd: &Command) -> Result<(), SpoolError> {
    match cmd {
        Command::Done(key) => spool.mark_done(key),
        Command::Forget(key) => spool.forget(key),
        Command::Release(id) => spool.release(id),
    }
}

const SPOOL_RETRY_MIN: Duration = Duration::from_millis(100);
const SPOOL_RETRY_MAX: Duration = Duration::from_secs(2);

/// Appends a batch and fsyncs it, retrying until the spool takes it (a full
/// disk frees up); None if intake stops meanwhile. Until it returns nothing
/// of the batch is acknowledged, so the broker holds those messages and,
/// its receive window full, sends no more: backpressure up to the devices.
async fn spool_until_durable(
    spool: &mut OffThread,
    batch: &mut Vec<(Publish, OffsetDateTime)>,
    publishes: &mpsc::UnboundedReceiver<(Publish, OffsetDateTime)>,
    stats: &Arc<IngestStats>,
) -> Result<Option<Vec<(RecordId, Received)>>, IngestError> {
    let mut wait = SPOOL_RETRY_MIN;
    loop {
        let taken = std::mem::take(batch);
        let counts = stats.clone();
        let (taken, result) = spool
            .run(move |s| {
                let result = spool_batch(s, &taken, &counts);
                rollback_if_failed(s, &result);
                (taken, result)
            })
            .await?;
        *batch = taken;
        match result {
            Ok(passed) => return Ok(Some(passed)),
            Err(e) => {
                stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, retry_ms = wait.as_millis() as u64,
                    "cannot make received messages durable; holding their acks until the spool is writable");
            }
        }
        if publishes.is_closed() {
            return Ok(None);
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(SPOOL_RETRY_MAX);
    }
}

fn spool_batch(
    spool: &mut Spool,
    batch: &[(Publish, OffsetDateTime)],
    stats: &IngestStats,
) -> Result<Vec<(RecordId, Received)>, SpoolError> {
    let mut passed = Vec::with_capacity(batch.len());
    let mut skipped = 0;
    for (publish, received_at) in batch {
        let msg = Received {
            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
            payload: publish.payload.to_vec(),
            received_at: *received_at,
        };
        let skip = msg.topic.ends_with("/result") || msg.key().is_some_and(|k| spool.is_done(&k));
        if skip {
            skipped += 1;
            continue;
        }
        let id = spool.append(&msg)?;
        passed.push((id, msg));
    }
    spool.sync()?;
    stats.skipped_done.fetch_add(skipped, Ordering::Relaxed);
    stats.fsyncs.fetch_add(1, Ordering::Relaxed);
    stats
        .spooled
        .fetch_add(passed.len() as u64, Ordering::Relaxed);
    Ok(passed)
}

/// Applies "done" and "release" commands and makes them durable, retrying
/// on a spool error. A done marker lost to a rollback only means that a
/// restart replays a visit the pipeline finds already archived.
async fn apply_until_durable(
    spool: &mut OffThread,
    cmds: Vec<Command>,
    stats: &IngestStats,
) -> Result<(), IngestError> {
    let mut wait = SPOOL_RETRY_MIN;
    let cmds = Arc::new(cmds);
    let mut next = 0;
    loop {
        let todo = cmds.clone();
        let (applied, result) = spool
            .run(move |s| {
                let mut next = next;
                let mut result = Ok(());
                while next < todo.len() {
                    if let Err(e) = apply(s, &todo[next]) {
                        result = Err(e);
                        break;
                    }
                    next += 1;
                }
                let result = result.and_then(|()| s.sync());
                rollback_if_failed(s, &result);
                (next, result)
            })
            .await?;
        next = applied;
        match result {
            Ok(()) => {
                let done = cmds
                    .iter()
                    .filter(|c| matches!(c, Command::Done(_)))
                    .count();
                stats.marked_done.fetch_add(done as u64, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => {
                stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, retry_ms = wait.as_millis() as u64, "cannot record finished visits in the spool; retrying");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(SPOOL_RETRY_MAX);
    }
}

/// Replays the spool, then assembles records as they come and expires
/// abandoned visits.
async fn assemble(
    mut assembler: Assembler,
    replay: Vec<(RecordId, Received)>,
    mut records: mpsc::Receiver<(RecordId, Received)>,
    events: mpsc::Sender<AssemblyEvent>,
    commands: mpsc::UnboundedSender<Command>,
    tick_interval: Duration,
    stats: Arc<IngestStats>,
) -> Result<(), IngestError> {
    for (id, msg) in replay {
        if !feed(&mut assembler, id, &msg, &events, &commands).await {
            return Ok(());
        }
    }
    assembler.resume(OffsetDateTime::now_utc());
    let mut ticker = tokio::time::interval(tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Visits time out in reception time: while received records wait in the
    // queue (the pipeline is behind), the clock is the newest one assembled,
    // so a visit whose next chunk is still queued is not taken for abandoned.
    let mut newest_fed: Option<OffsetDateTime> = None;
    loop {
        tokio::select! {
            r = records.recv() => {
                let Some((id, msg)) = r else { return Ok(()) };
                newest_fed = Some(newest_fed.map_or(msg.received_at, |t| t.max(msg.received_at)));
                if !feed(&mut assembler, id, &msg, &events, &commands).await {
                    return Ok(());
                }
            }
            _ = ticker.tick() => {
                let now = match newest_fed {
                    Some(t) if !records.is_empty() => t,
                    _ => OffsetDateTime::now_utc(),
                };
                for e in assembler.tick(now) {
                    if events.send(e).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        stats
            .visits_in_flight
            .store(assembler.in_flight() as u64, Ordering::Relaxed);
    }
}

/// One record through the assembler; false when the pipeline is gone.
async fn feed(
    assembler: &mut Assembler,
    id: RecordId,
    msg: &Received,
    events: &mpsc::Sender<AssemblyEvent>,
    commands: &mpsc::UnboundedSender<Command>,
) -> bool {
    let (mut out, refused) =
        assembler.push_telling_refusal(&msg.topic, &msg.payload, msg.received_at);
    // The record is still needed while its visit is open, and after the
    // visit's verdict until the pipeline marks it done.
    let held_by_visit = id.key().is_some_and(|key| {
        assembler.is_open(key)
            || out.iter().any(|e| {
                matches!(e, AssemblyEvent::Complete { key: k, .. } | AssemblyEvent::Incomplete { key: k, .. } if k == key)
            })
    });
    if !held_by_visit {
        // Refused input waits for its dead letter; anything else (a
        // duplicate of a finished visit, our own result echoed) can go.
        match refused.and_then(|i| out.get_mut(i)) {
            Some(AssemblyEvent::Rejected(r)) => r.spooled = Some(id),
            _ => {
                let _ = commands.send(Command::Release(id));
            }
        }
    }
    for e in out {
        if events.send(e).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assembly::tests::{key, visit};

    /// A start waits for a spool that its last holder is about to let go
    /// (a restart right after a kill), and gives up on one that stays held.
    #[tokio::test]
    async fn a_start_waits_for_the_spool_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig::new(dir.path());
        let (held, _) = Spool::open(cfg.clone()).unwrap();
        let err = open_spool(&cfg, Duration::from_millis(300))
            .await
            .err()
            .expect("held throughout");
        assert!(
            matches!(err, IngestError::Spool(SpoolError::InUse { .. })),
            "{err}"
        );
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        open_spool(&cfg, Duration::from_secs(30))
            .await
            .expect("opened once let go");
        holder.join().unwrap();
    }

    /// A backlog: every message of a visit was received long ago (more than
    /// the visit timeout) and waits in the queue while the pipeline takes
    /// events slowly. The visit must complete, not time out between chunks.
    #[tokio::test]
    async fn a_backlog_does_not_time_visits_out() {
        let k = key("dev-1", 1);
        let msgs = visit(&k, 20, 50);
        let assembler = Assembler::new(AssemblyConfig {
            visit_timeout: Duration::from_secs(1),
            ..AssemblyConfig::default()
        });
        let long_ago = OffsetDateTime::now_utc() - Duration::from_secs(10);
        let (rec_tx, rec_rx) = mpsc::channel(msgs.len());
        for (topic, payload) in msgs {
            let received = Received {
                topic,
                payload,
                received_at: long_ago,
            };
            rec_tx
                .try_send((RecordId::for_test(received.key()), received))
                .unwrap();
        }
        drop(rec_tx);
        let (events_tx, mut events_rx) = mpsc::channel(1);
        let (cmd_tx, _cmd_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(assemble(
            assembler,
            Vec::new(),
            rec_rx,
            events_tx,
            cmd_tx,
            Duration::from_millis(5),
            Arc::new(IngestStats::default()),
        ));
        let mut events = Vec::new();
        // Slower than the ticker: it fires between every two records fed.
        while let Some(e) = events_rx.recv().await {
            events.push(e);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        task.await.unwrap().unwrap();
        assert!(
            events.iter().any(|e| matches!(
                e,
                AssemblyEvent::Complete {
                    digest_ok: true,
                    ..
                }
            )),
            "the visit did not complete"
        );
        assert!(!events
            .iter()
            .any(|e| matches!(e, AssemblyEvent::Incomplete { .. })));
    }

    /// Refused input outside any open visit stays in the spool, handed to
    /// the pipeline with its rejection, until the pipeline releases it (its
    /// dead letter out); a redelivery of a finished visit goes at once.
    #[tokio::test]
    async fn refused_input_is_released_by_the_pipeline_not_by_the_assembler() {
        let k = key("dev-1", 1);
        let mut assembler = Assembler::new(AssemblyConfig::default());
        let (events_tx, mut events_rx) = mpsc::channel(64);
        let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
        let held = [
            // names no visit
            ("ecg/v1/dev/dev-1/nonsense".to_owned(), b"x".to_vec()),
            // names one, but opens none
            (visit(&k, 2, 10)[1].0.clone(), b"not a chunk".to_vec()),
        ];
        for (topic, payload) in &held {
            assert!(feed_one(&mut assembler, topic, payload, &events_tx, &cmd_tx).await);
        }
        for (topic, _) in &held {
            match events_rx.try_recv() {
                Ok(AssemblyEvent::Rejected(r)) => {
                    assert_eq!(&r.topic, topic);
                    assert!(r.spooled.is_some(), "{topic}: not handed on");
                }
                other => panic!("{topic}: {other:?}"),
            }
        }
        assert!(
            cmd_rx.try_recv().is_err(),
            "released before its dead letter"
        );
        for (topic, payload) in visit(&k, 2, 10) {
            assert!(feed_one(&mut assembler, &topic, &payload, &events_tx, &cmd_tx).await);
        }
        // The meta again, after the visit was decided: nothing to refuse.
        let (topic, payload) = visit(&k, 2, 10).swap_remove(0);
        assert!(feed_one(&mut assembler, &topic, &payload, &events_tx, &cmd_tx).await);
        assert!(matches!(cmd_rx.try_recv(), Ok(Command::Release(_))));
        assert!(cmd_rx.try_recv().is_err());
    }

    async fn feed_one(
        assembler: &mut Assembler,
        topic: &str,
        payload: &[u8],
        events: &mpsc::Sender<AssemblyEvent>,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> bool {
        let msg = Received {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            received_at: OffsetDateTime::now_utc(),
        };
        feed(
            assembler,
            RecordId::for_test(msg.key()),
            &msg,
            events,
            commands,
        )
        .await
    }
}
