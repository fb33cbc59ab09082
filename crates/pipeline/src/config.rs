//! `ecgtriage run` settings: a TOML file, command-line flags over it, and
//! the secrets (broker password, archive pseudonym key) from the environment
//! so they stay out of files and process listings. No `Debug` here shows a
//! secret, so settings can be logged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ecg_wire::CentreId;
use ecg_wire::PseudonymKey;
use firmware_sim::broker::{redact_url, BrokerUrl, TlsSettings};
use rumqttc::TlsConfiguration;
use serde::Deserialize;

use crate::publish::BrokerAddr;
use crate::service::ServiceConfig;

/// The environment variable holding the broker password.
pub const PASSWORD_ENV: &str = "ECGTRIAGE_BROKER_PASSWORD";

/// The environment variable holding the archive's pseudonym key (overrides
/// `pseudonym_key` in the file).
pub const PSEUDONYM_KEY_ENV: &str = "ECGTRIAGE_PSEUDONYM_KEY";

/// The archive key of `ecgtriage demo` only: public, so a demo archive is
/// no more private than its synthetic patients.
pub const DEMO_PSEUDONYM_KEY: &str = "ecgtriage-demo-archive-key-NOT-SECRET";

/// Secrets taken from the environment rather than the file.
#[derive(Default, Clone, PartialEq)]
pub struct EnvSecrets {
    /// [`PASSWORD_ENV`].
    pub password: Option<String>,
    /// [`PSEUDONYM_KEY_ENV`].
    pub pseudonym_key: Option<String>,
}

impl EnvSecrets {
    /// Reads [`PASSWORD_ENV`] and [`PSEUDONYM_KEY_ENV`].
    pub fn from_env() -> EnvSecrets {
        EnvSecrets {
            password: std::env::var(PASSWORD_ENV).ok(),
            pseudonym_key: std::env::var(PSEUDONYM_KEY_ENV).ok(),
        }
    }
}

impl std::fmt::Debug for EnvSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSecrets")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "pseudonym_key",
                &self.pseudonym_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The file, in the pipeline's spool folder, of the archive key generated
/// when none is configured.
pub const GENERATED_KEY_FILE: &str = "pseudonym.key";

/// The archive key kept in `spool_dir`, made on the first start without a
/// configured one. The spool is the pipeline's own durable state and never
/// goes to analysts with the archive; losing the key only means that later
/// visits of a patient no longer share earlier ones' pseudonym, so it says
/// loudly where the key is and how to manage it instead.
fn generated_pseudonym_key(spool_dir: &Path) -> Result<String, ConfigError> {
    let path = spool_dir.join(GENERATED_KEY_FILE);
    let failed = |e: std::io::Error| invalid("pseudonym_key", format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim().to_owned();
            if text.len() < 16 {
                // Generating another would silently change every pseudonym.
                return Err(invalid(
                    "pseudonym_key",
                    format!(
                        "{} holds no usable key ({} bytes); restore it from a backup, \
                         or set {PSEUDONYM_KEY_ENV}",
                        path.display(),
                        text.len()
                    ),
                ));
            }
            tracing::warn!(
                path = %path.display(),
                "archive pseudonym key read from the spool folder (none configured); \
                 set {PSEUDONYM_KEY_ENV} to manage it yourself"
            );
            return Ok(text);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| invalid("pseudonym_key", format!("no randomness: {e}")))?;
    let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(spool_dir).map_err(failed)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    {
        use std::io::Write;
        let mut file = opts.open(&path).map_err(failed)?;
        writeln!(file, "{text}").map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    tracing::warn!(
        path = %path.display(),
        "no archive pseudonym key configured: generated one; back it up, or set \
         {PSEUDONYM_KEY_ENV} (patients keep their pseudonym only while the key stays)"
    );
    Ok(text)
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(invalid("log_format", format!("{other:?} (text or json)"))),
        }
    }
}

