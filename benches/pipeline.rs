//! Criterion benchmarks of the pipeline's hot paths on one synthetic visit
//! as the fleet sends it (12 leads, 500 Hz, 10 s, 1 s chunks), each in
//! int16 samples per second over all leads (Throughput::Elements):
//! chunk decode, filters, QRS detector, delineation with ST measurement,
//! the whole per-visit analysis, and Parquet encoding of the archive.
//!
//! Baseline in the same run: a copy of the visit's samples (the memory
//! floor no stage can beat).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ecg_archive::store::StoreError;
use ecg_archive::time::OffsetDateTime;
use ecg_archive::{ArchiveWriter, ObjectStore, VisitRecord, VisitRow, WriterConfig};
use ecg_pipeline::analysis::VisitAnalysis;
use ecg_signal::filter::{DetectionBandpass, DiagnosticFilter, Mains};
use ecg_signal::{Beat, QrsDetector};
use ecg_triage::{LeadSignal, Patient};
use ecg_wire::{Chunk, ClinicId, DeviceId, LeadSet, PatientPseudonym, Sex, VisitId, VisitMeta};
use firmware_sim::synth::{self, VisitSpec};

const FS_HZ: u32 = 500;

/// One STEMI visit, so that delineation and measurement do their full work.
fn visit() -> synth::SyntheticVisit {
    let spec = VisitSpec {
        condition: synth::Condition::Stemi(synth::StemiLocation::Anterior),
        ..VisitSpec::default()
    };
    synth::generate(&spec, 7).expect("synthetic visit")
}

fn to_mv(v: &synth::SyntheticVisit) -> Vec<Vec<f32>> {
    let g = v.uv_per_lsb / 1000.0;
    v.samples
        .iter()
        .map(|l| l.iter().map(|&s| f32::from(s) * g).collect())
        .collect()
}

/// Keeps objects in memory: Parquet encoding without the disk's fsync.
#[derive(Default)]
struct MemStore(Mutex<HashMap<String, Vec<u8>>>);

impl ObjectStore for MemStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(key.into(), bytes.to_vec());
        Ok(())
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.0.lock().unwrap().get(key).cloned().unwrap_or_default())
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.sort();
        Ok(keys)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

