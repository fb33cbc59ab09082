//! The durable spool: every message is appended here, and fsynced, before it
//! is acknowledged to the broker, so an acknowledged message survives a crash.
//!
//! An append-only log in segment files `<dir>/<id>.seg`. Each record is
//! framed as `len: u32 LE | crc32(body): u32 LE | body`; the body is either a
//! message (`1 | received_at_ms: i64 | topic_len: u16 | topic | payload`), a
//! visit-done marker (`2 | at_ms: i64 | device_len: u8 | device | visit: 16`)
//! a visit-forgotten marker (`3 | ...`, laid out as done: the visit's
//! messages so far are dealt with, but the visit is not finished) or a
//! release marker (`4 | at_ms: i64 | segment: u64 | offset: u64`: the message
//! framed at that offset of that segment is no longer needed). A marker
//! always comes after what it names in the log, so a torn tail or a
//! rollback that loses the message loses its marker too.
//! Appends are buffered and made durable by [`Spool::sync`], called once per
//! batch (group commit). A torn tail (a crash mid-write) fails its CRC or its
//! length and is truncated on open.
//!
//! Segments are rotated at a size and deleted, oldest first, once sealed and
//! no longer pinned: a message pins its segment until its visit is marked
//! done ([`Spool::mark_done`], after the pipeline archived it) or forgotten
//! ([`Spool::forget`], closed before its meta and refused), or the message
//! is released ([`Spool::release`]: a duplicate, or rejected input whose dead
//! letter is out; input that names no visit pins too, so a crash before its
//! dead letter replays it rather than losing it). Deleting oldest first keeps a
//! visit's done marker on disk for as long as any of its messages are, so a
//! replay never resurrects a finished visit.
//!
//! One process at a time: [`Spool::open`] takes an exclusive lock on
//! `<dir>/LOCK` for the spool's life (two pipelines on one spool would write
//! the same segments). The lock goes with the process, however it ends.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ecg_wire::{DeviceId, Topic, VisitId};
use time::OffsetDateTime;

use crate::assembly::VisitKey;

const KIND_MESSAGE: u8 = 1;
const KIND_DONE: u8 = 2;
const KIND_FORGET: u8 = 3;
const KIND_RELEASE: u8 = 4;
/// A length above this can only be a torn or corrupt frame.
const MAX_RECORD_BYTES: u32 = 16 << 20;
const FRAME_HEADER: usize = 8;

/// Where and how to spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// A segment is sealed and a new one started past this size.
    pub segment_bytes: u64,
    /// Done visits are remembered in memory this long, to drop late
    /// redeliveries without spooling them.
    pub done_retention: Duration,
}

impl SpoolConfig {
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            segment_bytes: 16 << 20,
            done_retention: Duration::from_secs(3600),
        }
    }
}

/// Why the spool failed. Any of these means acknowledged data may not be
/// durable: the caller must stop acknowledging.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "spool {} is in use by another process (it holds {}): one pipeline per spool folder",
        .dir.display(),
        .dir.join(LOCK_FILE).display()
    )]
    InUse { dir: PathBuf },
}

/// The file whose lock holds the spool folder.
const LOCK_FILE: &str = "LOCK";

/// Locks the spool folder for this process until the returned file is
/// dropped. A file system without locks (some network mounts) is used
/// unlocked, with a warning, rather than refused.
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::InUse {
            dir: dir.to_owned(),
        }),
        Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
            tracing::warn!(path = %path.display(), "file locks unsupported here: the spool is not protected from a second process");
            Ok(file)
        }
        Err(fs::TryLockError::Error(e)) => Err(io_err("locking", &path)(e)),
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_owned();
    move |source| SpoolError::Io { what, path, source }
}

/// One message as received from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub received_at: OffsetDateTime,
}

impl Received {
    /// The visit a message belongs to, from its topic.
    pub fn key(&self) -> Option<VisitKey> {
        match Topic::parse(&self.topic) {
            Ok(Topic::Visit {
                device_id,
                visit_id,
                ..
            }) => Some(VisitKey {
                device_id,
                visit_id,
            }),
            _ => None,
        }
    }
}

/// Where a spooled message lives, to release it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId {
    segment: u64,
    /// Where its frame starts in the segment.
    offset: u64,
    key: Option<VisitKey>,
}

