//! Test support shared by the workspace's integration tests.
//!
//! - [`Mosquitto`]: a private broker per test, on a free loopback port with
//!   its own config, password file, ACL and persistence directory, so tests
//!   never touch a system broker on 1883 and can stop and restart the broker
//!   without losing persistent sessions or queued QoS 1 messages.
//! - [`TlsOpts`]: an extra TLS listener with a throwaway CA generated at
//!   start, a server certificate for `localhost`/`127.0.0.1` and a client
//!   certificate signed by the same CA, all written into the broker's dir.

use std::fmt::Write as _;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports a start tries when the first is taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

/// Why the broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the `{0}` binary was not found on PATH; install Mosquitto \
         (apt-get install mosquitto mosquitto-clients), as the project's test script does"
    )]
    Missing(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("mosquitto_passwd failed ({status}): {stderr}")]
    Passwd { status: String, stderr: String },
    #[error("generating test certificates: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("mosquitto exited early ({status}); its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("mosquitto did not accept connections on 127.0.0.1:{port} within {timeout_s} s; its log:\n{log}")]
    NotListening {
        port: u16,
        timeout_s: u64,
        log: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BrokerError {
    let what = what.into();
    move |source| BrokerError::Io { what, source }
}

/// What the broker should enforce.
#[derive(Debug, Clone, Default)]
pub struct MosquittoOpts {
    /// MQTT users and their passwords. When non-empty, a password file is
    /// written and anonymous clients are refused.
    pub users: Vec<(String, String)>,
    /// An already hashed Mosquitto password file (as `ecgtriage devices
    /// provision` writes); used instead of `users` when set.
    pub password_file: Option<PathBuf>,
    /// Contents of an ACL file (mosquitto syntax), if any.
    pub acl: Option<String>,
    /// Extra lines appended to mosquitto.conf.
    pub extra_conf: Vec<String>,
    /// A second, TLS-only listener (same users and ACL as the plain one).
    pub tls: Option<TlsOpts>,
}

/// The TLS listener's policy.
#[derive(Debug, Clone, Default)]
pub struct TlsOpts {
    /// Refuse clients that present no certificate signed by the test CA.
    pub require_client_cert: bool,
}

/// PEM files of a broker's TLS listener, all inside the broker's dir.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The throwaway CA that signed the server and client certificates.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (CN `test-client`) signed by the CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A running private Mosquitto, killed on drop.
pub struct Mosquitto {
    dir: tempfile::TempDir,
    port: u16,
    tls: Option<(u16, TlsFiles)>,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes the config into a fresh temp dir and starts the broker.
    pub fn start(opts: MosquittoOpts) -> Result<Mosquitto, BrokerError> {
        Mosquitto::start_on(opts, free_port)
    }

    /// [`Mosquitto::start`] on the ports `next_port` offers.
    fn start_on(
        opts: MosquittoOpts,
        mut next_port: impl FnMut() -> Result<u16, BrokerError>,
    ) -> Result<Mosquitto, BrokerError> {
        let dir = tempfile::Builder::new()
            .prefix("ecg-mosquitto-")
            .tempdir()
            .map_err(io_err("creating the broker's temp dir"))?;
        let files = match &opts.tls {
            Some(_) => Some(write_certificates(dir.path())?),
            None => None,
        };
        let mut broker = Mosquitto {
            dir,
            port: 0,
            tls: None,
            child: None,
        };
        // A port found free may be taken by another process before the
        // broker binds it; the broker then exits at once, and new ports
        // are tried.
        let mut attempt = 1;
        loop {
            broker.port = next_port()?;
            broker.tls = match &files {
                Some(files) => Some((next_port()?, files.clone())),
                None => None,
            };
            let mut conf = render_conf(broker.dir.path(), broker.port, &opts)?;
            if let (Some((tls_port, files)), Some(tls_opts)) = (&broker.tls, &opts.tls) {
                render_tls_listener(&mut conf, *tls_port, files, tls_opts);
            }
            std::fs::write(broker.dir.path().join("mosquitto.conf"), conf)
                .map_err(io_err("writing mosquitto.conf"))?;
            match broker.spawn() {
                Err(BrokerError::Exited { log, .. })
                    if attempt < PORT_ATTEMPTS && log.contains("Address already in use") =>
                {
                    attempt += 1;
                }
                other => return other.map(|()| broker),
            }
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mqtt://user:pass@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("mqtt://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS listener's port, if one was asked for.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|(port, _)| *port)
    }

    /// `mqtts://127.0.0.1:PORT` of the TLS listener, if any.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port().map(|p| format!("mqtts://127.0.0.1:{p}"))
    }

    /// The CA, server and client PEM files of the TLS listener, if any.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|(_, files)| files)
    }

    /// The temp dir holding config, log and persistence database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker gracefully (SIGTERM), so it saves its persistence
    /// database, and waits for it to exit.
    pub fn stop(&mut self) -> Result<(), BrokerError> {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .map_err(io_err("running kill -TERM"))?;
            if !status.success() {
                child.kill().ok();
            }
            child.wait().map_err(io_err("waiting for mosquitto"))?;
        }
        Ok(())
    }

    /// Stops and starts the broker on the same port and config; persistent
    /// sessions and their queued messages survive.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.stop()?;
        self.spawn()
    }

    /// How many times the log says the broker started running.
    fn times_running(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("mosquitto version") && l.trim_end().ends_with(" running"))
            .count()
    }

    fn spawn(&mut self) -> Result<(), BrokerError> {
        let runs_before = self.times_running();
        let conf = self.dir.path().join("mosquitto.conf");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => BrokerError::Missing("mosquitto"),
                _ => BrokerError::Io {
                    what: "starting mosquitto".into(),
                    source: e,
                },
            })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(io_err("polling mosquitto"))? {
                return Err(BrokerError::Exited {
                    status: status.to_string(),
                    log: self.log(),
                });
            }
            // "running" is logged once every listener is bound, so a
            // connection that then succeeds reaches this broker, not
            // another process on a port taken since it was found free.
            // The log is appended to across restarts, hence the count.
            let tls_up = self
                .tls_port()
                .is_none_or(|p| TcpStream::connect(("127.0.0.1", p)).is_ok());
            if self.times_running() > runs_before
                && tls_up
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                return Err(BrokerError::NotListening {
                    port: self.port,
                    timeout_s: START_TIMEOUT.as_secs(),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A port the OS reports free on loopback. Never 1883: binding port 0 gets
/// an ephemeral port, far above the registered MQTT port.
fn free_port() -> Result<u16, BrokerError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_err("binding 127.0.0.1:0 for a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("reading the bound port"))?
        .port();
    Ok(port)
}

fn render_conf(dir: &Path, port: u16, opts: &MosquittoOpts) -> Result<String, BrokerError> {
    let mut conf = String::new();
    // Running as root, mosquitto would switch to the `mosquitto` user, who
    // cannot read or write a root-owned temp dir.
    if is_root() {
        conf.push_str("user root\n");
    }
    let _ = writeln!(conf, "listener {port} 127.0.0.1");
    let _ = writeln!(conf, "persistence true");
    let _ = writeln!(conf, "persistence_location {}/", dir.display());
    let _ = writeln!(
        conf,
        "log_dest file {}",
        dir.join("mosquitto.log").display()
    );
    conf.push_str("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
    // Tests publish bursts to subscribers that may be offline: never drop
    // queued QoS 1 messages for lack of room.
    conf.push_str("max_queued_messages 0\nmax_queued_bytes 0\n");
    if let Some(path) = &opts.password_file {
        conf.push_str("allow_anonymous false\n");
        let _ = writeln!(conf, "password_file {}", path.display());
    } else if opts.users.is_empty() {
        conf.push_str("allow_anonymous true\n");
    } else {
        let path = write_password_file(dir, &opts.users)?;
        conf.push_str("allow_anonymous false\n");
        let _ = writeln!(conf, "password_file {}", path.display());
    }
    if let Some(acl) = &opts.acl {
        let path = dir.join("acl");
        std::fs::write(&path, acl).map_err(io_err("writing the ACL file"))?;
        let _ = writeln!(conf, "acl_file {}", path.display());
    }
    for line in &opts.extra_conf {
        conf.push_str(line);
        conf.push('\n');
    }
    Ok(conf)
}

/// A fresh CA per broker: nothing signed for one test is trusted by another.
fn write_certificates(dir: &Path) -> Result<TlsFiles, BrokerError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ecg-testkit throwaway CA");
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "test-client");
    let client = client_params.signed_by(&client_key, &ca, &ca_key)?;

    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    for (path, pem) in [
        (&files.ca, ca.pem()),
        (&files.server_cert, server.pem()),
        (&files.server_key, server_key.serialize_pem()),
        (&files.client_cert, client.pem()),
        (&files.client_key, client_key.serialize_pem()),
    ] {
        std::fs::write(path, pem).map_err(io_err(format!("writing {}", path.display())))?;
    }
    Ok(files)
}

fn render_tls_listener(conf: &mut String, port: u16, files: &TlsFiles, opts: &TlsOpts) {
    let _ = writeln!(conf, "listener {port} 127.0.0.1");
    let _ = writeln!(conf, "cafile {}", files.ca.display());
    let _ = writeln!(conf, "certfile {}", files.server_cert.display());
    let _ = writeln!(conf, "keyfile {}", files.server_key.display());
    let _ = writeln!(conf, "require_certificate {}", opts.require_client_cert);
}

fn write_password_file(dir: &Path, users: &[(String, String)]) -> Result<PathBuf, BrokerError> {
    let path = dir.join("passwd");
    let plain: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    std::fs::write(&path, plain).map_err(io_err("writing the password file"))?;
    // -U hashes every plain-text password in place.
    let out = Command::new("mosquitto_passwd")
        .arg("-U")
        .arg(&path)
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BrokerError::Missing("mosquitto_passwd"),
            _ => BrokerError::Io {
                what: "running mosquitto_passwd".into(),
                source: e,
            },
        })?;
    if !out.status.success() {
        return Err(BrokerError::Passwd {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(path)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_starts_on_a_private_port_and_restarts() {
        let mut broker = Mosquitto::start(MosquittoOpts::default()).expect("mosquitto starts");
        assert_ne!(broker.port(), 1883);
        assert!(TcpStream::connect(("127.0.0.1", broker.port())).is_ok());
        broker.stop().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", broker.port())).is_err());
        broker.restart().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", broker.port())).is_ok());
    }

    #[test]
    fn a_port_taken_before_the_broker_binds_it_is_given_up_for_another() {
        // Another process holds the first port offered; it accepts
        // connections, so a start that only tried to connect would take
        // that process for the broker.
        let other = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let taken = other.local_addr().unwrap().port();
        let mut offered = 0;
        let broker = Mosquitto::start_on(MosquittoOpts::default(), || {
            offered += 1;
            if offered == 1 {
                Ok(taken)
            } else {
                free_port()
            }
        })
        .expect("the broker starts on the next port");
        assert_ne!(broker.port(), taken);
        assert_eq!(offered, 2);
        assert!(broker.log().contains("Address already in use"));
        assert_eq!(broker.times_running(), 1);
    }

    #[test]
    fn tls_listener_starts_with_the_generated_certificates() {
        let broker = Mosquitto::start(MosquittoOpts {
            tls: Some(TlsOpts::default()),
            ..Default::default()
        })
        .expect("mosquitto accepts the generated CA, certificate and key");
        let port = broker.tls_port().unwrap();
        assert_ne!(port, broker.port());
        assert_eq!(
            broker.tls_url().unwrap(),
            format!("mqtts://127.0.0.1:{port}")
        );
        let files = broker.tls_files().unwrap();
        let ca = std::fs::read_to_string(&files.ca).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn password_file_is_hashed() {
        let broker = Mosquitto::start(MosquittoOpts {
            users: vec![("dev-1".into(), "s3cret".into())],
            ..Default::default()
        })
        .expect("mosquitto starts with a password file");
        let text = std::fs::read_to_string(broker.dir().join("passwd")).unwrap();
        assert!(text.starts_with("dev-1:$"), "{text}");
        assert!(!text.contains("s3cret"));
    }
}
