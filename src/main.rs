//! `ecgtriage`: the command-line face of the pipeline.
//!
//! Each subcommand lives in its own module under `cmd/` and is a thin shell
//! over the library crates: `detect` and `eval-qrs` over the signal core and
//! the EC57 scorer, `analyze` over the 12-lead interpretation.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ecgtriage",
    version,
    about = "12-lead ECG triage: QRS detection, ST measurement, suspected-STEMI alerts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Detect QRS complexes in a WFDB record; writes CSV with one R-peak sample index per line.
    Detect(cmd::detect::Args),
    /// EC57 beat-by-beat comparison of the detector against the records' .atr annotations.
    EvalQrs(cmd::eval_qrs::Args),
    /// 12-lead interpretation of one record (ST measurement, STEMI criteria, mimics).
    Analyze(cmd::analyze::Args),
    /// The pipeline against an external MQTT broker.
    Run(cmd::run::Args),
    /// Embedded broker + simulated clinics + pipeline + dashboard on one machine.
    Demo(cmd::demo::Args),
    /// SQL over the archive's tables and the chest-pain centre's figures (views).
    Query(cmd::query::Args),
    /// The archive itself: check it (every visit against its digest), or compact its small files.
    Archive(cmd::archive::Args),
    /// One archived visit as a 12-lead report (SVG), a WFDB record or FHIR R4 JSON.
    Export(cmd::export::Args),
    /// What the pipeline refused and kept whole: list it, or publish it again after a fix.
    Quarantine(cmd::quarantine::Args),
    /// Device and service credentials for the broker (provisioning).
    Devices(cmd::devices::Args),
    /// Argon2 hash of a dashboard password (read from stdin), as a config entry.
    HashPassword(cmd::hash_password::Args),
    /// Load harness: fleet -> Mosquitto -> pipeline -> archive, against the broker's ceiling.
    Bench(cmd::bench::Args),
}

fn main() -> std::process::ExitCode {
    // `ecgtriage bench` runs the pipeline as this executable again.
    if let Some(code) = ecg_bench::pipeline_process::run_if_requested() {
        return code;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect(args) => cmd::detect::run(args),
        Command::EvalQrs(args) => cmd::eval_qrs::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Query(args) => cmd::query::run(args),
        Command::Archive(args) => cmd::archive::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Quarantine(args) => cmd::quarantine::run(args),
        Command::Devices(args) => cmd::devices::run(args),
        Command::HashPassword(args) => cmd::hash_password::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
