//! SQL over the archive with DataFusion: every table of `schemas/archive.md`
//! registered under its name, with the hive partition column `date`
//! (`date32`, the UTC day of the folder `date=YYYY-MM-DD`) usable in WHERE,
//! where it prunes whole folders.
//!
//! - [`engine`]: [`QueryEngine`] registers the tables and runs SQL.
//! - `files` (private): the archive's files as DataFusion lists and reads
//!   them, a consistent snapshot per table while compactions run.
//! - [`figures`]: the chest-pain centre's figures as views
//!   (`alert_timeline`, `centre_figures`, `centre_figures_monthly`).
//! - [`output`]: results as a text table, CSV or JSON.

pub mod engine;
pub mod figures;
mod files;
pub mod output;

/// The archive crate (writer, records, table schemas), for callers that
/// both write and query an archive, such as the CLI's end-to-end tests.
pub use ecg_archive as archive;
pub use engine::QueryEngine;
pub use output::{format_batches, OutputFormat};

/// Why a query could not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no archive at {0} (run the pipeline or `ecgtriage demo` first, or pass --archive)")]
    NoArchive(std::path::PathBuf),
    #[error("archive root {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A file of the archive could not be read; `files` are those whose
    /// footer is unreadable (empty when the damage lies past the footer).
    // Not `source`: the message already holds DataFusion's, and anyhow
    // would print it a second time.
    #[error("{cause}\n{}", damaged(root, files))]
    Damaged {
        cause: datafusion::error::DataFusionError,
        root: std::path::PathBuf,
        files: Vec<String>,
    },
    #[error("formatting results: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("query runtime: {0}")]
    Runtime(std::io::Error),
}

fn damaged(root: &std::path::Path, files: &[String]) -> String {
    let check = format!(
        "`ecgtriage archive verify --archive {}` reads every file whole and names each damaged one",
        root.display()
    );
    if files.is_empty() {
        return format!("a file of the archive is damaged: {check}");
    }
    let mut out = String::from("damaged files of the archive:");
    for f in files {
        out.push_str("\n  ");
        out.push_str(f);
    }
    out.push('\n');
    out.push_str(&check);
    out
}
