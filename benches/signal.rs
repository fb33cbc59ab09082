//! Criterion benchmarks of the signal core's hot paths on a real record
//! (MIT-BIH 100-series, both leads), in samples per second per lead.
//!
//! Baseline in the same run: a plain pass over the samples that only sums
//! them (the memory-bandwidth floor a streaming stage cannot beat).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ecg_signal::filter::{DetectionBandpass, DiagnosticFilter, Mains};
use ecg_signal::{Beat, QrsDetector};

fn data_dir() -> std::path::PathBuf {
    std::env::var_os("ECG_DATA_DIR")
        .map(Into::into)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data").into())
}

fn load(record: &str) -> (f64, Vec<Vec<f32>>) {
    let path = data_dir().join(record);
    let rec = ecg_wfdb::Record::read(&path)
        .unwrap_or_else(|e| panic!("benchmark record {} unreadable: {e}", path.display()));
    let leads = (0..rec.n_signals())
        .map(|i| rec.millivolts(i).expect("voltage lead"))
        .collect();
    (rec.fs_hz(), leads)
}

fn bench(c: &mut Criterion) {
    let (fs, leads) = load("mitdb/101");
    // Two minutes keep an iteration short; the cost is linear in samples.
    let n = (fs * 120.0) as usize;
    let leads: Vec<Vec<f32>> = leads.into_iter().map(|l| l[..n].to_vec()).collect();
    let mut g = c.benchmark_group("signal");
    g.throughput(Throughput::Elements(n as u64));

    g.bench_function("baseline_sum_one_lead", |b| {
        b.iter(|| leads[0].iter().map(|v| f64::from(*v)).sum::<f64>())
    });
    g.bench_function("detection_bandpass_one_lead", |b| {
        b.iter(|| {
            let mut x = leads[0].clone();
            DetectionBandpass::new(fs).unwrap().process(&mut x);
            x
        })
    });
    g.bench_function("diagnostic_filter_one_lead", |b| {
        b.iter(|| {
            let mut x = leads[0].clone();
            DiagnosticFilter::new(fs, Some(Mains::Hz60))
                .unwrap()
                .process(&mut x);
            x
        })
    });
    for n_leads in [1, 2] {
        let views: Vec<&[f32]> = leads.iter().take(n_leads).map(Vec::as_slice).collect();
        g.bench_with_input(
            BenchmarkId::new("qrs_detector_leads", n_leads),
            &views,
            |b, views| {
                b.iter(|| {
                    let mut d = QrsDetector::new(fs, views.len()).unwrap();
                    let mut beats: Vec<Beat> = Vec::with_capacity(300);
                    // One-second chunks, as a device streams them.
                    let step = fs as usize;
                    let mut at = 0;
                    while at < n {
                        let end = (at + step).min(n);
                        let chunk: Vec<&[f32]> = views.iter().map(|l| &l[at..end]).collect();
                        d.push(&chunk, &mut beats).unwrap();
                        at = end;
                    }
                    d.finish(&mut beats);
                    beats
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
