//! Reading the archive back: which batches are committed, which visits they
//! hold, and the samples of one visit rebuilt bit for bit.

use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int16Type, UInt32Type, UInt8Type};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::compact::split_key;
use crate::store::{LocalDisk, ObjectStore};
use crate::table::{Table, PARTITION_COLUMN};
use crate::ArchiveError;

/// A committed batch: its `visits` file.
#[derive(Debug, Clone)]
pub(crate) struct BatchFile {
    pub key: String,
    /// `date=YYYY-MM-DD` folder of the batch.
    pub partition: String,
    /// File name without `.parquet`, shared by the batch's files.
    pub stem: String,
}

/// Every committed batch, from the `visits` files.
pub(crate) fn committed_batches(store: &dyn ObjectStore) -> Result<Vec<BatchFile>, ArchiveError> {
    committed_batches_on(store, None)
}

/// The committed batches of one UTC day's partition, or of all days.
fn committed_batches_on(
    store: &dyn ObjectStore,
    day: Option<time::Date>,
) -> Result<Vec<BatchFile>, ArchiveError> {
    let prefix = match day {
        Some(d) => format!("{}/{PARTITION_COLUMN}={d}", Table::Visits.name()),
        None => Table::Visits.name().to_string(),
    };
    let mut out = Vec::new();
    for key in store.list(&prefix)? {
        if let Some((_, partition, stem)) = split_key(&key) {
            out.push(BatchFile {
                partition: partition.to_string(),
                stem: stem.to_string(),
                key,
            });
        }
    }
    Ok(out)
}

/// Reads a whole Parquet object, optionally only the named top-level columns.
pub(crate) fn read_parquet(
    store: &dyn ObjectStore,
    key: &str,
    columns: Option<&[&str]>,
) -> Result<Vec<RecordBatch>, ArchiveError> {
    let bytes = Bytes::from(store.get(key)?);
    // A damaged file is named: the pipeline reads every committed `visits`
    // file when it starts, and "parquet: EOF" alone leaves the operator to
    // guess which of thousands it was.
    let unreadable = |e: parquet::errors::ParquetError| corrupt(key, format!("unreadable: {e}"));
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(unreadable)?;
    if let Some(cols) = columns {
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        for c in cols {
            let (i, _) = schema
                .column_with_name(c)
                .ok_or_else(|| ArchiveError::Corrupt {
                    file: key.to_string(),
                    reason: format!("no column {c}"),
                })?;
            roots.push(i);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(unreadable)?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(key, format!("unreadable: {e}")))
}

fn corrupt(key: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Corrupt {
        file: key.to_string(),
        reason: reason.into(),
    }
}

/// The visit ids of one `visits` file.
pub(crate) fn read_visit_ids(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Vec<String>, ArchiveError> {
    let mut ids = Vec::new();
    for b in read_parquet(store, key, Some(&["visit_id"]))? {
        let col = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| corrupt(key, "visit_id is not utf8"))?;
        ids.extend(col.iter().flatten().map(str::to_string));
    }
    Ok(ids)
}

/// The samples of a visit in an archive on local disk, one vector per lead
/// in the visit's lead order. Reads every day's batches until it finds the
/// visit: a caller that knows when the visit started should say so
/// ([`read_visit_samples_on`]).
pub fn read_visit_samples(root: &Path, visit_id: &str) -> Result<Vec<Vec<i16>>, ArchiveError> {
    read_visit_samples_from(&LocalDisk::new(root), visit_id, None)
}

/// As [`read_visit_samples`], for a visit that started on `day` (the UTC
/// date of its `started_at`, which names its partition): only that day's
/// batches are read. On an archive of small batches (a batch per visit on a
/// quiet day, before compaction) the whole archive is thousands of files
/// and one day a few hundred.
pub fn read_visit_samples_on(
    root: &Path,
    day: time::Date,
    visit_id: &str,
) -> Result<Vec<Vec<i16>>, ArchiveError> {
    read_visit_samples_from(&LocalDisk::new(root), visit_id, Some(day))
}

/// As [`read_visit_samples`], from any store, in one day's partition when
/// `day` is given. Reads only committed batches: the visit's `visits` row
/// says how many leads and samples to expect, and its waveforms are in the
/// file of the same batch.
pub fn read_visit_samples_from(
    store: &dyn ObjectStore,
    visit_id: &str,
    day: Option<time::Date>,
) -> Result<Vec<Vec<i16>>, ArchiveError> {
    // A compaction may retire the visit's batch between the listing and the
    // reading; the visit is then in the merged batch, which a new listing
    // shows.
    let mut attempts = 0;
    loop {
        match read_visit_once(store, visit_id, day) {
            Err(e) if vanished(&e) && attempts < 5 => attempts += 1,
            outcome => return outcome,
        }
    }
}

/// A file listed a moment ago is gone.
pub(crate) fn vanished(e: &ArchiveError) -> bool {
    matches!(e, ArchiveError::Store(crate::store::StoreError::Io { source, .. })
        if source.kind() == std::io::ErrorKind::NotFound)
}

fn read_visit_once(
    store: &dyn ObjectStore,
    visit_id: &str,
    day: Option<time::Date>,
) -> Result<Vec<Vec<i16>>, ArchiveError> {
    let mut found = None;
    'files: for b in committed_batches_on(store, day)? {
        for batch in read_parquet(store, &b.key, Some(&["visit_id", "n_leads", "n_samples"]))? {
            let ids = batch
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt(&b.key, "visit_id is not utf8"))?;
            let n_leads = batch
                .column(1)
                .as_primitive_opt::<UInt8Type>()
                .ok_or_else(|| corrupt(&b.key, "n_leads is not uint8"))?;
            let n_samples = batch
                .column(2)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| corrupt(&b.key, "n_samples is not uint32"))?;
            if let Some(i) = (0..ids.len()).find(|&i| ids.value(i) == visit_id) {
                found = Some((b, n_leads.value(i) as usize, n_samples.value(i) as usize));
                break 'files;
            }
        }
    }
    let (batch_file, n_leads, n_samples) =
        found.ok_or_else(|| ArchiveError::VisitNotFound(visit_id.to_string()))?;
    let key = format!(
        "{}/{}/{}.parquet",
        Table::Waveforms.name(),
        batch_file.partition,
        batch_file.stem
    );
    // Segments per lead as (start_sample, samples).
    let mut segments: LeadSegments = vec![Vec::new(); n_leads];
    let batches = if n_samples == 0 {
        Vec::new()
    } else {
        read_parquet(store, &key, None)?
    };
    for batch in &batches {
        // Only this visit's rows: damage in another's does not stop it.
        let this_visit = |id: &str| id == visit_id;
        for_each_waveform_row(&key, batch, this_visit, |_, lead, start, samples| {
            let slot = segments
                .get_mut(lead)
                .ok_or_else(|| corrupt(&key, format!("lead_index {lead} >= n_leads {n_leads}")))?;
            slot.push((start, samples.to_vec()));
            Ok(())
        })?;
    }
    assemble_leads(segments, n_samples).map_err(|reason| corrupt(&key, reason))
}

