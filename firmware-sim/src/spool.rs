//! The on-device spool: every message is written to disk before it is
//! handed to MQTT and deleted only when the broker's PUBACK arrives, so
//! unsent messages survive a link drop and a device restart.
//!
//! One file per message, named by a zero-padded counter so that a
//! directory listing replays messages in the order they were produced.
//! File layout: topic length (u16 LE), topic (UTF-8), payload.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why a spool file could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool file {0} is truncated or not a spool message")]
    Corrupt(PathBuf),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A message as stored in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub path: PathBuf,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// One device's spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next: u64,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`; new messages are
    /// numbered after any left over from a previous run.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let next = Self::list(&dir)?
            .last()
            .and_then(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        Ok(Spool { dir, next })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn list(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(io_at(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "msg"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Writes a message and returns its file. Written to a temporary name
    /// and renamed, so a crash never leaves a half message under a real name.
    pub fn push(&mut self, topic: &str, payload: &[u8]) -> Result<PathBuf, SpoolError> {
        let path = self.dir.join(format!("{:020}.msg", self.next));
        let tmp = self.dir.join(format!("{:020}.tmp", self.next));
        self.next += 1;
        let topic_len =
            u16::try_from(topic.len()).map_err(|_| SpoolError::Corrupt(path.clone()))?;
        let mut bytes = Vec::with_capacity(2 + topic.len() + payload.len());
        bytes.extend_from_slice(&topic_len.to_le_bytes());
        bytes.extend_from_slice(topic.as_bytes());
        bytes.extend_from_slice(payload);
        fs::write(&tmp, &bytes).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
        Ok(path)
    }

    /// Every message still unacknowledged, oldest first.
    pub fn pending(&self) -> Result<Vec<Spooled>, SpoolError> {
        Self::list(&self.dir)?
            .into_iter()
            .map(|path| read(&path))
            .collect()
    }
}

fn read(path: &Path) -> Result<Spooled, SpoolError> {
    let bytes = fs::read(path).map_err(io_at(path))?;
    let corrupt = || SpoolError::Corrupt(path.to_owned());
    let len = usize::from(u16::from_le_bytes(
        bytes
            .get(..2)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?,
    ));
    let topic = bytes.get(2..2 + len).ok_or_else(corrupt)?;
    let topic = String::from_utf8(topic.to_vec()).map_err(|_| corrupt())?;
    Ok(Spooled {
        path: path.to_owned(),
        topic,
        payload: bytes[2 + len..].to_vec(),
    })
}

/// Removes an acknowledged message; a file already gone is not an error
/// (a duplicate PUBACK after a retransmission).
pub fn remove(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SpoolError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_reopen_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        let a = s.push("t/a", b"1").unwrap();
        s.push("t/b", b"22").unwrap();
        drop(s);
        let mut s = Spool::open(dir.path()).unwrap();
        s.push("t/c", b"").unwrap();
        remove(&a).unwrap();
        remove(&a).unwrap();
        let p = s.pending().unwrap();
        let topics: Vec<_> = p.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["t/b", "t/c"]);
        assert_eq!(p[0].payload, b"22");
    }

    #[test]
    fn truncated_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000000000000000.msg"), [9]).unwrap();
        let s = Spool::open(dir.path()).unwrap();
        assert!(matches!(s.pending(), Err(SpoolError::Corrupt(_))));
    }
}
