//! `firmware-sim`: a fleet of simulated clinic devices, or playback of one
//! WFDB record, streamed to an MQTT broker.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ecg_wire::{ClinicId, DeviceId, VisitId};
use firmware_sim::broker::{read_credentials, BrokerUrl, TlsSettings};
use firmware_sim::device::Link;
use firmware_sim::fleet::{self, DeviceSpec, FleetConfig, FleetOptions};
use firmware_sim::patient::{self, Patient};
use firmware_sim::visit::{self, Faults, StreamOpts, VisitHeader};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(
    name = "firmware-sim",
    about = "Simulated clinic ECG devices streaming over MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a fleet of devices recording synthetic visits.
    Fleet(FleetArgs),
    /// Stream one WFDB record as a visit.
    Play(PlayArgs),
}

#[derive(Args)]
struct DeviceArgs {
    /// Chunk length in seconds.
    #[arg(long, default_value_t = 1.0)]
    chunk_s: f64,
    /// Directory holding one spool directory per device.
    #[arg(long, default_value = "firmware-sim-spool")]
    spool_dir: PathBuf,
    /// Fault injection: probability that a chunk is sent twice.
    #[arg(long, default_value_t = 0.0)]
    dup_prob: f64,
    /// Fault injection: probability that a chunk is sent after the next one.
    #[arg(long, default_value_t = 0.0)]
    reorder_prob: f64,
    /// Fault injection: device clock offset in seconds.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    clock_skew_s: f64,
    /// Fault injection: drop the link every this many seconds (0 = never).
    #[arg(long, default_value_t = 0.0)]
    link_drop_every_s: f64,
    /// Fault injection: how long each link drop lasts, in seconds.
    #[arg(long, default_value_t = 1.0)]
    link_outage_s: f64,
    /// CA certificate (PEM) that signed the broker's, trusted alone
    /// (mqtts://; default: the system's CA store or SSL_CERT_FILE).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require one.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The clinic's pseudonym key (at least 16 bytes of text): each
    /// patient's resident id is sent only as HMAC-SHA256(key, id). Default:
    /// the FIRMWARE_SIM_PSEUDONYM_KEY environment variable, else the public
    /// demo key firmware-sim-demo-clinic-key-NOT-SECRET.
    #[arg(long)]
    pseudonym_key: Option<String>,
    /// Version of --pseudonym-key, the `k<version>-` of every pseudonym.
    #[arg(long, default_value_t = 1)]
    pseudonym_key_version: u16,
}

#[derive(Args)]
struct FleetArgs {
    /// mqtt[s]://[user:pass@]host:port
    #[arg(long)]
    broker: String,
    #[arg(long, default_value_t = 10)]
    devices: usize,
    #[arg(long, default_value_t = 5)]
    clinics: usize,
    /// Stop after this many visits (default: run until Ctrl-C).
    #[arg(long)]
    visits: Option<u64>,
    /// Time compression factor.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[arg(long, default_value_t = fleet::DEFAULT_ANNUAL_VISITS)]
    annual_visits: f64,
    #[arg(long, default_value_t = 0.1)]
    stemi_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write one JSON line of ground truth per visit.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// CSV `device_id,password`; device ids then come from this file.
    #[arg(long)]
    credentials: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct PlayArgs {
    /// WFDB record path without extension.
    record: PathBuf,
    #[arg(long)]
    broker: String,
    /// Device id (default: the broker URL's user name, as a broker ACL
    /// `pattern write ecg/v1/dev/%u/#` expects; `dev-play` without one).
    #[arg(long)]
    device: Option<String>,
    #[arg(long, default_value = "clinic-play")]
    clinic: String,
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[command(flatten)]
    opts: DeviceArgs,
}

impl DeviceArgs {
    /// The broker URL with its TLS settings, checked against each other.
    fn broker(&self, url: &str) -> anyhow::Result<(BrokerUrl, Option<TlsSettings>)> {
        let tls = TlsSettings::from_files(
            self.ca.clone(),
            self.client_cert.clone(),
            self.client_key.clone(),
        )?;
        Ok(BrokerUrl::parse_with_tls(url, tls)?)
    }

    /// The clinic key; says so on stderr when it is the public demo key.
    fn clinic_key(&self) -> anyhow::Result<ecg_wire::PseudonymKey> {
        let (key, demo) =
            patient::clinic_key(self.pseudonym_key.as_deref(), self.pseudonym_key_version)
                .context("--pseudonym-key")?;
        if demo {
            eprintln!(
                "note: pseudonyms use the public demo clinic key \
                 (set --pseudonym-key or {})",
                patient::PSEUDONYM_KEY_ENV
            );
        }
        Ok(key)
    }

