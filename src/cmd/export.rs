//! `ecgtriage export`: one archived visit as a one-page 12-lead report
//! (SVG), a WFDB record (`.hea` + format-16 `.dat`) or FHIR R4 JSON, the
//! same files as the dashboard's download links.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use ecg_dashboard::export;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One-page 12-lead report, SVG (A4 landscape, 25 mm/s, 10 mm/mV).
    Report,
    /// WFDB record: writes NAME.hea and NAME.dat into --out (a folder).
    Wfdb,
    /// FHIR R4 Observation with the ECG as SampledData, JSON.
    Fhir,
}

#[derive(clap::Args)]
pub struct Args {
    /// The visit id (as in `visits.visit_id`).
    pub visit_id: String,
    /// Archive root folder.
    #[arg(long, default_value = "./archive")]
    pub archive: PathBuf,
    #[arg(long, value_enum, default_value = "report")]
    pub format: Format,
    /// Output file (report, fhir; default stdout) or folder (wfdb; default
    /// the current folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let visit = rt
        .block_on(export::load(&args.archive, &args.visit_id))?
        .with_context(|| {
            format!(
                "visit {} is not in {}",
                args.visit_id,
                args.archive.display()
            )
        })?;
    let text = match args.format {
        Format::Report => export::report_svg(&visit),
        Format::Fhir => serde_json::to_string_pretty(&export::fhir_observation(&visit))? + "\n",
        Format::Wfdb => {
            let rec = export::wfdb_record(&visit)?;
            let dir = args.out.unwrap_or_else(|| PathBuf::from("."));
            std::fs::create_dir_all(&dir)?;
            let name = visit.record_name();
            for (ext, bytes) in [("hea", rec.header.as_bytes()), ("dat", rec.dat.as_slice())] {
                let path = dir.join(format!("{name}.{ext}"));
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{}", dir.join(name).display());
            return Ok(());
        }
    };
    match args.out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}
