//! `ecgtriage quarantine list`: what the pipeline refused and kept whole
//! (its spool folder's `quarantine/`), and why. `ecgtriage quarantine
//! replay`: those messages published again on their own topics, once what
//! refused them is fixed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{parse_day_flag, plural};
use anyhow::Context as _;
use clap::Subcommand;
use ecg_archive::time;
use ecg_pipeline::quarantine::{device_of, read_folder, Found, Selection, QUARANTINE_DIR};
use ecg_pipeline::replay::replay;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: QuarantineCommand,
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// One line per kept message (reception time, reason, device, topic,
    /// size), then counts by reason and device. Reads only; the pipeline
    /// may be running.
    List(ListArgs),
    /// Publish the selected messages again on their own topics, in the
    /// order they were received, each acknowledged (QoS 1, MQTT 5) before
    /// the next.
    ///
    /// For after a fix: a pipeline that now accepts what it refused, or a
    /// visit whose missing meta has arrived since. The pipeline drops what
    /// it already has, so replaying twice archives nothing twice; what it
    /// refuses again is dead-lettered and kept again. The identity needs
    /// write access to the device topics (`ecg/v1/dev/+/visit/+/meta`,
    /// `.../chunk`, `.../end`): a devices' ACL has no such user, add one
    /// for the replay (README, "Quarantine of refused input").
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct Filter {
    /// The pipeline's spool folder (`ecgtriage run --spool`; default
    /// <archive>.spool, i.e. ./archive.spool).
    #[arg(long, default_value = "./archive.spool")]
    spool: PathBuf,
    /// Messages received on this day (UTC) or later, YYYY-MM-DD.
    #[arg(long)]
    since: Option<String>,
    /// Messages received on this day (UTC) or earlier, YYYY-MM-DD.
    #[arg(long)]
    until: Option<String>,
    /// Only this dead-letter reason (e.g. unknown_visit, bad_chunk).
    #[arg(long)]
    reason: Option<String>,
    /// Only messages on this device's topics.
    #[arg(long)]
    device: Option<String>,
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    filter: Filter,
    /// One JSON object (messages without their payload, counts, problems).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    filter: Filter,
    /// Broker URL, mqtt://user:pass@host:port or mqtts://... (the password
    /// may come from ECGTRIAGE_BROKER_PASSWORD instead).
    #[arg(long)]
    broker: String,
    /// PEM file of the CA that signed the broker's certificate (mqtts://).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// MQTT client id.
    #[arg(long, default_value = "ecgtriage-replay")]
    client_id: String,
    /// Say what would be published; publish nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        QuarantineCommand::List(a) => list(a),
        QuarantineCommand::Replay(a) => replay_cmd(a),
    }
}

