//! Reading the archive's `visits` files directly with parquet (the
//! dashboard answers a clinic-and-date search by reading one partition per
//! day; no SQL engine needed for that).

use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType, UInt32Type};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::Serialize;
use time::{Date, OffsetDateTime};

use ecg_archive::Table;

use crate::ecg_svg::Tracing;

/// Why the archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("archive: {0}")]
    Archive(#[from] ecg_archive::ArchiveError),
}

/// One archived visit as the search lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VisitHit {
    pub visit_id: String,
    pub device_id: String,
    pub clinic_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub status: String,
    pub stemi: bool,
    pub alert_id: Option<String>,
    pub heart_rate_bpm: Option<f64>,
    pub fs_hz: u32,
    pub gain_uv_per_lsb: f64,
    pub leads: Vec<String>,
}

const COLUMNS: [&str; 11] = [
    "visit_id",
    "device_id",
    "clinic_id",
    "started_at",
    "status",
    "stemi",
    "alert_id",
    "heart_rate_bpm",
    "fs_hz",
    "gain_uv_per_lsb",
    "leads",
];

fn format_err(path: &Path, reason: impl Into<String>) -> ReadError {
    ReadError::Format {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read_file(path: &Path) -> Result<Vec<RecordBatch>, ReadError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .map_err(|e| format_err(path, e.to_string()))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::new();
    for c in COLUMNS {
        let (i, _) = schema
            .column_with_name(c)
            .ok_or_else(|| format_err(path, format!("no column {c}")))?;
        roots.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| format_err(path, e.to_string()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(path, e.to_string()))
}

fn hits(path: &Path, b: &RecordBatch) -> Result<Vec<VisitHit>, ReadError> {
    let col = |name: &str| {
        b.column_by_name(name)
            .ok_or_else(|| format_err(path, format!("no column {name}")))
    };
    let bad = |name: &str| format_err(path, format!("unexpected type of {name}"));
    let s = |name: &'static str| -> Result<_, ReadError> {
        col(name)?.as_string_opt::<i32>().ok_or_else(|| bad(name))
    };
    let visit_id = s("visit_id")?;
    let device_id = s("device_id")?;
    let clinic_id = s("clinic_id")?;
    let status = s("status")?;
    let alert_id = s("alert_id")?;
    let started = col("started_at")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| bad("started_at"))?;
    let stemi = col("stemi")?.as_boolean_opt().ok_or_else(|| bad("stemi"))?;
    let hr = col("heart_rate_bpm")?
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| bad("heart_rate_bpm"))?;
    let fs = col("fs_hz")?
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| bad("fs_hz"))?;
    let gain = col("gain_uv_per_lsb")?
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| bad("gain_uv_per_lsb"))?;
    let leads = col("leads")?
        .as_list_opt::<i32>()
        .ok_or_else(|| bad("leads"))?;
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let started_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(started.value(i)) * 1000)
                .map_err(|e| format_err(path, e.to_string()))?;
        let l = leads.value(i);
        let l = l.as_string_opt::<i32>().ok_or_else(|| bad("leads"))?;
        out.push(VisitHit {
            visit_id: visit_id.value(i).to_owned(),
            device_id: device_id.value(i).to_owned(),
            clinic_id: clinic_id.value(i).to_owned(),
            started_at,
            status: status.value(i).to_owned(),
            stemi: stemi.value(i),
            alert_id: (!alert_id.is_null(i)).then(|| alert_id.value(i).to_owned()),
            heart_rate_bpm: (!hr.is_null(i)).then(|| hr.value(i)),
            fs_hz: fs.value(i),
            gain_uv_per_lsb: gain.value(i),
            leads: l.iter().flatten().map(str::to_owned).collect(),
        });
    }
    Ok(out)
}

/// The visits of one UTC day, optionally of one clinic, in time order.
/// Only committed batches are read, and a batch a compaction merged only
/// once ([`ecg_archive::snapshot`]).
pub fn visits_on(
    archive: &Path,
    date: Date,
    clinic: Option<&str>,
) -> Result<Vec<VisitHit>, ReadError> {
    let mut attempts = 0;
    loop {
        match visits_once(archive, date, clinic) {
            // A compaction retired a file between the listing and its
            // reading; a new listing shows the merged batch instead.
            Err(ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < 5 =>
            {
                attempts += 1;
            }
            outcome => return outcome,
        }
    }
}

fn visits_once(
    archive: &Path,
    date: Date,
    clinic: Option<&str>,
) -> Result<Vec<VisitHit>, ReadError> {
    let store = ecg_archive::LocalDisk::new(archive);
    let partition = format!("date={date}");
    let keys = ecg_archive::snapshot::visible_files(&store, Table::Visits, Some(&partition))?;
    let mut out = Vec::new();
    for key in keys {
        let path = archive.join(key);
        for b in read_file(&path)? {
            out.extend(
                hits(&path, &b)?
                    .into_iter()
                    .filter(|h| clinic.is_none_or(|c| h.clinic_id == c)),
            );
        }
    }
    out.sort_by(|a, b| (a.started_at, &a.visit_id).cmp(&(b.started_at, &b.visit_id)));
    Ok(out)
}

/// A visit's samples from the archive, when the dashboard did not see it
/// pass (e.g. after a restart). `started_at` picks the partition.
pub fn tracing_of(
    archive: &Path,
    visit_id: &str,
    started_at: OffsetDateTime,
) -> Result<Option<Tracing>, ReadError> {
    let date = started_at.to_offset(time::UtcOffset::UTC).date();
    let Some(hit) = visits_on(archive, date, None)?
        .into_iter()
        .find(|h| h.visit_id == visit_id)
    else {
        return Ok(None);
    };
    let samples = ecg_archive::read_visit_samples_on(archive, date, visit_id)?;
    Ok(Some(Tracing {
        fs_hz: hit.fs_hz,
        gain_uv_per_lsb: hit.gain_uv_per_lsb,
        leads: hit.leads,
        samples,
    }))
}