    fn stream(&self, speed: f64) -> StreamOpts {
        StreamOpts {
            chunk_s: self.chunk_s,
            speed,
            faults: Faults {
                duplicate_p: self.dup_prob,
                reorder_p: self.reorder_prob,
                clock_skew_s: self.clock_skew_s,
                link_drop_every_s: self.link_drop_every_s,
                link_outage_s: self.link_outage_s,
            },
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Fleet(a) => rt.block_on(run_fleet(a)),
        Command::Play(a) => rt.block_on(run_play(a)),
    }
}

async fn run_fleet(a: FleetArgs) -> anyhow::Result<()> {
    let (broker, tls) = a.device.broker(&a.broker)?;
    let devices = match &a.credentials {
        Some(path) => read_credentials(path)?
            .into_iter()
            .enumerate()
            .map(|(i, (id, pass))| {
                Ok(DeviceSpec {
                    device_id: DeviceId::new(id)?,
                    clinic_id: fleet::clinic_for(i, a.clinics),
                    password: Some(pass),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => fleet::numbered_devices(a.devices, a.clinics),
    };
    let pseudonym_key = a.device.clinic_key()?;
    let started = Instant::now();
    let summary = fleet::run_with(
        FleetConfig {
            broker,
            devices,
            visits: a.visits,
            annual_visits: a.annual_visits,
            speed: a.speed,
            stemi_fraction: a.stemi_fraction,
            seed: a.seed,
            truth: a.truth,
            spool_root: a.device.spool_dir.clone(),
            stream: a.device.stream(a.speed),
            progress: true,
        },
        FleetOptions {
            tls,
            pseudonym_key,
            stop: None,
        },
    )
    .await?;
    eprintln!(
        "summary: visits {} chunks {} bytes {} messages {} acked {} retries {} reconnects {} in {:.1} s",
        summary.visits,
        summary.chunks,
        summary.bytes,
        summary.messages,
        summary.acked,
        summary.retries,
        summary.reconnects,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The played visit's device: `--device`, else the MQTT user name, because
/// the device id is the user name on the wire (DESIGN: topics).
fn play_device_id(flag: Option<&str>, broker: &BrokerUrl) -> String {
    flag.map(str::to_owned)
        .or_else(|| broker.user.as_ref().map(|(u, _)| u.clone()))
        .unwrap_or_else(|| "dev-play".to_owned())
}

async fn run_play(a: PlayArgs) -> anyhow::Result<()> {
    let (broker, tls) = a.opts.broker(&a.broker)?;
    let rec = firmware_sim::playback::load(&a.record)?;
    let device_id = DeviceId::new(play_device_id(a.device.as_deref(), &broker))?;
    if let Some((user, _)) = broker
        .user
        .as_ref()
        .filter(|(u, _)| u != device_id.as_str())
    {
        eprintln!(
            "warning: device {device_id} logs in as {user}: a broker ACL such as \
             `pattern write ecg/v1/dev/%u/#` refuses its messages"
        );
    }
    let mut rng = rand_chacha::ChaCha8Rng::from_os_rng();
    // A made-up patient of the record's sex and age (50 when unknown).
    let patient = Patient::random(
        &mut rng,
        rec.sex != ecg_wire::Sex::Female,
        rec.age_years.unwrap_or(50),
    );
    let who = VisitHeader {
        device_id: device_id.clone(),
        clinic_id: ClinicId::new(a.clinic)?,
        visit_id: VisitId::from_uuid(uuid::Builder::from_random_bytes(rng.random()).into_uuid())?,
        patient_pseudonym: patient.pseudonym(&a.opts.clinic_key()?),
    };
    let mut link = Link::open_secure(
        device_id.as_str(),
        &broker,
        tls.as_ref(),
        a.opts.spool_dir.join(device_id.as_str()),
        None,
    )
    .await?;
    let stats = visit::stream(&mut link, &who, &rec, a.opts.stream(a.speed), &mut rng).await?;
    link.close().await;
    eprintln!(
        "played {} as visit {}: {} leads, {} samples per lead, {} chunks, {} bytes, sha256 {}",
        a.record.display(),
        who.visit_id,
        rec.leads.len(),
        rec.n_samples(),
        stats.chunks,
        stats.bytes,
        rec.digest()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_played_visit_speaks_as_the_broker_user_unless_told_otherwise() {
        let with_user = BrokerUrl::parse("mqtt://dev-07:pw@127.0.0.1:1883").unwrap();
        let anonymous = BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap();
        assert_eq!(play_device_id(None, &with_user), "dev-07");
        assert_eq!(play_device_id(Some("dev-x"), &with_user), "dev-x");
        assert_eq!(play_device_id(None, &anonymous), "dev-play");
    }
}
