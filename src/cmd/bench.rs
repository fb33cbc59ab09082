//! `ecgtriage bench`: the load harness (issue 7). Human-readable lines,
//! then, as the last line, one JSON object for scripts.

use std::path::PathBuf;
use std::time::Duration;

use ecg_bench::{BenchOptions, Pace};

#[derive(clap::Args)]
pub struct Args {
    /// Visits to stream (10 s, 12 leads, 500 Hz each).
    #[arg(long, default_value_t = 1000)]
    pub visits: u64,
    /// Send as fast as the machine goes (the default).
    #[arg(long, conflicts_with = "rate")]
    pub max: bool,
    /// Poisson visit arrivals per second, each visit streamed in real time.
    #[arg(long, value_name = "VISITS_PER_S")]
    pub rate: Option<f64>,
    /// Simulated devices (default: 16 with --max; with --rate enough for
    /// the visits streaming at once, 15 s worth of arrivals).
    #[arg(long)]
    pub devices: Option<usize>,
    /// External broker `mqtt://[user:pass@]host:port`; default: a private
    /// Mosquitto on a free loopback port.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Distinct waveforms generated before the clock starts; visits reuse
    /// them under their own ids.
    #[arg(long, default_value_t = 64)]
    pub pool: usize,
    /// Share of visits with a STEMI.
    #[arg(long, default_value_t = 0.1)]
    pub stemi_fraction: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Give up when nothing moves for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub stall_s: u64,
    /// Folder for the run's temporary work dir (archive, spools).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the work dir (archive) after the run and print its path.
    #[arg(long)]
    pub keep: bool,
    /// With --max, the most visits started and not yet through the
    /// pipeline; the others wait on their devices, not in the broker.
    #[arg(long, default_value_t = 1000)]
    pub max_ahead: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.stemi_fraction) {
        anyhow::bail!("--stemi-fraction {} must be in [0, 1]", args.stemi_fraction);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    ecg_pipeline::logging::init(ecg_pipeline::config::LogFormat::Text);
    let pace = match args.rate {
        Some(r) => Pace::Rate(r),
        None => Pace::Max,
    };
    let devices = args.devices.unwrap_or(match pace {
        Pace::Max => 16,
        Pace::Rate(r) => ((r * 15.0).ceil() as usize).clamp(1, 5000),
    });
    let opts = BenchOptions {
        visits: args.visits,
        pace,
        devices,
        broker: args.broker,
        pool: args.pool,
        stemi_fraction: args.stemi_fraction,
        seed: args.seed,
        stall: Duration::from_secs(args.stall_s.max(1)),
        work_root: args.work_dir,
        keep: args.keep,
        max_ahead: args.max_ahead,
        ..BenchOptions::default()
    };
    let say = |line: &str| println!("{line}");
    let out = ecg_bench::run_blocking(opts, &say)?;
    let j = &out.json;
    let p = out.pipeline;
    println!(
        "pipeline: {} visits archived ({} incomplete), {} alerts published, {} dead letters in {:.2} s",
        p.visits_archived, p.visits_incomplete, p.alerts, p.dead_letters, j.wall_s
    );
    println!(
        "throughput: {:.0} samples/s ({:.1} visits/s) = {:.1}% of the broker ceiling {:.0} samples/s ({:.2} s); {:.1} MB on the wire",
        j.samples_per_s,
        out.verdict.intact as f64 / j.wall_s,
        j.ratio_to_ceiling * 100.0,
        j.ceiling_samples_per_s,
        out.ceiling_wall_s,
        out.wire_bytes as f64 / 1e6
    );
    println!(
        "archive: {} of {} visits intact, lost {}, duplicated {}, {:.3} bytes per sample on disk (int16 = 2)",
        out.verdict.intact, j.visits, j.lost, j.duplicated, j.bytes_per_sample
    );
    let ms = |p: &ecg_bench::Percentiles| {
        let f = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1}"));
        format!(
            "p50 {} p95 {} p99 {} max {} ms",
            f(p.p50),
            f(p.p95),
            f(p.p99),
            f(p.max)
        )
    };
    println!(
        "chunk latency (published -> analysed, {} chunks, {} unmatched): {}",
        out.chunks_measured,
        out.chunks_unmatched,
        ms(&j.chunk_latency_ms)
    );
    println!(
        "alert latency (last chunk published -> alert at a subscriber, {} alerts for {} STEMI visits planned, {} before the last chunk): {}",
        out.alerts_received,
        out.stemi_planned,
        out.early_alerts,
        ms(&j.alert_latency_ms)
    );
    println!(
        "peak RSS of the pipeline process: {} MB (VmHWM; {} MB once subscribed, before any visit; fleet, harness and broker not included)",
        j.peak_rss_mb.map_or("-".into(), |v| format!("{v:.1}")),
        out.rss_baseline_mb.map_or("-".into(), |v| format!("{v:.1}")),
    );
    if out.stalled {
        println!("WARNING: the run stalled; figures cover what finished");
    }
    if let Some(dir) = &out.work_dir {
        println!("work dir kept: {}", dir.display());
    }
    println!("{}", serde_json::to_string(j)?);
    Ok(())
}
