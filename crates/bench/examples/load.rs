//! The harness without the full CLI (no DataFusion to build):
//! `cargo run -p ecg-bench --example load -- VISITS [RATE|max] [DEVICES]`.
//! `ecgtriage bench` is the supported entry point; same library, same output.

use std::process::ExitCode;

use ecg_bench::{BenchOptions, Pace};

fn main() -> ExitCode {
    // The bench runs the pipeline as this executable again.
    if let Some(code) = ecg_bench::pipeline_process::run_if_requested() {
        return code;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let visits: u64 = args.first().map_or(Ok(100), |s| s.parse())?;
    let pace = match args.get(1).map(String::as_str) {
        None | Some("max") => Pace::Max,
        Some(r) => Pace::Rate(r.parse()?),
    };
    let devices = match args.get(2) {
        Some(d) => d.parse()?,
        None => match pace {
            Pace::Max => 16,
            Pace::Rate(r) => ((r * 15.0).ceil() as usize).max(1),
        },
    };
    let opts = BenchOptions {
        visits,
        pace,
        devices,
        ..BenchOptions::default()
    };
    let out = ecg_bench::run_blocking(opts, &|l: &str| println!("{l}"))?;
    println!(
        "pipeline: {:?}; alerts received {} (STEMI planned {}, {} early); chunks measured {} unmatched {}; pipeline process RSS once subscribed {:?} MB, CPU {:?} s; wire {} bytes",
        out.pipeline,
        out.alerts_received,
        out.stemi_planned,
        out.early_alerts,
        out.chunks_measured,
        out.chunks_unmatched,
        out.rss_baseline_mb,
        out.pipeline_cpu_s,
        out.wire_bytes
    );
    println!("{}", serde_json::to_string(&out.json)?);
    Ok(())
}
