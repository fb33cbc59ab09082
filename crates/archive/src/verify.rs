//! Checking a whole archive, for the operator after a disk fault, a restore
//! or a copy. The pipeline reads back only the `visit_id`s of what it
//! committed, so a damaged file would otherwise show itself only when an
//! analyst's query or an export trips over it, months later.
//!
//! [`verify`] reads every file whole and holds it to its table's contract,
//! rebuilds every committed visit from its `waveforms` rows and compares the
//! samples with the SHA-256 the device sent (`visits.samples_sha256`),
//! and looks for visits archived twice and rows outside a committed batch.
//! It names the file of every problem and goes on to the next; it never
//! changes the archive. Memory: one batch's files at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema, UInt32Type, UInt8Type};
use bytes::Bytes;
use ecg_wire::SamplesDigest;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::SerializedFileReader;

use crate::compact::{is_merged, CompactionPause};
use crate::reader::{assemble_leads, for_each_waveform_row, LeadSegments};
use crate::store::{LocalDisk, ObjectStore};
use crate::table::{partition_date, Table, PARTITION_COLUMN, TABLES};
use crate::ArchiveError;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Data is damaged, missing or twice: a reader gets a wrong answer or
    /// none.
    Error,
    /// Not damage, but not as the writer leaves a settled archive (a
    /// temporary file, rows of a batch that never committed, an extra
    /// column).
    Warning,
}

