//! `ecgtriage run`: the pipeline against an external MQTT broker. A thin
//! shell over ecg-pipeline: settings from a TOML file, flags over them, the
//! broker password from `ECGTRIAGE_BROKER_PASSWORD` and the archive's
//! pseudonym key from `ECGTRIAGE_PSEUDONYM_KEY`.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use anyhow::Context;
use ecg_pipeline::config::{EnvSecrets, LogFormat, Settings};
use ecg_pipeline::tls_check::{self, TlsCheck};

#[derive(clap::Args)]
pub struct Args {
    /// TOML settings file (keys: broker, ca, client_cert, client_key,
    /// username, password, pseudonym_key, pseudonym_key_version, client_id,
    /// archive, spool, centre, log_format, metrics, receive_maximum,
    /// visit_timeout_s, archive_flush_s, archive_compact_every_s,
    /// quarantine_max_mib, quarantine_max_mib_per_device_day, http,
    /// escalate_after_s, [[accounts]]).
    /// Flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Broker URL, mqtt://[user:pass@]host:port or mqtts://...
    /// (default mqtt://127.0.0.1:1883).
    #[arg(long)]
    pub broker: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (mqtts://).
    /// Only this CA is trusted; without it, the system's CA store (or
    /// SSL_CERT_FILE).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a broker that asks for one (with --client-key).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
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
    /// Merge the archive's closed days (UTC, an hour after midnight) this
    /// often, the first time at most 5 minutes after start (default 3600;
    /// 0: never, leave it to `ecgtriage archive compact`).
    #[arg(long)]
    pub archive_compact_every_s: Option<f64>,
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
        ca: args.ca,
        client_cert: args.client_cert,
        client_key: args.client_key,
        archive: args.archive,
        spool: args.spool,
        centre: args.centre,
        client_id: args.client_id,
        log_format,
        metrics: args.metrics,
        visit_timeout_s: args.visit_timeout_s,
        archive_compact_every_s: args.archive_compact_every_s,
        http: args.http,
        escalate_after_s: args.escalate_after_s,
        ..Settings::default()
    };
    let settings = file.overridden_by(flags);
    ecg_pipeline::logging::init(settings.log_format.unwrap_or_default());
    let cfg = settings.resolve(EnvSecrets::from_env())?;
    let side = settings.cardiologist_side()?;
    let (host, port) = (&cfg.ingest.host, cfg.ingest.port);
    match tls_check::check_service(&cfg, Duration::from_secs(10)).context("refusing to start")? {
        Some(TlsCheck::Trusted) => tracing::info!(%host, port, "broker certificate trusted"),
        Some(TlsCheck::Unreachable(reason)) => tracing::warn!(
            %host, port, %reason,
            "broker not reachable yet; its certificate is checked when it is"
        ),
        None => {}
    }
    ecg_pipeline::allocator::keep_freed_memory();
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
