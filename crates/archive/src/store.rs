//! The object-store seam. The writer and reader see the archive as keys
//! (`visits/date=2026-11-29/w1-....parquet`) in a flat namespace, as S3 does;
//! [`LocalDisk`] maps keys to files under a root folder.
//!
//! `put` must make an object visible whole or not at all: on S3 a single
//! PUT is atomic; on disk that takes a temporary name, fsync and rename.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Suffix of objects being written; readers glob `*.parquet`, so these are
/// never seen, and the writer deletes its own leftovers at open.
pub const TMP_SUFFIX: &str = ".tmp";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
}

/// Where archive objects live. Keys are `/`-separated relative paths.
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` under `key`, atomically: a concurrent or later reader
    /// sees the whole object or none, even across a crash. Returns once the
    /// object is durable.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// The last `len` bytes of `key`, or all of it when shorter: a Parquet
    /// footer without the file (a reader of many files' metadata).
    fn get_tail(&self, key: &str, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut bytes = self.get(key)?;
        let start = bytes.len().saturating_sub(len);
        Ok(bytes.split_off(start))
    }
    /// Every key under `prefix` (recursively), including temporary objects,
    /// sorted. A missing prefix lists nothing.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// An archive on the local file system.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    /// No I/O: folders are created by the first `put` that needs them, so
    /// a reader never creates an archive by looking at it.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        // Keys come from our own writer, but a key that climbs out of the
        // root would write anywhere: refuse it.
        let bad = key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
        if bad {
            return Err(StoreError::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl ObjectStore for LocalDisk {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        // Data durable before the name points at it, else a crash could
        // leave a committed name over a truncated file.
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
        // The rename itself is durable only once the directory is synced.
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &dir))?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        fs::read(&path).map_err(io("read", &path))
    }

    fn get_tail(&self, key: &str, len: usize) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        let mut f = fs::File::open(&path).map_err(io("read", &path))?;
        let size = f.metadata().map_err(io("stat", &path))?.len();
        let keep = size.min(len as u64);
        f.seek(SeekFrom::Start(size - keep))
            .map_err(io("read", &path))?;
        let mut bytes = Vec::with_capacity(keep as usize);
        f.read_to_end(&mut bytes).map_err(io("read", &path))?;
        Ok(bytes)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        let mut keys = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("list", &dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io("list", &dir))?;
                let path = entry.path();
                let ft = entry.file_type().map_err(io("stat", &path))?;
                if ft.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key: Vec<_> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect();
                    keys.push(key.join("/"));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", &path)(e)),
        }
    }
}

/// A test store's check before a put.
#[cfg(test)]
type PutHook = Box<dyn Fn(&str) -> Result<(), StoreError> + Send + Sync>;

/// A store for tests that stages what happens around its calls.
#[cfg(test)]
pub(crate) struct Hooked {
    pub inner: LocalDisk,
    /// Before each put; an error refuses it (a full disk).
    pub before_put: PutHook,
    /// With each key once it is stored.
    pub after_put: Box<dyn Fn(&str) + Send + Sync>,
    /// Before each read, with the store underneath.
    pub before_get: Box<dyn Fn(&LocalDisk) + Send + Sync>,
}

#[cfg(test)]
impl Hooked {
    pub fn new(root: &Path) -> Self {
        Hooked {
            inner: LocalDisk::new(root),
            before_put: Box::new(|_| Ok(())),
            after_put: Box::new(|_| {}),
            before_get: Box::new(|_| {}),
        }
    }
}

#[cfg(test)]
impl ObjectStore for Hooked {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        (self.before_put)(key)?;
        self.inner.put(key, bytes)?;
        (self.after_put)(key);
        Ok(())
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        (self.before_get)(&self.inner);
        self.inner.get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDisk::new(dir.path());
        store
            .put("visits/date=2026-01-02/a.parquet", b"abc")
            .unwrap();
        store.put("beats/x.parquet", b"d").unwrap();
        assert_eq!(
            store.list("").unwrap(),
            vec!["beats/x.parquet", "visits/date=2026-01-02/a.parquet"]
        );
        assert_eq!(store.list("visits").unwrap().len(), 1);
        assert!(store.list("alerts").unwrap().is_empty());
        assert_eq!(store.get("beats/x.parquet").unwrap(), b"d");
        let key = "visits/date=2026-01-02/a.parquet";
        assert_eq!(store.get_tail(key, 2).unwrap(), b"bc");
        assert_eq!(store.get_tail(key, 10).unwrap(), b"abc");
        // The trait's own, for stores without a ranged read.
        let hooked = Hooked::new(dir.path());
        assert_eq!(hooked.get_tail(key, 2).unwrap(), b"bc");
        assert_eq!(hooked.get_tail(key, 10).unwrap(), b"abc");
        store.delete("beats/x.parquet").unwrap();
        store.delete("beats/x.parquet").unwrap();
        assert!(store.list("beats").unwrap().is_empty());
    }

    #[test]
    fn refuses_keys_outside_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDisk::new(dir.path());
        for key in ["../x", "/etc/x", "a//b", "", "a/./b"] {
            assert!(
                matches!(store.put(key, b""), Err(StoreError::InvalidKey(_))),
                "{key}"
            );
        }
    }
}
