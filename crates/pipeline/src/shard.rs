//! Which analysis worker owns each open visit.
//!
//! A visit's events must reach one worker, in order. Hashing the visit's
//! key would do that, but the key is chosen by the device: a device could
//! pick visit ids that all land on one worker and slow every other visit
//! that hashes there, and even without malice two heavy visits (a high
//! rate, many leads) land together half the time with two workers. So a
//! visit is given, when it is first seen, to the worker whose open visits
//! carry the fewest samples per second, and keeps it until it ends. The
//! choice depends only on the order of events, so a replay of the same
//! events shards them the same way.

use std::collections::HashMap;

use ecg_ingest::{AssemblyEvent, VisitKey};

/// The load given to a visit first seen without its meta (the assembler
/// sends `Started` first, so this is a fallback, not a case).
const UNKNOWN_LOAD: u64 = 1;

/// Owners of the open visits and each worker's open load.
#[derive(Debug)]
pub(crate) struct Shards {
    owner: HashMap<VisitKey, (usize, u64)>,
    /// Samples per second of the open visits, per worker.
    load: Vec<u64>,
    /// Where the search for the least loaded worker starts, so that ties
    /// (an idle pipeline) take the workers in turn.
    next: usize,
}

impl Shards {
    pub(crate) fn new(workers: usize) -> Shards {
        Shards {
            owner: HashMap::new(),
            load: vec![0; workers.max(1)],
            next: 0,
        }
    }

    /// The worker that handles `ev`. A visit's first event assigns it; its
    /// end (complete or incomplete) releases it. Events of no open visit
    /// (rejected input without a visit, or of a visit not open) go to
    /// worker 0, as their handling needs no visit state.
    pub(crate) fn route(&mut self, ev: &AssemblyEvent) -> usize {
        let Some(key) = ev.key() else {
            return 0;
        };
        let ends = matches!(
            ev,
            AssemblyEvent::Complete { .. } | AssemblyEvent::Incomplete { .. }
        );
        if let AssemblyEvent::Rejected(_) = ev {
            // Kept with the visit when it is open, so its dead letter comes
            // out in order with the visit's own outputs.
            return self.owner.get(key).map_or(0, |&(w, _)| w);
        }
        if ends && !self.owner.contains_key(key) {
            // A visit that ends without having begun (its meta never came)
            // was never open: its dead letters went to worker 0, and its end
            // follows them there, so they are published before its messages
            // are let go.
            return 0;
        }
        let worker = match self.owner.get(key) {
            Some(&(w, _)) => w,
            None => {
                let load = match ev {
                    AssemblyEvent::Started { meta, .. } => {
                        u64::from(meta.fs_hz) * meta.leads.len() as u64
                    }
                    _ => UNKNOWN_LOAD,
                };
                let w = self.least_loaded();
                self.next = (w + 1) % self.load.len();
                self.load[w] += load;
                self.owner.insert(key.clone(), (w, load));
                w
            }
        };
        if ends {
            if let Some((w, load)) = self.owner.remove(key) {
                self.load[w] -= load;
            }
        }
        worker
    }

