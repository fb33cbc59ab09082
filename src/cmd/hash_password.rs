//! `ecgtriage hash-password`: the argon2 hash of a dashboard password, for
//! an `[[accounts]]` entry of the pipeline's config. The password is read
//! from stdin so it stays out of shell history and process listings.

use std::io::BufRead as _;

#[derive(clap::Args)]
pub struct Args {
    /// The account's user name (printed with the hash as a TOML entry).
    #[arg(long)]
    pub user: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("no password on stdin");
    }
    let hash = ecg_dashboard::hash_password(password)?;
    println!(
        "[[accounts]]\nuser = {:?}\npassword_hash = {:?}",
        args.user, hash
    );
    Ok(())
}
