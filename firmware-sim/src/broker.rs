//! Broker URLs (`mqtt://[user:pass@]host:port`) and per-device credentials.

use std::path::Path;

/// Why a broker URL or credentials file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("broker URL {0:?} must look like mqtt://[user:pass@]host:port")]
    Url(String),
    #[error("broker URL {0:?}: mqtts (TLS) is not supported yet")]
    TlsUnsupported(String),
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

/// Where to connect and, optionally, as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<(String, String)>,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, BrokerConfigError> {
        let bad = || BrokerConfigError::Url(url.to_owned());
        if url.starts_with("mqtts://") {
            return Err(BrokerConfigError::TlsUnsupported(url.to_owned()));
        }
        let rest = url.strip_prefix("mqtt://").ok_or_else(bad)?;
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
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
            user,
        })
    }
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
    fn credentials_skip_header_and_reject_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "device_id,password\ndev-1,a\n\ndev-2,b\n").unwrap();
        assert_eq!(read_credentials(&p).unwrap().len(), 2);
        std::fs::write(&p, "dev/1,a\n").unwrap();
        assert!(read_credentials(&p).is_err());
    }
}
