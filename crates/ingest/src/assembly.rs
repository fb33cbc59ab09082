//! Per-visit assembly: turns the device messages of a visit (meta, chunks,
//! end), as QoS 1 delivers them (duplicated, reordered, possibly missing),
//! into an in-order sample stream and one final verdict per visit.
//!
//! Pure state machine: no I/O, no clock, no globals. The caller passes each
//! message with the time it was received and calls [`Assembler::tick`] to
//! expire abandoned visits, so the same code runs live, on spool replay and in
//! tests, and several assemblers can live side by side (one per worker).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ecg_wire::{
    Chunk, DeadLetter, DeadLetterCode, DeviceId, Message, MessageError, SamplesDigest, Topic,
    VisitEnd, VisitId, VisitMeta, VisitTopic,
};
use time::OffsetDateTime;

use crate::spool::RecordId;

/// Contiguous samples of a visit, one vector per lead in the meta's lead
/// order. Shared, not copied: the assembler keeps the visit's blocks for
/// its verdict while the analysis keeps the same blocks to read the visit
/// as it streams, so a visit in flight holds its samples once.
pub type SampleBlock = Arc<[Vec<i16>]>;

/// A visit is identified by the device that recorded it and its id: the
/// device comes from the topic, which the broker ACL ties to the MQTT user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitKey {
    pub device_id: DeviceId,
    pub visit_id: VisitId,
}

impl fmt::Display for VisitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.device_id, self.visit_id)
    }
}

/// Bounds and timing of the assembler. Every bound rejects input that would
/// exceed it (dead letter) instead of buffering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssemblyConfig {
    /// A visit with no message for this long is closed as incomplete.
    pub visit_timeout: Duration,
    /// Open visits at most; a message opening one more is rejected.
    pub max_visits_in_flight: usize,
    /// Open visits of one device at most: opening one more closes that device's oldest
    /// as incomplete, so that one device cannot take the slots the others need. A device
    /// records one visit at a time; the rest is room for a visit whose end was lost
    /// while the next one streams.
    pub max_visits_per_device: usize,
    /// A visit open this long (reception time from its first message) is closed as
    /// incomplete however active it is: a trickle of messages must not hold it, and the
    /// spool segments it pins, forever. A resting ECG streams in seconds.
    pub max_visit_open: Duration,
    /// Memory one visit may hold: its samples (and early chunks) with their bookkeeping
    /// (see [`chunk_held_bytes`]), so that tiny chunks cannot hold many times the bound.
    pub max_bytes_per_visit: usize,
    /// Memory all open visits may hold together, counted as for one visit. Without it
    /// the bound was slots times bytes (32 GiB), and an ingest killed for memory would
    /// replay the same spool into the same memory at every restart.
    pub max_bytes_in_flight: usize,
    /// Largest chunk payload accepted, in bytes.
    pub max_chunk_bytes: usize,
    /// Chunks held for a visit whose meta has not arrived yet.
    pub max_early_chunks: usize,
    /// How long a finished visit is remembered, so that late duplicates
    /// are dropped instead of opening a new (never completing) visit.
    pub finished_retention: Duration,
    /// Finished visits remembered at most (oldest forgotten first).
    pub max_finished: usize,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            visit_timeout: Duration::from_secs(60),
            max_visits_in_flight: 1024,
            max_visits_per_device: 8,
            max_visit_open: Duration::from_secs(30 * 60),
            // 10 minutes of 12 leads at 1000 Hz is 14.4 MB.
            max_bytes_per_visit: 32 << 20,
            // 8,000 visits of 10 s of 12 leads at 500 Hz, 32 full-size ones.
            max_bytes_in_flight: 1 << 30,
            max_chunk_bytes: ecg_wire::chunk::HEADER_LEN
                + ecg_wire::chunk::LEAD_OFF_LEN
                + 2 * ecg_wire::chunk::MAX_SAMPLES_PER_CHUNK,
            max_early_chunks: 64,
            finished_retention: Duration::from_secs(3600),
            max_finished: 100_000,
        }
    }
}

/// Memory held for one chunk of `samples_per_lead` samples on `n_leads` leads, as
/// counted against [`AssemblyConfig::max_bytes_per_visit`]: the samples, and the
/// shared block with its vector per lead and the visit's map entries (an estimate with
/// the allocator's rounding). Without the bookkeeping, chunks of one sample held some
/// 30 times what was counted.
pub fn chunk_held_bytes(n_leads: usize, samples_per_lead: usize) -> usize {
    2 * n_leads * samples_per_lead + CHUNK_BOOKKEEPING_BYTES + LEAD_BOOKKEEPING_BYTES * n_leads
}

const CHUNK_BOOKKEEPING_BYTES: usize = 128;
const LEAD_BOOKKEEPING_BYTES: usize = 32;

/// What a visit may hold: the per-visit bound, or less when the visits in flight
/// together near theirs.
#[derive(Debug, Clone, Copy)]
struct ByteRoom {
    max: usize,
    shared: bool,
}

impl ByteRoom {
    /// For a visit holding `held` bytes while all visits (it included) hold `in_flight`.
    fn for_visit(cfg: &AssemblyConfig, held: usize, in_flight: usize) -> ByteRoom {
        let shared = held.saturating_add(cfg.max_bytes_in_flight.saturating_sub(in_flight));
        ByteRoom {
            max: shared.min(cfg.max_bytes_per_visit),
            shared: shared < cfg.max_bytes_per_visit,
        }
    }

    fn refusal(self, cfg: &AssemblyConfig) -> (DeadLetterCode, String) {
        let reason = if self.shared {
            format!(
                "the visits in flight would hold more than {} bytes together, the bound",
                cfg.max_bytes_in_flight
            )
        } else {
            format!(
                "visit would hold more than {} bytes",
                cfg.max_bytes_per_visit
            )
        };
        (DeadLetterCode::TooLarge, reason)
    }
}

/// An early chunk is held raw (to quote it in a rejection) and decoded.
fn early_held_bytes(payload_len: usize) -> usize {
    2 * payload_len + CHUNK_BOOKKEEPING_BYTES
}

/// What the assembler tells the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum AssemblyEvent {
    /// The visit's meta was accepted; comes before any of its `Samples`.
    Started { key: VisitKey, meta: VisitMeta },
    /// The next contiguous samples of a visit: `leads[p]` holds the samples
    /// of the p-th lead of the meta's lead set, starting at per-lead index
    /// `first_sample`. Successive events of a visit are contiguous.
    Samples {
        key: VisitKey,
        first_sample: u32,
        leads: SampleBlock,
    },
    /// Every chunk the end announced arrived. `digest_ok` is false when the
    /// samples do not hash to the end's digest or the counts disagree.
    Complete {
        key: VisitKey,
        meta: VisitMeta,
        end: VisitEnd,
        samples: Vec<Vec<i16>>,
        digest_ok: bool,
    },
    /// The visit was abandoned. `samples` is the contiguous prefix received
    /// (empty without meta).
    Incomplete {
        key: VisitKey,
        meta: Option<VisitMeta>,
        samples: Vec<Vec<i16>>,
        reason: IncompleteReason,
    },
    /// Input refused; the pipeline publishes it as a dead letter.
    Rejected(Rejection),
}

impl AssemblyEvent {
    /// The visit the event belongs to, if any.
    pub fn key(&self) -> Option<&VisitKey> {
        match self {
            AssemblyEvent::Started { key, .. }
            | AssemblyEvent::Samples { key, .. }
            | AssemblyEvent::Complete { key, .. }
            | AssemblyEvent::Incomplete { key, .. } => Some(key),
            AssemblyEvent::Rejected(r) => r.key.as_ref(),
        }
    }
}

