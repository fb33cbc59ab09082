//! `ecgtriage run`: the pipeline against an external MQTT broker. A thin
//! shell over ecg-pipeline: settings from a TOML file, flags over them, the
//! broker password from `ECGTRIAGE_BROKER_PASSWORD`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use ecg_pipeline::config::{LogFormat, Settings, PASSWORD_ENV};

#[derive(clap::Args)]
pub struct Args {
    /// TOML settings file (keys: broker, username, password, client_id,
    /// archive, spool, centre, log_format, metrics, receive_maximum,
    /// visit_timeout_s, archive_flush_s, http, escalate_after_s, [[accounts]]).
    /// Flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Broker URL, mqtt://[user:pass@]host:port (default mqtt://127.0.0.1:1883).
    #[arg(long)]
    pub broker: Option<String>,
    /// Archive root folder (default ./archive).
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Ingest spool folder (default <archive>.spool).
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// Chest-pain centre that receives the alerts (default centre-1).
    #[arg(long)]
    pub centre: Option<String>,
    /// MQTT client id; stable across restarts so the broker keeps the session.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Seconds of silence after which a visit is closed as incomplete.
    #[arg(long)]
    pub visit_timeout_s: Option<u64>,
    /// Serve the cardiologists' dashboard here (e.g. 127.0.0.1:8750).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Seconds after which an unacknowledged alert is escalated (default 300).
    #[arg(long)]
    pub escalate_after_s: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => Settings::load(path)?,
        None => Settings::default(),
    };
    let log_format = args
        .log_format
        .as_deref()
        .map(str::parse::<LogFormat>)
        .transpose()?;
    let flags = Settings {
        broker: args.broker,
        archive: args.archive,
        spool: args.spool,
        centre: args.centre,
        client_id: args.client_id,
        log_format,
        metrics: args.metrics,
        visit_timeout_s: args.visit_timeout_s,
        http: args.http,
        escalate_after_s: args.escalate_after_s,
        ..Settings::default()
    };
    let settings = file.overridden_by(flags);
    ecg_pipeline::logging::init(settings.log_format.unwrap_or_default());
    let cfg = settings.resolve(std::env::var(PASSWORD_ENV).ok())?;
    let side = settings.cardiologist_side()?;
    let summary = ecg_pipeline::service::run_until_terminated_with(cfg, side)
        .context("the pipeline stopped")?;
    tracing::info!(
        archived = summary.visits_archived,
        incomplete = summary.visits_incomplete,
        alerts = summary.alerts,
        dead_letters = summary.dead_letters,
        "pipeline exited cleanly"
    );
    Ok(())
}