/// Calls `row` with each row of a `waveforms` batch whose visit id `keep`
/// accepts: visit id, lead index, start sample and the samples.
pub(crate) fn for_each_waveform_row(
    key: &str,
    batch: &RecordBatch,
    keep: impl Fn(&str) -> bool,
    mut row: impl FnMut(&str, usize, usize, &[i16]) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let column = |name: &str| batch.column_by_name(name);
    let ids = column("visit_id").and_then(|c| c.as_string_opt::<i32>());
    let lead_index = column("lead_index").and_then(|c| c.as_primitive_opt::<UInt8Type>());
    let start = column("start_sample").and_then(|c| c.as_primitive_opt::<UInt32Type>());
    let samples = column("samples").and_then(|c| c.as_list_opt::<i32>());
    let (Some(ids), Some(lead_index), Some(start), Some(samples)) =
        (ids, lead_index, start, samples)
    else {
        return Err(corrupt(key, "unexpected waveform column types"));
    };
    for i in (0..ids.len()).filter(|&i| keep(ids.value(i))) {
        let seg = samples.value(i);
        let seg = seg
            .as_primitive_opt::<Int16Type>()
            .ok_or_else(|| corrupt(key, "samples are not int16"))?;
        if seg.null_count() > 0 {
            return Err(corrupt(key, "null sample"));
        }
        row(
            ids.value(i),
            lead_index.value(i) as usize,
            start.value(i) as usize,
            seg.values(),
        )?;
    }
    Ok(())
}

/// Each lead's rows of one visit, as (start sample, samples).
pub(crate) type LeadSegments = Vec<Vec<(usize, Vec<i16>)>>;

/// Joins each lead's segments, given as (start sample, samples), into the
/// lead: they must follow one another from sample 0 to `n_samples`.
pub(crate) fn assemble_leads(
    segments: LeadSegments,
    n_samples: usize,
) -> Result<Vec<Vec<i16>>, String> {
    let mut leads = Vec::with_capacity(segments.len());
    for (lead, mut segs) in segments.into_iter().enumerate() {
        segs.sort_by_key(|(s, _)| *s);
        let mut out = Vec::with_capacity(n_samples);
        for (s, seg) in segs {
            if s != out.len() {
                return Err(format!(
                    "lead {lead}: segment at {s} after {} samples",
                    out.len()
                ));
            }
            out.extend_from_slice(&seg);
        }
        if out.len() != n_samples {
            return Err(format!(
                "lead {lead}: {} samples, visits row says {n_samples}",
                out.len()
            ));
        }
        leads.push(out);
    }
    Ok(leads)
}
