//! Test support shared by the workspace's integration tests.
//!
//! - [`Mosquitto`]: a private broker per test, on a free loopback port with
//!   its own config, password file, ACL and persistence directory, so tests
//!   never touch a system broker on 1883 and can stop and restart the broker
//!   without losing persistent sessions or queued QoS 1 messages.

use std::fmt::Write as _;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Contents of an ACL file (mosquitto syntax), if any.
    pub acl: Option<String>,
    /// Extra lines appended to mosquitto.conf.
    pub extra_conf: Vec<String>,
}

/// A running private Mosquitto, killed on drop.
pub struct Mosquitto {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes the config into a fresh temp dir and starts the broker.
    pub fn start(opts: MosquittoOpts) -> Result<Mosquitto, BrokerError> {
        let dir = tempfile::Builder::new()
            .prefix("ecg-mosquitto-")
            .tempdir()
            .map_err(io_err("creating the broker's temp dir"))?;
        let port = free_port()?;
        let conf = render_conf(dir.path(), port, &opts)?;
        std::fs::write(dir.path().join("mosquitto.conf"), conf)
            .map_err(io_err("writing mosquitto.conf"))?;
        let mut broker = Mosquitto {
            dir,
            port,
            child: None,
        };
        broker.spawn()?;
        Ok(broker)
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

    fn spawn(&mut self) -> Result<(), BrokerError> {
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
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
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
    if opts.users.is_empty() {
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
