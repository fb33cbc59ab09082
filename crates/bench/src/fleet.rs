//! The simulated fleet for the harness: firmware-sim's device [`Link`]
//! (QoS 1, on-device spool, PUBACK tracking), streaming pre-generated
//! visits. Unlike `firmware-sim fleet` it stamps the moment each chunk is
//! handed to the device's MQTT client, which is where latency starts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecg_wire::{
    Chunk, ClinicId, DeviceId, Message, PatientPseudonym, Topic, VisitEnd, VisitId, VisitMeta,
    VisitTopic,
};
use firmware_sim::broker::BrokerUrl;
use firmware_sim::device::Link;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use time::OffsetDateTime;

use crate::pool::PoolVisit;
use crate::BenchError;

/// How visits arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Every visit queued at once, chunks sent as fast as the link takes
    /// them.
    Max,
    /// Poisson arrivals at this many visits a second; each visit streams
    /// in real time (a 10 s recording takes 10 s).
    Rate(f64),
}

/// One visit of the run.
#[derive(Debug, Clone)]
pub struct Planned {
    pub visit_id: VisitId,
    pub pool: usize,
    pub device: usize,
    pub pseudonym: PatientPseudonym,
}

/// `n` visits over `devices` devices and the pool, reproducibly.
pub fn plan(n: u64, devices: usize, pool_len: usize, seed: u64) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            Planned {
                visit_id: VisitId::from_uuid(uuid).expect("a v4 UUID is never nil"),
                pool: rng.random_range(0..pool_len.max(1)),
                device: (i % devices.max(1) as u64) as usize,
                pseudonym: PatientPseudonym::from_digest(1, &rng.random()),
            }
        })
        .collect()
}

/// When the device handed chunks to its client.
#[derive(Default)]
pub struct Stamps {
    /// (visit, first sample of the chunk) -> published; removed when the
    /// pipeline reports the chunk processed.
    pub chunks: Mutex<HashMap<(VisitId, u32), Instant>>,
    /// visit -> its last chunk published.
    pub last_chunk: Mutex<HashMap<VisitId, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stamps {
    pub fn take_chunk(&self, visit: VisitId, first_sample: u32) -> Option<Instant> {
        lock(&self.chunks).remove(&(visit, first_sample))
    }

    pub fn last_chunk(&self, visit: VisitId) -> Option<Instant> {
        lock(&self.last_chunk).get(&visit).copied()
    }
}

/// What a fleet run needs.
pub struct FleetRun {
    pub broker: BrokerUrl,
    pub devices: usize,
    /// Device ids are `<prefix>-0001`...
    pub device_prefix: String,
    pub spool_root: PathBuf,
    pub pace: Pace,
    pub chunk_s: f64,
    pub seed: u64,
    /// Stamp chunks (the pipeline run) or not (the ceiling run).
    pub stamps: Option<Arc<Stamps>>,
    /// At `max` pace, hand a device no visit while this many are started
    /// and not yet through the pipeline (the counter of those through it).
    pub lead: Option<(Arc<AtomicU64>, u64)>,
}

/// Devices connected and ready to stream.
pub struct Fleet {
    links: Vec<(DeviceId, ClinicId, Link)>,
}

impl Fleet {
    /// Connects every device (before the clock starts).
    pub async fn connect(run: &FleetRun) -> Result<Fleet, BenchError> {
        let mut links = Vec::with_capacity(run.devices);
        for i in 0..run.devices.max(1) {
            let device = DeviceId::new(format!("{}-{:04}", run.device_prefix, i + 1))
                .map_err(|e| BenchError::Setup(format!("device id: {e}")))?;
            let clinic = firmware_sim::fleet::clinic_for(i, run.devices.div_ceil(2).max(1));
            let link = Link::open(
                device.as_str(),
                &run.broker,
                run.spool_root.join(device.as_str()),
            )
            .await
            .map_err(|e| BenchError::Fleet(format!("device {device}: {e}")))?;
            links.push((device, clinic, link));
        }
        Ok(Fleet { links })
    }

