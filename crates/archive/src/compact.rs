//! Compaction: a closed day's many small batches rewritten as a few large
//! ones, because at a county's pace the writer commits one batch (two to
//! five files) per visit, and a year of such files costs every reader tens
//! of seconds per query (README, "Small files").
//!
//! Plain Parquet has no table format to swap many files for one in a
//! single step, so [`compact`] goes in steps a crash can stop anywhere:
//!
//! 1. write the merged batch's files (`compact-...`), `visits` last: its
//!    `visits` file commits it and names its source batches in its Parquet
//!    metadata ([`SOURCES_KEY`]);
//! 2. retire each source: its `visits` file first, then its other files.
//!
//! Between 1 and 2 a reader sees the sources' visits twice; after a crash
//! there, the next run finishes step 2 from the names in the metadata
//! before anything else, and deletes the files of a merged batch that never
//! committed. Acknowledgements and escalations (committed file by file) are
//! merged per day the same way, each merged file naming its sources.
//!
//! Every merged file is decoded again and compared with what was meant to
//! be written before it is stored; a source that cannot be read whole, or
//! whose columns are not the contract's, is left where it is and reported.
//! One compaction at a time: [`compact_local`] holds a lock file; a running
//! pipeline may keep writing (its batches committed after the listing are
//! left for the next run).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{new_null_array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::{FooterTail, KeyValue, ParquetMetaDataReader};

use crate::store::{LocalDisk, ObjectStore, StoreError, TMP_SUFFIX};
use crate::table::{partition_date, Table, PARTITION_COLUMN};
use crate::verify::{Finding, Severity};
use crate::writer::{encode_with, properties, WriterConfig};
use crate::ArchiveError;

/// The writer id of merged batches, reserved: no pipeline may use it.
pub const WRITER_ID: &str = "compact";

/// Parquet key-value metadata of a merged file: the sources it replaces,
/// one per line (batch stems in a `visits` file, object keys in an
/// `alert_acks` or `alert_escalations` file).
pub const SOURCES_KEY: &str = "ecgtriage.compacted_from";

/// The lock file [`compact_local`] holds under the archive root (readers
/// and Spark skip names starting with `_`).
pub const LOCK_FILE: &str = "_compact.lock";

/// Tables of a batch besides `visits`, which commits it.
const BATCH_TABLES: [Table; 4] = [
    Table::Waveforms,
    Table::Beats,
    Table::Measurements,
    Table::Alerts,
];

/// Rows per row group of a merged `waveforms` file: about 85 visits of 12
/// leads, so that a reader holds about as much of it at a time as of a
/// busy pipeline's batch, not a whole day.
const WAVEFORM_ROWS_PER_GROUP: usize = 1024;

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// Only days (partitions) before this date: today's are still filling.
    pub before: time::Date,
    /// Most visits in one merged batch.
    pub max_visits: usize,
    /// Most bytes of decoded rows (Arrow memory) in one merged batch or
    /// file, which bounds what compaction holds in memory (about three
    /// times this: the sources, the sorted copy and the copy read back).
    pub max_bytes: usize,
    /// zstd level of the merged files.
    pub zstd_level: i32,
    /// List what would be merged; write and delete nothing.
    pub dry_run: bool,
    /// Checked before each merge: once set, [`compact`] returns what it
    /// has done ([`CompactReport::stopped`]), so that a pipeline shutting
    /// down waits for one merge at most. What is left is as a crash would
    /// leave it: the next run goes on from there.
    pub stop: Option<Arc<AtomicBool>>,
}

impl CompactConfig {
    pub fn new(before: time::Date) -> Self {
        Self {
            before,
            max_visits: 10_000,
            max_bytes: 256 << 20,
            zstd_level: WriterConfig::new(WRITER_ID).zstd_level,
            dry_run: false,
            stop: None,
        }
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// One merge: sources of one table and day become one batch (or file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// [`Table::Visits`] for batches (all their tables), else the event table.
    pub table: Table,
    /// `date=YYYY-MM-DD`.
    pub partition: String,
    /// Batches (or event files) merged.
    pub sources: usize,
    pub files_before: usize,
    pub files_after: usize,
    /// Visits (batches) or rows (event files); 0 in a dry run.
    pub rows: usize,
    /// Bytes of the sources' files and of the merged files; 0 in a dry run.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// What [`compact`] did.
#[derive(Debug, Clone, Default)]
pub struct CompactReport {
    pub merges: Vec<Merge>,
    /// Files deleted to finish a compaction that was cut short, or left
    /// by one before its commit.
    pub finished: Vec<String>,
    /// Sources left in place, and why (each names its file).
    pub refused: Vec<Finding>,
    /// [`CompactConfig::stop`] cut the run short; days are left to merge.
    pub stopped: bool,
}

/// Compacts an archive on local disk, holding [`LOCK_FILE`] so that two
/// compactions never run at once.
pub fn compact_local(root: &Path, config: &CompactConfig) -> Result<CompactReport, ArchiveError> {
    let lock_path = root.join(LOCK_FILE);
    let lock = open_lock_file(&lock_path).map_err(|source| StoreError::Io {
        op: "open",
        path: lock_path.clone(),
        source,
    })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(ArchiveError::Busy(format!(
                "another compaction, or an `archive verify`, of {} is running (it holds {})",
                root.display(),
                lock_path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(StoreError::Io {
                op: "lock",
                path: lock_path,
                source,
            }
            .into())
        }
    }
    // The lock goes with the file handle, when this returns.
    compact(&LocalDisk::new(root), config)
}

/// Keeps compactions out of an archive on local disk while it is held: a
/// shared hold of [`LOCK_FILE`], which [`compact_local`] takes exclusively.
/// For a reader of the archive's files as they are listed, such as
/// [`crate::verify_local`]: a merge committing meanwhile would delete
/// files it listed, and a file gone would read as damage. Several holders
/// may share it; a compaction under way is waited for; the pipeline's
/// scheduled compaction skips its run while one is held.
#[derive(Debug)]
pub struct CompactionPause {
    _lock: Option<std::fs::File>,
}

impl CompactionPause {
    /// Waits for a compaction under way to finish (calling `waiting` once,
    /// first, when there is one). An archive where the lock file cannot be
    /// made (read-only) cannot be compacted either, and is held without it.
    pub fn acquire(root: &Path, waiting: impl FnOnce()) -> Result<Self, ArchiveError> {
        let lock_path = root.join(LOCK_FILE);
        let opened = open_lock_file(&lock_path).or_else(|_| std::fs::File::open(&lock_path));
        let Ok(lock) = opened else {
            return Ok(Self { _lock: None });
        };
        let io = |op: &'static str| {
            let path = lock_path.clone();
            move |source| StoreError::Io { op, path, source }
        };
        match lock.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                lock.lock_shared().map_err(io("lock"))?;
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io("lock")(source).into()),
        }
        Ok(Self { _lock: Some(lock) })
    }
}

