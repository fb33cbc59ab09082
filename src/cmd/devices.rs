//! `ecgtriage devices`: broker credentials for the fleet and its services.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DevicesCommand,
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Generate device and service passwords, Mosquitto's password file and ACL.
    ///
    /// Writes DIR/devices.csv, DIR/services.csv, DIR/mosquitto.passwd and
    /// DIR/mosquitto.acl (mode 0600). Existing files are never overwritten.
    Provision(ProvisionArgs),
}

#[derive(clap::Args)]
struct ProvisionArgs {
    /// Number of devices (dev-0001 ...).
    #[arg(long)]
    count: usize,
    /// Output directory (created with mode 0700 if missing).
    #[arg(long)]
    out: PathBuf,
    /// Characters per password (letters and digits).
    #[arg(long, default_value_t = 24)]
    password_length: usize,
    /// Also make a `replay` user for `ecgtriage quarantine replay`: it may
    /// write any device's meta, chunks and ends, and read nothing. It can
    /// speak for every device: once the replay is done, remove its block
    /// from mosquitto.acl and its line from mosquitto.passwd.
    #[arg(long)]
    replay: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DevicesCommand::Provision(a) => provision(a),
    }
}

fn provision(a: ProvisionArgs) -> anyhow::Result<()> {
    let mut roster = ecg_provision::Roster::generate(a.count, a.password_length)
        .context("generating passwords")?;
    if a.replay {
        roster = roster
            .with_replay(a.password_length)
            .context("generating passwords")?;
    }
    let bundle = ecg_provision::write_bundle(&roster, &a.out)
        .with_context(|| format!("writing credentials to {}", a.out.display()))?;
    // Counts and paths only: the secrets stay in the 0600 files.
    eprintln!(
        "provisioned {} devices and {} service users",
        roster.devices.len(),
        roster.services.len()
    );
    for path in [
        &bundle.devices_csv,
        &bundle.services_csv,
        &bundle.passwd,
        &bundle.acl,
    ] {
        eprintln!("  {}", path.display());
    }
    Ok(())
}