/// Why a visit was closed without all its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncompleteReason {
    /// No message arrived for [`AssemblyConfig::visit_timeout`].
    TimedOut {
        meta_missing: bool,
        end_missing: bool,
        /// Sequence numbers known to be missing (the first 32 at most).
        missing_chunks: Vec<u32>,
    },
    /// Its device opened more than [`AssemblyConfig::max_visits_per_device`] visits;
    /// this was its oldest.
    Displaced { open_visits: usize },
    /// Open for [`AssemblyConfig::max_visit_open`].
    OpenTooLong { open_s: u64 },
}

impl fmt::Display for IncompleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IncompleteReason::TimedOut {
                meta_missing,
                end_missing,
                missing_chunks,
            } => {
                write!(f, "timed out")?;
                if *meta_missing {
                    write!(f, "; meta missing")?;
                }
                if *end_missing {
                    write!(f, "; end missing")?;
                }
                if !missing_chunks.is_empty() {
                    write!(f, "; missing chunks {missing_chunks:?}")?;
                }
                Ok(())
            }
            IncompleteReason::Displaced { open_visits } => write!(
                f,
                "closed as the device's oldest of {open_visits} open visits, more than the bound"
            ),
            IncompleteReason::OpenTooLong { open_s } => {
                write!(f, "still open after {open_s} s, the bound")
            }
        }
    }
}

/// The longest refused payload a [`Rejection`] carries whole: a full chunk
/// (65,536 samples) or the largest JSON message, with room to spare. Longer
/// ones are not anything a device sends; they keep only a prefix, so a flood
/// of them cannot fill memory between the ingest and the pipeline.
pub const KEPT_PAYLOAD_MAX_BYTES: usize = 256 << 10;

/// Input the assembler refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The visit, when the topic named one.
    pub key: Option<VisitKey>,
    pub topic: String,
    /// The whole payload when it is at most [`KEPT_PAYLOAD_MAX_BYTES`] long
    /// (anything a device may legitimately send: a full chunk or a meta),
    /// so that the pipeline can keep refused ECG whole; otherwise its first
    /// [`ecg_wire::message::DEADLETTER_PAYLOAD_MAX_BYTES`] bytes.
    pub payload: Vec<u8>,
    pub payload_len: usize,
    pub code: DeadLetterCode,
    pub reason: String,
    pub received_at: OffsetDateTime,
    /// The refused message as the ingest spooled it, when nothing else keeps
    /// it there (no open visit holds it): hand it back with
    /// [`crate::IngestHandle::release`] once its dead letter is out, so that
    /// a crash before then replays it instead of losing it. The assembler
    /// leaves it empty; the ingest's source fills it in.
    pub spooled: Option<RecordId>,
}

impl Rejection {
    fn new(
        key: Option<VisitKey>,
        topic: &str,
        payload: &[u8],
        code: DeadLetterCode,
        reason: impl Into<String>,
        received_at: OffsetDateTime,
    ) -> Rejection {
        let keep = if payload.len() <= KEPT_PAYLOAD_MAX_BYTES {
            payload.len()
        } else {
            ecg_wire::message::DEADLETTER_PAYLOAD_MAX_BYTES
        };
        Rejection {
            key,
            topic: topic.chars().take(ecg_wire::topic::MAX_TOPIC_LEN).collect(),
            payload: payload[..keep].to_vec(),
            payload_len: payload.len(),
            code,
            reason: reason.into(),
            received_at,
            spooled: None,
        }
    }

    /// Whether [`Rejection::payload`] is the whole payload.
    pub fn payload_is_whole(&self) -> bool {
        self.payload.len() == self.payload_len
    }

    /// The `ecg/v1/deadletter` message for this rejection (its payload cut
    /// to the dead letter's prefix).
    pub fn to_dead_letter(&self) -> DeadLetter {
        let mut dl = DeadLetter::new(
            &self.topic,
            &self.payload,
            self.code,
            &self.reason,
            self.received_at,
        );
        dl.payload_len = self.payload_len as u64;
        dl
    }
}

/// The messages of a visit closed before its meta arrived, as dead letters
/// (before the visit's `Incomplete`, so they are published before its spooled
/// messages are let go): without the meta's lead set and rate no sample can
/// be read, so they cannot be archived, but the operator gets each of them.
fn refuse_orphans(
    key: &VisitKey,
    mut early: Vec<Early>,
    early_end: Option<Rejection>,
    why_closed: &IncompleteReason,
    out: &mut Vec<AssemblyEvent>,
) {
    early.sort_by_key(|e| e.chunk.seq());
    for e in early {
        out.push(AssemblyEvent::Rejected(Rejection::new(
            Some(key.clone()),
            &e.topic,
            &e.payload,
            DeadLetterCode::UnknownVisit,
            format!(
                "chunk seq {} of a visit whose meta never arrived (visit closed: {why_closed}); without the meta its samples cannot be read",
                e.chunk.seq()
            ),
            e.received_at,
        )));
    }
    if let Some(mut end) = early_end {
        end.reason =
            format!("end of a visit whose meta never arrived (visit closed: {why_closed})");
        out.push(AssemblyEvent::Rejected(end));
    }
}

fn millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

fn message_code(e: &MessageError) -> DeadLetterCode {
    match e {
        MessageError::TooLarge { .. } => DeadLetterCode::TooLarge,
        MessageError::Json(_) => DeadLetterCode::BadJson,
        MessageError::Invalid { .. } => DeadLetterCode::InvalidMessage,
    }
}

/// A chunk that came before its visit's meta, kept raw so that a rejection
/// after the meta arrives can still quote it.
struct Early {
    topic: String,
    payload: Vec<u8>,
    chunk: Chunk,
    received_at: OffsetDateTime,
}

struct Visit {
    meta: Option<VisitMeta>,
    end: Option<VisitEnd>,
    early: Vec<Early>,
    /// An end that came before the meta, as the dead letter it becomes if
    /// the meta never does (the reason is written then). A prefix only is
    /// kept: an end is not counted in the visit's bytes.
    early_end: Option<Rejection>,
    /// Accepted chunks not yet contiguous, by seq.
    pending: BTreeMap<u32, Chunk>,
    /// CRC of every accepted chunk payload, by seq: tells a harmless
    /// duplicate from a conflicting resend. Ordered, so that a chunk claiming
    /// to be the last finds a later one without a scan of all.
    seen: BTreeMap<u32, u32>,
    next_seq: u32,
    next_sample: u32,
    last_seq: Option<u32>,
    n_leads: usize,
    /// The contiguous samples so far, as handed on in `Samples` events.
    blocks: Vec<SampleBlock>,
    bytes: usize,
    opened_ms: i128,
    last_activity_ms: i128,
}

impl Visit {
    fn new(now_ms: i128) -> Visit {
        Visit {
            meta: None,
            end: None,
            early: Vec::new(),
            early_end: None,
            pending: BTreeMap::new(),
            seen: BTreeMap::new(),
            next_seq: 0,
            next_sample: 0,
            last_seq: None,
            n_leads: 0,
            blocks: Vec::new(),
            bytes: 0,
            opened_ms: now_ms,
            last_activity_ms: now_ms,
        }
    }

    /// The contiguous samples received, per lead, in one piece each (the
    /// visit is ending: the blocks go with it).
    fn samples(&self) -> Vec<Vec<i16>> {
        let n: usize = self
            .blocks
            .iter()
            .map(|b| b.first().map_or(0, Vec::len))
            .sum();
        (0..self.n_leads)
            .map(|p| {
                let mut lead = Vec::with_capacity(n);
                for b in &self.blocks {
                    lead.extend_from_slice(&b[p]);
                }
                lead
            })
            .collect()
    }