    /// Open visits.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.owner.len()
    }

    fn least_loaded(&self) -> usize {
        let n = self.load.len();
        (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&w| self.load[w])
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_ingest::{IncompleteReason, Rejection};
    use ecg_wire::{
        ClinicId, DeadLetterCode, DeviceId, LeadSet, PatientPseudonym, Sex, VisitId, VisitMeta,
    };
    use std::hash::{Hash, Hasher};
    use time::OffsetDateTime;

    fn key(device: &str, visit: u32) -> VisitKey {
        let mut id = [1u8; 16];
        id[..4].copy_from_slice(&visit.to_be_bytes());
        VisitKey {
            device_id: DeviceId::new(device).unwrap(),
            visit_id: VisitId::from_bytes(id).unwrap(),
        }
    }

    fn started(k: &VisitKey, fs_hz: u32) -> AssemblyEvent {
        let meta = VisitMeta {
            device_id: k.device_id.clone(),
            clinic_id: ClinicId::new("clinic-1").unwrap(),
            visit_id: k.visit_id,
            patient_pseudonym: PatientPseudonym::new("k1-9f86d081884c7d659a2feaa0c55ad015")
                .unwrap(),
            sex: Sex::Male,
            age_years: Some(60),
            leads: LeadSet::STANDARD_12,
            fs_hz,
            gain_uv_per_lsb: 5.0,
            acquired_at: OffsetDateTime::UNIX_EPOCH,
            chunk_samples: 500,
            firmware_version: "test-1".into(),
        };
        AssemblyEvent::Started {
            key: k.clone(),
            meta,
        }
    }

    fn samples(k: &VisitKey) -> AssemblyEvent {
        AssemblyEvent::Samples {
            key: k.clone(),
            first_sample: 0,
            leads: Vec::<Vec<i16>>::new().into(),
        }
    }

    fn ended(k: &VisitKey) -> AssemblyEvent {
        AssemblyEvent::Incomplete {
            key: k.clone(),
            meta: None,
            samples: Vec::new(),
            reason: IncompleteReason::OpenTooLong { open_s: 1 },
        }
    }

    fn rejected(k: Option<&VisitKey>) -> AssemblyEvent {
        AssemblyEvent::Rejected(Rejection {
            key: k.cloned(),
            topic: "ecg/v1/dev/x/visit/1/chunk".to_owned(),
            payload: Vec::new(),
            payload_len: 0,
            code: DeadLetterCode::BadJson,
            reason: "test".to_owned(),
            received_at: OffsetDateTime::UNIX_EPOCH,
            spooled: None,
        })
    }

    fn hash_shard(k: &VisitKey, n: u64) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        k.hash(&mut h);
        h.finish() % n
    }

    #[test]
    fn ids_chosen_to_collide_are_spread() {
        // Visit ids a device could pick so that a hash of the key puts all
        // of them on worker 0 of 2.
        let keys: Vec<VisitKey> = (0..10_000)
            .map(|v| key("dev-a", v))
            .filter(|k| hash_shard(k, 2) == 0)
            .take(8)
            .collect();
        assert_eq!(keys.len(), 8);
        let mut shards = Shards::new(2);
        let workers: Vec<usize> = keys
            .iter()
            .map(|k| shards.route(&started(k, 500)))
            .collect();
        let on_1 = workers.iter().filter(|&&w| w == 1).count();
        assert_eq!(on_1, 4, "{workers:?}");
    }

    #[test]
    fn a_visit_keeps_its_worker_until_it_ends() {
        let mut shards = Shards::new(2);
        let a = key("dev-a", 1);
        let b = key("dev-b", 1);
        let wa = shards.route(&started(&a, 500));
        let wb = shards.route(&started(&b, 500));
        assert_ne!(wa, wb);
        for _ in 0..5 {
            assert_eq!(shards.route(&samples(&a)), wa);
            assert_eq!(shards.route(&samples(&b)), wb);
            assert_eq!(shards.route(&rejected(Some(&a))), wa);
        }
        assert_eq!(shards.route(&ended(&a)), wa);
        assert_eq!(shards.open(), 1);
        // Ended: its rejected input no longer follows it.
        assert_eq!(shards.route(&rejected(Some(&a))), 0);
        assert_eq!(shards.route(&rejected(None)), 0);
        assert_eq!(shards.route(&ended(&b)), wb);
        assert_eq!(shards.open(), 0);
    }

    #[test]
    fn a_visit_that_never_began_ends_where_its_dead_letters_went() {
        let mut shards = Shards::new(2);
        // With a visit open on worker 0, worker 1 is the least loaded: the
        // orphan's end must not go there, away from its dead letters.
        let other = key("dev-o", 1);
        assert_eq!(shards.route(&started(&other, 500)), 0);
        let orphan = key("dev-x", 1);
        assert_eq!(shards.route(&rejected(Some(&orphan))), 0);
        assert_eq!(shards.route(&ended(&orphan)), 0);
        assert_eq!(shards.open(), 1, "the orphan opened nothing");
    }

    #[test]
    fn a_heavy_visit_is_balanced_by_light_ones() {
        let mut shards = Shards::new(2);
        let heavy = key("dev-h", 1);
        let wh = shards.route(&started(&heavy, 10_000));
        // Twenty visits at 500 Hz weigh as much as one at 10 kHz: all of
        // them go to the other worker.
        for v in 0..20 {
            let w = shards.route(&started(&key("dev-l", v), 500));
            assert_ne!(w, wh, "light visit {v}");
        }
        // The heavy visit's end frees its worker for the next one.
        shards.route(&ended(&heavy));
        assert_eq!(shards.route(&started(&key("dev-l", 99), 500)), wh);
    }
}