impl RecordId {
    pub fn key(&self) -> Option<&VisitKey> {
        self.key.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn for_test(key: Option<VisitKey>) -> RecordId {
        RecordId {
            segment: 0,
            offset: 0,
            key,
        }
    }
}

#[derive(Default)]
struct Segment {
    /// Messages still needed, per visit.
    pins: HashMap<VisitKey, u32>,
    /// Messages of no visit (a topic that names none) still needed: rejected
    /// input waits here until its dead letter is out.
    loose: u32,
}

impl Segment {
    fn pin(&mut self, key: Option<&VisitKey>) {
        match key {
            Some(k) => *self.pins.entry(k.clone()).or_default() += 1,
            None => self.loose += 1,
        }
    }

    fn unpin(&mut self, key: Option<&VisitKey>) {
        match key {
            Some(k) => {
                if let Some(n) = self.pins.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        self.pins.remove(k);
                    }
                }
            }
            None => self.loose = self.loose.saturating_sub(1),
        }
    }

    fn is_needed(&self) -> bool {
        !self.pins.is_empty() || self.loose > 0
    }
}

/// The spool. Not thread-safe by design: one task owns it.
pub struct Spool {
    cfg: SpoolConfig,
    segments: BTreeMap<u64, Segment>,
    current_id: u64,
    current_len: u64,
    /// Length of the current segment at the last successful sync.
    synced_len: u64,
    /// Pins taken by appends since the last successful sync.
    unsynced_pins: Vec<Option<VisitKey>>,
    writer: BufWriter<File>,
    dirty: bool,
    done: HashMap<VisitKey, i128>,
    /// Holds the folder's lock while the spool lives.
    _lock: File,
}

fn millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

enum Record {
    Message(Received),
    Done(VisitKey),
    Forget(VisitKey),
    Release { segment: u64, offset: u64 },
}

fn encode_message(msg: &Received) -> Vec<u8> {
    let topic = msg.topic.as_bytes();
    let topic_len = topic.len().min(u16::MAX as usize);
    let mut body = Vec::with_capacity(11 + topic_len + msg.payload.len());
    body.push(KIND_MESSAGE);
    body.extend_from_slice(&(millis(msg.received_at) as i64).to_le_bytes());
    body.extend_from_slice(&(topic_len as u16).to_le_bytes());
    body.extend_from_slice(&topic[..topic_len]);
    body.extend_from_slice(&msg.payload);
    body
}

/// A done or forgotten marker.
fn encode_marker(kind: u8, key: &VisitKey, at: OffsetDateTime) -> Vec<u8> {
    let dev = key.device_id.as_str().as_bytes();
    let mut body = Vec::with_capacity(26 + dev.len());
    body.push(kind);
    body.extend_from_slice(&(millis(at) as i64).to_le_bytes());
    // Device ids are at most 64 bytes (ecg-wire validates them).
    body.push(dev.len().min(255) as u8);
    body.extend_from_slice(&dev[..dev.len().min(255)]);
    body.extend_from_slice(key.visit_id.as_bytes());
    body
}

fn encode_release(id: &RecordId, at: OffsetDateTime) -> Vec<u8> {
    let mut body = Vec::with_capacity(25);
    body.push(KIND_RELEASE);
    body.extend_from_slice(&(millis(at) as i64).to_le_bytes());
    body.extend_from_slice(&id.segment.to_le_bytes());
    body.extend_from_slice(&id.offset.to_le_bytes());
    body
}

fn decode_record(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let at_ms = i64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = &rest[8..];
    match kind {
        KIND_MESSAGE => {
            let topic_len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
            let topic = std::str::from_utf8(rest.get(2..2 + topic_len)?).ok()?;
            let payload = rest.get(2 + topic_len..)?;
            let received_at =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).ok()?;
            Some(Record::Message(Received {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
                received_at,
            }))
        }
        KIND_DONE | KIND_FORGET => {
            let dev_len = usize::from(*rest.first()?);
            let dev = std::str::from_utf8(rest.get(1..1 + dev_len)?).ok()?;
            let visit: [u8; 16] = rest.get(1 + dev_len..17 + dev_len)?.try_into().ok()?;
            let key = VisitKey {
                device_id: DeviceId::new(dev).ok()?,
                visit_id: VisitId::from_bytes(visit).ok()?,
            };
            Some(if kind == KIND_DONE {
                Record::Done(key)
            } else {
                Record::Forget(key)
            })
        }
        KIND_RELEASE => Some(Record::Release {
            segment: u64::from_le_bytes(rest.get(..8)?.try_into().ok()?),
            offset: u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?),
        }),
        _ => None,
    }
}