fn record(i: u32, samples: &[Vec<i16>]) -> VisitRecord {
    let now = OffsetDateTime::now_utc();
    VisitRecord {
        visit: VisitRow {
            visit_id: format!("00000000-0000-4000-8000-{i:012}"),
            device_id: "dev-0001".into(),
            clinic_id: "clinic-001".into(),
            patient_pseudonym: "k1-0123456789abcdef0123456789abcdef".into(),
            sex: "male".into(),
            age_years: Some(60),
            started_at: now,
            received_at: now,
            fs_hz: FS_HZ,
            gain_uv_per_lsb: 1.0,
            leads: LeadSet::STANDARD_12
                .iter()
                .map(|l| l.name().to_string())
                .collect(),
            samples_sha256: None,
            complete: true,
            status: "no_stemi".into(),
            stemi: false,
            stemi_criteria_met: false,
            territories: Vec::new(),
            heart_rate_bpm: Some(70.0),
            qrs_ms: Some(90.0),
            quality_ok: true,
            quality_issues: Vec::new(),
            mimics: Vec::new(),
            reasons: Vec::new(),
            alert_id: None,
            firmware_version: "bench".into(),
            decided_at: Some(now),
        },
        samples: samples.to_vec(),
        beats: Vec::new(),
        measurements: Vec::new(),
        alerts: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let v = visit();
    let n = v.samples[0].len();
    let n_leads = v.samples.len();
    let total = (n * n_leads) as u64;
    let mv = to_mv(&v);
    let views: Vec<&[f32]> = mv.iter().map(Vec::as_slice).collect();
    let fs = f64::from(FS_HZ);

    let mut g = c.benchmark_group("pipeline_12lead_10s");
    g.throughput(Throughput::Elements(total));

    g.bench_function("baseline_copy", |b| b.iter(|| v.samples.clone()));

    // The wire: ten 1 s chunks of 12 leads.
    let visit_id = VisitId::from_bytes([7; 16]).unwrap();
    let wire: Vec<Vec<u8>> = (0..n / FS_HZ as usize)
        .map(|k| {
            let from = k * FS_HZ as usize;
            let mut payload = Vec::with_capacity(n_leads * FS_HZ as usize);
            for row in &v.samples {
                payload.extend_from_slice(&row[from..from + FS_HZ as usize]);
            }
            Chunk::new(
                visit_id,
                k as u32,
                from as u32,
                LeadSet::STANDARD_12,
                payload,
            )
            .unwrap()
            .to_bytes()
        })
        .collect();
    g.bench_function("chunk_decode", |b| {
        b.iter(|| {
            wire.iter()
                .map(|w| Chunk::decode(w).unwrap().samples().len())
                .sum::<usize>()
        })
    });

    g.bench_function("detection_bandpass", |b| {
        b.iter(|| {
            mv.iter()
                .map(|l| {
                    let mut x = l.clone();
                    DetectionBandpass::new(fs).unwrap().process(&mut x);
                    x
                })
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("diagnostic_filter", |b| {
        b.iter(|| {
            mv.iter()
                .map(|l| {
                    let mut x = l.clone();
                    DiagnosticFilter::new(fs, Some(Mains::Hz50))
                        .unwrap()
                        .process(&mut x);
                    x
                })
                .collect::<Vec<_>>()
        })
    });

    let detect = || {
        let mut d = QrsDetector::new(fs, n_leads).unwrap();
        let mut beats: Vec<Beat> = Vec::new();
        let step = FS_HZ as usize;
        let mut at = 0;
        while at < n {
            let end = (at + step).min(n);
            let chunk: Vec<&[f32]> = views.iter().map(|l| &l[at..end]).collect();
            d.push(&chunk, &mut beats).unwrap();
            at = end;
        }
        d.finish(&mut beats);
        beats
    };
    g.bench_function("qrs_detector", |b| b.iter(detect));

    let r_peaks: Vec<usize> = detect().iter().map(|b| b.sample as usize).collect();
    let leads: Vec<LeadSignal<'_>> = synth::LEAD_NAMES
        .iter()
        .zip(&views)
        .map(|(label, s)| LeadSignal {
            label,
            samples_mv: s,
        })
        .collect();
    let patient = Patient {
        sex: Some(ecg_triage::Sex::Male),
        age_years: Some(60.0),
    };
    // Given the R peaks: filtering for diagnosis, beat alignment, global
    // delineation, ST measurement and the criteria.
    g.bench_function("delineation_and_st", |b| {
        b.iter(|| ecg_triage::interpret(fs, &leads, &r_peaks, patient).unwrap())
    });

    // What the pipeline does per visit on its analysis threads: the visit
    // streamed in ten 1 s blocks of counts (detector, the early decision's
    // window readings), then the final interpretation of the whole.
    let meta = VisitMeta {
        device_id: DeviceId::new("bench-1").unwrap(),
        clinic_id: ClinicId::new("clinic-1").unwrap(),
        visit_id,
        patient_pseudonym: PatientPseudonym::new("k1-9f86d081884c7d659a2feaa0c55ad015").unwrap(),
        sex: Sex::Male,
        age_years: Some(60),
        leads: LeadSet::STANDARD_12,
        fs_hz: FS_HZ,
        gain_uv_per_lsb: f64::from(v.uv_per_lsb),
        acquired_at: OffsetDateTime::UNIX_EPOCH,
        chunk_samples: FS_HZ as u16,
        firmware_version: "bench".into(),
    };
    let blocks: Vec<Arc<[Vec<i16>]>> = (0..n / FS_HZ as usize)
        .map(|k| {
            let from = k * FS_HZ as usize;
            v.samples
                .iter()
                .map(|l| l[from..from + FS_HZ as usize].to_vec())
                .collect::<Vec<_>>()
                .into()
        })
        .collect();
    g.bench_function("visit_analysis_streamed", |b| {
        b.iter(|| {
            let mut a = VisitAnalysis::new(&meta).unwrap();
            for (k, block) in blocks.iter().enumerate() {
                a.push((k * FS_HZ as usize) as u64, block.clone()).unwrap();
            }
            a.finish().unwrap()
        })
    });

    // Parquet encoding of the waveforms (and the other tables) of eight
    // visits, into memory.
    g.throughput(Throughput::Elements(total * 8));
    g.bench_function("parquet_encode_8_visits", |b| {
        b.iter(|| {
            let store: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
            let mut cfg = WriterConfig::new("bench");
            cfg.max_visits = 1000;
            let mut w = ArchiveWriter::open(store, cfg).unwrap();
            for i in 0..8 {
                w.append(record(i + 1, &v.samples)).unwrap();
            }
            w.flush().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