/// The lock file, made if missing; its content is never written.
fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Compacts the archive in `store`. The caller makes sure no other
/// compaction runs at the same time ([`compact_local`] does).
pub fn compact(
    store: &dyn ObjectStore,
    config: &CompactConfig,
) -> Result<CompactReport, ArchiveError> {
    if config.max_visits == 0 || config.max_bytes == 0 {
        return Err(ArchiveError::Config(
            "max_visits and max_bytes must be >= 1".into(),
        ));
    }
    let mut report = CompactReport::default();
    if !config.dry_run {
        finish_cut_short(store, &mut report)?;
    }
    let layout = Layout::of(&store.list("")?);
    for (partition, stems) in &layout.batches {
        if stems.len() < 2 || !before(partition, config.before) {
            continue;
        }
        if config.stopped() {
            report.stopped = true;
            return Ok(report);
        }
        if config.dry_run {
            let files = stems.iter().map(|s| 1 + layout.files_of(s).len()).sum();
            report
                .merges
                .push(planned(Table::Visits, partition, stems.len(), files));
            continue;
        }
        compact_batches(store, config, &layout, partition, stems, &mut report)?;
    }
    for ((_, partition), (table, keys)) in &layout.events {
        if keys.len() < 2 || !before(partition, config.before) {
            continue;
        }
        if config.stopped() {
            report.stopped = true;
            return Ok(report);
        }
        if config.dry_run {
            report
                .merges
                .push(planned(*table, partition, keys.len(), keys.len()));
            continue;
        }
        compact_events(store, config, *table, partition, keys, &mut report)?;
    }
    Ok(report)
}

fn planned(table: Table, partition: &str, sources: usize, files_before: usize) -> Merge {
    Merge {
        table,
        partition: partition.to_string(),
        sources,
        files_before,
        files_after: 0,
        rows: 0,
        bytes_before: 0,
        bytes_after: 0,
    }
}

/// Whether a `date=YYYY-MM-DD` partition is dated before `day`; an
/// undatable one never is (`archive verify` reports it).
fn before(partition: &str, day: time::Date) -> bool {
    partition_date(partition).is_some_and(|d| d < day)
}

/// The archive's committed batches and event files, from one listing.
#[derive(Default)]
struct Layout {
    /// Committed batch stems per partition of their `visits` file.
    batches: BTreeMap<String, Vec<String>>,
    /// Keys of each batch's other files, by stem (any partition: alerts
    /// are filed by their own date).
    batch_files: HashMap<String, Vec<String>>,
    /// Event files per table (by name) and partition.
    events: BTreeMap<(&'static str, String), (Table, Vec<String>)>,
}

impl Layout {
    fn of(keys: &[String]) -> Self {
        let mut layout = Layout::default();
        for key in keys {
            let Some((table, partition, stem)) = split_key(key) else {
                continue;
            };
            match table {
                Table::Visits => layout
                    .batches
                    .entry(partition.to_string())
                    .or_default()
                    .push(stem.to_string()),
                Table::AlertAcks | Table::AlertEscalations => layout
                    .events
                    .entry((table.name(), partition.to_string()))
                    .or_insert_with(|| (table, Vec::new()))
                    .1
                    .push(key.clone()),
                _ => layout
                    .batch_files
                    .entry(stem.to_string())
                    .or_default()
                    .push(key.clone()),
            }
        }
        layout
    }

    fn files_of(&self, stem: &str) -> &[String] {
        self.batch_files.get(stem).map_or(&[], Vec::as_slice)
    }
}

/// `(table, partition, stem)` of a `table/partition/stem.parquet` key.
pub(crate) fn split_key(key: &str) -> Option<(Table, &str, &str)> {
    let mut parts = key.split('/');
    let (Some(table), Some(partition), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let table = crate::TABLES.iter().copied().find(|t| t.name() == table)?;
    Some((table, partition, name.strip_suffix(".parquet")?))
}

/// Whether a file name or stem is of a merged batch or file.
pub(crate) fn is_merged(stem: &str) -> bool {
    stem.starts_with(&format!("{WRITER_ID}-"))
}

/// The sources a merged file names in its metadata, read from its footer
/// alone (readers of the whole archive read every merged file's).
pub fn merged_sources(store: &dyn ObjectStore, key: &str) -> Result<Vec<String>, ArchiveError> {
    let unreadable = |reason: String| ArchiveError::Corrupt {
        file: key.to_string(),
        reason: format!("unreadable: {reason}"),
    };
    // The footer's length is in its last 8 bytes; most footers fit in the
    // first read, a longer one is read again at its length.
    let mut tail = store.get_tail(key, 64 << 10)?;
    let metadata_len = |tail: &[u8]| -> Result<usize, ArchiveError> {
        let last: &[u8; FOOTER_SIZE] = tail
            .get(tail.len().saturating_sub(FOOTER_SIZE)..)
            .and_then(|t| t.try_into().ok())
            .ok_or_else(|| unreadable("shorter than a Parquet footer".into()))?;
        let footer = FooterTail::try_new(last).map_err(|e| unreadable(e.to_string()))?;
        Ok(footer.metadata_length())
    };
    let len = metadata_len(&tail)? + FOOTER_SIZE;
    if len > tail.len() {
        tail = store.get_tail(key, len)?;
        if len > tail.len() {
            return Err(unreadable(format!(
                "footer of {len} bytes in a file of {}",
                tail.len()
            )));
        }
    }
    let metadata = &tail[tail.len() - len..tail.len() - FOOTER_SIZE];
    let metadata =
        ParquetMetaDataReader::decode_metadata(metadata).map_err(|e| unreadable(e.to_string()))?;
    let sources = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == SOURCES_KEY))
        .and_then(|kv| kv.value.clone())
        .unwrap_or_default();
    Ok(sources.lines().map(str::to_string).collect())
}

