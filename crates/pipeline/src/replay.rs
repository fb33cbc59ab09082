//! Refused input sent again: messages kept in the quarantine published on
//! their own topics, in reception order, so that a pipeline fixed since (or
//! a visit whose missing meta has arrived since) takes them in. Without
//! this, what the quarantine keeps could be read but not recovered.
//!
//! One message at a time at QoS 1 over MQTT 5, each waiting for its PUBACK
//! before the next: MQTT 5 is what lets the broker say "not authorized"
//! (an MQTT 3.1.1 broker acknowledges a denied publish and drops it), and
//! one in flight keeps each visit's meta, chunks and end in their order.
//! The pipeline drops what it already has (a finished visit's chunks,
//! duplicates), so replaying twice archives nothing twice.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use rumqttc::Transport;

use crate::publish::BrokerAddr;
use crate::quarantine::KeptEntry;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Messages the broker acknowledged.
    pub published: usize,
    /// Entries not sent, each named with why (a payload that no longer
    /// matches its digest).
    pub skipped: Vec<String>,
}

/// Why a replay stopped. Messages before the one named were published.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("connecting to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error(
        "the broker refused {topic} ({reason}) after {published} published; the identity \
         needs write access to ecg/v1/dev/+/visit/+/meta, .../chunk and .../end"
    )]
    NotAuthorized {
        topic: String,
        reason: String,
        published: usize,
    },
    #[error(
        "nobody subscribes to {topic} (after {published} published): start the pipeline, \
         or check that its session is on this broker, then replay again"
    )]
    NoSubscriber { topic: String, published: usize },
    #[error("the broker refused {topic} ({reason}) after {published} published")]
    Refused {
        topic: String,
        reason: String,
        published: usize,
    },
    #[error("{topic}: {reason} after {published} published")]
    Connection {
        topic: String,
        reason: String,
        published: usize,
    },
}

/// Each wait for the broker.
const WAIT: Duration = Duration::from_secs(30);

/// Chunks are at most 256 KiB; room for any message the quarantine keeps.
const MAX_PACKET_BYTES: u32 = 1 << 20;

/// Publishes `entries` in order to `broker` as `client_id`.
pub async fn replay(
    entries: &[KeptEntry],
    broker: &BrokerAddr,
    client_id: &str,
) -> Result<ReplayReport, ReplayError> {
    let addr = format!("{}:{}", broker.host, broker.port);
    let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    opts.set_clean_start(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(Some(MAX_PACKET_BYTES));
    if let Some((u, p)) = &broker.credentials {
        opts.set_credentials(u.clone(), p.clone());
    }
    if let Some(tls) = &broker.tls {
        opts.set_transport(Transport::tls_with_config(tls.clone()));
    }
    let (client, mut events) = AsyncClient::new(opts, 8);
    loop {
        match next(&mut events).await {
            Ok(Packet::ConnAck(_)) => break,
            Ok(_) => {}
            Err(reason) => return Err(ReplayError::Connect { addr, reason }),
        }
    }
    let mut report = ReplayReport::default();
    for entry in entries {
        let m = &entry.message;
        let payload = match m.payload() {
            Ok(p) => p,
            Err(e) => {
                report
                    .skipped
                    .push(format!("{} line {}: {e}", entry.file.display(), entry.line));
                continue;
            }
        };
        let failed = |reason: String| ReplayError::Connection {
            topic: m.topic.clone(),
            reason,
            published: report.published,
        };
        client
            .publish(m.topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let ack = loop {
            match next(&mut events).await.map_err(failed)? {
                Packet::PubAck(ack) => break ack,
                _ => continue,
            }
        };
        let topic = m.topic.clone();
        let published = report.published;
        match ack.reason {
            PubAckReason::Success => report.published += 1,
            PubAckReason::NotAuthorized => {
                return Err(ReplayError::NotAuthorized {
                    topic,
                    reason: "not authorized".into(),
                    published,
                })
            }
            PubAckReason::NoMatchingSubscribers => {
                return Err(ReplayError::NoSubscriber { topic, published })
            }
            other => {
                let reason = ack
                    .properties
                    .and_then(|p| p.reason_string)
                    .unwrap_or_else(|| format!("{other:?}"));
                return Err(ReplayError::Refused {
                    topic,
                    reason,
                    published,
                });
            }
        }
    }
    // Every message is acknowledged: the DISCONNECT only has to go out.
    if client.disconnect().await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    Ok(report)
}

/// The next packet from the broker, or why none came.
async fn next(events: &mut EventLoop) -> Result<Packet, String> {
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await {
            Err(_) => return Err(format!("no answer within {} s", WAIT.as_secs())),
            Ok(Err(e)) => {
                // A broker may answer and close at once (Mosquitto 2.0
                // closes an MQTT 5 connection after refusing a publish):
                // what was read before the close is still queued.
                while let Some(event) = events.state.events.pop_front() {
                    if let Event::Incoming(p) = event {
                        return Ok(p);
                    }
                }
                return Err(e.to_string());
            }
            Ok(Ok(Event::Incoming(p))) => return Ok(p),
            Ok(Ok(Event::Outgoing(_))) => {}
        }
    }
}
