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
}

/// A QoS 1 publisher over its own MQTT connection.
pub struct MqttPublisher {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    /// Serialises request + enqueue so the FIFO matches the channel order.
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
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.order.lock().await;
            self.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unsent
                .push_back(tx);
            if let Err(e) = self
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                self.waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .unsent
                    .pop_back();
                return Err(PublishError::Client(e.to_string()));
            }
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PublishError::Client("event loop stopped".into())),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }
}

async fn poll(mut eventloop: EventLoop, waiters: Arc<Mutex<Waiters>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                backoff = Duration::from_millis(100);
                let mut w = waiters.lock().unwrap_or_else(|e| e.into_inner());
                match event {
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
                    Event::Outgoing(Outgoing::Disconnect) => return,
                    _ => {}
                }
            }
            Err(e) => {
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