/// One problem, in the file where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// Object key under the archive root, e.g. `waveforms/date=2026-11-29/w1-....parquet`.
    pub file: String,
    pub visit_id: Option<String>,
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.file)?;
        if let Some(v) = &self.visit_id {
            write!(f, ": visit {v}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What [`verify`] read and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Parquet files read whole.
    pub files_read: usize,
    /// Rows read, per table name.
    pub rows: BTreeMap<&'static str, u64>,
    /// Committed batches (readable `visits` files).
    pub batches: usize,
    /// Visit rows in committed batches.
    pub visits: usize,
    /// Visits rebuilt from `waveforms` whose samples hash to their
    /// `samples_sha256`.
    pub visits_matching_digest: usize,
    /// Visits rebuilt whole that carry no digest (the device's `end` never
    /// came, or did not match at intake): nothing to compare them with.
    pub visits_without_digest: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    fn error(&mut self, file: &str, visit_id: Option<&str>, problem: impl Into<String>) {
        self.add(Severity::Error, file, visit_id, problem.into());
    }

    fn warning(&mut self, file: &str, problem: impl Into<String>) {
        self.add(Severity::Warning, file, None, problem.into());
    }

    fn add(&mut self, severity: Severity, file: &str, visit_id: Option<&str>, problem: String) {
        self.findings.push(Finding {
            severity,
            file: file.to_string(),
            visit_id: visit_id.map(str::to_string),
            problem,
        });
    }
}

/// A table file where the writer puts them: `table/date=YYYY-MM-DD/stem.parquet`.
#[derive(Debug, Clone)]
struct TableFile {
    key: String,
    partition: String,
    stem: String,
}

/// One visit row of a committed batch, as far as checking its samples goes.
struct VisitEntry {
    visit_id: String,
    n_leads: usize,
    n_samples: usize,
    digest: Option<String>,
}

/// Checks the whole archive in `store`; `Err` only when the store cannot
/// even be listed. Every problem found is in the report.
pub fn verify(store: &dyn ObjectStore) -> Result<Report, ArchiveError> {
    let mut report = Report::default();
    let mut files: HashMap<Table, Vec<TableFile>> = HashMap::new();
    for key in store.list("")? {
        if key == crate::compact::LOCK_FILE {
            continue;
        }
        if let Some((table, file)) = place(&key, &mut report) {
            files.entry(table).or_default().push(file);
        }
    }
    let take =
        |files: &mut HashMap<Table, Vec<TableFile>>, t: Table| files.remove(&t).unwrap_or_default();
    let visits = take(&mut files, Table::Visits);
    let waveforms = take(&mut files, Table::Waveforms);
    let waveform_keys: HashSet<&str> = waveforms.iter().map(|f| f.key.as_str()).collect();
    // Every batch with a `visits` file counts as committed, even if that
    // file is now unreadable: its other files are then not orphans.
    let committed: HashMap<&str, &str> = visits
        .iter()
        .map(|f| (f.stem.as_str(), f.partition.as_str()))
        .collect();

    let mut archived_in: HashMap<String, String> = HashMap::new();
    let mut batch_visits: HashMap<String, HashSet<String>> = HashMap::new();
    for file in &visits {
        if let Some(ids) = check_batch(store, file, &waveform_keys, &mut archived_in, &mut report) {
            batch_visits.insert(file.stem.clone(), ids);
        }
    }
    for file in &waveforms {
        match committed.get(file.stem.as_str()) {
            // Read with its batch.
            Some(&partition) if partition == file.partition => {}
            Some(&partition) => {
                read_whole(store, &file.key, Table::Waveforms, &mut report);
                report.error(
                    &file.key,
                    None,
                    format!("samples of a batch committed under {partition}, filed under another date: its visits are not rebuilt from them"),
                );
            }
            None => {
                read_whole(store, &file.key, Table::Waveforms, &mut report);
                report.warning(&file.key, not_committed(&file.stem));
            }
        }
    }
    for table in [Table::Beats, Table::Measurements, Table::Alerts] {
        for file in take(&mut files, table) {
            let Some(batches) = read_whole(store, &file.key, table, &mut report) else {
                continue;
            };
            if !committed.contains_key(file.stem.as_str()) {
                report.warning(&file.key, not_committed(&file.stem));
                continue;
            }
            // Unknown when the batch's visits file is unreadable (reported).
            let Some(ids) = batch_visits.get(&file.stem) else {
                continue;
            };
            let mut strays = HashSet::new();
            for b in &batches {
                if let Some(col) = b
                    .column_by_name("visit_id")
                    .and_then(|c| c.as_string_opt::<i32>())
                {
                    strays.extend(col.iter().flatten().filter(|v| !ids.contains(*v)));
                }
            }
            let mut strays: Vec<&str> = strays.into_iter().collect();
            strays.sort_unstable();
            for v in strays {
                report.error(
                    &file.key,
                    Some(v),
                    "rows of a visit that its batch's visits file does not hold",
                );
            }
        }
    }
    // Acknowledgements and escalations are committed file by file.
    for table in [Table::AlertAcks, Table::AlertEscalations] {
        for file in take(&mut files, table) {
            read_whole(store, &file.key, table, &mut report);
        }
    }
    Ok(report)
}

/// [`verify`] of an archive on local disk, with compactions kept out until
/// it is done ([`CompactionPause`]; `waiting` is called if one is under
/// way and must finish first). Without the pause, a merge committing during
/// the check (the running pipeline merges closed days every hour) deletes
/// source files the check listed, and each would be reported as an error.
/// Makes the lock file if the archive has none: the one thing it writes.
pub fn verify_local(root: &Path, waiting: impl FnOnce()) -> Result<Report, ArchiveError> {
    let _pause = CompactionPause::acquire(root, waiting)?;
    verify(&LocalDisk::new(root))
}

/// The `.parquet` files of an archive on local disk whose footer cannot be
/// read, found cheaply (each file's footer only, not its data): what a
/// reader's bare "Corrupt footer" was about. [`verify`] reads every file
/// whole and finds damage past the footer too.
pub fn unreadable_footers(root: &Path) -> Result<Vec<Finding>, ArchiveError> {
    let store = LocalDisk::new(root);
    let mut out = Vec::new();
    for key in store.list("")? {
        if !key.ends_with(".parquet") {
            continue;
        }
        let opened = std::fs::File::open(root.join(&key))
            .map_err(|e| e.to_string())
            .and_then(|f| SerializedFileReader::new(f).map_err(|e| e.to_string()));
        if let Err(problem) = opened {
            out.push(Finding {
                severity: Severity::Error,
                file: key,
                visit_id: None,
                problem: format!("not a readable Parquet file: {problem}"),
            });
        }
    }
    Ok(out)
}

/// Why a file of a batch without a `visits` file is there, and who deletes it.
fn not_committed(stem: &str) -> String {
    let who = if is_merged(stem) {
        "the next `ecgtriage archive compact` deletes it"
    } else {
        "the writer that made it deletes it when it next starts"
    };
    format!(
        "not committed: no visits file of the same batch (a crash before the batch's \
         commit; {who}, and until then readers that glob the table's files see its rows)"
    )
}

/// Where a key sits: a table file, or a finding.
fn place(key: &str, report: &mut Report) -> Option<(Table, TableFile)> {
    let parts: Vec<&str> = key.split('/').collect();
    let Some(table) = TABLES.iter().copied().find(|t| t.name() == parts[0]) else {
        report.warning(key, "not part of any table of the archive");
        return None;
    };
    let [_, partition, name] = parts[..] else {
        report.warning(
            key,
            format!(
                "not where a table's files go ({}/{PARTITION_COLUMN}=YYYY-MM-DD/NAME.parquet)",
                table.name()
            ),
        );
        return None;
    };
    let Some(stem) = name.strip_suffix(".parquet") else {
        report.warning(
            key,
            "temporary file: a write under way, or left by a crash (its writer deletes \
             it when it next starts); readers do not see it",
        );
        return None;
    };
    if partition_date(partition).is_none() {
        report.error(
            key,
            None,
            format!("partition folder {partition:?} is not {PARTITION_COLUMN}=YYYY-MM-DD: readers cannot date its rows"),
        );
        return None;
    }
    Some((
        table,
        TableFile {
            key: key.to_string(),
            partition: partition.to_string(),
            stem: stem.to_string(),
        },
    ))
}

/// Reads a file whole and checks it against its table's columns. `None`
/// when it cannot be read, or its columns are not the contract's (the
/// finding says which).
fn read_whole(
    store: &dyn ObjectStore,
    key: &str,
    table: Table,
    report: &mut Report,
) -> Option<Vec<RecordBatch>> {
    let bytes = match store.get(key) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            report.error(key, None, format!("cannot be read: {e}"));
            return None;
        }
    };
    let read = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|builder| {
        let schema = builder.schema().clone();
        let batches = builder.build()?.collect::<Result<Vec<_>, _>>()?;
        Ok((schema, batches))
    });
    let (schema, batches) = match read {
        Ok(read) => read,
        Err(e) => {
            report.error(key, None, format!("not a readable Parquet file: {e}"));
            return None;
        }
    };
    report.files_read += 1;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    *report.rows.entry(table.name()).or_default() += rows as u64;
    let problems = column_problems(&schema, &table.schema());
    let mut fits = true;
    for (severity, problem) in problems {
        fits &= severity != Severity::Error;
        report.add(severity, key, None, problem);
    }
    if !fits {
        return None;
    }
    for field in table.schema().fields().iter().filter(|f| !f.is_nullable()) {
        let nulls: usize = batches
            .iter()
            .filter_map(|b| b.column_by_name(field.name()))
            .map(|c| c.null_count())
            .sum();
        if nulls > 0 {
            report.error(
                key,
                None,
                format!(
                    "{nulls} null values in column {}, which has none by contract",
                    field.name()
                ),
            );
            fits = false;
        }
    }
    fits.then_some(batches)
}

