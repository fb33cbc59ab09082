//! One TLS handshake with the broker before the pipeline starts.
//!
//! The MQTT clients reconnect forever, which is right for a broker that is
//! down but wrong for one whose certificate we do not trust or that does not
//! speak TLS at all: that never heals, and the operator would only see a
//! warning repeated every few seconds. So `ecgtriage run` shakes hands once
//! first and refuses to start, with the reason, when the handshake itself
//! fails. A broker that cannot be reached yet is not refused: the clients'
//! reconnect loop is there for that.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// Why the broker cannot be used over TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsCheckError {
    #[error("broker host {0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error(
        "TLS handshake with the broker at {addr} failed: {reason} \
         (is that port a TLS listener, and is its certificate signed by the CA given with --ca?)"
    )]
    Handshake { addr: String, reason: String },
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsCheck {
    /// The handshake completed: the broker proved its identity.
    Trusted,
    /// No TCP connection (the reason); the clients will keep trying.
    Unreachable(String),
}

/// Connects to `host:port` and completes a TLS handshake with `config`
/// (the same configuration the MQTT clients use), within `timeout`.
pub fn check_broker(
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<TlsCheck, TlsCheckError> {
    let addr = format!("{host}:{port}");
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| TlsCheckError::ServerName(host.to_owned()))?;
    let sock = match addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_owned()))
        .and_then(|a| TcpStream::connect_timeout(&a, timeout).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(reason) => return Ok(TlsCheck::Unreachable(reason)),
    };
    let handshake_err = |reason: String| TlsCheckError::Handshake {
        addr: addr.clone(),
        reason,
    };
    let setup = sock
        .set_read_timeout(Some(timeout))
        .and_then(|()| sock.set_write_timeout(Some(timeout)));
    setup.map_err(|e| handshake_err(e.to_string()))?;
    let mut conn =
        rustls::ClientConnection::new(config, name).map_err(|e| handshake_err(e.to_string()))?;
    let mut sock = sock;
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) => {
                return Err(handshake_err(
                    "the broker closed the connection during the handshake".into(),
                ))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(handshake_err(format!(
                    "no TLS answer within {} s",
                    timeout.as_secs_f64()
                )))
            }
            Err(e) => return Err(handshake_err(e.to_string())),
        }
    }
    // A polite close; the broker sees a client that left before CONNECT.
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = sock.flush();
    let _ = sock.shutdown(std::net::Shutdown::Both);
    Ok(TlsCheck::Trusted)
}

/// [`check_broker`] for the ingest connection of `cfg`, if it uses TLS
/// (the output connection goes to the same broker with the same CA).
pub fn check_service(
    cfg: &crate::service::ServiceConfig,
    timeout: Duration,
) -> Result<Option<TlsCheck>, TlsCheckError> {
    match &cfg.ingest.tls {
        Some(rumqttc::TlsConfiguration::Rustls(tls)) => {
            check_broker(&cfg.ingest.host, cfg.ingest.port, tls.clone(), timeout).map(Some)
        }
        _ => Ok(None),
    }
}
