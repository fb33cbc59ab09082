//! `ecgtriage archive verify`: the whole archive read back and checked, for
//! the operator after a disk fault, a restore or a copy.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use ecg_archive::{LocalDisk, Report, Severity};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ArchiveCommand,
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Read every file whole, rebuild every visit and compare its samples
    /// with their SHA-256; name each damaged, missing or duplicated piece.
    ///
    /// Changes nothing. Exit status 1 when an error is found (warnings, such
    /// as a crash's leftovers, do not count).
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Archive root folder.
    #[arg(long, default_value = "./archive")]
    archive: PathBuf,
    /// One JSON object (counts and findings) instead of lines of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ArchiveCommand::Verify(a) => verify(a),
    }
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    // A mistyped path would otherwise verify as an empty, sound archive.
    anyhow::ensure!(
        a.archive.is_dir(),
        "no archive at {} (not a folder)",
        a.archive.display()
    );
    let report = ecg_archive::verify(&LocalDisk::new(&a.archive))
        .with_context(|| format!("listing {}", a.archive.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(&json(&report))?);
    } else {
        for f in &report.findings {
            println!("{f}");
        }
        println!("{}", summary(&report));
    }
    anyhow::ensure!(
        report.errors() == 0,
        "{} in the archive at {}",
        plural(report.errors(), "error"),
        a.archive.display()
    );
    Ok(())
}

fn summary(r: &Report) -> String {
    let rows: Vec<String> = r.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
    format!(
        "{} files read ({} rows: {}); {} batches, {} visits: {} rebuilt and matching their \
         samples_sha256, {} rebuilt without a digest to compare; {}, {}",
        r.files_read,
        r.rows.values().sum::<u64>(),
        rows.join(", "),
        r.batches,
        r.visits,
        r.visits_matching_digest,
        r.visits_without_digest,
        plural(r.errors(), "error"),
        plural(r.warnings(), "warning")
    )
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn json(r: &Report) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "severity": match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                "file": f.file,
                "visit_id": f.visit_id,
                "problem": f.problem,
            })
        })
        .collect();
    serde_json::json!({
        "files_read": r.files_read,
        "rows": r.rows,
        "batches": r.batches,
        "visits": r.visits,
        "visits_matching_digest": r.visits_matching_digest,
        "visits_without_digest": r.visits_without_digest,
        "errors": r.errors(),
        "warnings": r.warnings(),
        "findings": findings,
    })
}