/// Differences between a file's columns and its table's contract.
fn column_problems(found: &Schema, contract: &Schema) -> Vec<(Severity, String)> {
    let mut out = Vec::new();
    for want in contract.fields() {
        match found.field_with_name(want.name()) {
            Err(_) => out.push((Severity::Error, format!("no column {}", want.name()))),
            Ok(have) if !same_type(have.data_type(), want.data_type()) => out.push((
                Severity::Error,
                format!(
                    "column {} is {}, the contract says {}",
                    want.name(),
                    have.data_type(),
                    want.data_type()
                ),
            )),
            Ok(_) => {}
        }
    }
    for have in found.fields() {
        if contract.field_with_name(have.name()).is_err() {
            out.push((
                Severity::Warning,
                format!("column {} is not in the contract", have.name()),
            ));
        }
    }
    out
}

/// Type equality that ignores what a list calls its items (`item`,
/// `element`) and their nullability: other Parquet writers name them
/// otherwise, with the same values.
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y)) => same_type(x.data_type(), y.data_type()),
        _ => a == b,
    }
}

/// Checks one committed batch: its visit rows, then its samples. Returns
/// the batch's visit ids, or `None` if its visits file is unreadable.
fn check_batch(
    store: &dyn ObjectStore,
    file: &TableFile,
    waveform_keys: &HashSet<&str>,
    archived_in: &mut HashMap<String, String>,
    report: &mut Report,
) -> Option<HashSet<String>> {
    let batches = read_whole(store, &file.key, Table::Visits, report)?;
    report.batches += 1;
    let mut entries = Vec::new();
    for b in &batches {
        entries.extend(visit_entries(b));
    }
    report.visits += entries.len();
    for e in &entries {
        if let Some(first) = archived_in.insert(e.visit_id.clone(), file.key.clone()) {
            let merged = |key: &str| key.rsplit('/').next().is_some_and(is_merged);
            let why = if merged(&first) || merged(&file.key) {
                ": a compaction cut short before it retired its sources \
                 (`ecgtriage archive compact` finishes it)"
            } else {
                ""
            };
            report.error(
                &file.key,
                Some(&e.visit_id),
                format!("archived twice: also in {first}{why}"),
            );
        }
    }
    let ids: HashSet<String> = entries.iter().map(|e| e.visit_id.clone()).collect();
    check_samples(store, file, &entries, waveform_keys, report);
    Some(ids)
}