/// The folder's messages that `f` selects, its problems printed to stderr.
fn read(f: &Filter) -> anyhow::Result<(PathBuf, Found)> {
    let reason = f
        .reason
        .as_ref()
        .map(|r| {
            serde_json::from_value(serde_json::Value::String(r.clone())).map_err(|_| {
                anyhow::anyhow!(
                    "--reason {r:?} is not a dead-letter reason (bad_topic, bad_chunk, bad_json, \
                     invalid_message, topic_mismatch, unknown_visit, inconsistent_visit, \
                     checksum_mismatch, too_large)"
                )
            })
        })
        .transpose()?;
    let selection = Selection {
        since: parse_day_flag("since", f.since.as_deref())?,
        until: parse_day_flag("until", f.until.as_deref())?,
        reason,
        device: f.device.clone(),
    };
    let dir = f.spool.join(QUARANTINE_DIR);
    anyhow::ensure!(
        f.spool.is_dir(),
        "no spool folder at {} (give the pipeline's --spool)",
        f.spool.display()
    );
    if !dir.is_dir() {
        // A pipeline that never refused anything has not made the folder.
        return Ok((dir, Found::default()));
    }
    let found =
        read_folder(&dir, &selection).with_context(|| format!("reading {}", dir.display()))?;
    for p in &found.problems {
        eprintln!("skipped: {p}");
    }
    Ok((dir, found))
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let (dir, found) = read(&a.filter)?;
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_device: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0;
    for e in &found.entries {
        *by_reason.entry(code(&e.message)).or_default() += 1;
        *by_device
            .entry(device_of(&e.message.topic).unwrap_or("(none)").to_owned())
            .or_default() += 1;
        bytes += e.message.payload_len;
    }
    if a.json {
        let messages: Vec<_> = found
            .entries
            .iter()
            .map(|e| {
                let m = &e.message;
                serde_json::json!({
                    "file": e.file.display().to_string(),
                    "line": e.line,
                    "received_at": m.received_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    "topic": m.topic,
                    "device_id": device_of(&m.topic),
                    "reason_code": m.reason_code,
                    "reason": m.reason,
                    "payload_len": m.payload_len,
                    "payload_sha256": m.payload_sha256,
                    "payload_intact": m.payload().is_ok(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "folder": dir.display().to_string(),
                "messages": messages,
                "by_reason": by_reason,
                "by_device": by_device,
                "payload_bytes": bytes,
                "problems": found.problems,
            })
        );
        return Ok(());
    }
    for e in &found.entries {
        let m = &e.message;
        println!(
            "{}  {:<18}  {:<16}  {:>7} B  {}  ({})",
            m.received_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            code(m),
            device_of(&m.topic).unwrap_or("-"),
            m.payload_len,
            m.topic,
            m.reason
        );
    }
    let counts = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{} kept in {} ({} payload bytes){}{}",
        plural(found.entries.len(), "message"),
        dir.display(),
        bytes,
        if by_reason.is_empty() {
            String::new()
        } else {
            format!("; by reason: {}", counts(&by_reason))
        },
        if by_device.is_empty() {
            String::new()
        } else {
            format!("; by device: {}", counts(&by_device))
        },
    );
    Ok(())
}

fn replay_cmd(a: ReplayArgs) -> anyhow::Result<()> {
    let (dir, found) = read(&a.filter)?;
    let tls = firmware_sim::broker::TlsSettings::from_files(a.ca.clone(), None, None)?;
    let (url, tls) = firmware_sim::broker::BrokerUrl::parse_with_tls(&a.broker, tls)?;
    let mut credentials = url.user.clone();
    if let Ok(p) = std::env::var(ecg_pipeline::config::PASSWORD_ENV) {
        match &mut credentials {
            Some((_, pass)) => *pass = p,
            None => anyhow::bail!(
                "{} is set but --broker names no user (mqtt://user@host:port)",
                ecg_pipeline::config::PASSWORD_ENV
            ),
        }
    }
    let tls = tls
        .map(|t| t.client_config())
        .transpose()?
        .map(rumqttc::TlsConfiguration::Rustls);
    let broker = ecg_pipeline::publish::BrokerAddr {
        host: url.host.clone(),
        port: url.port,
        credentials,
        tls,
    };
    if a.dry_run {
        for e in &found.entries {
            println!(
                "would publish {} ({} B)",
                e.message.topic, e.message.payload_len
            );
        }
        println!(
            "{} from {} would be published to {}:{}",
            plural(found.entries.len(), "message"),
            dir.display(),
            broker.host,
            broker.port
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt
        .block_on(replay(&found.entries, &broker, &a.client_id))
        .with_context(|| format!("replaying {}", dir.display()))?;
    for s in &report.skipped {
        eprintln!("not published: {s}");
    }
    println!(
        "{} from {} published to {}:{}",
        plural(report.published, "message"),
        dir.display(),
        broker.host,
        broker.port
    );
    anyhow::ensure!(
        report.skipped.is_empty(),
        "{} not published (named above)",
        plural(report.skipped.len(), "message")
    );
    Ok(())
}

fn code(m: &ecg_pipeline::quarantine::QuarantinedMessage) -> String {
    serde_json::to_value(m.reason_code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
