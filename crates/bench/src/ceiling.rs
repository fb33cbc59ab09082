//! The broker's own ceiling: the same fleet and visits, received by a
//! subscriber that does nothing but count (and acknowledge) the messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_sim::broker::BrokerUrl;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::fleet::{Fleet, FleetRun, Planned};
use crate::pool::PoolVisit;
use crate::BenchError;

/// A connected MQTT 3.1.1 client that has its subscription confirmed.
pub async fn subscribed_client(
    broker: &BrokerUrl,
    client_id: &str,
    filter: &str,
) -> Result<(AsyncClient, rumqttc::EventLoop), BenchError> {
    let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(512 * 1024, 512 * 1024);
    if let Some((u, p)) = &broker.user {
        opts.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .map_err(|e| BenchError::Broker(format!("{client_id}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await;
        match ev {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => return Ok((client, eventloop)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if Instant::now() > deadline {
                    return Err(BenchError::Broker(format!("{client_id}: {e}")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                return Err(BenchError::Broker(format!(
                    "{client_id}: no SUBACK in 30 s"
                )))
            }
        }
    }
}

/// What the ceiling run measured.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    pub wall: Duration,
    pub messages: u64,
}

/// Streams `plan` through the broker to a do-nothing subscriber; the clock
/// runs from the first visit handed to the fleet to the last message
/// received.
pub async fn measure(
    broker: &BrokerUrl,
    run: FleetRun,
    plan: Arc<Vec<Planned>>,
    pool: Arc<Vec<PoolVisit>>,
    stall: Duration,
) -> Result<Ceiling, BenchError> {
    let expected: u64 = plan
        .iter()
        .map(|p| pool[p.pool].chunks.len() as u64 + 2)
        .sum();
    let fleet = Fleet::connect(&run).await?;
    let (client, mut eventloop) =
        subscribed_client(broker, "ecg-bench-ceiling", ecg_wire::topic::DEVICE_FILTER).await?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let sink = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let t0 = Instant::now();
    let streamer = tokio::spawn(async move { fleet.stream(&run, plan, pool).await });
    let mut last = (0, Instant::now());
    let wall = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n = received.load(Ordering::Relaxed);
        if n >= expected {
            break t0.elapsed();
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > stall {
            sink.abort();
            streamer.abort();
            return Err(BenchError::Broker(format!(
                "ceiling run stalled: the subscriber got {n} of {expected} messages"
            )));
        }
    };
    streamer
        .await
        .map_err(|e| BenchError::Fleet(format!("ceiling fleet: {e}")))??;
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    sink.abort();
    Ok(Ceiling {
        wall,
        messages: received.load(Ordering::Relaxed),
    })
}
