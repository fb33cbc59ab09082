//! One module per subcommand, plus what several of them print or parse.

pub mod analyze;
pub mod archive;
pub mod bench;
pub mod demo;
pub mod detect;
pub mod devices;
pub mod eval_qrs;
pub mod export;
pub mod hash_password;
pub mod quarantine;
pub mod query;
pub mod run;

/// `n` and `what`, plural unless `n` is 1 ("1 file", "3 files").
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The UTC day a `--flag YYYY-MM-DD` names, if given.
pub fn parse_day_flag(
    flag: &str,
    s: Option<&str>,
) -> anyhow::Result<Option<ecg_archive::time::Date>> {
    let Some(s) = s else { return Ok(None) };
    let format =
        ecg_archive::time::format_description::parse_borrowed::<1>("[year]-[month]-[day]")?;
    ecg_archive::time::Date::parse(s, &format)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--{flag} {s:?} is not a date YYYY-MM-DD: {e}"))
}
