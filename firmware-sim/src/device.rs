//! One device's MQTT link: QoS 1 publishing through the [`Spool`], a
//! persistent session (client id = device id, clean session off) and
//! reconnection with exponential backoff.
//!
//! rumqttc reports a publish's packet id only when its event loop sends it
//! (`Outgoing::Publish`), and the PUBACK by packet id. Messages enter the
//! request channel in the order they are spooled, and the event loop sends
//! new publishes in channel order, so a FIFO of spool files pairs each new
//! packet id with its file. A packet id already in flight is a
//! retransmission after a reconnect, not a new message.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};

use crate::broker::{BrokerConfigError, BrokerUrl, TlsSettings};
use crate::spool::{self, Spool, SpoolError};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Publishes the broker may hold unacknowledged per device.
const INFLIGHT: u16 = 64;
/// Largest packet either way: a chunk of 12 leads x 1000 Hz x 5 s is 120 kB.
const MAX_PACKET_BYTES: usize = 256 * 1024;

/// Why a device could not publish.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("MQTT request channel closed: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error(transparent)]
    Tls(#[from] BrokerConfigError),
}

/// Counters a device keeps for the fleet summary.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub bytes: AtomicU64,
    /// Retransmissions after reconnects plus spool replays after a restart.
    pub retries: AtomicU64,
    pub reconnects: AtomicU64,
}

#[derive(Default)]
struct Tracker {
    /// Spool files handed to the client, not yet given a packet id.
    queued: VecDeque<PathBuf>,
    in_flight: HashMap<u16, PathBuf>,
}

/// Deliberate link drops, for testing recovery: every `every_s` seconds of
/// link activity the connection is torn down and stays down `outage_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkDrops {
    pub every_s: f64,
    pub outage_s: f64,
}

/// A connected (or reconnecting) device.
pub struct Link {
    client: AsyncClient,
    spool: Spool,
    tracker: Arc<Mutex<Tracker>>,
    stats: Arc<LinkStats>,
    poller: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Opens the spool, starts the MQTT event loop and republishes whatever
    /// a previous run left unacknowledged.
    pub async fn open(
        device_id: &str,
        broker: &BrokerUrl,
        spool_dir: PathBuf,
    ) -> Result<Link, DeviceError> {
        Self::open_with_drops(device_id, broker, spool_dir, None).await
    }

    /// [`Link::open`] with injected link drops.
    pub async fn open_with_drops(
        device_id: &str,
        broker: &BrokerUrl,
        spool_dir: PathBuf,
        drops: Option<LinkDrops>,
    ) -> Result<Link, DeviceError> {
        Self::open_secure(device_id, broker, None, spool_dir, drops).await
    }

    /// [`Link::open_with_drops`] over TLS when `tls` is given (the broker
    /// URL was `mqtts://`). The TLS files are read once, here, so a missing
    /// CA fails the open instead of every reconnect.
    pub async fn open_secure(
        device_id: &str,
        broker: &BrokerUrl,
        tls: Option<&TlsSettings>,
        spool_dir: PathBuf,
        drops: Option<LinkDrops>,
    ) -> Result<Link, DeviceError> {
        let mut opts = MqttOptions::new(device_id, broker.host.clone(), broker.port);
        if let Some(tls) = tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.client_config()?,
            )));
        }
        opts.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(INFLIGHT)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let Some((user, pass)) = &broker.user {
            opts.set_credentials(user.clone(), pass.clone());
        }
        let (client, eventloop) = AsyncClient::new(opts, 16);
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let stats = Arc::new(LinkStats::default());
        let poller = tokio::spawn(poll(
            eventloop,
            device_id.to_owned(),
            tracker.clone(),
            stats.clone(),
            drops,
        ));
        let spool = Spool::open(spool_dir)?;
        let mut link = Link {
            client,
            spool,
            tracker,
            stats,
            poller,
        };
        for msg in link.spool.pending()? {
            link.stats.retries.fetch_add(1, Ordering::Relaxed);
            link.send(msg.path, msg.topic, msg.payload).await?;
        }
        Ok(link)
    }

    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }

    /// Spools then publishes one message at QoS 1. Waits only when the
    /// broker has too many messages unacknowledged (back-pressure).
    pub async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), DeviceError> {
        let path = self.spool.push(&topic, &payload)?;
        self.send(path, topic, payload).await
    }

    async fn send(
        &mut self,
        path: PathBuf,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), DeviceError> {
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        lock(&self.tracker).queued.push_back(path);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(())
    }

    /// Messages spooled and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        let t = lock(&self.tracker);
        t.queued.len() + t.in_flight.len()
    }

    /// Waits until the broker has acknowledged every message.
    pub async fn drain(&self) {
        while self.unacked() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Drains, then disconnects cleanly (the session stays on the broker).
    pub async fn close(self) {
        self.drain().await;
        self.client.disconnect().await.ok();
        // The event loop ends once the disconnect is sent; don't wait on a
        // broker that may be gone.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.poller.abort();
    }

    /// Drops the link abruptly, as a device losing power would: whatever is
    /// unacknowledged stays in the spool for the next [`Link::open`].
    pub fn crash(self) {
        self.poller.abort();
    }
}

fn lock(t: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    // A panic elsewhere cannot leave the tracker half-updated: every update
    // is a single push, pop or insert.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one task that drives the event loop. It never awaits anything but
/// `poll` and its own backoff, so a full request channel cannot stall it.
async fn poll(
    mut eventloop: EventLoop,
    device_id: String,
    tracker: Arc<Mutex<Tracker>>,
    stats: Arc<LinkStats>,
    drops: Option<LinkDrops>,
) {
    let mut backoff = MIN_BACKOFF;
    let drop_every = drops
        .filter(|d| d.every_s.is_finite() && d.every_s > 0.0)
        .map(|d| {
            (
                Duration::from_secs_f64(d.every_s),
                Duration::from_secs_f64(d.outage_s.clamp(0.0, 3600.0)),
            )
        });
    let mut next_drop = drop_every.map(|(every, _)| tokio::time::Instant::now() + every);
    loop {
        // Checked between polls, never by cancelling one: a poll cut short
        // mid-write could lose a packet rumqttc believes was sent.
        if let (Some(at), Some((every, outage))) = (next_drop, drop_every) {
            if tokio::time::Instant::now() >= at {
                eventloop.clean();
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(outage).await;
                next_drop = Some(tokio::time::Instant::now() + every);
            }
        }
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut t = lock(&tracker);
                if t.in_flight.contains_key(&pkid) {
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                } else if let Some(path) = t.queued.pop_front() {
                    t.in_flight.insert(pkid, path);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let path = lock(&tracker).in_flight.remove(&ack.pkid);
                if let Some(path) = path {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = spool::remove(&path) {
                        eprintln!("{device_id}: {e}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => backoff = MIN_BACKOFF,
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if matches!(e, rumqttc::ConnectionError::RequestsDone) {
                    return;
                }
                // Once per outage, so a refused password is visible
                // without flooding stderr while the broker is away.
                if backoff == MIN_BACKOFF {
                    eprintln!("{device_id}: link down ({e}); reconnecting with backoff");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