/// The visit rows of a `visits` batch whose columns were checked.
fn visit_entries(b: &RecordBatch) -> Vec<VisitEntry> {
    let ids = b
        .column_by_name("visit_id")
        .and_then(|c| c.as_string_opt::<i32>());
    let leads = b
        .column_by_name("n_leads")
        .and_then(|c| c.as_primitive_opt::<UInt8Type>());
    let samples = b
        .column_by_name("n_samples")
        .and_then(|c| c.as_primitive_opt::<UInt32Type>());
    let digests = b
        .column_by_name("samples_sha256")
        .and_then(|c| c.as_string_opt::<i32>());
    let (Some(ids), Some(leads), Some(samples), Some(digests)) = (ids, leads, samples, digests)
    else {
        return Vec::new();
    };
    (0..b.num_rows())
        .map(|i| VisitEntry {
            visit_id: ids.value(i).to_string(),
            n_leads: usize::from(leads.value(i)),
            n_samples: samples.value(i) as usize,
            digest: digests.is_valid(i).then(|| digests.value(i).to_string()),
        })
        .collect()
}

/// Rebuilds every visit of a batch from the batch's `waveforms` file and
/// compares it with its digest.
fn check_samples(
    store: &dyn ObjectStore,
    file: &TableFile,
    entries: &[VisitEntry],
    waveform_keys: &HashSet<&str>,
    report: &mut Report,
) {
    let key = format!(
        "{}/{}/{}.parquet",
        Table::Waveforms.name(),
        file.partition,
        file.stem
    );
    let with_samples = entries
        .iter()
        .filter(|e| e.n_samples > 0 && e.n_leads > 0)
        .count();
    if !waveform_keys.contains(key.as_str()) {
        if with_samples > 0 {
            report.error(
                &file.key,
                None,
                format!("the batch's waveforms file {key} is missing: the samples of {with_samples} visits are gone"),
            );
        }
        return;
    }
    let Some(batches) = read_whole(store, &key, Table::Waveforms, report) else {
        return;
    };
    let mut segments: HashMap<&str, LeadSegments> = entries
        .iter()
        .map(|e| (e.visit_id.as_str(), vec![Vec::new(); e.n_leads]))
        .collect();
    let mut bad: BTreeMap<String, String> = BTreeMap::new();
    for b in &batches {
        let outcome = for_each_waveform_row(
            &key,
            b,
            |_| true,
            |id, lead, start, samples| {
                match segments.get_mut(id).map(|leads| leads.get_mut(lead)) {
                    Some(Some(slot)) => slot.push((start, samples.to_vec())),
                    Some(None) => {
                        bad.entry(id.to_string()).or_insert_with(|| {
                            format!("a row of lead_index {lead}, beyond the visit's leads")
                        });
                    }
                    None => {
                        bad.entry(id.to_string()).or_insert_with(|| {
                            "rows of a visit that its batch's visits file does not hold".into()
                        });
                    }
                }
                Ok(())
            },
        );
        if let Err(e) = outcome {
            report.error(&key, None, e.to_string());
            return;
        }
    }
    for e in entries {
        let segs = segments.remove(e.visit_id.as_str()).unwrap_or_default();
        if let Some(problem) = bad.remove(&e.visit_id) {
            report.error(&key, Some(&e.visit_id), problem);
            continue;
        }
        match assemble_leads(segs, e.n_samples) {
            Err(problem) => report.error(&key, Some(&e.visit_id), problem),
            Ok(leads) => match &e.digest {
                None => report.visits_without_digest += 1,
                Some(stored) => {
                    let computed =
                        SamplesDigest::of_leads(leads.iter().map(Vec::as_slice)).to_string();
                    if &computed == stored {
                        report.visits_matching_digest += 1;
                    } else {
                        report.error(
                            &key,
                            Some(&e.visit_id),
                            format!("the samples hash to {computed}, not to the visit's samples_sha256 {stored}"),
                        );
                    }
                }
            },
        }
    }
    for (visit_id, problem) in bad {
        report.error(&key, Some(&visit_id), problem);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int16Array, ListArray};

    use super::*;
    use crate::writer::tests::{config, record, T0};
    use crate::writer::{encode, ArchiveWriter, WriterConfig};

    fn test_config() -> WriterConfig {
        // Two visits per batch, a row per second of a lead.
        WriterConfig {
            segment_s: 1,
            ..config(2)
        }
    }

    /// An archive of `n` visits of 2 leads x 1,200 samples at 500 Hz, each
    /// with its digest, in batches of two.
    fn archive(n: usize) -> (tempfile::TempDir, LocalDisk) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ArchiveWriter::open_local(dir.path(), test_config()).unwrap();
        for i in 0..n {
            let samples: Vec<Vec<i16>> = (0..2)
                .map(|lead| {
                    (0..1200)
                        .map(|s| ((s * 7 + lead * 13 + i * 31) % 500) as i16 - 250)
                        .collect()
                })
                .collect();
            let mut r = record(&format!("v{i}"), T0, samples);
            r.visit.samples_sha256 =
                Some(SamplesDigest::of_leads(r.samples.iter().map(Vec::as_slice)).to_string());
            w.append(r).unwrap();
        }
        w.flush().unwrap();
        let store = LocalDisk::new(dir.path());
        (dir, store)
    }

    fn keys(store: &LocalDisk, table: Table) -> Vec<String> {
        store.list(table.name()).unwrap()
    }

    fn errors(report: &Report) -> Vec<&Finding> {
        report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect()
    }

    #[test]
    fn a_sound_archive_verifies_clean() {
        let (_dir, store) = archive(4);
        let report = verify(&store).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.batches, 2);
        assert_eq!(report.visits, 4);
        assert_eq!(report.visits_matching_digest, 4);
        assert_eq!(report.visits_without_digest, 0);
        // 4 visits x 2 leads x 3 one-second rows.
        assert_eq!(report.rows["waveforms"], 24);
        assert_eq!(report.rows["visits"], 4);
        // visits, waveforms, beats, measurements of each batch.
        assert_eq!(report.files_read, 8);
    }

    #[test]
    fn a_changed_sample_in_a_readable_file_is_caught_by_the_digest() {
        let (_dir, store) = archive(4);
        let key = keys(&store, Table::Waveforms).remove(0);
        let mut batches = crate::reader::read_parquet(&store, &key, None).unwrap();
        assert_eq!(batches.len(), 1);
        let batch = batches.remove(0);
        let (i, _) = batch.schema().column_with_name("samples").unwrap();
        let list = batch.column(i).as_list::<i32>();
        let mut values = list
            .values()
            .as_primitive::<arrow::datatypes::Int16Type>()
            .values()
            .to_vec();
        values[700] = values[700].wrapping_add(1);
        let changed = ListArray::new(
            match batch.schema().field(i).data_type() {
                DataType::List(item) => item.clone(),
                other => panic!("samples are {other}"),
            },
            list.offsets().clone(),
            Arc::new(Int16Array::from(values)),
            None,
        );
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[i] = Arc::new(changed);
        let batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        store
            .put(&key, &encode(&batch, &test_config()).unwrap())
            .unwrap();

        let report = verify(&store).unwrap();
        let errors = errors(&report);
        assert_eq!(errors.len(), 1, "{:?}", report.findings);
        assert_eq!(errors[0].file, key);
        assert!(errors[0].visit_id.is_some());
        assert!(
            errors[0].problem.contains("samples_sha256"),
            "{}",
            errors[0]
        );
        // The other visit of that batch and the other batch still match.
        assert_eq!(report.visits_matching_digest, 3);
    }

    #[test]
    fn damaged_files_are_named_and_the_rest_is_still_checked() {
        let (_dir, store) = archive(4);
        let waveforms = keys(&store, Table::Waveforms).remove(0);
        let bytes = store.get(&waveforms).unwrap();
        store.put(&waveforms, &bytes[..bytes.len() / 2]).unwrap();
        let beats = keys(&store, Table::Beats).remove(1);
        store.put(&beats, b"not parquet at all").unwrap();

        let report = verify(&store).unwrap();
        let mut named: Vec<&str> = errors(&report).iter().map(|f| f.file.as_str()).collect();
        named.sort_unstable();
        let mut want = vec![waveforms.as_str(), beats.as_str()];
        want.sort_unstable();
        assert_eq!(named, want, "{:?}", report.findings);
        assert!(errors(&report)
            .iter()
            .all(|f| f.problem.starts_with("not a readable Parquet file")));
        assert_eq!(report.visits, 4);
        assert_eq!(report.visits_matching_digest, 2);
    }

    #[test]
    fn a_damaged_footer_is_found_from_footers_alone() {
        let (dir, store) = archive(4);
        assert!(unreadable_footers(dir.path()).unwrap().is_empty());
        let beats = keys(&store, Table::Beats).remove(1);
        let bytes = store.get(&beats).unwrap();
        store.put(&beats, &bytes[..bytes.len() - 3]).unwrap();
        let found = unreadable_footers(dir.path()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file, beats);
    }

    #[test]
    fn the_writer_names_a_damaged_visits_file_when_it_opens() {
        let (dir, store) = archive(2);
        let visits = keys(&store, Table::Visits).remove(0);
        let bytes = store.get(&visits).unwrap();
        store.put(&visits, &bytes[..bytes.len() - 9]).unwrap();
        let err = ArchiveWriter::open_local(dir.path(), test_config()).unwrap_err();
        assert!(err.to_string().contains(&visits), "{err}");
    }

    #[test]
    fn a_visit_archived_twice_and_a_missing_waveforms_file_are_errors() {
        let (_dir, store) = archive(4);
        let visits = keys(&store, Table::Visits);
        // The first batch again, whole, under another name.
        let copy = visits[0].replace("w1-", "w2-");
        store.put(&copy, &store.get(&visits[0]).unwrap()).unwrap();
        let waveforms = keys(&store, Table::Waveforms);
        let wcopy = waveforms
            .iter()
            .find(|k| k.ends_with(visits[0].rsplit('/').next().unwrap()))
            .unwrap();
        store
            .put(&wcopy.replace("w1-", "w2-"), &store.get(wcopy).unwrap())
            .unwrap();
        // The second batch's samples gone.
        let second = visits[1].replace("visits/", "waveforms/");
        store.delete(&second).unwrap();

        let report = verify(&store).unwrap();
        let errors = errors(&report);
        let twice: Vec<_> = errors
            .iter()
            .filter(|f| f.problem.starts_with("archived twice"))
            .collect();
        assert_eq!(twice.len(), 2, "{:?}", report.findings);
        let missing: Vec<_> = errors
            .iter()
            .filter(|f| f.problem.contains("is missing"))
            .collect();
        assert_eq!(missing.len(), 1, "{:?}", report.findings);
        assert_eq!(missing[0].file, visits[1]);
        assert_eq!(errors.len(), 3, "{:?}", report.findings);
    }

    #[test]
    fn leftovers_are_warnings_and_a_foreign_file_is_held_to_the_contract() {
        let (_dir, store) = archive(2);
        let beats = keys(&store, Table::Beats).remove(0);
        let bytes = store.get(&beats).unwrap();
        // Rows of a batch that never committed, a temporary file, and a
        // beats file where a visits file should be.
        store.put(&beats.replace("w1-", "w9-"), &bytes).unwrap();
        store.put(&format!("{beats}.tmp"), &bytes).unwrap();
        let (table_dir, rest) = beats.split_once('/').unwrap();
        assert_eq!(table_dir, "beats");
        let foreign = format!("visits/{}", rest.replace("w1-", "w8-"));
        store.put(&foreign, &bytes).unwrap();
        store.put("visits/2026-11-29/x.parquet", &bytes).unwrap();
        // A committed batch's samples under another date.
        let waveforms = keys(&store, Table::Waveforms).remove(0);
        let misfiled = waveforms.replace("date=2026-11-29", "date=2026-11-30");
        assert_ne!(misfiled, waveforms);
        store
            .put(&misfiled, &store.get(&waveforms).unwrap())
            .unwrap();

        let report = verify(&store).unwrap();
        let warnings: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .collect();
        let warned: HashSet<&str> = warnings.iter().map(|f| f.file.as_str()).collect();
        assert!(
            warned.contains(beats.replace("w1-", "w9-").as_str()),
            "{:?}",
            report.findings
        );
        assert!(warned.contains(format!("{beats}.tmp").as_str()));
        let errors = errors(&report);
        assert!(
            errors
                .iter()
                .any(|f| f.file == foreign && f.problem == "no column device_id"),
            "{:?}",
            report.findings
        );
        assert!(errors
            .iter()
            .any(|f| f.file == "visits/2026-11-29/x.parquet"
                && f.problem.contains("partition folder")));
        assert!(errors
            .iter()
            .any(|f| f.file == misfiled && f.problem.contains("another date")));
        // The committed batch is unaffected.
        assert_eq!(report.visits_matching_digest, 2);
        assert_eq!(report.batches, 1);
    }
}
