//! The archive against the truth: every planned visit stored exactly once,
//! its samples rebuilding to the digest the device computed. Reads each
//! committed batch once (a per-visit lookup would rescan the archive for
//! every visit).

use std::collections::HashMap;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int16Type, UInt32Type, UInt8Type};
use ecg_wire::SamplesDigest;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::BenchError;

/// One waveform row: lead index, first sample, samples.
type Segment = (u8, u32, Vec<i16>);

/// What the archive holds compared with the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Planned visits whose samples are in the archive bit for bit.
    pub intact: u64,
    /// Planned visits missing, or stored with other samples.
    pub lost: u64,
    /// Of the lost: present but with samples that differ from the truth.
    pub corrupt: u64,
    /// Extra copies of a visit beyond the first (across batches).
    pub duplicated: u64,
    /// Visits in the archive that were never planned.
    pub unknown: u64,
    /// int16 samples over all leads of the intact visits.
    pub samples: u64,
    /// Size of every file under the archive root.
    pub bytes_on_disk: u64,
}

fn corrupt(file: &Path, what: impl std::fmt::Display) -> BenchError {
    BenchError::Verify(format!("{}: {what}", file.display()))
}

fn read(file: &Path) -> Result<Vec<RecordBatch>, BenchError> {
    let bytes = bytes::Bytes::from(std::fs::read(file).map_err(|e| corrupt(file, e))?);
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| corrupt(file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(file, e))
}

fn column<'a>(b: &'a RecordBatch, file: &Path, name: &str) -> Result<&'a dyn Array, BenchError> {
    b.column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| corrupt(file, format!("no column {name}")))
}

/// Committed Parquet files of one table: `table/date=.../*.parquet`.
fn files(root: &Path, table: &str) -> Result<Vec<std::path::PathBuf>, BenchError> {
    let mut out = Vec::new();
    let dir = root.join(table);
    if !dir.exists() {
        return Ok(out);
    }
    for part in std::fs::read_dir(&dir).map_err(|e| corrupt(&dir, e))? {
        let part = part.map_err(|e| corrupt(&dir, e))?.path();
        if !part.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&part).map_err(|e| corrupt(&part, e))? {
            let f = f.map_err(|e| corrupt(&part, e))?.path();
            if f.extension().is_some_and(|e| e == "parquet") {
                out.push(f);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn du(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Checks the archive under `root` against `truth` (visit id -> digest).
pub fn check(root: &Path, truth: &HashMap<String, SamplesDigest>) -> Result<Verdict, BenchError> {
    let mut v = Verdict {
        bytes_on_disk: du(root),
        ..Verdict::default()
    };
    let mut seen: HashMap<String, u32> = HashMap::new();
    for visits_file in files(root, "visits")? {
        // (n_leads, n_samples) of each visit of this batch seen for the
        // first time.
        let mut fresh: HashMap<String, (usize, usize)> = HashMap::new();
        for b in read(&visits_file)? {
            let ids = column(&b, &visits_file, "visit_id")?
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt(&visits_file, "visit_id is not utf8"))?;
            let n_leads = column(&b, &visits_file, "n_leads")?
                .as_primitive_opt::<UInt8Type>()
                .ok_or_else(|| corrupt(&visits_file, "n_leads is not uint8"))?;
            let n_samples = column(&b, &visits_file, "n_samples")?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| corrupt(&visits_file, "n_samples is not uint32"))?;
            for i in 0..ids.len() {
                let id = ids.value(i).to_string();
                let count = seen.entry(id.clone()).or_insert(0);
                *count += 1;
                if *count > 1 {
                    v.duplicated += 1;
                } else if truth.contains_key(&id) {
                    fresh.insert(id, (n_leads.value(i) as usize, n_samples.value(i) as usize));
                } else {
                    v.unknown += 1;
                }
            }
        }
        if fresh.is_empty() {
            continue;
        }
        // The batch's waveforms share the visits file's partition and name.
        let rel = visits_file
            .strip_prefix(root.join("visits"))
            .map_err(|e| corrupt(&visits_file, e))?;
        let wf_file = root.join("waveforms").join(rel);
        let mut segments: HashMap<&str, Vec<Segment>> = HashMap::new();
        let batches = if wf_file.exists() {
            read(&wf_file)?
        } else {
            Vec::new()
        };
        for b in &batches {
            let ids = column(b, &wf_file, "visit_id")?
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt(&wf_file, "visit_id is not utf8"))?;
            let lead = column(b, &wf_file, "lead_index")?
                .as_primitive_opt::<UInt8Type>()
                .ok_or_else(|| corrupt(&wf_file, "lead_index is not uint8"))?;
            let start = column(b, &wf_file, "start_sample")?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| corrupt(&wf_file, "start_sample is not uint32"))?;
            let samples = column(b, &wf_file, "samples")?
                .as_list_opt::<i32>()
                .ok_or_else(|| corrupt(&wf_file, "samples is not a list"))?;
            for row in 0..ids.len() {
                let Some((id, _)) = fresh.get_key_value(ids.value(row)) else {
                    continue;
                };
                let seg = samples.value(row);
                let seg = seg
                    .as_primitive_opt::<Int16Type>()
                    .ok_or_else(|| corrupt(&wf_file, "samples are not int16"))?;
                segments.entry(id.as_str()).or_default().push((
                    lead.value(row),
                    start.value(row),
                    seg.values().to_vec(),
                ));
            }
        }
        for (id, &(n_leads, n_samples)) in &fresh {
            let mut segs = segments.remove(id.as_str()).unwrap_or_default();
            segs.sort_by_key(|(l, s, _)| (*l, *s));
            let mut leads: Vec<Vec<i16>> = vec![Vec::with_capacity(n_samples); n_leads];
            let mut ok = true;
            for (l, s, seg) in segs {
                match leads.get_mut(l as usize) {
                    Some(out) if out.len() == s as usize => out.extend_from_slice(&seg),
                    _ => ok = false,
                }
            }
            ok &= leads.iter().all(|l| l.len() == n_samples);
            let digest = SamplesDigest::of_leads(leads.iter().map(Vec::as_slice));
            if ok && truth.get(id) == Some(&digest) {
                v.intact += 1;
                v.samples += (n_leads * n_samples) as u64;
            } else {
                v.corrupt += 1;
            }
        }
    }
    v.lost = truth.len() as u64 - v.intact;
    Ok(v)
}