/// Bytes after a Parquet file's metadata: its length and the magic.
const FOOTER_SIZE: usize = 8;

/// Step 2 of every committed merge, again (it does nothing where it was
/// done), and the files of merges that never committed, deleted. A merged
/// file whose metadata cannot be read is reported and left with its
/// sources (which then hold the same visits: `archive verify` says so).
fn finish_cut_short(
    store: &dyn ObjectStore,
    report: &mut CompactReport,
) -> Result<(), ArchiveError> {
    let keys = store.list("")?;
    let layout = Layout::of(&keys);
    let mut present: HashSet<String> = keys.iter().cloned().collect();
    let mut committed = HashSet::new();
    for (partition, stems) in &layout.batches {
        for stem in stems.iter().filter(|s| is_merged(s)) {
            committed.insert(stem.as_str());
            let key = format!("{}/{partition}/{stem}.parquet", Table::Visits.name());
            // Retired already, as the source of a later merge.
            if !present.contains(&key) {
                continue;
            }
            let sources = match merged_sources(store, &key) {
                Ok(s) => s,
                Err(e) => {
                    report.refused.push(refusal(&key, None, e.to_string()));
                    continue;
                }
            };
            for source in sources {
                let visits = format!("{}/{partition}/{source}.parquet", Table::Visits.name());
                let mut doomed = vec![visits];
                doomed.extend(layout.files_of(&source).iter().cloned());
                retire(store, doomed, &mut present, report)?;
            }
        }
    }
    for (_, events) in layout.events.values() {
        for key in events {
            let merged = split_key(key).is_some_and(|(_, _, stem)| is_merged(stem));
            if !merged || !present.contains(key) {
                continue;
            }
            match merged_sources(store, key) {
                Ok(sources) => retire(store, sources, &mut present, report)?,
                Err(e) => report.refused.push(refusal(key, None, e.to_string())),
            }
        }
    }
    for key in &keys {
        let name = key.rsplit('/').next().unwrap_or(key);
        if !is_merged(name) || !present.contains(key) {
            continue;
        }
        let leftover = match split_key(key) {
            // A temporary file of a write that never finished.
            None => name.ends_with(TMP_SUFFIX),
            Some((table, _, stem)) => BATCH_TABLES.contains(&table) && !committed.contains(stem),
        };
        if leftover {
            retire(store, vec![key.clone()], &mut present, report)?;
        }
    }
    Ok(())
}

/// Deletes those of `doomed` still present.
fn retire(
    store: &dyn ObjectStore,
    doomed: Vec<String>,
    present: &mut HashSet<String>,
    report: &mut CompactReport,
) -> Result<(), ArchiveError> {
    for key in doomed {
        if present.remove(&key) {
            store.delete(&key)?;
            report.finished.push(key);
        }
    }
    Ok(())
}

/// One source batch, read whole and held to the contract.
struct Source {
    stem: String,
    /// Every file of the batch, `visits` first.
    keys: Vec<String>,
    bytes: u64,
    visits: RecordBatch,
    /// Per table, the batch's rows (alerts: per partition).
    tables: Vec<(Table, String, RecordBatch)>,
}

impl Source {
    fn memory(&self) -> usize {
        self.visits.get_array_memory_size()
            + self
                .tables
                .iter()
                .map(|(_, _, b)| b.get_array_memory_size())
                .sum::<usize>()
    }
}

fn compact_batches(
    store: &dyn ObjectStore,
    config: &CompactConfig,
    layout: &Layout,
    partition: &str,
    stems: &[String],
    report: &mut CompactReport,
) -> Result<(), ArchiveError> {
    let mut group: Vec<Source> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    for stem in stems {
        // Already named while finishing earlier runs: once is enough.
        let visits_key = format!("{}/{partition}/{stem}.parquet", Table::Visits.name());
        if report.refused.iter().any(|f| f.file == visits_key) {
            continue;
        }
        let source = match read_source(store, layout, partition, stem) {
            Ok(s) => s,
            Err(refusal) => {
                report.refused.push(refusal);
                continue;
            }
        };
        let mut own = HashSet::new();
        let source_ids = visit_ids(&source.visits);
        if let Some(twice) = source_ids
            .iter()
            .find(|id| ids.contains(*id) || !own.insert(id.as_str()))
        {
            report.refused.push(refusal(
                &source.keys[0],
                Some(twice),
                "a visit archived twice is not merged: `ecgtriage archive verify` names both copies",
            ));
            continue;
        }
        ids.extend(source_ids);
        group.push(source);
        let visits: usize = group.iter().map(|s| s.visits.num_rows()).sum();
        let memory: usize = group.iter().map(Source::memory).sum();
        if visits >= config.max_visits || memory >= config.max_bytes {
            write_group(store, config, partition, std::mem::take(&mut group), report)?;
            ids.clear();
        }
    }
    write_group(store, config, partition, group, report)
}

fn refusal(file: &str, visit_id: Option<&str>, problem: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Error,
        file: file.to_string(),
        visit_id: visit_id.map(str::to_string),
        problem: problem.into(),
    }
}

fn read_source(
    store: &dyn ObjectStore,
    layout: &Layout,
    partition: &str,
    stem: &str,
) -> Result<Source, Finding> {
    let visits_key = format!("{}/{partition}/{stem}.parquet", Table::Visits.name());
    let (visits, mut bytes) = read_conformed(store, &visits_key, Table::Visits)?;
    let mut keys = vec![visits_key];
    let mut tables = Vec::new();
    for key in layout.files_of(stem) {
        let Some((table, file_partition, _)) = split_key(key) else {
            continue;
        };
        // Samples filed under another date than their batch are not where
        // readers look for them: `archive verify` reports it; leave them.
        if table != Table::Alerts && file_partition != partition {
            return Err(refusal(
                key,
                None,
                format!("a file of a batch committed under {partition}, filed under another date"),
            ));
        }
        let (batch, n) = read_conformed(store, key, table)?;
        bytes += n;
        keys.push(key.clone());
        tables.push((table, file_partition.to_string(), batch));
    }
    Ok(Source {
        stem: stem.to_string(),
        keys,
        bytes,
        visits,
        tables,
    })
}