/// The TOML file; every field optional. Unknown keys are refused, so a
/// misspelt setting is an error rather than silently ignored. Its `Debug`
/// hides the password, the pseudonym key and a password inside the URL.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `mqtt://[user:pass@]host:port` or `mqtts://...` (trusting `ca`, else
    /// the system's CA store).
    pub broker: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (TLS).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that want one (TLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The archive's pseudonym key (at least 16 bytes of text); prefer the
    /// environment variable. Without one, a key is generated once and kept
    /// in the spool folder (`pseudonym.key`).
    pub pseudonym_key: Option<String>,
    /// Goes into every archived pseudonym (`k<version>-...`); default 1.
    pub pseudonym_key_version: Option<u16>,
    /// MQTT user (overrides the URL's).
    pub username: Option<String>,
    /// MQTT password; prefer the environment variable.
    pub password: Option<String>,
    /// Stable client id: the broker keeps the session under it.
    pub client_id: Option<String>,
    pub archive: Option<PathBuf>,
    pub spool: Option<PathBuf>,
    pub centre: Option<String>,
    pub log_format: Option<LogFormat>,
    pub metrics: Option<SocketAddr>,
    /// MQTT 5 receive maximum (backpressure).
    pub receive_maximum: Option<u16>,
    /// A visit silent this long is closed incomplete.
    pub visit_timeout_s: Option<u64>,
    /// A finished visit is queryable within about this delay.
    pub archive_flush_s: Option<f64>,
    /// Closed days of the archive are merged this often (default 3600, the
    /// first run at most 5 min after start); 0: never, leaving it to
    /// `ecgtriage archive compact`.
    pub archive_compact_every_s: Option<f64>,
    /// The quarantine of refused input (the spool folder's `quarantine/`)
    /// holds at most this many MiB; default 1024.
    pub quarantine_max_mib: Option<u64>,
    /// One device adds at most this many MiB to it a day; default 64.
    pub quarantine_max_mib_per_device_day: Option<u64>,
    /// Serve the dashboard on this address (loopback unless you put it
    /// behind a TLS proxy).
    pub http: Option<SocketAddr>,
    /// An alert nobody acknowledged this long is escalated.
    pub escalate_after_s: Option<f64>,
    /// Cardiologist accounts of the dashboard (`[[accounts]]` tables with
    /// `user` and an argon2 `password_hash`).
    pub accounts: Option<Vec<ecg_dashboard::Account>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Settings")
            .field("broker", &self.broker.as_deref().map(redact_url))
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("pseudonym_key", &hidden(&self.pseudonym_key))
            .field("pseudonym_key_version", &self.pseudonym_key_version)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("client_id", &self.client_id)
            .field("archive", &self.archive)
            .field("spool", &self.spool)
            .field("centre", &self.centre)
            .field("log_format", &self.log_format)
            .field("metrics", &self.metrics)
            .field("receive_maximum", &self.receive_maximum)
            .field("visit_timeout_s", &self.visit_timeout_s)
            .field("archive_flush_s", &self.archive_flush_s)
            .field("archive_compact_every_s", &self.archive_compact_every_s)
            .field("quarantine_max_mib", &self.quarantine_max_mib)
            .field(
                "quarantine_max_mib_per_device_day",
                &self.quarantine_max_mib_per_device_day,
            )
            .finish()
    }
}

