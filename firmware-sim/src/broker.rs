//! Broker URLs (`mqtt[s]://[user:pass@]host:port`), TLS settings and
//! per-device credentials.
//!
//! TLS uses rustls with the ring provider: the default aws-lc provider needs
//! cmake and a long C build, and ring covers the broker's cipher suites.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a broker URL or credentials file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("broker URL {0:?} must look like mqtt://[user:pass@]host:port")]
    Url(String),
    #[error("broker URL {0:?} uses TLS, which this command does not support")]
    TlsUnsupported(String),
    #[error("a CA file was given but broker URL {0:?} is not mqtts://")]
    TlsNotRequested(String),
    #[error("TLS file {path}: {reason}")]
    TlsFile { path: String, reason: String },
    #[error("client certificate and client key must be given together")]
    ClientCertPair,
    #[error(
        "no trusted CA certificate in the system store ({0}): give the broker's CA with --ca FILE"
    )]
    NoSystemRoots(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("credentials file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Where to connect and, optionally, as whom. Its `Debug` hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user.as_ref().map(|(u, _)| (u, "<redacted>")))
            .finish()
    }
}

/// `url` with the password of its `user:pass@` part replaced, for messages
/// and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:<redacted>@{hostport}")
        }
        None => url.to_owned(),
    }
}

impl BrokerUrl {
    /// Parses a plain `mqtt://` URL; `mqtts://` is refused here because it
    /// needs [`TlsSettings`] (see [`BrokerUrl::parse_with_tls`]).
    pub fn parse(url: &str) -> Result<BrokerUrl, BrokerConfigError> {
        match Self::parse_any(url)? {
            (broker, false) => Ok(broker),
            (_, true) => Err(BrokerConfigError::TlsUnsupported(redact_url(url))),
        }
    }

    /// Parses `mqtt://` or `mqtts://` and checks that TLS settings are given
    /// only when the scheme asks for TLS; `mqtts://` without them trusts the
    /// system's CA store, as any TLS client does.
    pub fn parse_with_tls(
        url: &str,
        tls: Option<TlsSettings>,
    ) -> Result<(BrokerUrl, Option<TlsSettings>), BrokerConfigError> {
        match (Self::parse_any(url)?, tls) {
            ((broker, true), Some(tls)) => Ok((broker, Some(tls))),
            ((broker, true), None) => Ok((broker, Some(TlsSettings::system_roots()))),
            ((_, false), Some(_)) => Err(BrokerConfigError::TlsNotRequested(redact_url(url))),
            ((broker, false), None) => Ok((broker, None)),
        }
    }

    /// The URL and whether its scheme is `mqtts`.
    fn parse_any(url: &str) -> Result<(BrokerUrl, bool), BrokerConfigError> {
        let bad = || BrokerConfigError::Url(redact_url(url));
        let (rest, tls) = match url.strip_prefix("mqtts://") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("mqtt://").ok_or_else(bad)?, false),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').ok_or_else(bad)?;
                if u.is_empty() {
                    return Err(bad());
                }
                (Some((u.to_owned(), p.to_owned())), hp)
            }
            None => (None, rest),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok((
            BrokerUrl {
                host: host.to_owned(),
                port,
                user,
            },
            tls,
        ))
    }
}

/// PEM files for a TLS connection: the CA that signed the broker's
/// certificate (`None`: the system's CA store, or `SSL_CERT_FILE`) and,
/// optionally, the device's own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// From command-line style options: `--ca`, `--client-cert`,
    /// `--client-key` (the last two together or not at all).
    pub fn from_files(
        ca: Option<PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
    ) -> Result<Option<TlsSettings>, BrokerConfigError> {
        let client_cert = match (client_cert, client_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(BrokerConfigError::ClientCertPair),
        };
        Ok((ca.is_some() || client_cert.is_some()).then_some(TlsSettings { ca, client_cert }))
    }

    /// A server-authenticated connection trusting the system's CA store.
    pub fn system_roots() -> TlsSettings {
        TlsSettings {
            ca: None,
            client_cert: None,
        }
    }

    /// A rustls client configuration (ring provider). A CA file is trusted
    /// alone, never with the system store: a network with its own CA must
    /// not also accept any publicly certified host.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, BrokerConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in read_certs(ca)? {
                    roots.add(cert)?;
                }
            }
            None => roots = system_roots()?,
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match &self.client_cert {
            Some((cert, key)) => {
                builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The system's CA store, read once per process: a fleet opens a link per
/// device, and the bundle is a few hundred kB to parse.
fn system_roots() -> Result<rustls::RootCertStore, BrokerConfigError> {
    static ROOTS: std::sync::OnceLock<Result<rustls::RootCertStore, String>> =
        std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            // Unparsable entries in a system bundle are skipped, as other
            // TLS clients do; only an empty store is an error.
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string));
            }
            Ok(roots)
        })
        .clone()
        .map_err(BrokerConfigError::NoSystemRoots)
}

