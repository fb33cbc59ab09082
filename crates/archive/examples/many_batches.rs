//! Writes an archive of N visits as a quiet county's pipeline leaves it:
//! one batch per visit (its 2 s flush age passes before the next visit
//! comes), spread over days; or VISITS_PER_BATCH to a batch, as a busy one
//! does. Then times the writer's reopening (what the pipeline does when it
//! starts: it reads every committed `visits` file) and the reading of the
//! last visit's samples, by its day's partition and by a scan of every day
//! (the dashboard's 12-lead view and export read by the day). For measuring
//! what many small files cost: `cargo run --release -p ecg-archive --example
//! many_batches -- N DIR [PER_DAY] [VISITS_PER_BATCH]`.

use ecg_archive::{
    read_visit_samples, read_visit_samples_on, ArchiveWriter, VisitRecord, VisitRow, WriterConfig,
};
use ecg_wire::SamplesDigest;
use std::time::Instant;

use time::{Duration, OffsetDateTime};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).expect("N");
    let dir = args.next().expect("DIR");
    let per_day: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(156);
    let per_batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let config = WriterConfig {
        max_visits: per_batch,
        ..WriterConfig::new("w1")
    };
    let started = Instant::now();
    let mut w = ArchiveWriter::open_local(&dir, config.clone()).expect("archive opens");
    let t0 = OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(); // 2026-01-01
    let leads: Vec<String> = ecg_wire::Lead::STANDARD_12
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..n {
        // A random walk: compresses about as real ECG does.
        let samples: Vec<Vec<i16>> = (0..12)
            .map(|_| {
                let mut v = 0i16;
                (0..5000)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        v = v.saturating_add((state % 7) as i16 - 3);
                        v
                    })
                    .collect()
            })
            .collect();
        let started_at = t0
            + Duration::days((i / per_day) as i64)
            + Duration::seconds(((i % per_day) * 86_400 / per_day) as i64);
        let visit = VisitRow {
            visit_id: format!("00000000-0000-4000-8000-{i:012}"),
            device_id: format!("dev-{:04}", i % 300),
            clinic_id: format!("clinic-{}", i % 40),
            patient_pseudonym: format!("k1-{i:032x}"),
            sex: "female".into(),
            age_years: Some(60),
            started_at,
            received_at: started_at,
            fs_hz: 500,
            gain_uv_per_lsb: 4.88,
            leads: leads.clone(),
            samples_sha256: Some(
                SamplesDigest::of_leads(samples.iter().map(Vec::as_slice)).to_string(),
            ),
            complete: true,
            status: "no_stemi".into(),
            stemi: false,
            stemi_criteria_met: false,
            territories: vec![],
            heart_rate_bpm: Some(70.0),
            qrs_ms: Some(90.0),
            quality_ok: true,
            quality_issues: vec![],
            mimics: vec![],
            reasons: vec![],
            alert_id: None,
            firmware_version: "1.0.0".into(),
            decided_at: Some(started_at),
        };
        w.append(VisitRecord {
            visit,
            samples,
            beats: vec![],
            measurements: vec![],
            alerts: vec![],
        })
        .expect("visit archived");
    }
    w.flush().expect("flushed");
    drop(w);
    let written_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let w = ArchiveWriter::open_local(&dir, config).expect("archive reopens");
    println!(
        "{n} visits written in {written_s:.1} s; reopened in {:.3} s ({w:?})",
        started.elapsed().as_secs_f64()
    );
    let Some(last) = n.checked_sub(1) else {
        return;
    };
    let id = format!("00000000-0000-4000-8000-{last:012}");
    let day = (t0 + Duration::days((last / per_day) as i64)).date();
    let started = Instant::now();
    let by_day = read_visit_samples_on(dir.as_ref(), day, &id).expect("read by its day");
    let by_day_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let scanned = read_visit_samples(dir.as_ref(), &id).expect("read by a scan");
    let scanned_s = started.elapsed().as_secs_f64();
    assert_eq!(by_day, scanned);
    println!("last visit's samples: {by_day_s:.3} s by its day, {scanned_s:.3} s by a scan");
}
