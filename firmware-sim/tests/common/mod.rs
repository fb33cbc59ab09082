//! An independent subscriber that rebuilds visits from what the broker
//! delivers, using only ecg-wire.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ecg_wire::{Chunk, Message, SamplesDigest, Topic, VisitEnd, VisitId, VisitMeta, VisitTopic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Default, Debug)]
pub struct Rebuilt {
    pub meta: Option<VisitMeta>,
    pub end: Option<VisitEnd>,
    pub chunks: BTreeMap<u32, Chunk>,
    pub duplicates: u32,
    pub device: String,
}

impl Rebuilt {
    /// Complete when the end arrived and every chunk it announces is here.
    pub fn is_complete(&self) -> bool {
        self.meta.is_some()
            && self
                .end
                .as_ref()
                .is_some_and(|e| (0..e.n_chunks).all(|s| self.chunks.contains_key(&s)))
    }

    /// Samples per lead, lead by lead in canonical order.
    pub fn leads(&self) -> Vec<Vec<i16>> {
        let n_leads = self.meta.as_ref().map_or(0, |m| m.leads.len());
        let mut leads = vec![Vec::new(); n_leads];
        for chunk in self.chunks.values() {
            for (p, lead) in leads.iter_mut().enumerate() {
                lead.extend_from_slice(chunk.lead_samples(p).expect("lead in chunk"));
            }
        }
        leads
    }

    pub fn digest(&self) -> SamplesDigest {
        SamplesDigest::of_leads(self.leads().iter().map(Vec::as_slice))
    }
}

pub struct Subscriber {
    pub visits: HashMap<VisitId, Rebuilt>,
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
    pub client: AsyncClient,
}

impl Subscriber {
    /// Connects with a persistent session and subscribes to every device
    /// topic at QoS 1; returns once the broker confirmed the subscription.
    pub async fn start(port: u16, user: Option<(&str, &str)>, client_id: &str) -> Subscriber {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some((u, p)) = user {
            opts.set_credentials(u, p);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        client
            .subscribe("ecg/v1/dev/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(t) = ready_tx.take() {
                            t.send(()).ok();
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("subscription confirmed within 10 s")
            .expect("subscriber task alive");
        Subscriber {
            visits: HashMap::new(),
            rx,
            task,
            client,
        }
    }

    fn absorb(&mut self, topic: &str, payload: &[u8]) {
        let Ok(Topic::Visit {
            device_id,
            visit_id,
            kind,
        }) = Topic::parse(topic)
        else {
            panic!("unexpected topic {topic}");
        };
        let v = self.visits.entry(visit_id).or_default();
        v.device = device_id.to_string();
        match kind {
            VisitTopic::Meta => v.meta = Some(VisitMeta::from_json(payload).expect("valid meta")),
            VisitTopic::End => v.end = Some(VisitEnd::from_json(payload).expect("valid end")),
            VisitTopic::Chunk => {
                let c = Chunk::decode(payload).expect("valid chunk");
                assert_eq!(c.visit_id(), visit_id, "chunk visit id matches its topic");
                if let Some(old) = v.chunks.insert(c.seq(), c.clone()) {
                    assert_eq!(old, c, "a duplicate chunk is identical");
                    v.duplicates += 1;
                }
            }
            VisitTopic::Result => {}
        }
    }

    pub fn complete(&self) -> usize {
        self.visits.values().filter(|v| v.is_complete()).count()
    }

    /// Collects messages until `n` visits are complete or `timeout` passes.
    pub async fn wait_for(&mut self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.complete() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((topic, payload))) => self.absorb(&topic, &payload),
                _ => break,
            }
        }
        self.complete()
    }

    /// Collects whatever arrives within `window`.
    pub async fn drain_for(&mut self, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some((topic, payload))) =
            tokio::time::timeout_at(deadline, self.rx.recv()).await
        {
            self.absorb(&topic, &payload);
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Truth lines by visit id.
pub fn read_truth(path: &std::path::Path) -> HashMap<String, serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("truth file written")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("truth line is JSON");
            (v["visit_id"].as_str().expect("visit_id").to_owned(), v)
        })
        .collect()
}