fn tls_file_err(path: &Path, reason: impl ToString) -> BrokerConfigError {
    BrokerConfigError::TlsFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BrokerConfigError> {
    let bytes = std::fs::read(path).map_err(|e| tls_file_err(path, e))?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file_err(path, e))?;
    if certs.is_empty() {
        return Err(tls_file_err(path, "no PEM certificate found"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, BrokerConfigError> {
    let bytes = std::fs::read(path).map_err(|e| tls_file_err(path, e))?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| tls_file_err(path, e))?
        .ok_or_else(|| tls_file_err(path, "no PEM private key found"))
}

/// Reads a `device_id,password` CSV (a `device_id,password` header line is
/// skipped; blank lines are ignored).
pub fn read_credentials(path: &Path) -> Result<Vec<(String, String)>, BrokerConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BrokerConfigError::Read {
        path: name.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("device_id,password")) {
            continue;
        }
        let err = |reason: String| BrokerConfigError::Line {
            path: name.clone(),
            line: i + 1,
            reason,
        };
        let (dev, pass) = line
            .split_once(',')
            .ok_or_else(|| err("expected device_id,password".into()))?;
        ecg_wire::DeviceId::new(dev.trim()).map_err(|e| err(e.to_string()))?;
        out.push((dev.trim().to_owned(), pass.trim().to_owned()));
    }
    if out.is_empty() {
        return Err(BrokerConfigError::Line {
            path: name,
            line: 0,
            reason: "no devices listed".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_user() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.user), ("127.0.0.1", 1884, None));
        let u = BrokerUrl::parse("mqtt://dev-1:p@ss@localhost:1883/").unwrap();
        assert_eq!(u.user, Some(("dev-1".into(), "p@ss".into())));
        assert_eq!(u.host, "localhost");
        assert!(matches!(
            BrokerUrl::parse("mqtts://h:8883"),
            Err(BrokerConfigError::TlsUnsupported(_))
        ));
        let tls = TlsSettings {
            ca: Some("ca.pem".into()),
            client_cert: None,
        };
        let (u, t) = BrokerUrl::parse_with_tls("mqtts://d:p@h:8883", Some(tls.clone())).unwrap();
        assert_eq!((u.host.as_str(), u.port), ("h", 8883));
        assert_eq!(t, Some(tls.clone()));
        assert!(matches!(
            BrokerUrl::parse_with_tls("mqtt://h:1883", Some(tls)),
            Err(BrokerConfigError::TlsNotRequested(_))
        ));
        let (_, t) = BrokerUrl::parse_with_tls("mqtts://h:8883", None).unwrap();
        assert_eq!(t, Some(TlsSettings::system_roots()));
        for bad in [
            "h:1883",
            "mqtt://h",
            "mqtt://h:x",
            "mqtt://:1883",
            "mqtt://u@h:1",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_errors_and_debug() {
        let e = BrokerUrl::parse("mqtt://dev-1:hunter2@h").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("dev-1"), "{e}");
        let e = BrokerUrl::parse("mqtts://dev-1:hunter2@h:8883").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let u = BrokerUrl::parse("mqtt://dev-1:hunter2@h:1883").unwrap();
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(
            redact_url("mqtt://a:b:c@h:1"),
            "mqtt://a:<redacted>@h:1".to_owned()
        );
        assert_eq!(redact_url("mqtt://h:1"), "mqtt://h:1");
    }

    #[test]
    fn tls_settings_need_cert_and_key_together_and_readable_pem() {
        assert!(matches!(
            TlsSettings::from_files(Some("ca".into()), Some("c".into()), None),
            Err(BrokerConfigError::ClientCertPair)
        ));
        assert_eq!(
            TlsSettings::from_files(None, Some("c".into()), Some("k".into())).unwrap(),
            Some(TlsSettings {
                ca: None,
                client_cert: Some(("c".into(), "k".into())),
            })
        );
        assert_eq!(TlsSettings::from_files(None, None, None).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let tls = TlsSettings::from_files(Some(ca), None, None)
            .unwrap()
            .unwrap();
        let err = tls.client_config().unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let missing = TlsSettings {
            ca: Some(dir.path().join("absent.pem")),
            client_cert: None,
        };
        assert!(missing.client_config().is_err());
    }

    #[test]
    fn credentials_skip_header_and_reject_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "device_id,password\ndev-1,a\n\ndev-2,b\n").unwrap();
        assert_eq!(read_credentials(&p).unwrap().len(), 2);
        std::fs::write(&p, "dev/1,a\n").unwrap();
        assert!(read_credentials(&p).is_err());
    }
}
