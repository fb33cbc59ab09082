//! [`ArchiveWriter`]: batching, atomic commit and idempotency.
//!
//! A batch is the visits buffered since the last flush that share one UTC
//! date. It becomes one file per table (per date for alerts) named
//! `{writer_id}-{first visit_id}-{uuid}.parquet`, the same name in every
//! table. The `visits` file is put last: it is the commit marker. At open,
//! files of this writer whose batch has no `visits` file are deleted, with
//! its leftover temporary files, and the visit ids of every `visits` file
//! are loaded, so a visit redelivered after a crash is archived once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::flusher::Flusher;
use crate::reader::{committed_batches, read_visit_ids, vanished};
use crate::record::{AlertAck, AlertEscalation, AlertRow, VisitRecord};
use crate::store::{LocalDisk, ObjectStore};
use crate::table::{self, utc_date, Table, PARTITION_COLUMN};
use crate::ArchiveError;

/// How the int16 samples (`waveforms.samples` leaf) are encoded before zstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleEncoding {
    /// Plain little-endian values.
    Plain,
    /// Parquet's default: a dictionary page, values as RLE/bit-packed indices.
    Dictionary,
    /// Differences between neighbours, bit-packed per miniblock: an ECG moves
    /// little from one sample to the next, so most differences need few bits.
    DeltaBinaryPacked,
    /// Bytes of each value split into streams, which helps the compressor.
    ByteStreamSplit,
}

/// Writer settings; [`WriterConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Prefix of this writer's file names, unique among the writers of one
    /// archive (letters, digits, `_`, `.`; no `-`, which separates the name's parts).
    pub writer_id: String,
    /// Flush when this many visits are buffered.
    pub max_visits: usize,
    /// Flush when the buffered visits hold this many bytes of samples, so
    /// that what waits for a flush is bounded in memory as well as in
    /// count: a visit may carry up to the ingest's byte bound (32 MiB), and
    /// 64 of those, buffered while another 64 are written, would be 4 GiB.
    pub max_buffered_bytes: usize,
    /// Flush when the oldest buffered visit has waited this long, so a visit
    /// is queryable within about this delay (the caller must call
    /// [`ArchiveWriter::poll`] at least as often).
    pub max_age: Duration,
    pub sample_encoding: SampleEncoding,
    /// zstd level of every column (1..=22). Level 3's compression took 11 % of the
    /// pipeline's CPU in a profile of `load 3000 max`; level 1 saves most of that (about
    /// 8 % of the pipeline's CPU per visit) for 7 % (LUDB) to 11 % (the fleet's
    /// synthetic visits) more bytes.
    pub zstd_level: i32,
    /// Longest waveform row, in seconds of one lead.
    pub segment_s: u32,
    /// The archive's own pseudonym key: when set, every visit's
    /// `patient_pseudonym` (the device's, keyed by the clinic) is stored as
    /// HMAC(this key, that pseudonym), so the archive cannot be joined to
    /// clinic records without it. The pipeline always sets it; `None` stores
    /// rows as given (tools copying rows that are already archived).
    pub pseudonym_key: Option<ecg_wire::PseudonymKey>,
}

impl WriterConfig {
    pub fn new(writer_id: impl Into<String>) -> Self {
        Self {
            writer_id: writer_id.into(),
            max_visits: 64,
            max_buffered_bytes: 64 << 20,
            max_age: Duration::from_secs(2),
            sample_encoding: SampleEncoding::DeltaBinaryPacked,
            zstd_level: 3,
            segment_s: 60,
            pseudonym_key: None,
        }
    }

    fn validate(&self) -> Result<(), ArchiveError> {
        let id_ok = !self.writer_id.is_empty()
            && self
                .writer_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !id_ok {
            return Err(ArchiveError::Config(format!(
                "writer_id {:?} must be non-empty ASCII letters, digits, '_' or '.'",
                self.writer_id
            )));
        }
        // Compaction deletes the files of its own id that no commit holds,
        // which would include a writer's batch under way.
        if self.writer_id == crate::compact::WRITER_ID {
            return Err(ArchiveError::Config(format!(
                "writer_id {:?} is reserved for `archive compact`",
                self.writer_id
            )));
        }
        if self.max_visits == 0 {
            return Err(ArchiveError::Config("max_visits must be >= 1".into()));
        }
        if self.max_buffered_bytes == 0 {
            return Err(ArchiveError::Config(
                "max_buffered_bytes must be >= 1".into(),
            ));
        }
        if ZstdLevel::try_new(self.zstd_level).is_err() {
            return Err(ArchiveError::Config(format!(
                "zstd level {} outside 1..=22",
                self.zstd_level
            )));
        }
        if self.segment_s == 0 {
            return Err(ArchiveError::Config("segment_s must be >= 1".into()));
        }
        Ok(())
    }
}

/// What became of an appended visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Already archived or already buffered: ignored.
    Duplicate,
    /// Buffered; durable after a later flush.
    Buffered,
    /// Buffered, and the flush it triggered committed these visits (this
    /// one among them); in the background mode, the flushes that finished
    /// meanwhile committed these (not this one, which is buffered).
    Committed(Vec<String>),
}

/// Writes visits into the archive in batches. Synchronous: an async caller
/// runs it on a blocking thread. By default a flush runs on the caller's
/// thread; after [`ArchiveWriter::flush_in_background`], the batches are
/// encoded and written on a thread of the writer's own.
pub struct ArchiveWriter {
    files: Files,
    archived: HashSet<String>,
    buffer: Vec<VisitRecord>,
    /// Visits buffered or in the running background flush.
    buffered_ids: HashSet<String>,
    acks: Vec<AlertAck>,
    escalations: Vec<AlertEscalation>,
    first_buffered_at: Option<Instant>,
    flusher: Option<Flusher>,
    /// Visits in the background flush under way, if one is.
    in_flight: Option<usize>,
    /// Committed visits not yet returned to the caller (a flush that
    /// failed part-way, or a background flush taken in by an error path).
    unreported: Vec<String>,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("writer_id", &self.files.config.writer_id)
            .field("archived", &self.archived.len())
            .field("buffered", &self.buffered())
            .field("background", &self.flusher.is_some())
            .finish()
    }
}