/// Reads a file whole as its table's contract says: a nullable column the
/// file lacks (added within v1 after it was written) is read as nulls;
/// any other difference refuses the file, since rewriting it would lose
/// or change data.
fn read_conformed(
    store: &dyn ObjectStore,
    key: &str,
    table: Table,
) -> Result<(RecordBatch, u64), Finding> {
    let bytes = store
        .get(key)
        .map_err(|e| refusal(key, None, format!("cannot be read: {e}")))?;
    let n = bytes.len() as u64;
    let unreadable = |e: &dyn std::fmt::Display| {
        refusal(
            key,
            None,
            format!(
                "not a readable Parquet file ({e}): left as it is; see `ecgtriage archive verify`"
            ),
        )
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).map_err(|e| unreadable(&e))?;
    let file_schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| unreadable(&e))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    let whole = concat_batches(&file_schema, &batches).map_err(|e| unreadable(&e))?;
    let contract = table.schema();
    if let Some(extra) = file_schema
        .fields()
        .iter()
        .find(|f| contract.field_with_name(f.name()).is_err())
    {
        return Err(refusal(
            key,
            None,
            format!(
                "column {} is not in the contract: merging would drop it",
                extra.name()
            ),
        ));
    }
    let mut columns = Vec::with_capacity(contract.fields().len());
    for want in contract.fields() {
        match file_schema.index_of(want.name()) {
            Ok(i) => columns.push(whole.column(i).clone()),
            Err(_) if want.is_nullable() => {
                columns.push(new_null_array(want.data_type(), whole.num_rows()))
            }
            Err(_) => return Err(refusal(key, None, format!("no column {}", want.name()))),
        }
    }
    let batch = RecordBatch::try_new(contract, columns)
        .map_err(|e| refusal(key, None, format!("does not fit the contract: {e}")))?;
    Ok((batch, n))
}

fn visit_ids(batch: &RecordBatch) -> Vec<String> {
    batch
        .column_by_name("visit_id")
        .and_then(|c| c.as_string_opt::<i32>())
        .map(|c| c.iter().flatten().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Merges a group of source batches into one (nothing for fewer than two)
/// and retires the sources.
fn write_group(
    store: &dyn ObjectStore,
    config: &CompactConfig,
    partition: &str,
    group: Vec<Source>,
    report: &mut CompactReport,
) -> Result<(), ArchiveError> {
    if group.len() < 2 {
        return Ok(());
    }
    let visits = concat(
        Table::Visits.schema(),
        group.iter().map(|s| &s.visits).collect(),
    )?;
    // Time order within the day, so that row-group statistics on
    // `started_at` let readers skip what a time range excludes.
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: visits
                    .column(visits.schema().index_of("started_at")?)
                    .clone(),
                options: None,
            },
            SortColumn {
                values: visits.column(visits.schema().index_of("visit_id")?).clone(),
                options: None,
            },
        ],
        None,
    )?;
    let visits = take_record_batch(&visits, &order)?;
    let rank: HashMap<String, usize> = visit_ids(&visits)
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();

    let stem = format!(
        "{WRITER_ID}-{}-{}",
        partition
            .trim_start_matches(PARTITION_COLUMN)
            .trim_start_matches('=')
            .replace('-', ""),
        uuid::Uuid::new_v4().simple()
    );
    let mut outputs: Vec<(String, Table, RecordBatch)> = Vec::new();
    let mut by_file: BTreeMap<(&'static str, String), (Table, Vec<&RecordBatch>)> = BTreeMap::new();
    for s in &group {
        for (table, file_partition, batch) in &s.tables {
            by_file
                .entry((table.name(), file_partition.clone()))
                .or_insert_with(|| (*table, Vec::new()))
                .1
                .push(batch);
        }
    }
    for ((name, file_partition), (table, batches)) in by_file {
        let merged = in_visit_order(&concat(table.schema(), batches)?, &rank)?;
        if merged.num_rows() > 0 {
            outputs.push((
                format!("{name}/{file_partition}/{stem}.parquet"),
                table,
                merged,
            ));
        }
    }
    let sources: Vec<&str> = group.iter().map(|s| s.stem.as_str()).collect();
    let visits_key = format!("{}/{partition}/{stem}.parquet", Table::Visits.name());
    outputs.push((visits_key, Table::Visits, visits));
    let mut written: Vec<String> = Vec::new();
    let mut bytes_after = 0;
    // In order, `visits` last: the commit, naming what it replaces.
    for (key, table, batch) in &outputs {
        let named = (*table == Table::Visits).then_some(sources.as_slice());
        match put_checked(store, config, key, *table, batch, named) {
            Ok(n) => bytes_after += n,
            Err(e) => {
                // Not committed: best effort now, the next run otherwise.
                for key in &written {
                    let _ = store.delete(key);
                }
                return Err(e);
            }
        }
        written.push(key.clone());
    }
    for s in &group {
        for key in &s.keys {
            store.delete(key)?;
        }
    }
    report.merges.push(Merge {
        table: Table::Visits,
        partition: partition.to_string(),
        sources: group.len(),
        files_before: group.iter().map(|s| s.keys.len()).sum(),
        files_after: written.len(),
        rows: outputs.last().map_or(0, |(_, _, v)| v.num_rows()),
        bytes_before: group.iter().map(|s| s.bytes).sum(),
        bytes_after,
    });
    Ok(())
}

fn concat(schema: SchemaRef, batches: Vec<&RecordBatch>) -> Result<RecordBatch, ArchiveError> {
    Ok(concat_batches(&schema, batches)?)
}

/// Rows in the order of their visits in the merged `visits` file, each
/// visit's rows in the order they were written (lead, then segment).
fn in_visit_order(
    batch: &RecordBatch,
    rank: &HashMap<String, usize>,
) -> Result<RecordBatch, ArchiveError> {
    let ids = batch
        .column_by_name("visit_id")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| ArchiveError::InvalidRecord {
            visit_id: String::new(),
            reason: "merged rows without a utf8 visit_id".into(),
        })?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    // Stable: rows of one visit keep their order. A visit the merged
    // `visits` file lacks (a stray row) goes last, kept, not dropped.
    order.sort_by_key(|&i| {
        rank.get(ids.value(i as usize))
            .copied()
            .unwrap_or(usize::MAX)
    });
    Ok(take_record_batch(batch, &UInt32Array::from(order))?)
}

