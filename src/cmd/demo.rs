//! `ecgtriage demo`: embedded broker + simulated clinics + pipeline on one
//! machine, alerts printed as they arrive, the archive left for `query`.

use std::path::PathBuf;
use std::time::Duration;

use ecg_pipeline::config::LogFormat;
use ecg_pipeline::demo::{self, DemoOptions};

#[derive(clap::Args)]
pub struct Args {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Archive root folder, left for `ecgtriage query`.
    #[arg(long, default_value = "./archive")]
    pub archive: PathBuf,
    /// Simulated devices.
    #[arg(long, default_value_t = 8)]
    pub devices: usize,
    /// Share of visits with a STEMI.
    #[arg(long, default_value_t = 0.2)]
    pub stemi_fraction: f64,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The dashboard's address (loopback; a free port if this one is taken).
    #[arg(long, default_value = "127.0.0.1:8750")]
    pub http: std::net::SocketAddr,
    /// Seconds after which an unacknowledged alert is escalated.
    #[arg(long, default_value_t = 120.0)]
    pub escalate_after_s: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.stemi_fraction) {
        anyhow::bail!("--stemi-fraction {} must be in [0, 1]", args.stemi_fraction);
    }
    if args.duration == 0 {
        anyhow::bail!("--duration must be at least 1 second");
    }
    // The demo's stdout is the alerts; logs stay quiet unless RUST_LOG asks.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn,rumqttd=off");
    }
    ecg_pipeline::logging::init(LogFormat::Text);
    let opts = DemoOptions {
        duration: Duration::from_secs(args.duration),
        archive_dir: args.archive.clone(),
        devices: args.devices.max(1),
        stemi_fraction: args.stemi_fraction,
        seed: args.seed,
        http: Some(args.http),
        escalate_after: Duration::from_secs_f64(args.escalate_after_s.clamp(0.1, 86_400.0)),
        ..DemoOptions::default()
    };
    let s = demo::run_blocking(opts)?;
    println!(
        "demo done: {} visits sent, {} archived ({} incomplete), {} alerts published, {} alerts seen by the dashboard",
        s.visits_sent, s.pipeline.visits_archived, s.pipeline.visits_incomplete, s.pipeline.alerts, s.alerts_seen
    );
    println!("try: ecgtriage query \"SELECT status, count(*) AS visits FROM visits GROUP BY status\" --archive {}", args.archive.display());
    println!("     ecgtriage query \"SELECT visit_id, device_id, territories, early FROM alerts\" --archive {}", args.archive.display());
    Ok(())
}
