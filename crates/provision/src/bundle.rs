//! Writing a roster to disk as the four files a deployment needs.
//!
//! Every file is created with mode 0600 (owner only) from the start, never
//! chmod-ed afterwards, so no other user can open it in between. Existing
//! files are never overwritten: re-provisioning by accident would lock the
//! whole fleet out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::acl::render_acl;
use crate::roster::Roster;

pub const DEVICES_CSV: &str = "devices.csv";
pub const SERVICES_CSV: &str = "services.csv";
pub const PASSWD_FILE: &str = "mosquitto.passwd";
pub const ACL_FILE: &str = "mosquitto.acl";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: already exists; refusing to overwrite provisioned credentials")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "`mosquitto_passwd` was not found on PATH; install Mosquitto \
         (apt-get install mosquitto) to hash the password file"
    )]
    PasswdMissing,
    // Only mosquitto_passwd's stderr: it never echoes passwords.
    #[error("mosquitto_passwd -U {path} failed ({status}): {stderr}")]
    Passwd {
        path: PathBuf,
        status: String,
        stderr: String,
    },
}

/// Where a bundle was written.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub devices_csv: PathBuf,
    pub services_csv: PathBuf,
    pub passwd: PathBuf,
    pub acl: PathBuf,
}

/// Writes `devices.csv`, `services.csv`, `mosquitto.passwd` (PBKDF2-SHA512
/// hashes made by `mosquitto_passwd -U`) and `mosquitto.acl` into `dir`,
/// creating it (mode 0700) if needed.
pub fn write_bundle(roster: &Roster, dir: &Path) -> Result<Bundle, BundleError> {
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |source| BundleError::Io { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))?;
    let bundle = Bundle {
        devices_csv: dir.join(DEVICES_CSV),
        services_csv: dir.join(SERVICES_CSV),
        passwd: dir.join(PASSWD_FILE),
        acl: dir.join(ACL_FILE),
    };
    // Check all four first so a refusal leaves nothing half-written.
    for path in [
        &bundle.devices_csv,
        &bundle.services_csv,
        &bundle.passwd,
        &bundle.acl,
    ] {
        if path.exists() {
            return Err(BundleError::Exists { path: path.clone() });
        }
    }

    let mut devices = String::from("device_id,password\n");
    for c in &roster.devices {
        devices.push_str(&format!("{},{}\n", c.user, c.password));
    }
    write_private(&bundle.devices_csv, devices.as_bytes())?;

    let mut services = String::from("role,user,password\n");
    for c in &roster.services {
        services.push_str(&format!("{},{},{}\n", c.role.name(), c.user, c.password));
    }
    write_private(&bundle.services_csv, services.as_bytes())?;

    let plain: String = roster
        .all()
        .map(|c| format!("{}:{}\n", c.user, c.password))
        .collect();
    write_private(&bundle.passwd, plain.as_bytes())?;
    hash_in_place(&bundle.passwd)?;

    write_private(&bundle.acl, render_acl(roster).as_bytes())?;
    Ok(bundle)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => BundleError::Exists {
                path: path.to_owned(),
            },
            _ => io(e),
        })?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// `mosquitto_passwd -U` replaces every plaintext password in the file with
/// its hash, reading the file itself: no password ever appears in argv.
fn hash_in_place(path: &Path) -> Result<(), BundleError> {
    let out = Command::new("mosquitto_passwd")
        .arg("-U")
        .arg(path)
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BundleError::PasswdMissing,
            _ => BundleError::Io {
                path: path.to_owned(),
                source: e,
            },
        })?;
    if !out.status.success() {
        return Err(BundleError::Passwd {
            path: path.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    // mosquitto_passwd rewrites through a temporary file; make sure the
    // result is still owner-only whatever its umask was.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| BundleError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn bundle_files_are_private_and_hold_no_plaintext_in_the_passwd() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        let roster = Roster::generate(3, 24).unwrap();
        let b = write_bundle(&roster, &dir).unwrap();
        for p in [&b.devices_csv, &b.services_csv, &b.passwd, &b.acl] {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        assert_eq!(mode(&dir), 0o700);

        let devices = fs::read_to_string(&b.devices_csv).unwrap();
        let lines: Vec<_> = devices.lines().collect();
        assert_eq!(lines[0], "device_id,password");
        assert_eq!(lines[1], format!("dev-0001,{}", roster.devices[0].password));
        assert_eq!(lines.len(), 4);

        let services = fs::read_to_string(&b.services_csv).unwrap();
        assert!(services.starts_with("role,user,password\npipeline,pipeline,"));
        assert!(services.contains("\ncardiologist,cardiologist,"));
        assert!(services.contains("\noperator,operator,"));

        let passwd = fs::read_to_string(&b.passwd).unwrap();
        assert_eq!(passwd.lines().count(), 6);
        for c in roster.all() {
            assert!(passwd.contains(&format!("{}:$7$", c.user)), "{passwd}");
            assert!(!passwd.contains(&c.password));
        }
    }

    #[test]
    fn an_existing_bundle_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(ACL_FILE), "keep me").unwrap();
        let err = write_bundle(&Roster::generate(1, 16).unwrap(), tmp.path()).unwrap_err();
        assert!(matches!(err, BundleError::Exists { .. }), "{err}");
        assert_eq!(
            fs::read_to_string(tmp.path().join(ACL_FILE)).unwrap(),
            "keep me"
        );
        assert!(!tmp.path().join(DEVICES_CSV).exists());
    }
}