/// Encodes, decodes the bytes again and compares them with `batch`, then
/// stores them; returns the bytes stored.
fn put_checked(
    store: &dyn ObjectStore,
    config: &CompactConfig,
    key: &str,
    table: Table,
    batch: &RecordBatch,
    sources: Option<&[&str]>,
) -> Result<u64, ArchiveError> {
    let writer = WriterConfig {
        zstd_level: config.zstd_level,
        ..WriterConfig::new("unused")
    };
    let mut props = properties(batch.schema().as_ref(), &writer)?;
    if table == Table::Waveforms {
        props = props.set_max_row_group_row_count(Some(WAVEFORM_ROWS_PER_GROUP));
    }
    if let Some(sources) = sources {
        props = props.set_key_value_metadata(Some(vec![KeyValue::new(
            SOURCES_KEY.to_string(),
            sources.join("\n"),
        )]));
    }
    let bytes = encode_with(batch, props.build())?;
    let corrupt = |reason: String| ArchiveError::Corrupt {
        file: key.to_string(),
        reason,
    };
    let back = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone()))?
        .build()?
        .collect::<Result<Vec<_>, _>>()?;
    let back = concat_batches(&batch.schema(), &back)?;
    if back.num_rows() != batch.num_rows() || back.columns() != batch.columns() {
        return Err(corrupt(
            "the merged file does not read back as the rows merged: nothing was replaced".into(),
        ));
    }
    store.put(key, &bytes)?;
    Ok(bytes.len() as u64)
}

fn compact_events(
    store: &dyn ObjectStore,
    config: &CompactConfig,
    table: Table,
    partition: &str,
    keys: &[String],
    report: &mut CompactReport,
) -> Result<(), ArchiveError> {
    let mut group: Vec<(String, u64, RecordBatch)> = Vec::new();
    let mut memory = 0;
    for key in keys {
        match read_conformed(store, key, table) {
            Ok((batch, n)) => {
                memory += batch.get_array_memory_size();
                group.push((key.clone(), n, batch));
            }
            Err(refusal) => report.refused.push(refusal),
        }
        if memory >= config.max_bytes {
            write_events(
                store,
                config,
                table,
                partition,
                std::mem::take(&mut group),
                report,
            )?;
            memory = 0;
        }
    }
    write_events(store, config, table, partition, group, report)
}