    fn missing_chunks(&self) -> Vec<u32> {
        let known_total = self
            .end
            .as_ref()
            .map(|e| e.n_chunks)
            .or(self.last_seq.map(|l| l.saturating_add(1)))
            .or_else(|| self.pending.keys().next_back().map(|s| s + 1))
            .or_else(|| self.early.iter().map(|e| e.chunk.seq() + 1).max())
            .unwrap_or(0);
        let early: Vec<u32> = self.early.iter().map(|e| e.chunk.seq()).collect();
        (self.next_seq..known_total)
            .filter(|s| !self.pending.contains_key(s) && !early.contains(s))
            .take(32)
            .collect()
    }
}

/// Assembles visits from device messages. One value per worker; it owns all
/// its state.
pub struct Assembler {
    cfg: AssemblyConfig,
    visits: HashMap<VisitKey, Visit>,
    /// Recently finished visits with the time they finished, oldest first.
    finished: VecDeque<(VisitKey, i128)>,
    finished_set: HashMap<VisitKey, i128>,
}

impl Assembler {
    pub fn new(cfg: AssemblyConfig) -> Assembler {
        Assembler {
            cfg,
            visits: HashMap::new(),
            finished: VecDeque::new(),
            finished_set: HashMap::new(),
        }
    }

    pub fn config(&self) -> &AssemblyConfig {
        &self.cfg
    }

    /// Visits open (neither complete nor expired).
    pub fn in_flight(&self) -> usize {
        self.visits.len()
    }

    /// Whether `key` is open.
    pub fn is_open(&self, key: &VisitKey) -> bool {
        self.visits.contains_key(key)
    }

    /// Whether `key` finished recently (further messages for it are
    /// dropped as duplicates).
    pub fn is_finished(&self, key: &VisitKey) -> bool {
        self.finished_set.contains_key(key)
    }

    /// Restarts every open visit's timeout at `now`: after a restart the
    /// spool replays old messages and the broker still holds newer ones, so
    /// the gap while the process was down must not count as abandonment.
    pub fn resume(&mut self, now: OffsetDateTime) {
        let now_ms = millis(now);
        for v in self.visits.values_mut() {
            v.last_activity_ms = v.last_activity_ms.max(now_ms);
            v.opened_ms = v.opened_ms.max(now_ms);
        }
    }

    /// Takes one message as received from the broker.
    pub fn push(
        &mut self,
        topic: &str,
        payload: &[u8],
        received_at: OffsetDateTime,
    ) -> Vec<AssemblyEvent> {
        self.push_telling_refusal(topic, payload, received_at).0
    }

    /// [`Assembler::push`], also telling which of the events, if any, refuses
    /// the message pushed (the others may refuse messages held earlier).
    pub fn push_telling_refusal(
        &mut self,
        topic: &str,
        payload: &[u8],
        received_at: OffsetDateTime,
    ) -> (Vec<AssemblyEvent>, Option<usize>) {
        let mut out = Vec::new();
        let refused = Cell::new(None);
        self.push_into(topic, payload, received_at, &refused, &mut out);
        (out, refused.get())
    }

    fn push_into(
        &mut self,
        topic: &str,
        payload: &[u8],
        received_at: OffsetDateTime,
        refused: &Cell<Option<usize>>,
        out: &mut Vec<AssemblyEvent>,
    ) {
        let reject = |out: &mut Vec<AssemblyEvent>, key: Option<VisitKey>, code, reason: String| {
            refused.set(Some(out.len()));
            out.push(AssemblyEvent::Rejected(Rejection::new(
                key,
                topic,
                payload,
                code,
                reason,
                received_at,
            )));
        };
        let (key, kind) = match Topic::parse(topic) {
            Ok(Topic::Visit {
                device_id,
                visit_id,
                kind,
            }) => (
                VisitKey {
                    device_id,
                    visit_id,
                },
                kind,
            ),
            Ok(other) => {
                reject(
                    out,
                    None,
                    DeadLetterCode::BadTopic,
                    format!("not a device visit topic: {other}"),
                );
                return;
            }
            Err(e) => {
                reject(out, None, DeadLetterCode::BadTopic, e.to_string());
                return;
            }
        };
        // Parse and check the message on its own before it may touch any
        // visit state, so bad input never opens a visit.
        let parsed = match kind {
            // Our own output echoed by the wildcard subscription.
            VisitTopic::Result => return,
            VisitTopic::Meta => match VisitMeta::from_json(payload) {
                Ok(meta) if meta.device_id != key.device_id => Err((
                    DeadLetterCode::TopicMismatch,
                    format!(
                        "meta device_id {} is not the topic's {}",
                        meta.device_id, key.device_id
                    ),
                )),
                Ok(meta) if meta.visit_id != key.visit_id => Err((
                    DeadLetterCode::TopicMismatch,
                    format!(
                        "meta visit_id {} is not the topic's {}",
                        meta.visit_id, key.visit_id
                    ),
                )),
                Ok(meta) => Ok(Parsed::Meta(meta)),
                Err(e) => Err((message_code(&e), format!("meta: {e}"))),
            },
            VisitTopic::End => match VisitEnd::from_json(payload) {
                Ok(end) if end.visit_id != key.visit_id => Err((
                    DeadLetterCode::TopicMismatch,
                    format!(
                        "end visit_id {} is not the topic's {}",
                        end.visit_id, key.visit_id
                    ),
                )),
                Ok(end) => Ok(Parsed::End(end)),
                Err(e) => Err((message_code(&e), format!("end: {e}"))),
            },
            VisitTopic::Chunk => {
                if payload.len() > self.cfg.max_chunk_bytes {
                    Err((
                        DeadLetterCode::TooLarge,
                        format!(
                            "chunk of {} bytes, more than {}",
                            payload.len(),
                            self.cfg.max_chunk_bytes
                        ),
                    ))
                } else {
                    match Chunk::decode(payload) {
                        Ok(c) if c.visit_id() != key.visit_id => Err((
                            DeadLetterCode::TopicMismatch,
                            format!(
                                "chunk visit_id {} is not the topic's {}",
                                c.visit_id(),
                                key.visit_id
                            ),
                        )),
                        Ok(c) => Ok(Parsed::Chunk(c, crc32fast::hash(payload))),
                        Err(e) => Err((DeadLetterCode::BadChunk, e.to_string())),
                    }
                }
            }
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err((code, reason)) => {
                if let Some(v) = self.visits.get_mut(&key) {
                    v.last_activity_ms = millis(received_at);
                }
                reject(out, Some(key), code, reason);
                return;
            }
        };
        if self.finished_set.contains_key(&key) {
            // A redelivery of a visit already decided.
            return;
        }
        if !self.visits.contains_key(&key) {
            self.make_room_for(&key.device_id, millis(received_at), out);
            if self.visits.len() >= self.cfg.max_visits_in_flight {
                reject(
                    out,
                    Some(key),
                    DeadLetterCode::TooLarge,
                    format!("{} visits already in flight, the bound", self.visits.len()),
                );
                return;
            }
            self.visits
                .insert(key.clone(), Visit::new(millis(received_at)));
        }
        // Only a chunk, or a meta that takes in early chunks, adds bytes.
        let in_flight: usize = match parsed {
            Parsed::Chunk(..) | Parsed::Meta(_) => self.visits.values().map(|v| v.bytes).sum(),
            Parsed::End(_) => 0,
        };
        let Some(visit) = self.visits.get_mut(&key) else {
            return;
        };
        visit.last_activity_ms = millis(received_at);
        let cfg = &self.cfg;
        let room = ByteRoom::for_visit(cfg, visit.bytes, in_flight);
        match parsed {
            Parsed::Meta(meta) => match &visit.meta {
                Some(old) if *old == meta => {}
                Some(_) => reject(
                    out,
                    Some(key.clone()),
                    DeadLetterCode::InconsistentVisit,
                    "a second meta with different content".into(),
                ),
                None => {
                    visit.n_leads = meta.leads.len();
                    visit.meta = Some(meta.clone());
                    visit.early_end = None;
                    out.push(AssemblyEvent::Started {
                        key: key.clone(),
                        meta,
                    });
                    let mut early = std::mem::take(&mut visit.early);
                    early.sort_by_key(|e| e.chunk.seq());
                    for e in early {
                        visit.bytes -= early_held_bytes(e.payload.len());
                        visit.seen.remove(&e.chunk.seq());
                        let crc = crc32fast::hash(&e.payload);
                        if let Err((code, reason)) =
                            accept_chunk(cfg, room, &key, visit, e.chunk, crc, out)
                        {
                            out.push(AssemblyEvent::Rejected(Rejection::new(
                                Some(key.clone()),
                                &e.topic,
                                &e.payload,
                                code,
                                reason,
                                e.received_at,
                            )));
                        }
                    }
                }
            },
            Parsed::End(end) => match &visit.end {
                Some(old) if *old == end => {}
                Some(_) => reject(
                    out,
                    Some(key.clone()),
                    DeadLetterCode::InconsistentVisit,
                    "a second end with different content".into(),
                ),
                None => {
                    visit.end = Some(end);
                    if visit.meta.is_none() {
                        visit.early_end = Some(Rejection::new(
                            Some(key.clone()),
                            topic,
                            payload,
                            DeadLetterCode::UnknownVisit,
                            String::new(),
                            received_at,
                        ));
                    }
                }
            },
            Parsed::Chunk(chunk, crc) => {
                if visit.meta.is_none() {
                    match visit.seen.get(&chunk.seq()) {
                        Some(&old) if old == crc => {}
                        Some(_) => reject(
                            out,
                            Some(key.clone()),
                            DeadLetterCode::InconsistentVisit,
                            format!("chunk seq {} resent with different content", chunk.seq()),
                        ),
                        None if visit.early.len() >= cfg.max_early_chunks => reject(
                            out,
                            Some(key.clone()),
                            DeadLetterCode::TooLarge,
                            format!(
                                "{} chunks already held waiting for the meta, the bound",
                                visit.early.len()
                            ),
                        ),
                        None if visit.bytes + early_held_bytes(payload.len()) > room.max => {
                            let (code, reason) = room.refusal(cfg);
                            reject(out, Some(key.clone()), code, reason)
                        }
                        None => {
                            visit.seen.insert(chunk.seq(), crc);
                            visit.bytes += early_held_bytes(payload.len());
                            visit.early.push(Early {
                                topic: topic.to_owned(),
                                payload: payload.to_vec(),
                                chunk,
                                received_at,
                            });
                        }
                    }
                } else if let Err((code, reason)) =
                    accept_chunk(cfg, room, &key, visit, chunk, crc, out)
                {
                    reject(out, Some(key.clone()), code, reason);
                }
            }
        }
        self.try_complete(&key, received_at, out);
    }