impl ArchiveWriter {
    /// Opens an archive on local disk (created on the first flush).
    pub fn open_local(
        root: impl Into<std::path::PathBuf>,
        config: WriterConfig,
    ) -> Result<Self, ArchiveError> {
        Self::open(Arc::new(LocalDisk::new(root)), config)
    }

    /// Opens the archive: removes this writer's uncommitted batches and
    /// temporary files left by a crash, and loads the archived visit ids.
    pub fn open(store: Arc<dyn ObjectStore>, config: WriterConfig) -> Result<Self, ArchiveError> {
        config.validate()?;
        // A compaction running meanwhile may retire a batch between the
        // listing and the reading of its `visits` file; its visits are then
        // in the merged batch, which a new listing shows.
        let mut attempts = 0;
        let archived = loop {
            match Self::tidy_and_load(store.as_ref(), &config.writer_id) {
                Err(e) if vanished(&e) && attempts < 5 => attempts += 1,
                outcome => break outcome?,
            }
        };
        Ok(Self {
            files: Files {
                store,
                config: Arc::new(config),
            },
            archived,
            buffer: Vec::new(),
            buffered_ids: HashSet::new(),
            acks: Vec::new(),
            escalations: Vec::new(),
            first_buffered_at: None,
            flusher: None,
            in_flight: None,
            unreported: Vec::new(),
        })
    }

    /// Deletes this writer's files that no commit holds and its temporary
    /// files, and returns the visit ids of every committed batch.
    fn tidy_and_load(
        store: &dyn ObjectStore,
        writer_id: &str,
    ) -> Result<HashSet<String>, ArchiveError> {
        let prefix = format!("{writer_id}-");
        let committed = committed_batches(store)?;
        let committed_stems: HashSet<&str> = committed.iter().map(|b| b.stem.as_str()).collect();
        for key in store.list("")? {
            let name = key.rsplit('/').next().unwrap_or(&key);
            if !name.starts_with(&prefix) {
                continue;
            }
            let table = key.split('/').next().unwrap_or("");
            let orphan = match name.strip_suffix(".parquet") {
                // A temporary file is never complete.
                None => true,
                // Acks are committed file by file, not by a visits marker.
                Some(_)
                    if table == Table::AlertAcks.name()
                        || table == Table::AlertEscalations.name() =>
                {
                    false
                }
                Some(stem) => !committed_stems.contains(stem),
            };
            if orphan {
                store.delete(&key)?;
            }
        }
        let mut archived = HashSet::new();
        for b in &committed {
            archived.extend(read_visit_ids(store, &b.key)?);
        }
        Ok(archived)
    }

    /// From now on, flushes triggered by [`ArchiveWriter::append`] and
    /// [`ArchiveWriter::poll`] encode and write on the writer's own thread,
    /// one at a time, while the caller goes on buffering; `on_flushed` is
    /// called on that thread after each, so that the caller can collect the
    /// committed visits with `poll`. A visit counts as archived only once
    /// its flush has been collected. [`ArchiveWriter::flush`] still waits.
    ///
    /// Why: encoding (delta packing, zstd) is the heaviest part of
    /// archiving, and a caller that also publishes alerts should not stop
    /// for it.
    pub fn flush_in_background(
        &mut self,
        on_flushed: impl Fn() + Send + 'static,
    ) -> Result<(), ArchiveError> {
        if self.flusher.is_none() {
            self.flusher = Some(Flusher::start(self.files.clone(), Box::new(on_flushed))?);
        }
        Ok(())
    }

    /// Whether the visit is in a committed batch.
    pub fn is_archived(&self, visit_id: &str) -> bool {
        self.archived.contains(visit_id)
    }

