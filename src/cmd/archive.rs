//! `ecgtriage archive verify`: the whole archive read back and checked, for
//! the operator after a disk fault, a restore or a copy. `ecgtriage archive
//! compact`: each closed day's small batches merged, so that a year of a
//! quiet county's archive stays quick to query.

use std::path::PathBuf;

use super::plural;
use anyhow::Context as _;
use clap::Subcommand;
use ecg_archive::time;
use ecg_archive::{CompactConfig, CompactReport, Report, Severity, Table};

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
    /// Merge each closed day's batches (one per visit at a quiet county's
    /// pace) into one, so that queries over a year open hundreds of files,
    /// not tens of thousands.
    ///
    /// Safe to kill at any moment: the next run finishes what was cut short.
    /// Not atomic for readers: for a moment a query may see a day's visits
    /// twice, or fail on a file just retired (run it when nobody queries,
    /// e.g. nightly). The pipeline may keep running. Exit status 1 when a
    /// damaged or foreign file was left as it is (named in the output).
    Compact(CompactArgs),
}

#[derive(clap::Args)]
struct CompactArgs {
    /// Archive root folder.
    #[arg(long, default_value = "./archive")]
    archive: PathBuf,
    /// Compact the days (UTC) before this date, YYYY-MM-DD [default: today,
    /// so every day up to yesterday].
    #[arg(long)]
    before: Option<String>,
    /// Most visits in one merged batch (a busier day becomes several).
    #[arg(long, default_value_t = 10_000)]
    max_visits: usize,
    /// Most MiB of decoded rows in one merged batch, which bounds memory
    /// (about three times this).
    #[arg(long, default_value_t = 256)]
    max_mib: usize,
    /// Say what would be merged; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object instead of lines of text.
    #[arg(long)]
    json: bool,
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
        ArchiveCommand::Compact(a) => compact(a),
    }
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    // A mistyped path would otherwise verify as an empty, sound archive.
    anyhow::ensure!(
        a.archive.is_dir(),
        "no archive at {} (not a folder)",
        a.archive.display()
    );
    let report = ecg_archive::verify_local(&a.archive, || {
        eprintln!(
            "waiting for the compaction of {} under way to finish",
            a.archive.display()
        )
    })
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

fn compact(a: CompactArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.archive.is_dir(),
        "no archive at {} (not a folder)",
        a.archive.display()
    );
    anyhow::ensure!(
        a.max_visits >= 1 && a.max_mib >= 1,
        "--max-visits and --max-mib must be at least 1"
    );
    let before = super::parse_day_flag("before", a.before.as_deref())?
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    let config = CompactConfig {
        max_visits: a.max_visits,
        max_bytes: a.max_mib.saturating_mul(1 << 20),
        dry_run: a.dry_run,
        ..CompactConfig::new(before)
    };
    let report = ecg_archive::compact_local(&a.archive, &config)
        .with_context(|| format!("compacting {}", a.archive.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&compact_json(&report, a.dry_run))?
        );
    } else {
        print_compaction(&report, a.dry_run);
    }
    anyhow::ensure!(
        report.refused.is_empty(),
        "{} left as they are in {} (see above; `ecgtriage archive verify` checks the whole archive)",
        plural(report.refused.len(), "file"),
        a.archive.display()
    );
    Ok(())
}

fn print_compaction(r: &CompactReport, dry_run: bool) {
    if !r.finished.is_empty() {
        println!(
            "finished a compaction cut short: {} deleted",
            plural(r.finished.len(), "file")
        );
    }
    for m in &r.merges {
        let (what, unit) = match m.table {
            Table::Visits => ("batches", "visits"),
            _ => ("files", "rows"),
        };
        if dry_run {
            println!(
                "would merge {} {}: {} {what} ({})",
                m.table.name(),
                m.partition,
                m.sources,
                plural(m.files_before, "file")
            );
        } else {
            println!(
                "{} {}: {} {what} ({}, {}) -> {} ({}), {} {unit}",
                m.table.name(),
                m.partition,
                m.sources,
                plural(m.files_before, "file"),
                mib(m.bytes_before),
                plural(m.files_after, "file"),
                mib(m.bytes_after),
                m.rows
            );
        }
    }
    for f in &r.refused {
        println!("{f}");
    }
    let before: usize = r.merges.iter().map(|m| m.files_before).sum();
    let after: usize = r.merges.iter().map(|m| m.files_after).sum();
    if dry_run {
        println!(
            "dry run: {} would be merged; nothing changed",
            plural(before, "file")
        );
    } else {
        println!(
            "{} merged into {}; {} left as they are",
            plural(before, "file"),
            after,
            r.refused.len()
        );
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn compact_json(r: &CompactReport, dry_run: bool) -> serde_json::Value {
    let merges: Vec<serde_json::Value> = r
        .merges
        .iter()
        .map(|m| {
            serde_json::json!({
                "table": m.table.name(),
                "partition": m.partition,
                "sources": m.sources,
                "files_before": m.files_before,
                "files_after": m.files_after,
                "rows": m.rows,
                "bytes_before": m.bytes_before,
                "bytes_after": m.bytes_after,
            })
        })
        .collect();
    serde_json::json!({
        "dry_run": dry_run,
        "merges": merges,
        "finished": r.finished,
        "refused": r.refused.iter().map(finding_json).collect::<Vec<_>>(),
    })
}

fn finding_json(f: &ecg_archive::Finding) -> serde_json::Value {
    serde_json::json!({
        "severity": match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        "file": f.file,
        "visit_id": f.visit_id,
        "problem": f.problem,
    })
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

fn json(r: &Report) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = r.findings.iter().map(finding_json).collect();
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
