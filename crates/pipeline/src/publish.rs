//! Where the pipeline's messages go: alerts, results and dead letters.
//!
//! [`Publisher`] is the seam; [`MqttPublisher`] is the broker side. A
//! publish completes only when the broker acknowledged it (PUBACK), so the
//! pipeline can release a visit from the spool knowing its alert is out.
//!
//! rumqttc tells a publish's packet id only when its event loop sends it
//! (`Outgoing::Publish`) and the PUBACK by packet id. Requests leave in
//! channel order, so a FIFO of waiters pairs each new packet id with its
//! publish; a packet id already in flight is a retransmission.
//!
//! The connection has a clean session, and rumqttc drops every publish not
//! yet acknowledged when it reconnects to a new session (the broker
//! restarted, the link dropped). The publisher therefore sends such a
//! publish again itself: at least once, never lost with its connection.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::oneshot;

/// Why a message could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the MQTT client is gone: {0}")]
    Client(String),
    #[error("no PUBACK within {0:?}")]
    Timeout(Duration),
}

/// Sends a message and resolves once it is delivered (QoS 1 acknowledged).
pub trait Publisher: Send + Sync {
    fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// Where to connect the output client. Its `Debug` hides the password.
#[derive(Clone)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    /// TLS to the broker (`mqtts://`); `None` is plain TCP.
    pub tls: Option<TlsConfiguration>,
}

impl std::fmt::Debug for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAddr")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Waiters {
    /// Publishes requested, waiting for their packet id.
    unsent: VecDeque<oneshot::Sender<()>>,
    /// Sent, waiting for their PUBACK.
    in_flight: HashMap<u16, oneshot::Sender<()>>,
    /// The event loop has stopped: nothing more will be acknowledged.
    stopped: bool,
}

impl Waiters {
    /// An established connection broke. rumqttc moves what it had not yet
    /// seen acknowledged (sent or still in its request channel) aside and
    /// discards it on connecting to a new session, which a clean session
    /// always is; dropping the waiters tells their callers to send again.
    fn connection_lost(&mut self) {
        self.unsent.clear();
        self.in_flight.clear();
    }
}

/// A QoS 1 publisher over its own MQTT connection.
pub struct MqttPublisher {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    /// Held by one publish from its request to its PUBACK.
    order: tokio::sync::Mutex<()>,
    poller: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

const MAX_PACKET_BYTES: usize = 256 * 1024;

impl MqttPublisher {
    /// Connects (in the background, with reconnects) as `client_id`.
    pub fn connect(addr: &BrokerAddr, client_id: &str) -> MqttPublisher {
        let mut opts = MqttOptions::new(client_id, addr.host.clone(), addr.port);
        opts.set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(64)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let Some((u, p)) = &addr.credentials {
            opts.set_credentials(u.clone(), p.clone());
        }
        if let Some(tls) = &addr.tls {
            opts.set_transport(Transport::tls_with_config(tls.clone()));
        }
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let poller = tokio::spawn(poll(eventloop, waiters.clone()));
        MqttPublisher {
            client,
            waiters,
            order: tokio::sync::Mutex::new(()),
            poller,
            timeout: Duration::from_secs(30),
        }
    }

    /// Disconnects after the messages in flight are acknowledged.
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.poller).await;
    }
}

impl Publisher for MqttPublisher {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError> {
        // One publish at a time, held until its PUBACK: a message sent again
        // after a lost connection then cannot take another's packet id.
        let _order = self.order.lock().await;
        loop {
            let (tx, rx) = oneshot::channel();
            self.waiters().unsent.push_back(tx);
            if let Err(e) = self
                .client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                .await
            {
                self.waiters().unsent.pop_back();
                return Err(PublishError::Client(e.to_string()));
            }
            match tokio::time::timeout(self.timeout, rx).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(_)) if self.waiters().stopped => {
                    return Err(PublishError::Client("event loop stopped".into()))
                }
                Ok(Err(_)) => {
                    tracing::warn!(%topic, "connection lost before the broker acknowledged; publishing again");
                }
                Err(_) => return Err(PublishError::Timeout(self.timeout)),
            }
        }
    }
}