    /// Visits not yet committed: buffered or being flushed.
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.in_flight.unwrap_or(0)
    }

    /// When [`ArchiveWriter::poll`] will flush, if anything is buffered.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.first_buffered_at
            .map(|t| t + self.files.config.max_age)
    }

    /// Buffers a visit (ignored if already archived or buffered) and
    /// flushes when the buffer is full or old enough. In the background
    /// mode, a full buffer waits for the flush under way, if any, and the
    /// visits returned are those of finished flushes, not this one.
    pub fn append(&mut self, mut record: VisitRecord) -> Result<Appended, ArchiveError> {
        record.validate()?;
        if let Some(key) = &self.files.config.pseudonym_key {
            record.visit.patient_pseudonym = key
                .pseudonymise(record.visit.patient_pseudonym.as_bytes())
                .to_string();
        }
        let id = &record.visit.visit_id;
        if self.archived.contains(id) || self.buffered_ids.contains(id) {
            return Ok(Appended::Duplicate);
        }
        self.buffered_ids.insert(id.clone());
        self.buffer.push(record);
        self.first_buffered_at.get_or_insert_with(Instant::now);
        let full = self.full();
        if self.flusher.is_none() {
            if full || self.due(Instant::now()) {
                return Ok(Appended::Committed(self.flush()?));
            }
            return Ok(Appended::Buffered);
        }
        if let Some(e) = self.settle(full)? {
            return Err(e);
        }
        self.start_flush_if_due(Instant::now())?;
        let ids = std::mem::take(&mut self.unreported);
        Ok(if ids.is_empty() {
            Appended::Buffered
        } else {
            Appended::Committed(ids)
        })
    }

    /// Buffers an acknowledgement that came after its alert was archived;
    /// it is written at the next flush.
    pub fn append_ack(&mut self, ack: AlertAck) {
        self.acks.push(ack);
        self.first_buffered_at.get_or_insert_with(Instant::now);
    }

    /// Buffers an escalation of an unacknowledged alert; it is written at
    /// the next flush.
    pub fn append_escalation(&mut self, escalation: AlertEscalation) {
        self.escalations.push(escalation);
        self.first_buffered_at.get_or_insert_with(Instant::now);
    }

    /// The buffer holds `max_visits` visits or `max_buffered_bytes` of
    /// samples. Summed when asked: at most `max_visits` visits of a dozen
    /// leads, and no running total to keep right across failed flushes.
    fn full(&self) -> bool {
        let config = &self.files.config;
        self.buffer.len() >= config.max_visits
            || self
                .buffer
                .iter()
                .map(VisitRecord::sample_bytes)
                .sum::<usize>()
                >= config.max_buffered_bytes
    }

    fn due(&self, now: Instant) -> bool {
        self.flush_deadline().is_some_and(|d| now >= d)
    }

    /// Flushes if the oldest buffered item is older than `max_age` (in the
    /// background mode: also if the buffer is full, and only when no flush
    /// is under way); returns the visit ids committed, in the background
    /// mode those of the flushes that finished since the last call.
    pub fn poll(&mut self, now: Instant) -> Result<Vec<String>, ArchiveError> {
        if self.flusher.is_none() {
            if self.due(now) {
                return self.flush();
            }
        } else {
            if let Some(e) = self.settle(false)? {
                return Err(e);
            }
            self.start_flush_if_due(now)?;
        }
        Ok(std::mem::take(&mut self.unreported))
    }

    /// Writes every buffered visit and ack, after waiting for a background
    /// flush under way; returns the visit ids committed. On error the
    /// visits not written stay buffered (a later flush retries) and the
    /// files of the failed batch are removed as far as possible.
    pub fn flush(&mut self) -> Result<Vec<String>, ArchiveError> {
        // A background flush that failed has put its visits back in the
        // buffer: they are written again now, so its error is not the last word.
        let _ = self.settle(true)?;
        let batch = self.take_batch();
        let written = self.files.write(batch);
        self.absorb(written)?;
        Ok(std::mem::take(&mut self.unreported))
    }

    fn take_batch(&mut self) -> Batch {
        self.first_buffered_at = None;
        Batch {
            records: std::mem::take(&mut self.buffer),
            acks: std::mem::take(&mut self.acks),
            escalations: std::mem::take(&mut self.escalations),
        }
    }

    /// Books what a flush committed, and puts what it did not write back
    /// in front of what was buffered since; returns the flush's error.
    fn absorb(&mut self, written: Written) -> Result<(), ArchiveError> {
        for id in &written.committed {
            self.buffered_ids.remove(id);
            self.archived.insert(id.clone());
        }
        self.unreported.extend(written.committed);
        let Batch {
            mut records,
            mut acks,
            mut escalations,
        } = written.rest;
        if !(records.is_empty() && acks.is_empty() && escalations.is_empty()) {
            records.append(&mut self.buffer);
            self.buffer = records;
            acks.append(&mut self.acks);
            self.acks = acks;
            escalations.append(&mut self.escalations);
            self.escalations = escalations;
            self.first_buffered_at.get_or_insert_with(Instant::now);
        }
        written.error.map_or(Ok(()), Err)
    }

    /// Takes in the background flush under way if it has finished (with
    /// `wait`, once it has). `Ok(Some(e))`: it failed and its visits are
    /// buffered again; `Err`: the flush thread is gone.
    fn settle(&mut self, wait: bool) -> Result<Option<ArchiveError>, ArchiveError> {
        let (Some(flusher), Some(_)) = (&self.flusher, self.in_flight) else {
            return Ok(None);
        };
        let Some(written) = flusher.finished(wait)? else {
            return Ok(None);
        };
        self.in_flight = None;
        Ok(self.absorb(written).err())
    }

    fn start_flush_if_due(&mut self, now: Instant) -> Result<(), ArchiveError> {
        let full = self.full();
        if self.flusher.is_none() || self.in_flight.is_some() || !(full || self.due(now)) {
            return Ok(());
        }
        let batch = self.take_batch();
        let visits = batch.records.len();
        let submitted = match &self.flusher {
            Some(flusher) => flusher.submit(batch),
            None => Err(batch),
        };
        match submitted {
            Ok(()) => {
                self.in_flight = Some(visits);
                Ok(())
            }
            Err(batch) => {
                let _ = self.absorb(Written {
                    committed: Vec::new(),
                    rest: batch,
                    error: None,
                });
                Err(ArchiveError::FlushThread)
            }
        }
    }
}

/// Visits, acks and escalations taken from the buffer for one flush.
pub(crate) struct Batch {
    records: Vec<VisitRecord>,
    acks: Vec<AlertAck>,
    escalations: Vec<AlertEscalation>,
}

/// What a flush did with its [`Batch`].
pub(crate) struct Written {
    committed: Vec<String>,
    /// Not written: to be buffered again.
    rest: Batch,
    error: Option<ArchiveError>,
}

/// The store and settings a flush needs, cheap to hand to another thread.
#[derive(Clone)]
pub(crate) struct Files {
    store: Arc<dyn ObjectStore>,
    config: Arc<WriterConfig>,
}

impl Files {
    /// Writes one batch per UTC date, then the acks and escalations; stops
    /// at the first error.
    pub(crate) fn write(&self, mut batch: Batch) -> Written {
        let mut by_date: BTreeMap<time::Date, Vec<usize>> = BTreeMap::new();
        for (i, r) in batch.records.iter().enumerate() {
            by_date
                .entry(utc_date(r.visit.started_at))
                .or_default()
                .push(i);
        }
        let mut committed = Vec::new();
        let mut done = vec![false; batch.records.len()];
        let mut error = None;
        for (date, idx) in &by_date {
            let records: Vec<&VisitRecord> = idx.iter().map(|&i| &batch.records[i]).collect();
            if let Err(e) = self.write_batch(*date, &records) {
                error = Some(e);
                break;
            }
            for &i in idx {
                done[i] = true;
                committed.push(batch.records[i].visit.visit_id.clone());
            }
        }
        let mut i = 0;
        batch.records.retain(|_| {
            i += 1;
            !done[i - 1]
        });
        if error.is_none() && !batch.acks.is_empty() {
            match self.write_events(
                &batch.acks,
                "acks",
                Table::AlertAcks,
                |a| a.acked_at,
                table::acks_batch,
            ) {
                Ok(()) => batch.acks.clear(),
                Err(e) => error = Some(e),
            }
        }
        if error.is_none() && !batch.escalations.is_empty() {
            match self.write_events(
                &batch.escalations,
                "esc",
                Table::AlertEscalations,
                |e| e.escalated_at,
                table::escalations_batch,
            ) {
                Ok(()) => batch.escalations.clear(),
                Err(e) => error = Some(e),
            }
        }
        Written {
            committed,
            rest: batch,
            error,
        }
    }