/// Reads every whole record of a segment, with the offset of its frame;
/// truncates the file after the last good one (a torn or corrupt tail).
fn read_segment(path: &Path) -> Result<Vec<(u64, Record)>, SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err("reading", path))?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos + FRAME_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD_BYTES || pos + FRAME_HEADER + len as usize > bytes.len() {
            break;
        }
        let body = &bytes[pos + FRAME_HEADER..pos + FRAME_HEADER + len as usize];
        if crc32fast::hash(body) != crc {
            break;
        }
        match decode_record(body) {
            Some(r) => records.push((pos as u64, r)),
            None => break,
        }
        pos += FRAME_HEADER + len as usize;
    }
    if pos < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            kept = pos,
            dropped = bytes.len() - pos,
            "spool segment has a torn or corrupt tail; truncating"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("opening for truncation", path))?;
        f.set_len(pos as u64)
            .and_then(|_| f.sync_all())
            .map_err(io_err("truncating", path))?;
    }
    Ok(records)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

fn create_segment(dir: &Path, id: u64) -> Result<BufWriter<File>, SpoolError> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err("creating segment", &path))?;
    sync_dir(dir)?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

impl Spool {
    /// Opens (or creates) the spool and returns the messages of every visit
    /// not yet marked done, in the order they were appended, for replay.
    /// Each returned message pins its segment like a fresh append.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Vec<(RecordId, Received)>), SpoolError> {
        fs::create_dir_all(&cfg.dir).map_err(io_err("creating directory", &cfg.dir))?;
        let lock = lock_dir(&cfg.dir)?;
        let mut ids: Vec<u64> = fs::read_dir(&cfg.dir)
            .map_err(io_err("listing", &cfg.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut done = HashMap::new();
        // Per forgotten visit, how many messages (of any visit) came before
        // its last marker: its messages among those are dealt with.
        let mut forgotten: HashMap<VisitKey, usize> = HashMap::new();
        let mut released: std::collections::HashSet<(u64, u64)> = Default::default();
        let mut messages = Vec::new();
        let now_ms = millis(OffsetDateTime::now_utc());
        for &id in &ids {
            for (offset, record) in read_segment(&segment_path(&cfg.dir, id))? {
                match record {
                    Record::Message(m) => messages.push((id, offset, m)),
                    Record::Release { segment, offset } => {
                        released.insert((segment, offset));
                    }
                    Record::Done(key) => {
                        done.insert(key, now_ms);
                    }
                    Record::Forget(key) => {
                        forgotten.insert(key, messages.len());
                    }
                }
            }
        }
        let mut segments: BTreeMap<u64, Segment> =
            ids.iter().map(|&id| (id, Segment::default())).collect();
        let mut replay = Vec::new();
        for (i, (segment, offset, msg)) in messages.into_iter().enumerate() {
            let key = msg.key();
            if released.contains(&(segment, offset))
                || key.as_ref().is_some_and(|k| {
                    done.contains_key(k) || forgotten.get(k).is_some_and(|&before| i < before)
                })
            {
                continue;
            }
            if let Some(seg) = segments.get_mut(&segment) {
                seg.pin(key.as_ref());
            }
            replay.push((
                RecordId {
                    segment,
                    offset,
                    key,
                },
                msg,
            ));
        }
        let current_id = ids.last().map_or(0, |l| l + 1);
        let writer = create_segment(&cfg.dir, current_id)?;
        segments.insert(current_id, Segment::default());
        let mut spool = Spool {
            cfg,
            segments,
            current_id,
            current_len: 0,
            synced_len: 0,
            unsynced_pins: Vec::new(),
            writer,
            dirty: false,
            done,
            _lock: lock,
        };
        spool.delete_unpinned()?;
        Ok((spool, replay))
    }

    /// Appends a message; durable only after the next [`Spool::sync`].
    pub fn append(&mut self, msg: &Received) -> Result<RecordId, SpoolError> {
        if self.current_len >= self.cfg.segment_bytes {
            self.rotate()?;
        }
        let offset = self.current_len;
        self.write_record(&encode_message(msg))?;
        let key = msg.key();
        if let Some(seg) = self.segments.get_mut(&self.current_id) {
            seg.pin(key.as_ref());
            self.unsynced_pins.push(key.clone());
        }
        Ok(RecordId {
            segment: self.current_id,
            offset,
            key,
        })
    }

    fn write_record(&mut self, body: &[u8]) -> Result<(), SpoolError> {
        let path = segment_path(&self.cfg.dir, self.current_id);
        let mut frame = Vec::with_capacity(FRAME_HEADER + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        frame.extend_from_slice(body);
        self.writer
            .write_all(&frame)
            .map_err(io_err("appending to", &path))?;
        self.current_len += frame.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Makes every append so far durable (one fsync for the whole batch).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if !self.dirty {
            return Ok(());
        }
        let path = segment_path(&self.cfg.dir, self.current_id);
        self.writer.flush().map_err(io_err("flushing", &path))?;
        self.writer
            .get_ref()
            .sync_data()
            .map_err(io_err("fsyncing", &path))?;
        self.dirty = false;
        self.synced_len = self.current_len;
        self.unsynced_pins.clear();
        Ok(())
    }

    /// Forgets every append since the last successful [`Spool::sync`]: the
    /// segment is cut back to its durable length and those messages are
    /// unpinned. After a failed append or sync (a full disk) the caller
    /// retries the whole batch, which was not acknowledged, so no message
    /// is ever half on disk or on disk twice.
    pub fn rollback(&mut self) -> Result<(), SpoolError> {
        let path = segment_path(&self.cfg.dir, self.current_id);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("reopening", &path))?;
        file.set_len(self.synced_len)
            .map_err(io_err("truncating", &path))?;
        let old = std::mem::replace(&mut self.writer, BufWriter::with_capacity(1 << 20, file));
        // Dropping a BufWriter would write its buffer: take it apart instead.
        let _discarded = old.into_parts();
        if let Some(seg) = self.segments.get_mut(&self.current_id) {
            for k in self.unsynced_pins.drain(..) {
                seg.unpin(k.as_ref());
            }
        }
        self.unsynced_pins.clear();
        self.current_len = self.synced_len;
        self.dirty = false;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        self.current_id += 1;
        self.writer = create_segment(&self.cfg.dir, self.current_id)?;
        self.current_len = 0;
        self.synced_len = 0;
        self.segments.insert(self.current_id, Segment::default());
        self.delete_unpinned()
    }

    /// Whether the visit was marked done (recently enough to be remembered).
    pub fn is_done(&self, key: &VisitKey) -> bool {
        self.done.contains_key(key)
    }

    /// Records that the pipeline finished the visit (archived it): its
    /// messages are no longer needed and are not replayed. Durable at the
    /// next [`Spool::sync`].
    pub fn mark_done(&mut self, key: &VisitKey) -> Result<(), SpoolError> {
        if self.done.contains_key(key) {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        self.write_record(&encode_marker(KIND_DONE, key, now))?;
        let now_ms = millis(now);
        self.done.insert(key.clone(), now_ms);
        let retention_ms = self.cfg.done_retention.as_millis() as i128;
        if self.done.len().is_multiple_of(1024) {
            self.done.retain(|_, t| now_ms - *t < retention_ms);
        }
        for seg in self.segments.values_mut() {
            seg.pins.remove(key);
        }
        self.delete_unpinned()
    }

    /// Records that a visit's messages so far are dealt with although the
    /// visit is not finished: it was closed before its meta arrived, and
    /// each of its messages refused (and kept in the quarantine). They are
    /// no longer needed and not replayed; unlike [`Spool::mark_done`], what
    /// comes for the visit later is taken in (its meta at last, or the
    /// refused messages replayed). Durable at the next [`Spool::sync`].
    pub fn forget(&mut self, key: &VisitKey) -> Result<(), SpoolError> {
        self.write_record(&encode_marker(KIND_FORGET, key, OffsetDateTime::now_utc()))?;
        for seg in self.segments.values_mut() {
            seg.pins.remove(key);
        }
        self.delete_unpinned()
    }

    /// Releases one message that turned out not to be needed (a duplicate
    /// of a finished visit), or is no longer needed (input rejected outside
    /// any open visit, once its dead letter is out). Recorded (durable at
    /// the next [`Spool::sync`]), so that a restart does not refuse it again.
    pub fn release(&mut self, id: &RecordId) -> Result<(), SpoolError> {
        if self.segments.contains_key(&id.segment) {
            self.write_record(&encode_release(id, OffsetDateTime::now_utc()))?;
        }
        if let Some(seg) = self.segments.get_mut(&id.segment) {
            seg.unpin(id.key.as_ref());
        }
        self.delete_unpinned()
    }

    /// Segment files on disk, the open one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn delete_unpinned(&mut self) -> Result<(), SpoolError> {
        while let Some((&id, seg)) = self.segments.first_key_value() {
            if id == self.current_id || seg.is_needed() {
                break;
            }
            let path = segment_path(&self.cfg.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("deleting", &path)(e)),
            }
            self.segments.remove(&id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> VisitKey {
        VisitKey {
            device_id: DeviceId::new(format!("dev-{n}")).unwrap(),
            visit_id: VisitId::from_bytes([n; 16]).unwrap(),
        }
    }

    fn msg(k: &VisitKey, i: u32) -> Received {
        Received {
            topic: format!("ecg/v1/dev/{}/visit/{}/chunk", k.device_id, k.visit_id),
            payload: i.to_le_bytes().repeat(10),
            received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000 + i64::from(i)).unwrap(),
        }
    }

    #[test]
    fn replays_unfinished_visits_in_order_and_skips_done_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(1), key(2));
        {
            let (mut spool, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
            assert!(replay.is_empty());
            for i in 0..5 {
                spool.append(&msg(&a, i)).unwrap();
                spool.append(&msg(&b, i)).unwrap();
            }
            spool.mark_done(&a).unwrap();
            spool.sync().unwrap();
        }
        let (spool, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        let got: Vec<Received> = replay.into_iter().map(|(_, m)| m).collect();
        let want: Vec<Received> = (0..5).map(|i| msg(&b, i)).collect();
        assert_eq!(got, want);
        assert!(spool.is_done(&a));
        assert!(!spool.is_done(&b));
    }

    #[test]
    fn a_forgotten_visit_is_not_replayed_but_what_comes_for_it_later_is() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(1), key(2));
        {
            let (mut spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
            for i in 0..3 {
                spool.append(&msg(&a, i)).unwrap();
            }
            // b keeps the segment on disk, so a's messages are still there.
            spool.append(&msg(&b, 0)).unwrap();
            spool.forget(&a).unwrap();
            assert!(!spool.is_done(&a), "later messages are taken in");
            spool.sync().unwrap();
        }
        let (mut spool, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        let got: Vec<Received> = replay.into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, [msg(&b, 0)], "a's refused messages are dealt with");
        assert!(!spool.is_done(&a));
        // The visit comes again (a replay from the quarantine): kept, and
        // replayed after a crash, until it is done.
        for i in 3..5 {
            spool.append(&msg(&a, i)).unwrap();
        }
        spool.sync().unwrap();
        drop(spool);
        let (mut spool, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        let got: Vec<Received> = replay.into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, [msg(&b, 0), msg(&a, 3), msg(&a, 4)]);
        spool.mark_done(&a).unwrap();
        spool.mark_done(&b).unwrap();
        spool.sync().unwrap();
        drop(spool);
        let (_, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        assert!(replay.is_empty());
    }

    #[test]
    fn a_spool_in_use_is_refused_until_its_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        match Spool::open(SpoolConfig::new(dir.path())) {
            Err(e @ SpoolError::InUse { .. }) => {
                assert!(e.to_string().contains("LOCK"), "{e}")
            }
            other => panic!("a second open while held: {:?}", other.err()),
        }
        drop(spool);
        Spool::open(SpoolConfig::new(dir.path())).expect("free once dropped");
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(3);
        {
            let (mut spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
            for i in 0..3 {
                spool.append(&msg(&a, i)).unwrap();
            }
            spool.sync().unwrap();
        }
        let path = segment_path(dir.path(), 0);
        let full = fs::read(&path).unwrap();
        // Cut the last record in half, as a crash mid-write would.
        fs::write(&path, &full[..full.len() - 7]).unwrap();
        let (_, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        assert_eq!(replay.len(), 2);
        assert_eq!(
            fs::metadata(&path).unwrap().len() as usize,
            (full.len() / 3) * 2
        );
        // A flipped bit in the second record drops it and the rest.
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let (_, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].1, msg(&a, 0));
    }

    #[test]
    fn rollback_forgets_exactly_the_unsynced_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(7), key(8));
        {
            let (mut spool, _) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
            spool.append(&msg(&a, 0)).unwrap();
            spool.append(&msg(&a, 1)).unwrap();
            spool.sync().unwrap();
            // A batch that failed half way (say the disk filled up).
            spool.append(&msg(&a, 2)).unwrap();
            spool.append(&msg(&b, 0)).unwrap();
            spool.writer.flush().unwrap();
            spool.rollback().unwrap();
            // b's only message is gone, so nothing pins it any more.
            assert!(!spool.segments[&spool.current_id].pins.contains_key(&b));
            assert_eq!(spool.segments[&spool.current_id].pins[&a], 2);
            // The retried batch.
            spool.append(&msg(&a, 2)).unwrap();
            spool.append(&msg(&b, 0)).unwrap();
            spool.sync().unwrap();
        }
        let (_, replay) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        let got: Vec<Received> = replay.into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, vec![msg(&a, 0), msg(&a, 1), msg(&a, 2), msg(&b, 0)]);
    }

    #[test]
    fn segments_rotate_and_are_deleted_oldest_first_once_unpinned() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SpoolConfig::new(dir.path());
        cfg.segment_bytes = 200;
        let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
        let (a, b, c) = (key(4), key(5), key(6));
        spool.append(&msg(&a, 0)).unwrap();
        spool.append(&msg(&a, 1)).unwrap(); // segment 0 now over 200 bytes
        spool.append(&msg(&b, 0)).unwrap(); // segment 1
        spool.append(&msg(&b, 1)).unwrap();
        let dup = spool.append(&msg(&c, 0)).unwrap(); // segment 2
        spool.sync().unwrap();
        assert_eq!(spool.segment_count(), 3);
        // b done but a (older) still pinned: nothing can go.
        spool.mark_done(&b).unwrap();
        assert_eq!(spool.segment_count(), 3);
        spool.mark_done(&a).unwrap();
        assert_eq!(spool.segment_count(), 1, "segments 0 and 1 deleted");
        spool.release(&dup).unwrap();
        spool.sync().unwrap();
        assert!(!segment_path(dir.path(), 0).exists());
        drop(spool);
        // c's message is still in the open segment, but released.
        let (_, replay) = Spool::open(cfg).unwrap();
        assert!(replay.is_empty(), "a and b done, c's message released");
    }

    /// Input that names no visit (rejected for its topic) keeps its segment
    /// until released, like any other message: once the visits around it
    /// are done, a crash before its dead letter is out still replays it.
    #[test]
    fn a_message_of_no_visit_is_kept_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SpoolConfig::new(dir.path());
        cfg.segment_bytes = 100;
        let stray = Received {
            topic: "ecg/v1/dev/dev-9/nonsense".into(),
            payload: vec![0xAB; 120],
            received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        };
        let a = key(10);
        let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
        let held = spool.append(&stray).unwrap(); // segment 0, full
        assert_eq!(held.key(), None);
        for i in 0..3 {
            spool.append(&msg(&a, i)).unwrap(); // a segment each
        }
        spool.sync().unwrap();
        spool.mark_done(&a).unwrap();
        assert!(
            segment_path(dir.path(), 0).exists(),
            "segment 0 still holds the stray"
        );
        drop(spool);
        let (mut spool, replay) = Spool::open(cfg.clone()).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].1, stray, "the crash replays it");
        spool.release(&replay[0].0).unwrap();
        assert!(!segment_path(dir.path(), 0).exists(), "released, it goes");
        drop(spool);
        let (_, replay) = Spool::open(cfg).unwrap();
        assert!(replay.is_empty());
    }
}