    fn try_complete(&mut self, key: &VisitKey, now: OffsetDateTime, out: &mut Vec<AssemblyEvent>) {
        let done = self.visits.get(key).is_some_and(|v| {
            v.meta.is_some() && v.end.as_ref().is_some_and(|e| v.next_seq >= e.n_chunks)
        });
        if !done {
            return;
        }
        let Some(v) = self.visits.remove(key) else {
            return;
        };
        let samples = v.samples();
        let (Some(meta), Some(end)) = (v.meta, v.end) else {
            return;
        };
        let digest = SamplesDigest::of_leads(samples.iter().map(Vec::as_slice));
        let n_samples = samples.first().map_or(0, Vec::len);
        let digest_ok = digest == end.samples_sha256
            && n_samples == end.n_samples as usize
            && v.next_seq == end.n_chunks
            && v.last_seq == Some(end.n_chunks - 1);
        out.push(AssemblyEvent::Complete {
            key: key.clone(),
            meta,
            end,
            samples,
            digest_ok,
        });
        self.remember_finished(key.clone(), millis(now));
    }

    fn remember_finished(&mut self, key: VisitKey, now_ms: i128) {
        self.finished_set.insert(key.clone(), now_ms);
        self.finished.push_back((key, now_ms));
        while self.finished.len() > self.cfg.max_finished {
            if let Some((k, _)) = self.finished.pop_front() {
                self.finished_set.remove(&k);
            }
        }
    }

    /// Before `device` opens another visit: closes its oldest while it has the most
    /// it may have open.
    fn make_room_for(&mut self, device: &DeviceId, now_ms: i128, out: &mut Vec<AssemblyEvent>) {
        let mut open: Vec<(i128, VisitKey)> = self
            .visits
            .iter()
            .filter(|(k, _)| k.device_id == *device)
            .map(|(k, v)| (v.opened_ms, k.clone()))
            .collect();
        if open.len() < self.cfg.max_visits_per_device {
            return;
        }
        open.sort();
        let open_visits = open.len() + 1;
        let excess = open_visits - self.cfg.max_visits_per_device;
        for (_, key) in open.into_iter().take(excess) {
            self.close_incomplete(key, now_ms, out, |_| IncompleteReason::Displaced {
                open_visits,
            });
        }
    }

    fn close_incomplete(
        &mut self,
        key: VisitKey,
        now_ms: i128,
        out: &mut Vec<AssemblyEvent>,
        reason: impl FnOnce(&Visit) -> IncompleteReason,
    ) {
        if let Some(v) = self.visits.remove(&key) {
            let reason = reason(&v);
            let samples = v.samples();
            let had_meta = v.meta.is_some();
            if !had_meta {
                refuse_orphans(&key, v.early, v.early_end, &reason, out);
            }
            out.push(AssemblyEvent::Incomplete {
                key: key.clone(),
                meta: v.meta,
                samples,
                reason,
            });
            // Closed before its meta, a visit decided nothing: its messages
            // were refused and kept whole, so when they come again (with
            // the meta at last, or replayed from the quarantine) they are
            // taken in as the visit, not dropped as redeliveries.
            if had_meta {
                self.remember_finished(key, now_ms);
            }
        }
    }

