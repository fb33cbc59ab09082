//! `ecgtriage query`: SQL over the archive (ecg-query), printed as a table,
//! CSV or JSON on stdout.

use std::io::Write;
use std::path::PathBuf;

use ecg_query::{format_batches, OutputFormat, QueryEngine};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Boxed text table.
    Table,
    /// CSV with a header row (list columns as text).
    Csv,
    /// One JSON array with one object per row.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// One SQL statement. Tables: visits, waveforms, beats, measurements,
    /// alerts, alert_acks, alert_escalations; each has the partition column
    /// `date` (e.g. WHERE date = '2026-11-29'). Views: alert_timeline,
    /// centre_figures (per month and clinic), centre_figures_monthly.
    pub sql: String,
    /// Archive root folder.
    #[arg(long, default_value = "./archive")]
    pub archive: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let engine = QueryEngine::open(&args.archive)?;
    let batches = engine.sql_blocking(&args.sql)?;
    let format = match args.format {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        Format::Json => OutputFormat::Json,
    };
    let text = format_batches(&batches, format)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