    /// Writes event rows (acknowledgements, escalations) as one file per UTC date of
    /// `at`, the files of one call sharing a stem tagged `tag`.
    fn write_events<T>(
        &self,
        rows: &[T],
        tag: &str,
        table: Table,
        at: impl Fn(&T) -> time::OffsetDateTime,
        to_batch: impl Fn(&[&T]) -> Result<RecordBatch, ArchiveError>,
    ) -> Result<(), ArchiveError> {
        let mut by_date: BTreeMap<time::Date, Vec<&T>> = BTreeMap::new();
        for r in rows {
            by_date.entry(utc_date(at(r))).or_default().push(r);
        }
        let stem = format!(
            "{}-{tag}-{}",
            self.config.writer_id,
            uuid::Uuid::new_v4().simple()
        );
        for (date, rows) in &by_date {
            self.put(table, *date, &stem, &to_batch(rows)?)?;
        }
        Ok(())
    }

    fn write_batch(&self, date: time::Date, records: &[&VisitRecord]) -> Result<(), ArchiveError> {
        let stem = format!(
            "{}-{}-{}",
            self.config.writer_id,
            sanitize(&records[0].visit.visit_id),
            uuid::Uuid::new_v4().simple()
        );
        let mut written = Vec::new();
        let outcome = self.write_tables(date, &stem, records, &mut written);
        if outcome.is_err() {
            // Best effort: the next open removes whatever is left.
            for key in &written {
                let _ = self.store.delete(key);
            }
        }
        outcome
    }

    fn write_tables(
        &self,
        date: time::Date,
        stem: &str,
        records: &[&VisitRecord],
        written: &mut Vec<String>,
    ) -> Result<(), ArchiveError> {
        let mut puts: Vec<(Table, time::Date, RecordBatch)> = Vec::new();
        let waveforms = self.waveforms(records)?;
        puts.push((Table::Waveforms, date, waveforms));
        puts.push((Table::Beats, date, table::beats_batch(records)?));
        puts.push((
            Table::Measurements,
            date,
            table::measurements_batch(records)?,
        ));
        let mut alerts: BTreeMap<time::Date, Vec<(&VisitRecord, &AlertRow)>> = BTreeMap::new();
        for r in records {
            for a in &r.alerts {
                alerts
                    .entry(utc_date(a.detected_at))
                    .or_default()
                    .push((r, a));
            }
        }
        for (d, rows) in &alerts {
            puts.push((Table::Alerts, *d, table::alerts_batch(rows)?));
        }
        for (t, d, batch) in puts {
            if batch.num_rows() > 0 {
                written.push(self.put(t, d, stem, &batch)?);
            }
        }
        // Last: the commit marker.
        let visits = table::visits_batch(records)?;
        written.push(self.put(Table::Visits, date, stem, &visits)?);
        Ok(())
    }

    fn waveforms(&self, records: &[&VisitRecord]) -> Result<RecordBatch, ArchiveError> {
        // Segments of `segment_s` at each visit's own rate: group visits by
        // rate so every row holds at most that much of one lead.
        let mut by_rate: BTreeMap<u32, Vec<&VisitRecord>> = BTreeMap::new();
        for r in records {
            by_rate.entry(r.visit.fs_hz).or_default().push(r);
        }
        let mut batches = Vec::new();
        for (fs_hz, rs) in by_rate {
            let seg = (fs_hz as usize).saturating_mul(self.config.segment_s as usize);
            batches.push(table::waveforms_batch(&rs, seg)?);
        }
        if batches.len() == 1 {
            return Ok(batches.pop().expect("one batch"));
        }
        Ok(arrow::compute::concat_batches(
            &Table::Waveforms.schema(),
            &batches,
        )?)
    }

    fn put(
        &self,
        table: Table,
        date: time::Date,
        stem: &str,
        batch: &RecordBatch,
    ) -> Result<String, ArchiveError> {
        let key = format!("{}/{PARTITION_COLUMN}={date}/{stem}.parquet", table.name());
        let bytes = encode(batch, &self.config)?;
        self.store.put(&key, &bytes)?;
        Ok(key)
    }
}

/// File-name-safe form of a visit id (UUID text passes unchanged).
fn sanitize(id: &str) -> String {
    id.chars()
        .take(36)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Parquet bytes of one batch, with the archive's compression and the
/// configured encoding of the sample leaf.
pub(crate) fn encode(batch: &RecordBatch, config: &WriterConfig) -> Result<Vec<u8>, ArchiveError> {
    encode_with(batch, properties(batch.schema().as_ref(), config)?.build())
}

/// The archive's writer properties for a table of `schema`: zstd at the
/// configured level on every column, and for the sample leaf the configured
/// encoding without statistics.
pub(crate) fn properties(
    schema: &arrow::datatypes::Schema,
    config: &WriterConfig,
) -> Result<parquet::file::properties::WriterPropertiesBuilder, ArchiveError> {
    let level = ZstdLevel::try_new(config.zstd_level)?;
    let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(level));
    if schema.column_with_name("samples").is_some() {
        let leaf = ColumnPath::new(vec!["samples".into(), "list".into(), "item".into()]);
        // No reader prunes on a sample's value, and min/max over every
        // sample cost 1.4 % of the pipeline's CPU (profile of 2026-11-30).
        props = props.set_column_statistics_enabled(leaf.clone(), EnabledStatistics::None);
        props = match config.sample_encoding {
            SampleEncoding::Dictionary => props,
            other => {
                let enc = match other {
                    SampleEncoding::DeltaBinaryPacked => Encoding::DELTA_BINARY_PACKED,
                    SampleEncoding::ByteStreamSplit => Encoding::BYTE_STREAM_SPLIT,
                    _ => Encoding::PLAIN,
                };
                props
                    .set_column_dictionary_enabled(leaf.clone(), false)
                    .set_column_encoding(leaf, enc)
            }
        };
    }
    Ok(props)
}