    /// Streams every planned visit and waits until the broker has
    /// acknowledged every message. Returns the bytes published.
    pub async fn stream(
        self,
        run: &FleetRun,
        plan: Arc<Vec<Planned>>,
        pool: Arc<Vec<PoolVisit>>,
    ) -> Result<u64, BenchError> {
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for (device, clinic, link) in self.links {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
            senders.push(tx);
            tasks.push(tokio::spawn(device_task(
                link,
                device,
                clinic,
                rx,
                plan.clone(),
                pool.clone(),
                run.pace,
                run.chunk_s,
                run.stamps.clone(),
            )));
        }
        match run.pace {
            Pace::Max => {
                for (i, p) in plan.iter().enumerate() {
                    if let Some((through, most)) = &run.lead {
                        while i as u64 >= through.load(Ordering::Relaxed) + most {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                    let _ = senders[p.device % senders.len()].send(i);
                }
            }
            Pace::Rate(per_s) => {
                let gaps = Exp::new(per_s)
                    .map_err(|e| BenchError::Setup(format!("--rate {per_s}: {e}")))?;
                let mut rng = ChaCha8Rng::seed_from_u64(run.seed ^ 0x5eed);
                let start = tokio::time::Instant::now();
                let mut due_s = 0.0f64;
                for (i, p) in plan.iter().enumerate() {
                    if i > 0 {
                        due_s += gaps.sample(&mut rng);
                    }
                    tokio::time::sleep_until(start + Duration::from_secs_f64(due_s)).await;
                    let _ = senders[p.device % senders.len()].send(i);
                }
            }
        }
        drop(senders);
        let mut bytes = 0;
        for t in tasks {
            bytes += t
                .await
                .map_err(|e| BenchError::Fleet(format!("device task: {e}")))??;
        }
        Ok(bytes)
    }
}

#[allow(clippy::too_many_arguments)]
async fn device_task(
    mut link: Link,
    device: DeviceId,
    clinic: ClinicId,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<usize>,
    plan: Arc<Vec<Planned>>,
    pool: Arc<Vec<PoolVisit>>,
    pace: Pace,
    chunk_s: f64,
    stamps: Option<Arc<Stamps>>,
) -> Result<u64, BenchError> {
    let fail = |e: &dyn std::fmt::Display| BenchError::Fleet(format!("device {device}: {e}"));
    let mut bytes = 0u64;
    while let Some(i) = jobs.recv().await {
        let p = &plan[i];
        let v = &pool[p.pool];
        let topic = |kind| Topic::visit(device.clone(), p.visit_id, kind).to_string();
        let meta = VisitMeta {
            device_id: device.clone(),
            clinic_id: clinic.clone(),
            visit_id: p.visit_id,
            patient_pseudonym: p.pseudonym.clone(),
            sex: v.sex,
            age_years: v.age_years,
            leads: v.leads,
            fs_hz: v.fs_hz,
            gain_uv_per_lsb: v.gain_uv_per_lsb,
            acquired_at: OffsetDateTime::now_utc(),
            chunk_samples: v.chunk_samples as u16,
            firmware_version: firmware_sim::visit::FIRMWARE_VERSION.to_owned(),
        };
        let meta = meta.to_json();
        bytes += meta.len() as u64;
        link.publish(topic(VisitTopic::Meta), meta)
            .await
            .map_err(|e| fail(&e))?;
        let start = tokio::time::Instant::now();
        let n_chunks = v.chunks.len();
        for (k, c) in v.chunks.iter().enumerate() {
            if let Pace::Rate(_) = pace {
                // A chunk exists once its last sample has been recorded.
                tokio::time::sleep_until(start + Duration::from_secs_f64(chunk_s * (k + 1) as f64))
                    .await;
            }
            let last = k + 1 == n_chunks;
            let chunk = Chunk::new(
                p.visit_id,
                k as u32,
                c.first_sample,
                v.leads,
                c.payload.clone(),
            )
            .map_err(|e| fail(&e))?
            .with_last(last)
            .with_clipped(c.clipped);
            let wire = chunk.to_bytes();
            bytes += wire.len() as u64;
            if let Some(s) = &stamps {
                // Stamped before the hand-over: the pipeline may finish
                // the chunk before `publish` returns.
                let now = Instant::now();
                lock(&s.chunks).insert((p.visit_id, c.first_sample), now);
                if last {
                    lock(&s.last_chunk).insert(p.visit_id, now);
                }
            }
            link.publish(topic(VisitTopic::Chunk), wire)
                .await
                .map_err(|e| fail(&e))?;
        }
        let end = VisitEnd {
            visit_id: p.visit_id,
            n_chunks: n_chunks as u32,
            n_samples: v.n_samples as u32,
            samples_sha256: v.digest,
        }
        .to_json();
        bytes += end.len() as u64;
        link.publish(topic(VisitTopic::End), end)
            .await
            .map_err(|e| fail(&e))?;
    }
    link.close().await;
    Ok(bytes)
}