    /// Closes visits idle for longer than the timeout, or open for longer than
    /// their bound, as [`AssemblyEvent::Incomplete`] and forgets old finished
    /// visits.
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<AssemblyEvent> {
        let now_ms = millis(now);
        let timeout_ms = self.cfg.visit_timeout.as_millis() as i128;
        let open_ms = self.cfg.max_visit_open.as_millis() as i128;
        let mut expired: Vec<VisitKey> = self
            .visits
            .iter()
            .filter(|(_, v)| {
                now_ms - v.last_activity_ms >= timeout_ms || now_ms - v.opened_ms >= open_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        expired.sort();
        let mut out = Vec::new();
        for key in expired {
            self.close_incomplete(key, now_ms, &mut out, |v| {
                if now_ms - v.last_activity_ms >= timeout_ms {
                    IncompleteReason::TimedOut {
                        meta_missing: v.meta.is_none(),
                        end_missing: v.end.is_none(),
                        missing_chunks: v.missing_chunks(),
                    }
                } else {
                    IncompleteReason::OpenTooLong {
                        open_s: ((now_ms - v.opened_ms) / 1000) as u64,
                    }
                }
            });
        }
        let retention_ms = self.cfg.finished_retention.as_millis() as i128;
        while let Some((k, t)) = self.finished.front() {
            if now_ms - *t < retention_ms {
                break;
            }
            self.finished_set.remove(k);
            self.finished.pop_front();
        }
        out
    }
}

enum Parsed {
    Meta(VisitMeta),
    End(VisitEnd),
    Chunk(Chunk, u32),
}

/// Checks a chunk against its visit's meta and what came before, buffers
/// it, and emits every sample that became contiguous.
fn accept_chunk(
    cfg: &AssemblyConfig,
    room: ByteRoom,
    key: &VisitKey,
    visit: &mut Visit,
    chunk: Chunk,
    crc: u32,
    out: &mut Vec<AssemblyEvent>,
) -> Result<(), (DeadLetterCode, String)> {
    let inconsistent = |reason: String| Err((DeadLetterCode::InconsistentVisit, reason));
    let Some(meta) = &visit.meta else {
        return inconsistent("chunk processed before meta".into());
    };
    let seq = chunk.seq();
    match visit.seen.get(&seq) {
        Some(&old) if old == crc => return Ok(()),
        Some(_) => return inconsistent(format!("chunk seq {seq} resent with different content")),
        None => {}
    }
    if chunk.leads() != meta.leads {
        return inconsistent(format!(
            "chunk seq {seq} lead mask {:#x} is not the meta's {:#x}",
            chunk.leads().mask(),
            meta.leads.mask()
        ));
    }
    let per_chunk = usize::from(meta.chunk_samples);
    let n = chunk.samples_per_lead();
    if n > per_chunk || (n < per_chunk && !chunk.is_last()) {
        return inconsistent(format!(
            "chunk seq {seq} has {n} samples per lead, the meta says {per_chunk}{}",
            if chunk.is_last() { " at most" } else { "" }
        ));
    }
    let expected_first = u64::from(seq) * per_chunk as u64;
    if u64::from(chunk.first_sample()) != expected_first {
        return inconsistent(format!(
            "chunk seq {seq} starts at sample {}, expected {expected_first}",
            chunk.first_sample()
        ));
    }
    if let Some(last) = visit.last_seq {
        if seq > last || (chunk.is_last() && seq != last) {
            return inconsistent(format!("chunk seq {seq} conflicts with last chunk {last}"));
        }
    }
    if chunk.is_last() {
        let beyond = visit.seen.range(seq.saturating_add(1)..).next().is_some();
        if beyond {
            return inconsistent(format!(
                "chunk seq {seq} says it is the last but later chunks arrived"
            ));
        }
    }
    let bytes = chunk_held_bytes(visit.n_leads, n);
    if visit.bytes + bytes > room.max {
        return Err(room.refusal(cfg));
    }
    visit.bytes += bytes;
    visit.seen.insert(seq, crc);
    if chunk.is_last() {
        visit.last_seq = Some(seq);
    }
    visit.pending.insert(seq, chunk);
    while let Some(chunk) = visit.pending.remove(&visit.next_seq) {
        let leads: SampleBlock = (0..visit.n_leads)
            .map(|p| chunk.lead_samples(p).unwrap_or_default().to_vec())
            .collect();
        visit.blocks.push(leads.clone());
        out.push(AssemblyEvent::Samples {
            key: key.clone(),
            first_sample: visit.next_sample,
            leads,
        });
        visit.next_seq = visit.next_seq.saturating_add(1);
        visit.next_sample = visit
            .next_sample
            .saturating_add(chunk.samples_per_lead() as u32);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ecg_wire::{ClinicId, Lead, LeadSet, PatientPseudonym, Sex};
    use proptest::prelude::*;

    const CHUNK: u16 = 50;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    pub(crate) fn key(dev: &str, v: u8) -> VisitKey {
        VisitKey {
            device_id: DeviceId::new(dev).unwrap(),
            visit_id: VisitId::from_bytes([v; 16]).unwrap(),
        }
    }

    fn leads() -> LeadSet {
        LeadSet::from_ordered([Lead::I, Lead::II, Lead::V2]).unwrap()
    }

    fn meta_for(k: &VisitKey) -> VisitMeta {
        VisitMeta {
            device_id: k.device_id.clone(),
            clinic_id: ClinicId::new("clinic-1").unwrap(),
            visit_id: k.visit_id,
            patient_pseudonym: PatientPseudonym::new("k1-9f86d081884c7d659a2feaa0c55ad015")
                .unwrap(),
            sex: Sex::Female,
            age_years: Some(70),
            leads: leads(),
            fs_hz: 250,
            gain_uv_per_lsb: 5.0,
            acquired_at: t(0),
            chunk_samples: CHUNK,
            firmware_version: "test-1".into(),
        }
    }

    fn topic(k: &VisitKey, kind: &str) -> String {
        format!("ecg/v1/dev/{}/visit/{}/{kind}", k.device_id, k.visit_id)
    }

    /// Per-lead truth samples of a visit of `n` chunks, the last `last_len` long.
    fn truth(k: &VisitKey, n: u32, last_len: u16) -> Vec<Vec<i16>> {
        let total = (n - 1) as usize * CHUNK as usize + last_len as usize;
        (0..3)
            .map(|l| {
                (0..total)
                    .map(|i| {
                        ((i * 7 + l * 1000 + k.visit_id.as_bytes()[0] as usize) % 4000) as i16
                            - 2000
                    })
                    .collect()
            })
            .collect()
    }

    fn chunk_bytes(k: &VisitKey, truth: &[Vec<i16>], seq: u32, n: u32) -> Vec<u8> {
        let start = seq as usize * CHUNK as usize;
        let end = (start + CHUNK as usize).min(truth[0].len());
        let samples: Vec<i16> = truth.iter().flat_map(|l| l[start..end].to_vec()).collect();
        Chunk::new(k.visit_id, seq, start as u32, leads(), samples)
            .unwrap()
            .with_last(seq + 1 == n)
            .to_bytes()
    }

    /// meta, chunks 0..n, end, in order.
    pub(crate) fn visit(k: &VisitKey, n: u32, last_len: u16) -> Vec<(String, Vec<u8>)> {
        let truth = truth(k, n, last_len);
        let mut msgs = vec![(topic(k, "meta"), meta_for(k).to_json())];
        for s in 0..n {
            msgs.push((topic(k, "chunk"), chunk_bytes(k, &truth, s, n)));
        }
        let end = VisitEnd {
            visit_id: k.visit_id,
            n_chunks: n,
            n_samples: truth[0].len() as u32,
            samples_sha256: SamplesDigest::of_leads(truth.iter().map(Vec::as_slice)),
        };
        msgs.push((topic(k, "end"), end.to_json()));
        msgs
    }

    fn run(asm: &mut Assembler, msgs: &[(String, Vec<u8>)]) -> Vec<AssemblyEvent> {
        msgs.iter()
            .enumerate()
            .flat_map(|(i, (tp, p))| asm.push(tp, p, t(i as i64 / 100)))
            .collect()
    }

    fn completes(events: &[AssemblyEvent]) -> Vec<(&VisitKey, &Vec<Vec<i16>>, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                AssemblyEvent::Complete {
                    key,
                    samples,
                    digest_ok,
                    ..
                } => Some((key, samples, *digest_ok)),
                _ => None,
            })
            .collect()
    }

    fn rejections(events: &[AssemblyEvent]) -> Vec<&Rejection> {
        events
            .iter()
            .filter_map(|e| match e {
                AssemblyEvent::Rejected(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Streamed samples rebuilt from the `Samples` events of one visit,
    /// checking they are contiguous.
    fn streamed(events: &[AssemblyEvent], k: &VisitKey) -> Vec<Vec<i16>> {
        let mut out = vec![Vec::new(); 3];
        for e in events {
            if let AssemblyEvent::Samples {
                key,
                first_sample,
                leads,
            } = e
            {
                if key == k {
                    assert_eq!(*first_sample as usize, out[0].len(), "contiguous");
                    for (o, l) in out.iter_mut().zip(leads.iter()) {
                        o.extend_from_slice(l);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn in_order_visit_streams_and_completes_with_the_digest() {
        let k = key("dev-1", 1);
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = run(&mut asm, &visit(&k, 5, 20));
        assert!(matches!(&ev[0], AssemblyEvent::Started { key, .. } if *key == k));
        let c = completes(&ev);
        assert_eq!(c.len(), 1);
        assert_eq!(*c[0].1, truth(&k, 5, 20));
        assert!(c[0].2, "digest ok");
        assert_eq!(streamed(&ev, &k), truth(&k, 5, 20));
        assert!(rejections(&ev).is_empty());
        assert_eq!(asm.in_flight(), 0);
        assert!(asm.is_finished(&k));
    }

    #[test]
    fn refused_input_is_carried_whole_unless_no_device_could_have_sent_it() {
        let k = key("dev-1", 9);
        let mut asm = Assembler::new(AssemblyConfig::default());
        // Longer than a dead letter's prefix, short enough to be a meta.
        let mut bad_json = b"{\"visit_id\": ".to_vec();
        bad_json.resize(5_000, b'x');
        let mut huge = bad_json.clone();
        huge.resize(KEPT_PAYLOAD_MAX_BYTES + 1, b'x');
        let ev = run(
            &mut asm,
            &[
                (topic(&k, "meta"), bad_json.clone()),
                (topic(&k, "end"), huge.clone()),
            ],
        );
        let refused = rejections(&ev);
        assert_eq!(refused.len(), 2, "{ev:?}");
        assert_eq!(refused[0].payload, bad_json);
        assert!(refused[0].payload_is_whole());
        assert_eq!(refused[1].payload_len, huge.len());
        assert_eq!(
            refused[1].payload,
            huge[..ecg_wire::message::DEADLETTER_PAYLOAD_MAX_BYTES]
        );
        assert!(!refused[1].payload_is_whole());
        // The dead letter keeps its prefix either way.
        let dl = refused[0].to_dead_letter();
        assert_eq!(dl.payload_len, bad_json.len() as u64);
        assert_eq!(
            dl.payload_prefix().unwrap(),
            bad_json[..ecg_wire::message::DEADLETTER_PAYLOAD_MAX_BYTES]
        );
    }

    #[test]
    fn duplicates_are_dropped_and_late_duplicates_after_the_verdict_too() {
        let k = key("dev-1", 2);
        let msgs = visit(&k, 4, CHUNK);
        let doubled: Vec<_> = msgs.iter().flat_map(|m| [m.clone(), m.clone()]).collect();
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = run(&mut asm, &doubled);
        assert_eq!(completes(&ev).len(), 1);
        assert!(rejections(&ev).is_empty(), "{:?}", rejections(&ev));
        // The whole visit again, after the verdict: nothing at all.
        assert!(run(&mut asm, &msgs).is_empty());
        assert_eq!(asm.in_flight(), 0);
    }

    #[test]
    fn end_first_reversed_chunks_and_meta_last_still_complete() {
        let k = key("dev-1", 3);
        let mut msgs = visit(&k, 6, 7);
        msgs.reverse(); // end, chunk 5..0, meta
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = run(&mut asm, &msgs);
        let c = completes(&ev);
        assert_eq!(c.len(), 1);
        assert!(c[0].2);
        assert_eq!(streamed(&ev, &k), truth(&k, 6, 7));
        // Started comes before any samples.
        let started = ev
            .iter()
            .position(|e| matches!(e, AssemblyEvent::Started { .. }));
        let first_samples = ev
            .iter()
            .position(|e| matches!(e, AssemblyEvent::Samples { .. }));
        assert!(started < first_samples);
    }

    #[test]
    fn gap_holds_later_chunks_then_times_out_as_incomplete() {
        let k = key("dev-1", 4);
        let mut msgs = visit(&k, 5, CHUNK);
        msgs.remove(3); // chunk seq 2
        let cfg = AssemblyConfig {
            visit_timeout: Duration::from_secs(30),
            ..AssemblyConfig::default()
        };
        let mut asm = Assembler::new(cfg);
        let ev = run(&mut asm, &msgs);
        assert!(completes(&ev).is_empty());
        // Only chunks 0 and 1 were streamed.
        assert_eq!(streamed(&ev, &k)[0].len(), 2 * CHUNK as usize);
        assert!(asm.tick(t(29)).is_empty(), "not yet timed out");
        let ev = asm.tick(t(31));
        match ev.as_slice() {
            [AssemblyEvent::Incomplete {
                key,
                meta,
                samples,
                reason,
            }] => {
                assert_eq!(*key, k);
                assert!(meta.is_some());
                assert_eq!(samples[0].len(), 2 * CHUNK as usize);
                assert_eq!(
                    *reason,
                    IncompleteReason::TimedOut {
                        meta_missing: false,
                        end_missing: false,
                        missing_chunks: vec![2]
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        // The missing chunk arriving now is a late message of a decided visit.
        let late = visit(&k, 5, CHUNK)[3].clone();
        assert!(asm.push(&late.0, &late.1, t(32)).is_empty());
    }

    #[test]
    fn meta_never_arriving_times_out_without_meta() {
        let k = key("dev-1", 5);
        let msgs = visit(&k, 3, CHUNK);
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = run(&mut asm, &msgs[1..]);
        assert!(ev.is_empty(), "chunks wait for the meta: {ev:?}");
        let ev = asm.tick(t(3600));
        let (last, refused) = ev.split_last().expect("events");
        assert!(
            matches!(
                last,
                AssemblyEvent::Incomplete {
                    meta: None,
                    reason: IncompleteReason::TimedOut {
                        meta_missing: true,
                        end_missing: false,
                        ..
                    },
                    ..
                }
            ),
            "{ev:?}"
        );
        // Every message held for the meta is handed on as a dead letter, in
        // the order sent, before the visit is let go.
        assert_eq!(refused.len(), msgs.len() - 1, "{ev:?}");
        for (e, (sent_topic, sent_payload)) in refused.iter().zip(&msgs[1..]) {
            let AssemblyEvent::Rejected(r) = e else {
                panic!("{e:?}");
            };
            assert_eq!(r.key.as_ref(), Some(&k));
            assert_eq!(r.code, DeadLetterCode::UnknownVisit);
            assert_eq!(&r.topic, sent_topic);
            assert_eq!(r.payload_len, sent_payload.len());
            assert_eq!(&r.payload, sent_payload, "kept whole");
            assert!(r.reason.contains("meta never arrived"), "{}", r.reason);
        }
        // Nothing was decided: when the visit comes again, meta first (a
        // replay from the quarantine after the device sent its meta), it is
        // taken in whole rather than dropped as a redelivery.
        assert!(!asm.is_finished(&k));
        let again: Vec<AssemblyEvent> = msgs
            .iter()
            .flat_map(|(tp, p)| asm.push(tp, p, t(3601)))
            .collect();
        let c = completes(&again);
        assert_eq!(c.len(), 1, "{again:?}");
        assert_eq!(*c[0].1, truth(&k, 3, CHUNK));
        assert!(c[0].2, "digest ok");
        assert!(asm.is_finished(&k));
    }

    #[test]
    fn a_meta_late_but_in_time_leaves_nothing_to_refuse() {
        let k = key("dev-1", 5);
        let mut msgs = visit(&k, 3, CHUNK);
        let meta = msgs.remove(0);
        msgs.insert(msgs.len() - 1, meta);
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = run(&mut asm, &msgs);
        assert_eq!(completes(&ev).len(), 1, "{ev:?}");
        assert!(
            !ev.iter().any(|e| matches!(e, AssemblyEvent::Rejected(_))),
            "{ev:?}"
        );
    }

    #[test]
    fn an_orphan_end_is_refused_when_its_visit_is_displaced() {
        let cfg = AssemblyConfig {
            max_visits_per_device: 1,
            ..AssemblyConfig::default()
        };
        let mut asm = Assembler::new(cfg);
        let first = key("dev-1", 1);
        let end = visit(&first, 2, CHUNK).pop().expect("end");
        assert!(asm.push(&end.0, &end.1, t(0)).is_empty());
        let second = key("dev-1", 2);
        let ev = run(&mut asm, &visit(&second, 2, CHUNK));
        let refused: Vec<&Rejection> = ev
            .iter()
            .filter_map(|e| match e {
                AssemblyEvent::Rejected(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 1, "{ev:?}");
        assert_eq!(refused[0].key.as_ref(), Some(&first));
        assert_eq!(refused[0].topic, end.0);
        assert_eq!(refused[0].payload, end.1);
        assert!(ev.iter().any(|e| matches!(
            e,
            AssemblyEvent::Incomplete {
                key,
                meta: None,
                reason: IncompleteReason::Displaced { .. },
                ..
            } if *key == first
        )));
        assert_eq!(completes(&ev).len(), 1);
    }

    #[test]
    fn meta_from_another_device_is_rejected_and_opens_nothing() {
        let k = key("dev-1", 6);
        let other = key("dev-2", 6);
        let mut asm = Assembler::new(AssemblyConfig::default());
        // dev-1's topic carrying a meta that says dev-2.
        let ev = asm.push(&topic(&k, "meta"), &meta_for(&other).to_json(), t(0));
        let r = rejections(&ev);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, DeadLetterCode::TopicMismatch);
        assert!(r[0].reason.contains("dev-2"), "{}", r[0].reason);
        assert_eq!(asm.in_flight(), 0);
        let dl = r[0].to_dead_letter();
        assert_eq!(dl.reason_code, DeadLetterCode::TopicMismatch);
        dl.validate().unwrap();
    }

    #[test]
    fn chunk_of_another_visit_and_bad_bytes_are_rejected() {
        let k = key("dev-1", 7);
        let k2 = key("dev-1", 8);
        let msgs = visit(&k2, 2, CHUNK);
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = asm.push(&topic(&k, "chunk"), &msgs[1].1, t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::TopicMismatch);
        let mut bad = msgs[1].1.clone();
        bad[50] ^= 1;
        let ev = asm.push(&topic(&k2, "chunk"), &bad, t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::BadChunk);
        let ev = asm.push(&topic(&k2, "meta"), b"{not json", t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::BadJson);
        let ev = asm.push("ecg/v1/dev/dev 1/visit/x/meta", b"{}", t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::BadTopic);
        let ev = asm.push("ecg/v1/deadletter", b"{}", t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::BadTopic);
        assert!(asm.push(&topic(&k, "result"), b"{}", t(0)).is_empty());
        assert_eq!(asm.in_flight(), 0);
    }

    #[test]
    fn chunk_lead_set_must_match_meta() {
        let k = key("dev-1", 9);
        let mut asm = Assembler::new(AssemblyConfig::default());
        asm.push(&topic(&k, "meta"), &meta_for(&k).to_json(), t(0));
        let other_leads = LeadSet::from_ordered([Lead::I, Lead::II]).unwrap();
        let c = Chunk::new(k.visit_id, 0, 0, other_leads, vec![1; 2 * CHUNK as usize])
            .unwrap()
            .to_bytes();
        let ev = asm.push(&topic(&k, "chunk"), &c, t(0));
        let r = rejections(&ev);
        assert_eq!(r[0].code, DeadLetterCode::InconsistentVisit);
        assert!(r[0].reason.contains("lead mask"), "{}", r[0].reason);
    }

    #[test]
    fn early_chunk_with_wrong_leads_is_rejected_when_meta_arrives() {
        let k = key("dev-1", 10);
        let mut asm = Assembler::new(AssemblyConfig::default());
        let other_leads = LeadSet::from_ordered([Lead::I]).unwrap();
        let c = Chunk::new(k.visit_id, 0, 0, other_leads, vec![1; CHUNK as usize])
            .unwrap()
            .to_bytes();
        assert!(asm.push(&topic(&k, "chunk"), &c, t(0)).is_empty());
        let ev = asm.push(&topic(&k, "meta"), &meta_for(&k).to_json(), t(1));
        let r = rejections(&ev);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, DeadLetterCode::InconsistentVisit);
        assert_eq!(r[0].payload_len, c.len());
        assert_eq!(r[0].received_at, t(0), "quotes the chunk as received");
    }

    #[test]
    fn wrong_sample_index_and_conflicting_resend_are_inconsistent() {
        let k = key("dev-1", 11);
        let tr = truth(&k, 3, CHUNK);
        let mut asm = Assembler::new(AssemblyConfig::default());
        asm.push(&topic(&k, "meta"), &meta_for(&k).to_json(), t(0));
        let samples: Vec<i16> = tr
            .iter()
            .flat_map(|l| l[..CHUNK as usize].to_vec())
            .collect();
        let shifted = Chunk::new(k.visit_id, 1, 7, leads(), samples.clone()).unwrap();
        let ev = asm.push(&topic(&k, "chunk"), &shifted.to_bytes(), t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::InconsistentVisit);
        let good = chunk_bytes(&k, &tr, 0, 3);
        assert_eq!(asm.push(&topic(&k, "chunk"), &good, t(0)).len(), 1);
        let mut changed = samples;
        changed[0] += 1;
        let resend = Chunk::new(k.visit_id, 0, 0, leads(), changed).unwrap();
        let ev = asm.push(&topic(&k, "chunk"), &resend.to_bytes(), t(0));
        let r = rejections(&ev);
        assert_eq!(r[0].code, DeadLetterCode::InconsistentVisit);
        assert!(r[0].reason.contains("different content"));
    }

    #[test]
    fn wrong_digest_completes_with_digest_not_ok() {
        let k = key("dev-1", 12);
        let mut msgs = visit(&k, 3, CHUNK);
        let mut end = VisitEnd::from_json(&msgs[4].1).unwrap();
        end.samples_sha256 = SamplesDigest([7; 32]);
        msgs[4].1 = end.to_json();
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = run(&mut asm, &msgs);
        let c = completes(&ev);
        assert_eq!(c.len(), 1);
        assert!(!c[0].2);
        assert_eq!(*c[0].1, truth(&k, 3, CHUNK), "samples still delivered");
    }

    #[test]
    fn over_limit_input_is_rejected_not_buffered() {
        let k = key("dev-1", 13);
        let msgs = visit(&k, 4, CHUNK);
        // Oversize chunk payload.
        let mut asm = Assembler::new(AssemblyConfig {
            max_chunk_bytes: 100,
            ..AssemblyConfig::default()
        });
        let ev = asm.push(&msgs[1].0, &msgs[1].1, t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::TooLarge);
        assert_eq!(asm.in_flight(), 0);
        // Per-visit bytes: room for two chunks of 3 x 50 samples only.
        let mut asm = Assembler::new(AssemblyConfig {
            max_bytes_per_visit: 2 * chunk_held_bytes(3, CHUNK as usize),
            ..AssemblyConfig::default()
        });
        let ev = run(&mut asm, &msgs);
        let r = rejections(&ev);
        assert_eq!(r.len(), 2, "chunks 2 and 3 refused");
        assert!(r.iter().all(|r| r.code == DeadLetterCode::TooLarge));
        assert!(completes(&ev).is_empty());
        // Visits in flight.
        let mut asm = Assembler::new(AssemblyConfig {
            max_visits_in_flight: 2,
            ..AssemblyConfig::default()
        });
        for v in 20..22 {
            let kv = key("dev-1", v);
            assert!(
                rejections(&asm.push(&topic(&kv, "meta"), &meta_for(&kv).to_json(), t(0)))
                    .is_empty()
            );
        }
        let k3 = key("dev-1", 22);
        let ev = asm.push(&topic(&k3, "meta"), &meta_for(&k3).to_json(), t(0));
        assert_eq!(rejections(&ev)[0].code, DeadLetterCode::TooLarge);
        assert_eq!(asm.in_flight(), 2);
        // Early chunks before the meta.
        let mut asm = Assembler::new(AssemblyConfig {
            max_early_chunks: 2,
            ..AssemblyConfig::default()
        });
        let ev = run(&mut asm, &msgs[1..5]);
        assert_eq!(rejections(&ev).len(), 2);
    }

    /// The open visits share one byte bound: past it a chunk is refused whoever sends
    /// it, and the room comes back as visits finish.
    #[test]
    fn the_visits_in_flight_share_a_byte_bound() {
        let per_chunk = chunk_held_bytes(3, CHUNK as usize);
        let mut asm = Assembler::new(AssemblyConfig {
            max_bytes_in_flight: 5 * per_chunk,
            ..AssemblyConfig::default()
        });
        let (a, b) = (key("dev-a", 40), key("dev-b", 41));
        let (va, vb) = (visit(&a, 3, CHUNK), visit(&b, 3, CHUNK));
        // Meta and three chunks of a, then of b: b's third would pass the bound.
        assert!(rejections(&run(&mut asm, &va[..4])).is_empty());
        let ev = run(&mut asm, &vb[..4]);
        let r = rejections(&ev);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].code, DeadLetterCode::TooLarge);
        assert!(r[0].reason.contains("in flight"), "{}", r[0].reason);
        // a ends and lets go of its bytes; b's third chunk, sent again, fits.
        assert_eq!(completes(&asm.push(&va[4].0, &va[4].1, t(1))).len(), 1);
        let ev = run(&mut asm, &vb[3..]);
        assert!(rejections(&ev).is_empty());
        let c = completes(&ev);
        assert_eq!(c.len(), 1);
        assert!(c[0].2, "b whole and digest-checked");
    }

    #[test]
    fn visits_of_two_devices_with_the_same_visit_id_stay_apart() {
        let a = key("dev-a", 30);
        let b = key("dev-b", 30);
        let mut msgs = visit(&a, 3, CHUNK);
        msgs.extend(visit(&b, 2, 9));
        let mut asm = Assembler::new(AssemblyConfig::default());
        let ev = run(&mut asm, &msgs);
        let c = completes(&ev);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.2));
    }

    fn incomplete(events: &[AssemblyEvent]) -> Vec<(&VisitKey, &IncompleteReason)> {
        events
            .iter()
            .filter_map(|e| match e {
                AssemblyEvent::Incomplete { key, reason, .. } => Some((key, reason)),
                _ => None,
            })
            .collect()
    }

    /// A device opening visit after visit without ending them closes its own oldest
    /// ones; the visit slots stay free for the other devices.
    #[test]
    fn one_device_cannot_take_the_slots_of_the_others() {
        let mut asm = Assembler::new(AssemblyConfig {
            max_visits_in_flight: 4,
            max_visits_per_device: 2,
            ..AssemblyConfig::default()
        });
        let mut ev = Vec::new();
        for v in 50..60 {
            let k = key("dev-noisy", v);
            ev.extend(asm.push(&topic(&k, "meta"), &meta_for(&k).to_json(), t(i64::from(v))));
            assert!(asm.in_flight() <= 2);
        }
        assert!(rejections(&ev).is_empty());
        let closed = incomplete(&ev);
        assert_eq!(closed.len(), 8);
        // Oldest first, each one displaced.
        assert_eq!(*closed[0].0, key("dev-noisy", 50));
        assert!(closed
            .iter()
            .all(|(_, r)| matches!(r, IncompleteReason::Displaced { open_visits: 3 })));
        assert!(asm.is_open(&key("dev-noisy", 58)) && asm.is_open(&key("dev-noisy", 59)));
        // A displaced visit's late messages are those of a finished visit: dropped.
        let late = key("dev-noisy", 50);
        assert!(run(&mut asm, &visit(&late, 2, CHUNK)).is_empty());
        let good = key("dev-good", 1);
        let ev = run(&mut asm, &visit(&good, 3, CHUNK));
        assert!(rejections(&ev).is_empty());
        assert_eq!(completes(&ev).len(), 1);
    }

    /// A message every few seconds keeps a visit from timing out, but not from its
    /// bound on how long it may stay open.
    #[test]
    fn a_visit_kept_alive_by_a_trickle_closes_at_its_bound() {
        let k = key("dev-1", 61);
        let mut asm = Assembler::new(AssemblyConfig {
            visit_timeout: Duration::from_secs(60),
            max_visit_open: Duration::from_secs(600),
            ..AssemblyConfig::default()
        });
        let meta = meta_for(&k).to_json();
        let mut closed = Vec::new();
        for s in (0..=900).step_by(30) {
            asm.push(&topic(&k, "meta"), &meta, t(s));
            closed.extend(asm.tick(t(s)));
            if s < 600 {
                assert!(closed.is_empty(), "closed at {s} s");
            }
        }
        let reasons = incomplete(&closed);
        assert_eq!(reasons.len(), 1);
        assert_eq!(*reasons[0].1, IncompleteReason::OpenTooLong { open_s: 600 });
        assert!(!asm.is_open(&k));
    }

    #[test]
    fn resume_restarts_timeouts_after_a_replay() {
        let k = key("dev-1", 31);
        let msgs = visit(&k, 3, CHUNK);
        let mut asm = Assembler::new(AssemblyConfig::default());
        run(&mut asm, &msgs[..2]);
        asm.resume(t(10_000));
        assert!(asm.tick(t(10_030)).is_empty());
        assert_eq!(asm.tick(t(10_061)).len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Any order and any duplication of a visit's messages gives the
        /// same samples, streamed contiguously, and one verdict.
        #[test]
        fn any_permutation_with_duplicates_gives_the_same_samples(
            n in 1u32..8,
            last_len in 1u16..=CHUNK,
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
            dups in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        ) {
            let k = key("dev-p", 40);
            let base = visit(&k, n, last_len);
            let mut msgs = base.clone();
            for d in &dups {
                msgs.push(base[d.index(base.len())].clone());
            }
            // Random transpositions drive an arbitrary permutation.
            for (i, o) in order.iter().enumerate() {
                let len = msgs.len();
                msgs.swap(i % len, o.index(len));
            }
            let mut asm = Assembler::new(AssemblyConfig::default());
            let ev = run(&mut asm, &msgs);
            prop_assert!(rejections(&ev).is_empty());
            let c = completes(&ev);
            prop_assert_eq!(c.len(), 1);
            prop_assert!(c[0].2);
            prop_assert_eq!(c[0].1, &truth(&k, n, last_len));
            prop_assert_eq!(streamed(&ev, &k), truth(&k, n, last_len));
        }
    }
}