/// Parquet bytes of one batch with the given properties.
pub(crate) fn encode_with(
    batch: &RecordBatch,
    props: WriterProperties,
) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    w.write(batch)?;
    w.close()?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use arrow::array::AsArray;
    use firmware_sim::synth::{self, Condition, NoiseSpec, StemiLocation, VisitSpec};
    use time::macros::datetime;
    use time::OffsetDateTime;

    use super::*;
    use crate::record::{BeatRow, LeadMeasurement, VisitRow};
    use crate::store::StoreError;
    use crate::{read_visit_samples, read_visit_samples_from, read_visit_samples_on};

    pub(crate) fn row(visit_id: &str, started_at: OffsetDateTime, leads: usize) -> VisitRow {
        VisitRow {
            visit_id: visit_id.into(),
            device_id: "dev-1".into(),
            clinic_id: "clinic-1".into(),
            patient_pseudonym: "k1-0123456789abcdef0123456789abcdef".into(),
            sex: "female".into(),
            age_years: Some(61),
            started_at,
            received_at: started_at + time::Duration::seconds(1),
            fs_hz: 500,
            gain_uv_per_lsb: 1.0,
            leads: (0..leads).map(|i| format!("L{i}")).collect(),
            samples_sha256: None,
            complete: true,
            status: "no_stemi".into(),
            stemi: false,
            stemi_criteria_met: false,
            territories: vec![],
            heart_rate_bpm: Some(72.0),
            qrs_ms: None,
            quality_ok: true,
            quality_issues: vec![],
            mimics: vec!["lvh".into()],
            reasons: vec![],
            alert_id: None,
            firmware_version: "1.2.3".into(),
            decided_at: None,
        }
    }

    pub(crate) fn record(
        visit_id: &str,
        started_at: OffsetDateTime,
        samples: Vec<Vec<i16>>,
    ) -> VisitRecord {
        VisitRecord {
            visit: row(visit_id, started_at, samples.len()),
            samples,
            beats: vec![BeatRow {
                beat_index: 0,
                r: 250,
                qrs_on: Some(230),
                qrs_off: None,
                rr_ms: None,
                kind: "normal".into(),
                used_for_st: true,
            }],
            measurements: vec![LeadMeasurement {
                lead: "L0".into(),
                st_j_uv: Some(-40),
                st_j60_uv: None,
                st_elevation_threshold_uv: Some(100),
                lead_ok: true,
                noise_uv: Some(8.5),
            }],
            alerts: vec![],
        }
    }

    fn noisy_spec(condition: Condition) -> VisitSpec {
        VisitSpec {
            condition,
            noise: NoiseSpec {
                baseline_wander_uv: Some(200.0),
                muscle_uv: Some(15.0),
                mains_uv: Some(20.0),
                ..NoiseSpec::default()
            },
            ..VisitSpec::default()
        }
    }

    fn synth_samples(seed: u64) -> Vec<Vec<i16>> {
        let cond = if seed.is_multiple_of(2) {
            Condition::Normal
        } else {
            Condition::Stemi(StemiLocation::Anterior)
        };
        synth::generate(&noisy_spec(cond), seed).unwrap().samples
    }

    pub(crate) fn config(max_visits: usize) -> WriterConfig {
        WriterConfig {
            max_visits,
            max_age: Duration::from_secs(3600),
            ..WriterConfig::new("w1")
        }
    }

    pub(crate) const T0: OffsetDateTime = datetime!(2026-11-29 10:00 UTC);

    fn visits_rows(root: &std::path::Path) -> Vec<String> {
        let store = LocalDisk::new(root);
        let mut ids = Vec::new();
        for b in committed_batches(&store).unwrap() {
            ids.extend(read_visit_ids(&store, &b.key).unwrap());
        }
        ids.sort();
        ids
    }

    #[test]
    fn the_archive_key_replaces_the_device_pseudonym() {
        let dir = tempfile::tempdir().unwrap();
        let key = ecg_wire::PseudonymKey::new(4, b"archive-key-for-this-test").unwrap();
        let cfg = WriterConfig {
            pseudonym_key: Some(key.clone()),
            ..config(1)
        };
        let mut w = ArchiveWriter::open_local(dir.path(), cfg).unwrap();
        let rec = record("v-keyed", T0, vec![vec![1, 2, 3]; 2]);
        let device_pseudonym = rec.visit.patient_pseudonym.clone();
        w.append(rec).unwrap();
        w.flush().unwrap();
        let store = LocalDisk::new(dir.path());
        let mut stored = Vec::new();
        for b in committed_batches(&store).unwrap() {
            for batch in
                crate::reader::read_parquet(&store, &b.key, Some(&["patient_pseudonym"])).unwrap()
            {
                let col = batch.column(0).as_string_opt::<i32>().unwrap();
                stored.extend(col.iter().flatten().map(str::to_string));
            }
        }
        let expected = key.pseudonymise(device_pseudonym.as_bytes()).to_string();
        assert_eq!(stored, vec![expected.clone()]);
        assert!(expected.starts_with("k4-"));
        assert_ne!(expected, device_pseudonym);
    }

    #[test]
    fn round_trip_is_bit_exact_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            segment_s: 1, // 10 s at 500 Hz: ten rows per lead to reassemble
            ..config(10)
        };
        let mut w = ArchiveWriter::open_local(dir.path(), cfg).unwrap();
        let extremes = vec![vec![i16::MIN, i16::MAX, 0, -1, 1, i16::MIN, i16::MAX]; 3];
        let visits = [
            record("v-synth", T0, synth_samples(1)),
            record("v-extremes", T0, extremes),
            record("v-empty", T0, vec![vec![]; 2]),
        ];
        for v in &visits {
            assert_eq!(w.append(v.clone()).unwrap(), Appended::Buffered);
        }
        let mut committed = w.flush().unwrap();
        committed.sort();
        assert_eq!(committed, ["v-empty", "v-extremes", "v-synth"]);
        for v in &visits {
            let back = read_visit_samples(dir.path(), &v.visit.visit_id).unwrap();
            assert_eq!(back, v.samples, "{}", v.visit.visit_id);
        }
        assert!(matches!(
            read_visit_samples(dir.path(), "nope"),
            Err(ArchiveError::VisitNotFound(_))
        ));
    }

    #[test]
    fn redelivered_visit_is_archived_once() {
        let dir = tempfile::tempdir().unwrap();
        let v = record("v1", T0, synth_samples(2));
        {
            let mut w = ArchiveWriter::open_local(dir.path(), config(10)).unwrap();
            assert_eq!(w.append(v.clone()).unwrap(), Appended::Buffered);
            assert_eq!(w.append(v.clone()).unwrap(), Appended::Duplicate);
            w.flush().unwrap();
            assert_eq!(w.append(v.clone()).unwrap(), Appended::Duplicate);
        }
        // A restart after a crash: the broker redelivers the visit.
        let mut w = ArchiveWriter::open_local(dir.path(), config(10)).unwrap();
        assert!(w.is_archived("v1"));
        assert_eq!(w.append(v.clone()).unwrap(), Appended::Duplicate);
        assert!(w.flush().unwrap().is_empty());
        assert_eq!(visits_rows(dir.path()), ["v1"]);
    }

    /// A store that dies (errors on every call) at the first put of a
    /// `visits` file, as a crashed process would stop.
    struct CrashingStore {
        inner: LocalDisk,
        dead: AtomicBool,
    }

    impl CrashingStore {
        fn check(&self) -> Result<(), StoreError> {
            if self.dead.load(Ordering::SeqCst) {
                return Err(StoreError::InvalidKey("crashed".into()));
            }
            Ok(())
        }
    }

    impl ObjectStore for CrashingStore {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.check()?;
            if key.starts_with("visits/") {
                // Leave the temp file a crash during the write would leave.
                let mut tmp = key.to_string();
                tmp.push_str(".tmp");
                std::fs::create_dir_all(self.inner.root().join(key).parent().unwrap()).unwrap();
                std::fs::write(self.inner.root().join(tmp), &bytes[..bytes.len() / 2]).unwrap();
                self.dead.store(true, Ordering::SeqCst);
                return self.check();
            }
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.check()?;
            self.inner.get(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.check()?;
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.check()?;
            self.inner.delete(key)
        }
    }

    #[test]
    fn crash_leftovers_are_cleaned_and_the_visit_archived_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let first = record("v-ok", T0, synth_samples(3));
        let mut crashed = record("v-crash", T0, synth_samples(4));
        crashed.alerts.push(AlertRow {
            alert_id: "a1".into(),
            centre_id: "c1".into(),
            territories: vec!["anterior".into()],
            early: true,
            escalation_level: 0,
            acquired_at: T0,
            detected_at: T0,
            published_at: T0,
            acked_at: None,
            acked_by: None,
        });
        {
            let mut w = ArchiveWriter::open_local(root, config(10)).unwrap();
            w.append(first.clone()).unwrap();
            w.flush().unwrap();
        }
        let store = Arc::new(CrashingStore {
            inner: LocalDisk::new(root),
            dead: AtomicBool::new(false),
        });
        let mut w = ArchiveWriter::open(store, config(10)).unwrap();
        w.append(crashed.clone()).unwrap();
        assert!(w.flush().is_err());
        drop(w);
        // Another writer's temp file must survive our cleanup.
        let foreign = root.join("waveforms/date=2026-11-29/w2-x-y.parquet.tmp");
        std::fs::write(&foreign, b"partial").unwrap();

        let listing = LocalDisk::new(root).list("").unwrap();
        assert!(listing
            .iter()
            .any(|k| k.ends_with(".parquet.tmp") && k.starts_with("visits/")));
        assert!(
            listing.iter().any(|k| k.starts_with("alerts/")),
            "{listing:?}"
        );

        let mut w = ArchiveWriter::open_local(root, config(10)).unwrap();
        let listing = LocalDisk::new(root).list("").unwrap();
        let ours: Vec<_> = listing.iter().filter(|k| k.contains("/w1-")).collect();
        // Only the committed batch remains: waveforms, beats, measurements, visits.
        assert_eq!(ours.len(), 4, "{listing:?}");
        assert!(
            ours.iter()
                .all(|k| k.contains("v_ok") || k.contains("v-ok")),
            "{ours:?}"
        );
        assert!(foreign.exists());
        assert!(!w.is_archived("v-crash"));
        assert_eq!(w.append(crashed.clone()).unwrap(), Appended::Buffered);
        w.flush().unwrap();
        assert_eq!(visits_rows(root), ["v-crash", "v-ok"]);
        assert_eq!(
            read_visit_samples(root, "v-crash").unwrap(),
            crashed.samples
        );
    }

    #[test]
    fn partitions_by_utc_date() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ArchiveWriter::open_local(dir.path(), config(10)).unwrap();
        // 23:30 in New York is already the next day in UTC.
        let local = datetime!(2026-11-29 23:30 -05:00);
        let mut v = record("v-late", local, vec![vec![1, 2, 3]]);
        v.alerts.push(AlertRow {
            alert_id: "a1".into(),
            centre_id: "c1".into(),
            territories: vec![],
            early: false,
            escalation_level: 1,
            acquired_at: local,
            detected_at: datetime!(2026-12-01 00:00:01 UTC),
            published_at: datetime!(2026-12-01 00:00:02 UTC),
            acked_at: None,
            acked_by: None,
        });
        w.append(v).unwrap();
        w.append(record("v-early", T0, vec![vec![4, 5]])).unwrap();
        w.append_ack(AlertAck {
            alert_id: "a1".into(),
            acked_at: datetime!(2026-12-02 08:00 UTC),
            acked_by: "dr-x".into(),
            verdict: Some("false_alarm".into()),
        });
        w.append_escalation(AlertEscalation {
            alert_id: "a1".into(),
            centre_id: "c1".into(),
            escalated_at: datetime!(2026-12-01 23:59:59 -01:00),
            escalation_level: 1,
        });
        w.flush().unwrap();
        let keys = LocalDisk::new(dir.path()).list("").unwrap();
        let dirs: std::collections::BTreeSet<_> =
            keys.iter().map(|k| k.rsplit_once('/').unwrap().0).collect();
        let expected = [
            "alert_acks/date=2026-12-02",
            "alert_escalations/date=2026-12-02",
            "alerts/date=2026-12-01",
            "beats/date=2026-11-29",
            "beats/date=2026-11-30",
            "measurements/date=2026-11-29",
            "measurements/date=2026-11-30",
            "visits/date=2026-11-29",
            "visits/date=2026-11-30",
            "waveforms/date=2026-11-29",
            "waveforms/date=2026-11-30",
        ];
        assert_eq!(dirs.into_iter().collect::<Vec<_>>(), expected);
        // One batch per date: each visits file holds its date's visit only.
        let store = LocalDisk::new(dir.path());
        for b in committed_batches(&store).unwrap() {
            let ids = read_visit_ids(&store, &b.key).unwrap();
            let want = if b.partition == "date=2026-11-30" {
                "v-late"
            } else {
                "v-early"
            };
            assert_eq!(ids, [want]);
        }
        assert_eq!(
            read_visit_samples_from(&store, "v-late", None).unwrap(),
            [vec![1, 2, 3]]
        );
    }

    #[test]
    fn a_visits_day_is_read_without_the_other_days() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut w = ArchiveWriter::open_local(root, config(1)).unwrap();
        w.append(record("v-29", T0, vec![vec![4, 5]])).unwrap();
        let next_day = T0 + time::Duration::days(1);
        w.append(record("v-30", next_day, vec![vec![1, 2, 3]]))
            .unwrap();
        w.flush().unwrap();
        drop(w);
        // Damage the first day's visits file: a reader that looks at it
        // says so, one that reads only the second day does not see it.
        let store = LocalDisk::new(root);
        let first_day = store.list("visits/date=2026-11-29").unwrap();
        assert_eq!(first_day.len(), 1);
        std::fs::write(root.join(&first_day[0]), b"not parquet").unwrap();

        assert!(matches!(
            read_visit_samples(root, "v-30"),
            Err(ArchiveError::Corrupt { .. })
        ));
        assert_eq!(
            read_visit_samples_on(root, next_day.date(), "v-30").unwrap(),
            [vec![1, 2, 3]]
        );
        // The wrong day does not find it; it does not look elsewhere.
        assert!(matches!(
            read_visit_samples_on(root, (next_day + time::Duration::days(1)).date(), "v-30"),
            Err(ArchiveError::VisitNotFound(id)) if id == "v-30"
        ));
    }

    #[test]
    fn flushes_on_count_and_on_age() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            max_visits: 2,
            max_age: Duration::from_millis(500),
            ..WriterConfig::new("w1")
        };
        let mut w = ArchiveWriter::open_local(dir.path(), cfg).unwrap();
        assert_eq!(w.flush_deadline(), None);
        assert_eq!(
            w.append(record("a", T0, vec![vec![1]])).unwrap(),
            Appended::Buffered
        );
        let deadline = w.flush_deadline().unwrap();
        assert!(w
            .poll(deadline - Duration::from_millis(1))
            .unwrap()
            .is_empty());
        match w.append(record("b", T0, vec![vec![2]])).unwrap() {
            Appended::Committed(ids) => assert_eq!(ids, ["a", "b"]),
            other => panic!("expected a flush, got {other:?}"),
        }
        assert_eq!(w.buffered(), 0);
        w.append(record("c", T0, vec![vec![3]])).unwrap();
        let deadline = w.flush_deadline().unwrap();
        assert_eq!(w.poll(deadline).unwrap(), ["c"]);
        assert_eq!(w.flush_deadline(), None);
    }

    /// Large visits flush before the count is reached: the buffer is
    /// bounded in bytes too, in both modes.
    #[test]
    fn flushes_on_bytes_before_the_count() {
        for background in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = WriterConfig {
                max_buffered_bytes: 3 * 12 * 1000 * 2,
                ..config(64)
            };
            let mut w = ArchiveWriter::open_local(dir.path(), cfg).unwrap();
            if background {
                w.flush_in_background(|| {}).unwrap();
            }
            let big = || vec![vec![7i16; 1000]; 12];
            let mut committed = Vec::new();
            for id in ["a", "b"] {
                match w.append(record(id, T0, big())).unwrap() {
                    Appended::Buffered => {}
                    other => panic!("{id}: under the byte bound, got {other:?}"),
                }
            }
            assert_eq!(w.buffered(), 2);
            // The third reaches the bound: its flush starts (and, in the
            // caller's thread, commits) without waiting for 64 visits.
            if let Appended::Committed(ids) = w.append(record("c", T0, big())).unwrap() {
                committed.extend(ids);
            }
            if background {
                assert_eq!(w.flush_deadline(), None, "the buffer was handed over");
                committed.extend(w.flush().unwrap());
            }
            committed.sort();
            assert_eq!(committed, ["a", "b", "c"], "background: {background}");
        }
    }

    /// Every visit comes back committed exactly once, whichever call
    /// reports it, and the archive holds them all.
    #[test]
    fn background_flushes_commit_every_visit_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ArchiveWriter::open_local(dir.path(), config(3)).unwrap();
        let (tx, flushed) = std::sync::mpsc::channel();
        w.flush_in_background(move || {
            let _ = tx.send(());
        })
        .unwrap();
        let ids: Vec<String> = (0..20).map(|i| format!("v{i:02}")).collect();
        let mut reported = Vec::new();
        for id in &ids {
            match w.append(record(id, T0, vec![vec![1, 2, 3]])).unwrap() {
                Appended::Committed(c) => reported.extend(c),
                Appended::Buffered => {}
                Appended::Duplicate => panic!("{id} is new"),
            }
            // A visit in a flush under way is still known to the writer.
            assert_eq!(
                w.append(record(id, T0, vec![vec![9]])).unwrap(),
                Appended::Duplicate
            );
        }
        // Six full buffers were handed over; at least one has been written.
        flushed.recv().unwrap();
        reported.extend(w.poll(Instant::now()).unwrap());
        reported.extend(w.flush().unwrap());
        assert_eq!(w.buffered(), 0);
        reported.sort();
        assert_eq!(reported, ids);
        let mut rows = visits_rows(dir.path());
        rows.sort();
        assert_eq!(rows, ids);
        assert!(ids.iter().all(|id| w.is_archived(id)));
    }

    #[test]
    fn a_failed_background_flush_keeps_its_visits_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        // Full until `down` is cleared.
        let down = Arc::new(AtomicBool::new(true));
        let full = down.clone();
        let store = Arc::new(crate::store::Hooked {
            before_put: Box::new(move |_| {
                if full.load(Ordering::SeqCst) {
                    return Err(StoreError::InvalidKey("disk full".into()));
                }
                Ok(())
            }),
            ..crate::store::Hooked::new(dir.path())
        });
        let mut w = ArchiveWriter::open(store.clone(), config(2)).unwrap();
        let (tx, flushed) = std::sync::mpsc::channel();
        w.flush_in_background(move || {
            let _ = tx.send(());
        })
        .unwrap();
        w.append(record("a", T0, vec![vec![1]])).unwrap();
        w.append_ack(AlertAck {
            alert_id: "x".into(),
            acked_at: T0,
            acked_by: "dr-x".into(),
            verdict: None,
        });
        assert_eq!(
            w.append(record("b", T0, vec![vec![2]])).unwrap(),
            Appended::Buffered
        );
        flushed.recv().unwrap();
        assert!(matches!(
            w.poll(Instant::now()),
            Err(ArchiveError::Store(_))
        ));
        assert_eq!(w.buffered(), 2);
        assert!(!w.is_archived("a"));
        assert!(visits_rows(dir.path()).is_empty());
        // Space is back: the retry writes the visits and the ack.
        down.store(false, Ordering::SeqCst);
        w.append(record("c", T0, vec![vec![3]])).unwrap();
        let mut ids = w.flush().unwrap();
        ids.sort();
        assert_eq!(ids, ["a", "b", "c"]);
        let keys = LocalDisk::new(dir.path()).list("alert_acks").unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(w.buffered(), 0);
    }

    #[test]
    fn rejects_bad_records_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ArchiveWriter::open_local(dir.path(), config(10)).unwrap();
        let mut ragged = record("r", T0, vec![vec![1, 2], vec![3]]);
        assert!(matches!(
            w.append(ragged.clone()),
            Err(ArchiveError::InvalidRecord { .. })
        ));
        ragged.samples[1].push(4);
        ragged.visit.leads.pop();
        assert!(matches!(
            w.append(ragged),
            Err(ArchiveError::InvalidRecord { .. })
        ));
        for id in ["", "a-b", "a/b"] {
            let err = ArchiveWriter::open_local(dir.path(), WriterConfig::new(id)).unwrap_err();
            assert!(matches!(err, ArchiveError::Config(_)), "{id}");
        }
        for bad in [
            config(0),
            WriterConfig {
                max_buffered_bytes: 0,
                ..config(1)
            },
        ] {
            let err = ArchiveWriter::open_local(dir.path(), bad).unwrap_err();
            assert!(matches!(err, ArchiveError::Config(_)), "{err}");
        }
    }

    fn bytes_per_sample(visits: &[VisitRecord], enc: SampleEncoding, zstd_level: i32) -> f64 {
        let refs: Vec<&VisitRecord> = visits.iter().collect();
        let batch = table::waveforms_batch(&refs, 30_000).unwrap();
        let cfg = WriterConfig {
            sample_encoding: enc,
            zstd_level,
            ..WriterConfig::new("m")
        };
        let bytes = encode(&batch, &cfg).unwrap();
        let n: usize = visits.iter().map(|v| v.samples.len() * v.n_samples()).sum();
        // Lossless whatever the encoding.
        let back = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes.clone()),
        )
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
        assert_eq!(back, batch);
        bytes.len() as f64 / n as f64
    }

    /// Prints the archive's size per sample for each encoding, on noisy
    /// synthetic visits and on real 12-lead records (LUDB, 500 Hz, when
    /// the data folder is present); run with `--nocapture` to see the figures.
    #[test]
    fn delta_encoding_beats_plain_int16() {
        let synth: Vec<VisitRecord> = (0..20)
            .map(|i| record(&format!("s{i}"), T0, synth_samples(100 + i)))
            .collect();
        let mut sets = vec![("synthetic noisy (20 visits, 500 Hz, 12 leads)", synth)];
        let ludb =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ludb");
        let real: Vec<VisitRecord> = (1..=40)
            .filter_map(|i| ecg_wfdb::Record::read(ludb.join((i * 2).to_string())).ok())
            .map(|rec| {
                let samples = (0..rec.n_signals())
                    .map(|s| rec.digital(s).unwrap().iter().map(|&v| v as i16).collect())
                    .collect();
                record("ludb", T0, samples)
            })
            .collect();
        if !real.is_empty() {
            sets.push(("LUDB real records (500 Hz, 12 leads)", real));
        }
        for (name, visits) in &sets {
            let mut line = format!("{name}:");
            let mut sizes = Vec::new();
            for enc in [
                SampleEncoding::Plain,
                SampleEncoding::Dictionary,
                SampleEncoding::DeltaBinaryPacked,
                SampleEncoding::ByteStreamSplit,
            ] {
                let b = bytes_per_sample(visits, enc, WriterConfig::new("m").zstd_level);
                line.push_str(&format!(" {enc:?}+zstd {b:.3} B/sample;"));
                sizes.push(b);
            }
            println!("{line}");
            // The level trades CPU (the archive's largest cost after the analysis)
            // for size: printed to show what the default's choice costs.
            let mut line = "  DeltaBinaryPacked by zstd level:".to_string();
            for level in [1, 3, 6, 9] {
                let b = bytes_per_sample(visits, SampleEncoding::DeltaBinaryPacked, level);
                line.push_str(&format!(" {level}: {b:.3};"));
            }
            println!("{line}");
            // The default (delta) must beat plain int16 stored raw and
            // plain+zstd; WFDB format 212 needs 1.5 bytes.
            assert!(sizes[2] < 1.5, "{name}: {sizes:?}");
            assert!(sizes[2] <= sizes[0], "{name}: {sizes:?}");
        }
    }
}
