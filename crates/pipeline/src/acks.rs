//! Acknowledgements over MQTT: `ecg/v1/alerts/{centre}/ack`, JSON
//! [`AlertAck`], into the same channel as the dashboard's acknowledge
//! button. The session is persistent and acks are manual: the broker keeps
//! an ack that arrived while the pipeline was down, and forgets one only
//! after the pipeline has recorded it.

use std::time::Duration;

use ecg_dashboard::AckRequest;
use ecg_wire::{AlertAck, Message};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use crate::publish::BrokerAddr;

/// Subscribes to `topic` as `client_id` and forwards every valid ack to
/// `tx` until the task is aborted or `tx` is closed.
pub fn spawn_listener(
    addr: &BrokerAddr,
    client_id: String,
    topic: String,
    tx: mpsc::Sender<AckRequest>,
) -> tokio::task::JoinHandle<()> {
    let mut opts = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(64 * 1024, 64 * 1024);
    if let Some((u, p)) = &addr.credentials {
        opts.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    if let Err(e) = client.subscribe(topic.clone(), QoS::AtLeastOnce).await {
                        tracing::warn!(error = %e, "subscribing to acknowledgements");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let ack = match AlertAck::from_json(&p.payload) {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, topic = %p.topic, "unreadable acknowledgement dropped");
                            let _ = client.ack(&p).await;
                            continue;
                        }
                    };
                    let (done, outcome) = oneshot::channel();
                    if tx
                        .send(AckRequest {
                            ack,
                            done: Some(done),
                        })
                        .await
                        .is_err()
                    {
                        // Stopping: not acked, so the broker gives it back.
                        return;
                    }
                    let client = client.clone();
                    tokio::spawn(async move {
                        if outcome.await.is_ok() {
                            let _ = client.ack(&p).await;
                        }
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "ack connection lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    })
}