impl Settings {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text, &name)
    }

    pub fn parse(text: &str, name: &str) -> Result<Settings, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: name.to_owned(),
            source,
        })
    }

    /// `self` with every field that `over` sets replaced.
    pub fn overridden_by(self, over: Settings) -> Settings {
        Settings {
            broker: over.broker.or(self.broker),
            ca: over.ca.or(self.ca),
            client_cert: over.client_cert.or(self.client_cert),
            client_key: over.client_key.or(self.client_key),
            pseudonym_key: over.pseudonym_key.or(self.pseudonym_key),
            pseudonym_key_version: over.pseudonym_key_version.or(self.pseudonym_key_version),
            username: over.username.or(self.username),
            password: over.password.or(self.password),
            client_id: over.client_id.or(self.client_id),
            archive: over.archive.or(self.archive),
            spool: over.spool.or(self.spool),
            centre: over.centre.or(self.centre),
            log_format: over.log_format.or(self.log_format),
            metrics: over.metrics.or(self.metrics),
            receive_maximum: over.receive_maximum.or(self.receive_maximum),
            visit_timeout_s: over.visit_timeout_s.or(self.visit_timeout_s),
            archive_flush_s: over.archive_flush_s.or(self.archive_flush_s),
            archive_compact_every_s: over
                .archive_compact_every_s
                .or(self.archive_compact_every_s),
            quarantine_max_mib: over.quarantine_max_mib.or(self.quarantine_max_mib),
            quarantine_max_mib_per_device_day: over
                .quarantine_max_mib_per_device_day
                .or(self.quarantine_max_mib_per_device_day),
            http: over.http.or(self.http),
            escalate_after_s: over.escalate_after_s.or(self.escalate_after_s),
            accounts: over.accounts.or(self.accounts),
        }
    }

    /// Escalation and dashboard settings. Without accounts, the dashboard
    /// is reached through a one-time URL printed on stdout.
    pub fn cardiologist_side(&self) -> Result<crate::service::CardiologistSide, ConfigError> {
        let mut lifecycle = crate::lifecycle::LifecycleConfig::default();
        if let Some(s) = self.escalate_after_s {
            if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
                return Err(invalid("escalate_after_s", "must be in (0, 86400]"));
            }
            lifecycle.escalate_after = Duration::from_secs_f64(s);
        }
        let accounts = self.accounts.clone().unwrap_or_default();
        for a in &accounts {
            if argon2_phc(&a.password_hash).is_none() {
                return Err(invalid(
                    "accounts",
                    format!("{}: password_hash is not an argon2 PHC string", a.user),
                ));
            }
        }
        Ok(crate::service::CardiologistSide {
            lifecycle,
            http: self.http,
            print_token_url: accounts.is_empty(),
            accounts,
        })
    }

    /// The service configuration, with the secrets from `env` taking
    /// precedence over those in the file or URL. Reads the TLS files, so a
    /// missing or unreadable CA fails here, before anything connects.
    pub fn resolve(&self, env: EnvSecrets) -> Result<ServiceConfig, ConfigError> {
        let env_password = env.password;
        let url = self.broker.as_deref().unwrap_or("mqtt://127.0.0.1:1883");
        let tls = TlsSettings::from_files(
            self.ca.clone(),
            self.client_cert.clone(),
            self.client_key.clone(),
        )
        .map_err(|e| invalid("ca", e.to_string()))?;
        let (broker, tls) =
            BrokerUrl::parse_with_tls(url, tls).map_err(|e| invalid("broker", e.to_string()))?;
        let tls = match tls {
            Some(t) => Some(TlsConfiguration::Rustls(
                t.client_config()
                    .map_err(|e| invalid("ca", e.to_string()))?,
            )),
            None => None,
        };
        let key_version = self.pseudonym_key_version.unwrap_or(1);
        // Built here so that a bad key is reported in settings order.
        let configured_key = env
            .pseudonym_key
            .or_else(|| self.pseudonym_key.clone())
            .map(|text| PseudonymKey::new(key_version, text.as_bytes()))
            .transpose()
            .map_err(|e| invalid("pseudonym_key", e.to_string()))?;
        let mut credentials = broker.user.clone();
        if let Some(u) = &self.username {
            let pass = credentials.map(|(_, p)| p).unwrap_or_default();
            credentials = Some((u.clone(), pass));
        }
        if let Some(p) = env_password.or_else(|| self.password.clone()) {
            match &mut credentials {
                Some((_, pass)) => *pass = p,
                None => return Err(invalid("password", "a password needs a username")),
            }
        }
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| "ecgtriage-pipeline".to_owned());
        if client_id.is_empty()
            || !client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "client_id",
                "ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        let centre_name = self.centre.clone().unwrap_or_else(|| "centre-1".to_owned());
        let centre = CentreId::new(centre_name).map_err(|e| invalid("centre", e.to_string()))?;
        let archive_dir = self
            .archive
            .clone()
            .unwrap_or_else(|| PathBuf::from("archive"));
        let spool_dir = self
            .spool
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.spool", archive_dir.display())));
        let spool_for_key = spool_dir.clone();
        let mut ingest = ecg_ingest::IngestConfig::new(
            broker.host.clone(),
            broker.port,
            client_id.clone(),
            spool_dir,
        );
        ingest.credentials = credentials.clone();
        ingest.tls = tls.clone();
        if let Some(r) = self.receive_maximum {
            if r == 0 {
                return Err(invalid("receive_maximum", "must be >= 1"));
            }
            ingest.receive_maximum = r;
        }
        if let Some(t) = self.visit_timeout_s {
            if t == 0 {
                return Err(invalid("visit_timeout_s", "must be >= 1"));
            }
            ingest.assembly.visit_timeout = Duration::from_secs(t);
        }
        // The writer id names this process's files in a shared archive.
        let writer_id: String = client_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut archive = ecg_archive::WriterConfig::new(writer_id);
        if let Some(s) = self.archive_flush_s {
            if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
                return Err(invalid("archive_flush_s", "must be in (0, 3600]"));
            }
            archive.max_age = Duration::from_secs_f64(s);
        }
        let compaction = match self.archive_compact_every_s {
            None => Some(crate::compaction::CompactionSchedule::default()),
            Some(0.0) => None,
            Some(s) if s.is_finite() && s > 0.0 && s <= 7.0 * 86_400.0 => Some(
                crate::compaction::CompactionSchedule::every(Duration::from_secs_f64(s)),
            ),
            Some(_) => {
                return Err(invalid(
                    "archive_compact_every_s",
                    "must be 0 (never) or in (0, 604800]",
                ))
            }
        };
        let mut quarantine = crate::quarantine::QuarantineConfig::default();
        if let Some(m) = self.quarantine_max_mib {
            quarantine.max_bytes = m.saturating_mul(1 << 20);
        }
        if let Some(m) = self.quarantine_max_mib_per_device_day {
            quarantine.max_bytes_per_source_day = m.saturating_mul(1 << 20);
        }
        // Last, once every setting is valid: the generated key is a file.
        let key = match configured_key {
            Some(key) => key,
            None => PseudonymKey::new(
                key_version,
                generated_pseudonym_key(&spool_for_key)?.as_bytes(),
            )
            .map_err(|e| invalid("pseudonym_key", e.to_string()))?,
        };
        archive.pseudonym_key = Some(key);
        Ok(ServiceConfig {
            ingest,
            output: BrokerAddr {
                host: broker.host,
                port: broker.port,
                credentials,
                tls,
            },
            output_client_id: format!("{client_id}-out"),
            archive_dir,
            archive,
            centre,
            metrics_addr: self.metrics,
            quarantine,
            compaction,
        })
    }
}

