//! Reading the archive back: which batches are committed, which visits they
//! hold, and the samples of one visit rebuilt bit for bit.

use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int16Type, UInt32Type, UInt8Type};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::store::{LocalDisk, ObjectStore};
use crate::table::Table;
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
    let mut out = Vec::new();
    for key in store.list(Table::Visits.name())? {
        let mut parts = key.split('/');
        let (Some(_), Some(partition), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".parquet") {
            out.push(BatchFile {
                key: key.clone(),
                partition: partition.to_string(),
                stem: stem.to_string(),
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
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
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
    let reader = builder.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
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
/// in the visit's lead order.
pub fn read_visit_samples(root: &Path, visit_id: &str) -> Result<Vec<Vec<i16>>, ArchiveError> {
    read_visit_samples_from(&LocalDisk::new(root), visit_id)
}

/// As [`read_visit_samples`], from any store. Reads only committed batches:
/// the visit's `visits` row says how many leads and samples to expect, and
/// its waveforms are in the file of the same batch.
pub fn read_visit_samples_from(
    store: &dyn ObjectStore,
    visit_id: &str,
) -> Result<Vec<Vec<i16>>, ArchiveError> {
    let mut found = None;
    'files: for b in committed_batches(store)? {
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
    let mut segments: Vec<Vec<(usize, Vec<i16>)>> = vec![Vec::new(); n_leads];
    let batches = if n_samples == 0 {
        Vec::new()
    } else {
        read_parquet(store, &key, None)?
    };
    for batch in &batches {
        let ids = batch.column(0).as_string_opt::<i32>();
        let lead_index = batch.column(1).as_primitive_opt::<UInt8Type>();
        let start = batch.column(3).as_primitive_opt::<UInt32Type>();
        let samples = batch.column(4).as_list_opt::<i32>();
        let (Some(ids), Some(lead_index), Some(start), Some(samples)) =
            (ids, lead_index, start, samples)
        else {
            return Err(corrupt(&key, "unexpected waveform column types"));
        };
        for row in (0..ids.len()).filter(|&i| ids.value(i) == visit_id) {
            let lead = lead_index.value(row) as usize;
            let seg = samples.value(row);
            let seg = seg
                .as_primitive_opt::<Int16Type>()
                .ok_or_else(|| corrupt(&key, "samples are not int16"))?;
            if seg.null_count() > 0 {
                return Err(corrupt(&key, "null sample"));
            }
            let slot = segments
                .get_mut(lead)
                .ok_or_else(|| corrupt(&key, format!("lead_index {lead} >= n_leads {n_leads}")))?;
            slot.push((start.value(row) as usize, seg.values().to_vec()));
        }
    }
    let mut leads = Vec::with_capacity(n_leads);
    for (lead, mut segs) in segments.into_iter().enumerate() {
        segs.sort_by_key(|(s, _)| *s);
        let mut out = Vec::with_capacity(n_samples);
        for (s, seg) in segs {
            if s != out.len() {
                return Err(corrupt(
                    &key,
                    format!("lead {lead}: segment at {s} after {} samples", out.len()),
                ));
            }
            out.extend_from_slice(&seg);
        }
        if out.len() != n_samples {
            return Err(corrupt(
                &key,
                format!(
                    "lead {lead}: {} samples, visits row says {n_samples}",
                    out.len()
                ),
            ));
        }
        leads.push(out);
    }
    Ok(leads)
}