impl MqttPublisher {
    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn poll(mut eventloop: EventLoop, waiters: Arc<Mutex<Waiters>>) {
    let lock = || waiters.lock().unwrap_or_else(|e| e.into_inner());
    let mut backoff = Duration::from_millis(100);
    // Only an error on an established connection loses requests; a failed
    // connection attempt leaves them queued for the next one.
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                backoff = Duration::from_millis(100);
                let mut w = lock();
                match event {
                    Event::Incoming(Packet::ConnAck(_)) => connected = true,
                    Event::Outgoing(Outgoing::Publish(pkid))
                        if !w.in_flight.contains_key(&pkid) =>
                    {
                        if let Some(tx) = w.unsent.pop_front() {
                            w.in_flight.insert(pkid, tx);
                        }
                    }
                    Event::Incoming(Packet::PubAck(ack)) => {
                        if let Some(tx) = w.in_flight.remove(&ack.pkid) {
                            let _ = tx.send(());
                        }
                    }
                    Event::Outgoing(Outgoing::Disconnect) => {
                        w.stopped = true;
                        w.connection_lost();
                        return;
                    }
                    _ => {}
                }
            }
            Err(e) => {
                if std::mem::take(&mut connected) {
                    lock().connection_lost();
                }
                tracing::warn!(error = %e, "output MQTT connection lost; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Topic and payload of one publication.
pub type Sent = (String, Vec<u8>);

/// Collects publishes in memory (tests, dry runs).
#[derive(Debug, Default, Clone)]
pub struct MemoryPublisher {
    pub sent: Arc<Mutex<Vec<Sent>>>,
}

impl Publisher for MemoryPublisher {
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((topic, payload));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use ecg_testkit::{Mosquitto, MosquittoOpts};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, watch};

    use super::*;

    /// A TCP relay in front of the broker that can swallow what clients
    /// send and cut every connection: a PUBLISH lost with its connection,
    /// on demand rather than by luck of timing.
    struct Relay {
        port: u16,
        swallow: Arc<AtomicBool>,
        swallowed_bytes: Arc<AtomicUsize>,
        cut: watch::Sender<u64>,
    }

    impl Relay {
        async fn start(broker_port: u16) -> Relay {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let relay = Relay {
                port,
                swallow: Arc::default(),
                swallowed_bytes: Arc::default(),
                cut: watch::channel(0).0,
            };
            let (swallow, swallowed, cut) = (
                relay.swallow.clone(),
                relay.swallowed_bytes.clone(),
                relay.cut.clone(),
            );
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                        continue;
                    };
                    let (swallow, swallowed) = (swallow.clone(), swallowed.clone());
                    let mut cut = cut.subscribe();
                    tokio::spawn(async move {
                        let (mut from_client, mut to_client) = client.into_split();
                        let (mut from_broker, mut to_broker) = broker.into_split();
                        let up = async {
                            let mut buf = [0u8; 4096];
                            loop {
                                let n = match from_client.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                if swallow.load(Ordering::SeqCst) {
                                    swallowed.fetch_add(n, Ordering::SeqCst);
                                } else if to_broker.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        };
                        tokio::select! {
                            _ = up => {}
                            _ = tokio::io::copy(&mut from_broker, &mut to_client) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            });
            relay
        }

        fn cut_all(&self) {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    /// Every message published on `filter`, straight from the broker.
    async fn watch_topic(port: u16, filter: &str) -> mpsc::UnboundedReceiver<Vec<u8>> {
        let (client, mut eventloop) =
            AsyncClient::new(MqttOptions::new("watcher", "127.0.0.1", port), 16);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
        tokio::spawn(async move {
            let _client = client;
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    let _ = tx.send(p.payload.to_vec());
                }
            }
        });
        rx
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the watcher got the message")
            .expect("watcher running")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_publish_lost_with_its_connection_is_sent_again() {
        let broker = Mosquitto::start(MosquittoOpts::default()).expect("mosquitto");
        let relay = Relay::start(broker.port()).await;
        let mut seen = watch_topic(broker.port(), "out/#").await;
        let addr = BrokerAddr {
            host: "127.0.0.1".into(),
            port: relay.port,
            credentials: None,
            tls: None,
        };
        let mut publisher = MqttPublisher::connect(&addr, "publisher");
        // Far shorter than the test's wait: without the re-send the publish
        // fails, it does not hang.
        publisher.timeout = Duration::from_secs(5);
        let publisher = Arc::new(publisher);

        publisher
            .publish("out/1".into(), b"first".to_vec())
            .await
            .unwrap();
        assert_eq!(next(&mut seen).await, b"first");

        // The PUBLISH leaves the client but never reaches the broker; then
        // the connection breaks.
        relay.swallow.store(true, Ordering::SeqCst);
        let sending = {
            let p = publisher.clone();
            tokio::spawn(async move { p.publish("out/2".into(), b"second".to_vec()).await })
        };
        while relay.swallowed_bytes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        relay.swallow.store(false, Ordering::SeqCst);
        relay.cut_all();

        sending
            .await
            .unwrap()
            .expect("delivered over the new connection");
        assert_eq!(next(&mut seen).await, b"second");
        let publisher = Arc::into_inner(publisher).expect("the only handle");
        publisher.close().await;
    }
}