/// Passwords are never in the config, only their hashes.
fn argon2_phc(s: &str) -> Option<()> {
    s.starts_with("$argon2").then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "archive-key-for-unit-tests";

    fn env(password: Option<&str>) -> EnvSecrets {
        EnvSecrets {
            password: password.map(str::to_owned),
            pseudonym_key: Some(KEY.into()),
        }
    }

    #[test]
    fn flags_override_file_and_env_overrides_password() {
        let file = Settings::parse(
            r#"
broker = "mqtt://pipeline:filepass@broker.example:1884"
archive = "/data/archive"
centre = "county-1"
log_format = "json"
visit_timeout_s = 30
http = "127.0.0.1:8750"
escalate_after_s = 90
quarantine_max_mib = 10

[[accounts]]
user = "dr.li"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
"#,
            "test.toml",
        )
        .unwrap();
        let flags = Settings {
            archive: Some("/tmp/a".into()),
            ..Default::default()
        };
        let s = file.overridden_by(flags);
        assert_eq!(s.log_format, Some(LogFormat::Json));
        let cfg = s.resolve(env(Some("envpass"))).unwrap();
        assert_eq!(cfg.archive_dir, PathBuf::from("/tmp/a"));
        assert_eq!(cfg.ingest.host, "broker.example");
        assert_eq!(cfg.ingest.port, 1884);
        assert_eq!(
            cfg.ingest.credentials,
            Some(("pipeline".into(), "envpass".into()))
        );
        assert_eq!(cfg.ingest.assembly.visit_timeout, Duration::from_secs(30));
        assert_eq!(cfg.centre.as_str(), "county-1");
        assert_eq!(cfg.quarantine.max_bytes, 10 << 20);
        assert_eq!(
            cfg.compaction,
            Some(crate::compaction::CompactionSchedule::default())
        );
        assert_eq!(
            cfg.quarantine.max_bytes_per_source_day,
            crate::quarantine::QuarantineConfig::default().max_bytes_per_source_day
        );
        let cfg = s.resolve(env(None)).unwrap();
        assert_eq!(cfg.output.credentials.unwrap().1, "filepass");
        let side = s.cardiologist_side().unwrap();
        assert_eq!(side.lifecycle.escalate_after, Duration::from_secs(90));
        assert_eq!(side.http, Some("127.0.0.1:8750".parse().unwrap()));
        assert_eq!(side.accounts[0].user, "dr.li");
        assert!(!side.print_token_url);
        let plain = Settings {
            accounts: Some(vec![ecg_dashboard::Account {
                user: "x".into(),
                password_hash: "hunter2".into(),
            }]),
            ..Default::default()
        };
        assert!(plain.cardiologist_side().is_err());
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Settings::parse("brokr = \"x\"", "t.toml").unwrap_err();
        assert!(e.to_string().contains("brokr"), "{e}");
        let s = Settings {
            broker: Some("http://x".into()),
            ..Default::default()
        };
        assert!(s
            .resolve(env(None))
            .unwrap_err()
            .to_string()
            .contains("broker"));
        let s = Settings {
            password: Some("p".into()),
            ..Default::default()
        };
        assert!(s.resolve(env(None)).is_err());
        for (every, want) in [(0.0, None), (30.0, Some(30))] {
            let s = Settings {
                archive_compact_every_s: Some(every),
                ..Default::default()
            };
            let got = s.resolve(env(None)).unwrap().compaction;
            assert_eq!(got.map(|c| c.every.as_secs()), want);
        }
        for bad in [-1.0, f64::NAN, 1e9] {
            let s = Settings {
                archive_compact_every_s: Some(bad),
                ..Default::default()
            };
            let e = s.resolve(env(None)).unwrap_err().to_string();
            assert!(e.contains("archive_compact_every_s"), "{e}");
        }
        let s = Settings {
            centre: Some("bad/centre".into()),
            ..Default::default()
        };
        assert!(s
            .resolve(env(None))
            .unwrap_err()
            .to_string()
            .contains("centre"));
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn without_a_key_one_is_generated_once_and_kept_in_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let s = Settings {
            spool: Some(spool.clone()),
            ..Default::default()
        };
        let first = s.resolve(EnvSecrets::default()).unwrap();
        let file = spool.join(GENERATED_KEY_FILE);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.trim().len(), 64, "32 random bytes in hex");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
        }
        let key = PseudonymKey::new(1, text.trim().as_bytes()).unwrap();
        assert_eq!(first.archive.pseudonym_key, Some(key.clone()));
        let again = s.resolve(EnvSecrets::default()).unwrap();
        assert_eq!(again.archive.pseudonym_key, Some(key.clone()));
        // Another spool gets another key; a configured key makes no file.
        let other = Settings {
            spool: Some(dir.path().join("other")),
            ..Default::default()
        };
        assert_ne!(
            other
                .resolve(EnvSecrets::default())
                .unwrap()
                .archive
                .pseudonym_key,
            Some(key)
        );
        let configured = Settings {
            spool: Some(dir.path().join("configured")),
            pseudonym_key: Some("file-key-0123456789".into()),
            ..Default::default()
        };
        configured.resolve(EnvSecrets::default()).unwrap();
        assert!(!dir.path().join("configured").exists());
        // A damaged key file is named, not replaced.
        std::fs::write(&file, "\n").unwrap();
        let e = s.resolve(EnvSecrets::default()).unwrap_err().to_string();
        assert!(
            e.contains(GENERATED_KEY_FILE) && e.contains("no usable key"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "\n");
    }

    #[test]
    fn a_configured_key_env_wins_and_short_keys_fail() {
        let s = Settings {
            pseudonym_key: Some("file-key-0123456789".into()),
            pseudonym_key_version: Some(3),
            ..Default::default()
        };
        let from_file = s.resolve(EnvSecrets::default()).unwrap();
        let k = from_file.archive.pseudonym_key.unwrap();
        assert_eq!(k, PseudonymKey::new(3, b"file-key-0123456789").unwrap());
        let from_env = s
            .resolve(EnvSecrets {
                pseudonym_key: Some("env-key-0123456789".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            from_env.archive.pseudonym_key.unwrap(),
            PseudonymKey::new(3, b"env-key-0123456789").unwrap()
        );
        let short = Settings {
            pseudonym_key: Some("short".into()),
            ..Default::default()
        };
        let e = short.resolve(EnvSecrets::default()).unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
    }

    #[test]
    fn no_debug_output_shows_a_secret() {
        let file = Settings::parse(
            r#"
broker = "mqtt://pipeline:url-secret-pw@broker.example:1884"
password = "file-secret-pw"
pseudonym_key = "file-secret-pseudonym-key"
"#,
            "t.toml",
        )
        .unwrap();
        let env = EnvSecrets {
            password: Some("env-secret-pw".into()),
            pseudonym_key: Some("env-secret-pseudonym-key".into()),
        };
        let cfg = file.resolve(env.clone()).unwrap();
        let shown = format!("{file:?}\n{file:#?}\n{env:?}\n{cfg:?}\n{cfg:#?}");
        for secret in [
            "url-secret-pw",
            "file-secret-pw",
            "env-secret-pw",
            "file-secret-pseudonym-key",
            "env-secret-pseudonym-key",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
        // Still useful: the user and host are there.
        assert!(shown.contains("pipeline") && shown.contains("broker.example"));
    }

    #[test]
    fn tls_needs_mqtts_and_a_readable_ca_or_the_system_store() {
        let dir = tempfile::tempdir().unwrap();
        let base = Settings {
            pseudonym_key: Some("archive-key-for-unit-tests".into()),
            ..Default::default()
        };
        let s = Settings {
            broker: Some("mqtts://h:8883".into()),
            ..base.clone()
        };
        // Without a CA file, the system's store (empty on some machines).
        match s.resolve(EnvSecrets::default()) {
            Ok(cfg) => assert!(cfg.ingest.tls.is_some() && cfg.output.tls.is_some()),
            Err(e) => assert!(e.to_string().contains("system store"), "{e}"),
        }
        let s = Settings {
            broker: Some("mqtt://h:1883".into()),
            ca: Some(write(dir.path(), "ca.pem", "x")),
            ..base.clone()
        };
        let e = s.resolve(EnvSecrets::default()).unwrap_err();
        assert!(e.to_string().contains("not mqtts"), "{e}");
        let s = Settings {
            broker: Some("mqtts://h:8883".into()),
            ca: Some(write(dir.path(), "bad.pem", "not a certificate")),
            ..base.clone()
        };
        let e = s.resolve(EnvSecrets::default()).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let s = Settings {
            broker: Some("mqtts://h:8883".into()),
            ca: Some(dir.path().join("ca.pem")),
            client_cert: Some(dir.path().join("c.pem")),
            ..base
        };
        let e = s.resolve(EnvSecrets::default()).unwrap_err();
        assert!(e.to_string().contains("together"), "{e}");
    }
}