fn write_events(
    store: &dyn ObjectStore,
    config: &CompactConfig,
    table: Table,
    partition: &str,
    group: Vec<(String, u64, RecordBatch)>,
    report: &mut CompactReport,
) -> Result<(), ArchiveError> {
    if group.len() < 2 {
        return Ok(());
    }
    let merged = concat(table.schema(), group.iter().map(|(_, _, b)| b).collect())?;
    let at = match table {
        Table::AlertAcks => "acked_at",
        _ => "escalated_at",
    };
    let order = lexsort_to_indices(
        &[SortColumn {
            values: merged.column(merged.schema().index_of(at)?).clone(),
            options: None,
        }],
        None,
    )?;
    let merged = take_record_batch(&merged, &order)?;
    let key = format!(
        "{}/{partition}/{WRITER_ID}-{}.parquet",
        table.name(),
        uuid::Uuid::new_v4().simple()
    );
    let sources: Vec<&str> = group.iter().map(|(k, _, _)| k.as_str()).collect();
    let bytes_after = put_checked(store, config, &key, table, &merged, Some(&sources))?;
    for (k, _, _) in &group {
        store.delete(k)?;
    }
    report.merges.push(Merge {
        table,
        partition: partition.to_string(),
        sources: group.len(),
        files_before: group.len(),
        files_after: 1,
        rows: merged.num_rows(),
        bytes_before: group.iter().map(|(_, n, _)| n).sum(),
        bytes_after,
    });
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicUsize;

    use arrow::array::Array;
    use arrow::row::{RowConverter, SortField};
    use ecg_wire::SamplesDigest;
    use time::macros::{date, datetime};

    use super::*;
    use crate::record::{AlertAck, AlertEscalation, AlertRow};
    use crate::store::Hooked;
    use crate::writer::tests::{config, record, T0};
    use crate::writer::ArchiveWriter;
    use crate::{read_visit_samples, verify, TABLES};

    const DAY2: time::OffsetDateTime = datetime!(2026-11-30 09:00 UTC);

    /// Visits in batches of two: `day1` of them on 2026-11-29 (one with an
    /// alert detected after midnight, filed under the next day), `day2` on
    /// 2026-11-30, and an acknowledgement and an escalation per batch.
    pub(crate) fn archive(day1: usize, day2: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            segment_s: 1,
            ..config(2)
        };
        let mut w = ArchiveWriter::open_local(dir.path(), cfg).unwrap();
        for i in 0..day1 + day2 {
            let at = if i < day1 {
                T0 + time::Duration::minutes(i as i64)
            } else {
                DAY2
            };
            let samples: Vec<Vec<i16>> = (0..2)
                .map(|lead| {
                    (0..1100)
                        .map(|s| ((s * 3 + lead * 7 + i * 11) % 400) as i16 - 200)
                        .collect()
                })
                .collect();
            let mut r = record(&format!("v{i:02}"), at, samples);
            r.visit.samples_sha256 =
                Some(SamplesDigest::of_leads(r.samples.iter().map(Vec::as_slice)).to_string());
            if i == 1 {
                r.alerts.push(AlertRow {
                    alert_id: "a1".into(),
                    centre_id: "c1".into(),
                    territories: vec!["inferior".into()],
                    early: false,
                    escalation_level: 0,
                    acquired_at: at,
                    detected_at: datetime!(2026-11-30 00:00:05 UTC),
                    published_at: datetime!(2026-11-30 00:00:06 UTC),
                    acked_at: None,
                    acked_by: None,
                });
            }
            w.append(r).unwrap();
            if i % 2 == 1 && i < day1 {
                w.append_ack(AlertAck {
                    alert_id: format!("a{i}"),
                    acked_at: at,
                    acked_by: "dr-x".into(),
                    verdict: None,
                });
                w.append_escalation(AlertEscalation {
                    alert_id: format!("a{i}"),
                    centre_id: "c1".into(),
                    escalated_at: at,
                    escalation_level: 1,
                });
                w.flush().unwrap();
            }
        }
        w.flush().unwrap();
        dir
    }

    /// Every row of every table, with its partition, sorted: what a reader
    /// of the whole archive sees, whatever the files.
    pub(crate) fn rows(root: &Path) -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
        rows_of(root, |store, table| store.list(table.name()).unwrap())
    }

    /// As [`rows`], from the files `keys` gives for each table.
    pub(crate) fn rows_of(
        root: &Path,
        keys: impl Fn(&LocalDisk, Table) -> Vec<String>,
    ) -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
        let store = LocalDisk::new(root);
        let mut out = BTreeMap::new();
        for table in TABLES {
            let fields = table
                .schema()
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields).unwrap();
            let mut rows = Vec::new();
            for key in keys(&store, table) {
                let partition = key.split('/').nth(1).unwrap().to_string();
                let (b, _) = read_conformed(&store, &key, table).unwrap();
                for row in converter.convert_columns(b.columns()).unwrap().iter() {
                    rows.push((partition.clone(), row.as_ref().to_vec()));
                }
            }
            rows.sort();
            out.insert(table.name(), rows);
        }
        out
    }

    /// A new archive holding a copy of every file of `template`.
    fn copy_of(template: &Path) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for key in files(template, "") {
            let to = dir.path().join(&key);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(template.join(&key), to).unwrap();
        }
        dir
    }

    pub(crate) fn files(root: &Path, prefix: &str) -> Vec<String> {
        LocalDisk::new(root).list(prefix).unwrap()
    }

    fn sound(root: &Path, visits: usize) {
        let report = verify(&LocalDisk::new(root)).unwrap();
        assert_eq!(report.errors(), 0, "{:#?}", report.findings);
        assert_eq!(report.warnings(), 0, "{:#?}", report.findings);
        assert_eq!(report.visits_matching_digest, visits);
    }

    pub(crate) fn day1() -> CompactConfig {
        CompactConfig::new(date!(2026 - 11 - 30))
    }

    #[test]
    fn a_days_batches_become_one_and_every_row_reads_back_the_same() {
        let dir = archive(6, 3);
        let root = dir.path();
        let before = rows(root);
        let day2_visits = files(root, "visits/date=2026-11-30");
        assert_eq!(files(root, "visits/date=2026-11-29").len(), 3);
        assert_eq!(files(root, "alert_acks/date=2026-11-29").len(), 3);

        let report = compact_local(root, &day1()).unwrap();
        assert!(report.refused.is_empty(), "{:?}", report.refused);
        assert!(report.finished.is_empty());
        let batches = &report.merges[0];
        assert_eq!(
            (batches.table, batches.sources, batches.rows),
            (Table::Visits, 3, 6)
        );
        // visits, waveforms, beats, measurements x 3, plus the alert.
        assert_eq!((batches.files_before, batches.files_after), (13, 5));
        assert!(batches.bytes_after > 0 && batches.bytes_before > 0);
        let acks = report
            .merges
            .iter()
            .find(|m| m.table == Table::AlertAcks)
            .unwrap();
        assert_eq!((acks.sources, acks.rows), (3, 3));

        assert_eq!(rows(root), before, "rows changed");
        let merged = files(root, "visits/date=2026-11-29");
        assert_eq!(merged.len(), 1);
        assert!(merged[0].contains("/compact-20261129-"), "{merged:?}");
        for table in [
            "waveforms",
            "beats",
            "measurements",
            "alert_acks",
            "alert_escalations",
        ] {
            assert_eq!(
                files(root, &format!("{table}/date=2026-11-29")).len(),
                1,
                "{table}"
            );
        }
        // The alert detected after midnight stays under its own date, in
        // the merged batch.
        let alerts = files(root, "alerts");
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0].starts_with("alerts/date=2026-11-30/compact-"),
            "{alerts:?}"
        );
        // The day not yet closed is left alone.
        assert_eq!(files(root, "visits/date=2026-11-30"), day2_visits);
        assert_eq!(
            merged_sources(&LocalDisk::new(root), &merged[0])
                .unwrap()
                .len(),
            3
        );
        sound(root, 9);
        for i in 0..9 {
            assert_eq!(
                read_visit_samples(root, &format!("v{i:02}")).unwrap().len(),
                2
            );
        }
        // The pipeline's writer opens it, and knows every visit.
        let w = ArchiveWriter::open_local(root, config(2)).unwrap();
        assert!((0..9).all(|i| w.is_archived(&format!("v{i:02}"))));

        // Again: nothing to do.
        let again = compact_local(root, &day1()).unwrap();
        assert!(again.merges.is_empty(), "{:?}", again.merges);
        assert_eq!(rows(root), before);
    }

    #[test]
    fn a_late_batch_is_merged_with_the_merged_one_and_limits_split_a_day() {
        let dir = archive(8, 0);
        let root = dir.path();
        let small = CompactConfig {
            max_visits: 4,
            ..day1()
        };
        let report = compact_local(root, &small).unwrap();
        let m = &report.merges[0];
        assert_eq!((m.sources, m.rows), (2, 4));
        assert_eq!(files(root, "visits/date=2026-11-29").len(), 2);
        // A visit arrives late for that day.
        {
            let mut w = ArchiveWriter::open_local(root, config(1)).unwrap();
            w.append(record("late", T0, vec![vec![1, 2, 3]; 2]))
                .unwrap();
            w.flush().unwrap();
        }
        let before = rows(root);
        compact_local(root, &day1()).unwrap();
        assert_eq!(files(root, "visits/date=2026-11-29").len(), 1);
        assert_eq!(rows(root), before);
        let report = verify(&LocalDisk::new(root)).unwrap();
        assert_eq!(report.errors(), 0, "{:#?}", report.findings);
        assert_eq!(report.visits, 9);
    }

    #[test]
    fn a_stop_ends_the_run_between_merges_and_the_next_run_goes_on() {
        let dir = archive(4, 4);
        let root = dir.path();
        let before = rows(root);
        let stop = Arc::new(AtomicBool::new(true));
        let both_days = CompactConfig {
            stop: Some(stop.clone()),
            ..CompactConfig::new(date!(2026 - 12 - 01))
        };
        // Raised before the run: nothing is merged.
        let report = compact_local(root, &both_days).unwrap();
        assert!(report.stopped && report.merges.is_empty(), "{report:?}");
        assert_eq!(files(root, "visits/date=2026-11-29").len(), 2);

        // Raised as the first day's merged batch commits: that merge is
        // finished (its sources retired), the second day is left.
        stop.store(false, Ordering::Relaxed);
        let raise = stop.clone();
        let store = Hooked {
            after_put: Box::new(move |key| {
                if key.starts_with("visits/") && key.contains("/compact-") {
                    raise.store(true, Ordering::Relaxed);
                }
            }),
            ..Hooked::new(root)
        };
        let report = compact(&store, &both_days).unwrap();
        assert!(report.stopped, "{report:?}");
        assert_eq!(report.merges.len(), 1, "{:?}", report.merges);
        assert_eq!(files(root, "visits/date=2026-11-29").len(), 1);
        assert_eq!(files(root, "visits/date=2026-11-30").len(), 2);
        assert_eq!(rows(root), before);
        sound(root, 8);

        let report = compact_local(root, &CompactConfig::new(date!(2026 - 12 - 01))).unwrap();
        assert!(!report.stopped);
        assert_eq!(files(root, "visits/date=2026-11-30").len(), 1);
        assert_eq!(rows(root), before);
        sound(root, 8);
    }

    /// A store that stops (errors on every call) after `left` puts and
    /// deletes, as a killed process stops.
    struct Dying {
        inner: LocalDisk,
        left: AtomicUsize,
    }

    impl Dying {
        fn step(&self) -> Result<(), StoreError> {
            self.left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .map(|_| ())
                .map_err(|_| StoreError::InvalidKey("killed".into()))
        }
        fn alive(&self) -> Result<(), StoreError> {
            if self.left.load(Ordering::SeqCst) == 0 {
                return Err(StoreError::InvalidKey("killed".into()));
            }
            Ok(())
        }
    }

    impl ObjectStore for Dying {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            if self.step().is_err() {
                // What a kill during the write leaves.
                let tmp = format!("{key}{TMP_SUFFIX}");
                let _ = self.inner.put(&tmp, &bytes[..bytes.len() / 2]);
                return Err(StoreError::InvalidKey("killed".into()));
            }
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.alive()?;
            self.inner.get(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.alive()?;
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.step()?;
            self.inner.delete(key)
        }
    }

    #[test]
    fn a_compaction_killed_at_any_step_is_finished_by_the_next_run() {
        let template = archive(6, 1);
        let before = rows(template.path());
        let mut steps = 0;
        loop {
            let dir = copy_of(template.path());
            let root = dir.path();
            let dying = Dying {
                inner: LocalDisk::new(root),
                left: AtomicUsize::new(steps),
            };
            let finished = compact(&dying, &day1()).is_ok_and(|r| r.refused.is_empty());
            // Meanwhile a consistent reader sees every row once: the sources
            // hidden from the merge's commit on, the merge until then.
            let visible = rows_of(root, |store, table| {
                crate::snapshot::visible_files(store, table, None).unwrap()
            });
            assert_eq!(visible, before, "read after a kill at step {steps}");
            if steps == 5 {
                // Committed (four files and the visits file), nothing retired:
                // the check says what happened and what finishes it.
                let check = verify(&LocalDisk::new(root)).unwrap();
                assert_eq!(check.errors(), 6, "{:#?}", check.findings);
                assert!(
                    check
                        .findings
                        .iter()
                        .all(|f| f.problem.contains("compaction cut short")),
                    "{:#?}",
                    check.findings
                );
            }
            if steps % 2 == 1 {
                // The pipeline starting meanwhile deletes its own orphans.
                ArchiveWriter::open_local(root, config(2)).unwrap();
            }
            let rerun = compact_local(root, &day1()).unwrap();
            assert!(
                rerun.refused.is_empty(),
                "step {steps}: {:?}",
                rerun.refused
            );
            assert_eq!(rows(root), before, "rows after a kill at step {steps}");
            sound(root, 7);
            assert_eq!(
                files(root, "visits/date=2026-11-29").len(),
                1,
                "step {steps}"
            );
            assert!(files(root, "").iter().all(|k| !k.ends_with(TMP_SUFFIX)));
            if finished {
                break;
            }
            steps += 1;
        }
        // Writes and deletes of one merge of batches and two of events.
        assert!(steps > 20, "{steps}");
    }

    /// A store whose first read is preceded by a whole compaction, as if
    /// one ran between a reader's listing and its reading; and whether it
    /// ran.
    fn compacted_underfoot(root: &Path) -> (Hooked, Arc<AtomicBool>) {
        let done = Arc::new(AtomicBool::new(false));
        let ran = done.clone();
        let store = Hooked {
            before_get: Box::new(move |inner| {
                if !ran.swap(true, Ordering::SeqCst) {
                    let report = compact(inner, &day1()).unwrap();
                    assert_eq!(report.merges[0].sources, 3);
                }
            }),
            ..Hooked::new(root)
        };
        (store, done)
    }

    #[test]
    fn readers_list_again_when_a_compaction_retires_what_they_listed() {
        let dir = archive(6, 0);
        let root = dir.path();
        let want = read_visit_samples(root, "v03").unwrap();
        let (store, done) = compacted_underfoot(root);
        assert_eq!(
            crate::read_visit_samples_from(&store, "v03", None).unwrap(),
            want
        );
        assert!(done.load(Ordering::SeqCst));

        // The pipeline's writer opening at that moment.
        let dir = archive(6, 0);
        let (store, done) = compacted_underfoot(dir.path());
        let w = ArchiveWriter::open(Arc::new(store), config(2)).unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert!((0..6).all(|i| w.is_archived(&format!("v{i:02}"))));
    }

    #[test]
    fn a_damaged_source_is_left_where_it_is_and_named() {
        let dir = archive(6, 0);
        let root = dir.path();
        let victim = files(root, "waveforms/date=2026-11-29").remove(1);
        let path = root.join(&victim);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

        let report = compact_local(root, &day1()).unwrap();
        assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
        assert_eq!(report.refused[0].file, victim);
        assert_eq!(report.merges[0].sources, 2);
        assert_eq!(files(root, "visits/date=2026-11-29").len(), 2);
        assert!(root.join(&victim).exists());
        let check = verify(&LocalDisk::new(root)).unwrap();
        assert!(
            check.findings.iter().all(|f| f.file == victim),
            "{:#?}",
            check.findings
        );
        assert_eq!(check.visits_matching_digest, 4);
    }

    #[test]
    fn a_damaged_merged_batch_is_named_once_and_its_sources_are_not_guessed() {
        let dir = archive(4, 0);
        let root = dir.path();
        compact_local(root, &day1()).unwrap();
        {
            let mut w = ArchiveWriter::open_local(root, config(1)).unwrap();
            w.append(record("late", T0, vec![vec![1, 2, 3]; 2]))
                .unwrap();
            w.flush().unwrap();
        }
        let merged = files(root, "visits/date=2026-11-29")
            .into_iter()
            .find(|k| k.contains("/compact-"))
            .unwrap();
        std::fs::write(root.join(&merged), b"not parquet").unwrap();
        let listing = files(root, "");
        let report = compact_local(root, &day1()).unwrap();
        assert_eq!(report.refused.len(), 1, "{:#?}", report.refused);
        assert_eq!(report.refused[0].file, merged);
        assert!(report.finished.is_empty(), "{:?}", report.finished);
        assert!(report.merges.iter().all(|m| m.table != Table::Visits));
        // Nothing of the damaged batch, or the late one, was touched.
        let after = files(root, "");
        for key in listing.iter().filter(|k| !k.starts_with("alert_")) {
            assert!(after.contains(key), "{key} is gone");
        }
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let dir = archive(6, 2);
        let root = dir.path();
        let listing = files(root, "");
        let report = compact_local(
            root,
            &CompactConfig {
                dry_run: true,
                ..day1()
            },
        )
        .unwrap();
        let planned: Vec<_> = report
            .merges
            .iter()
            .map(|m| (m.table, m.partition.as_str(), m.sources, m.files_before))
            .collect();
        assert_eq!(
            planned,
            [
                (Table::Visits, "date=2026-11-29", 3, 13),
                (Table::AlertAcks, "date=2026-11-29", 3, 3),
                (Table::AlertEscalations, "date=2026-11-29", 3, 3),
            ]
        );
        let mut after = files(root, "");
        after.retain(|k| k != LOCK_FILE);
        assert_eq!(after, listing);
    }

    #[test]
    fn old_files_lacking_a_later_column_are_merged_with_nulls() {
        use arrow::array::{StringArray, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let dir = archive(2, 0);
        let root = dir.path();
        let store = LocalDisk::new(root);
        // An acknowledgement file from before `verdict` was added.
        let old = Arc::new(Schema::new(vec![
            Field::new("alert_id", DataType::Utf8, false),
            Field::new(
                "acked_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("acked_by", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            old,
            vec![
                Arc::new(StringArray::from(vec!["a-old"])),
                Arc::new(TimestampMicrosecondArray::from(vec![0]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["dr-y"])),
            ],
        )
        .unwrap();
        let bytes = crate::writer::encode(&batch, &config(1)).unwrap();
        store
            .put("alert_acks/date=2026-11-29/w0-acks-old.parquet", &bytes)
            .unwrap();

        compact_local(root, &day1()).unwrap();
        let acks = files(root, "alert_acks");
        assert_eq!(acks.len(), 1, "{acks:?}");
        let (merged, _) = read_conformed(&store, &acks[0], Table::AlertAcks).unwrap();
        assert_eq!(merged.num_rows(), 2);
        let verdicts = merged.column_by_name("verdict").unwrap();
        assert_eq!(verdicts.null_count(), 2);
    }

    #[test]
    fn a_pause_keeps_compactions_out_and_waits_for_one_under_way() {
        let dir = archive(4, 0);
        let root = dir.path();
        let mut waited = false;
        let pause = CompactionPause::acquire(root, || waited = true).unwrap();
        assert!(!waited, "nothing to wait for");
        // Pauses share; a compaction is refused while any is held.
        let second =
            CompactionPause::acquire(root, || panic!("pauses do not wait on pauses")).unwrap();
        let err = compact_local(root, &day1()).unwrap_err();
        assert!(matches!(err, ArchiveError::Busy(_)), "{err}");
        drop((pause, second));

        // A compaction under way (its exclusive hold): the pause says it
        // waits, and is granted only once the compaction lets go.
        let compacting = std::fs::File::open(root.join(LOCK_FILE)).unwrap();
        compacting.lock().unwrap();
        let (waiting_tx, waiting_rx) = std::sync::mpsc::channel();
        let (granted_tx, granted_rx) = std::sync::mpsc::channel();
        let owned = root.to_path_buf();
        let reader = std::thread::spawn(move || {
            let pause = CompactionPause::acquire(&owned, || waiting_tx.send(()).unwrap()).unwrap();
            granted_tx.send(()).unwrap();
            pause
        });
        // A guard against a hang if the pause never says it waits, not a
        // timing: it says so before it blocks.
        waiting_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the pause says it waits for the compaction");
        assert!(
            granted_rx.try_recv().is_err(),
            "granted while the compaction holds the lock"
        );
        drop(compacting);
        granted_rx.recv().unwrap();
        let pause = reader.join().unwrap();
        assert!(matches!(
            compact_local(root, &day1()),
            Err(ArchiveError::Busy(_))
        ));
        drop(pause);
        assert!(!compact_local(root, &day1()).unwrap().merges.is_empty());
    }

    #[test]
    fn one_compaction_at_a_time_and_the_name_is_reserved() {
        let dir = archive(4, 0);
        let root = dir.path();
        let held = std::fs::File::create(root.join(LOCK_FILE)).unwrap();
        held.lock().unwrap();
        let err = compact_local(root, &day1()).unwrap_err();
        assert!(matches!(err, ArchiveError::Busy(_)), "{err}");
        drop(held);
        compact_local(root, &day1()).unwrap();
        let err = ArchiveWriter::open_local(root, WriterConfig::new(WRITER_ID)).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }
}
