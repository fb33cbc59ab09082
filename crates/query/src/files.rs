//! [`ArchiveFiles`]: the archive's files as DataFusion sees them. A local
//! file system whose listing of a table is a consistent snapshot
//! ([`ecg_archive::snapshot`]): the files of committed batches, without
//! those a committed merge replaced, so that a batch being written or a
//! compaction under way shows every row once. A file that vanishes after
//! the listing (a merge retiring it) is noted, so that the engine runs the
//! query again on a new listing.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ecg_archive::snapshot::{consistent, MergedSources};
use ecg_archive::{ArchiveError, LocalDisk, StoreError, Table, TABLES};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Object-store name in errors.
const STORE: &str = "ecg-archive";

#[derive(Debug, Clone)]
pub(crate) struct ArchiveFiles {
    inner: Arc<LocalFileSystem>,
    /// The archive root, canonical, as a file-system path and as an
    /// object-store path.
    disk: LocalDisk,
    root: Path,
    sources: Arc<MergedSources>,
    vanished: Arc<AtomicBool>,
    /// Run once after a listing of its table (tests: a compaction between
    /// the listing and the reading).
    #[cfg(test)]
    pub(crate) after_listing: tests::Hook,
}

impl fmt::Display for ArchiveFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArchiveFiles({})", self.disk.root().display())
    }
}

impl ArchiveFiles {
    /// `root` must be canonical (absolute, no symbolic links), as
    /// DataFusion's paths of the tables under it are.
    pub(crate) fn new(root: PathBuf) -> Result<Self, object_store::Error> {
        Ok(Self {
            inner: Arc::new(LocalFileSystem::new()),
            root: Path::from_absolute_path(&root)?,
            disk: LocalDisk::new(root),
            sources: Arc::default(),
            vanished: Arc::default(),
            #[cfg(test)]
            after_listing: tests::Hook::default(),
        })
    }

    /// Clears the note of a file that vanished under a query, returning
    /// whether there was one.
    pub(crate) fn take_vanished(&self) -> bool {
        self.vanished.swap(false, Ordering::SeqCst)
    }

    /// The archive key (`table/partition/file`) of a path under the root.
    fn key_of(&self, location: &Path) -> Option<String> {
        let parts: Vec<String> = location
            .prefix_match(&self.root)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }

    /// The table whose folder (or a partition of it) `prefix` is.
    fn table_of(&self, prefix: &Path) -> Option<Table> {
        let key = self.key_of(prefix)?;
        let name = key.split('/').next()?;
        TABLES.iter().copied().find(|t| t.name() == name)
    }

    /// A consistent listing of `prefix`, a table's folder or a partition
    /// of it; on a blocking thread (it reads the commits from disk).
    fn snapshot(
        &self,
        table: Table,
        prefix: &Path,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Vec<ObjectMeta>, ArchiveError> {
        let listed = consistent(&self.disk, &self.sources, table, || {
            let metas: Vec<ObjectMeta> = runtime
                .block_on(self.inner.list(Some(prefix)).try_collect())
                .map_err(|e| listing_error(prefix, e))?;
            Ok(metas
                .into_iter()
                .filter_map(|m| Some((self.key_of(&m.location)?, m)))
                .collect())
        })?;
        #[cfg(test)]
        self.after_listing.run(table);
        Ok(listed.into_iter().map(|(_, m)| m).collect())
    }

    fn note<T>(&self, outcome: object_store::Result<T>) -> object_store::Result<T> {
        if let Err(object_store::Error::NotFound { .. }) = &outcome {
            self.vanished.store(true, Ordering::SeqCst);
        }
        outcome
    }
}

fn listing_error(prefix: &Path, e: object_store::Error) -> ArchiveError {
    // "Not found" lets the snapshot list again: a folder went mid-walk.
    let kind = match e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        _ => std::io::ErrorKind::Other,
    };
    ArchiveError::Store(StoreError::Io {
        op: "list",
        path: PathBuf::from(format!("/{prefix}")),
        source: std::io::Error::new(kind, e),
    })
}

#[async_trait]
impl ObjectStore for ArchiveFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.note(self.inner.get_opts(location, options).await)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.note(self.inner.get_ranges(location, ranges).await)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (Some(prefix), Ok(runtime)) = (prefix, tokio::runtime::Handle::try_current()) else {
            return self.inner.list(prefix);
        };
        let Some(table) = self.table_of(prefix) else {
            return self.inner.list(Some(prefix));
        };
        let this = self.clone();
        let prefix = prefix.clone();
        let listing = async move {
            let metas =
                tokio::task::spawn_blocking(move || this.snapshot(table, &prefix, &runtime))
                    .await
                    .map_err(|e| object_store::Error::JoinError { source: e })?
                    .map_err(|e| object_store::Error::Generic {
                        store: STORE,
                        source: Box::new(e),
                    })?;
            Ok::<_, object_store::Error>(stream::iter(metas.into_iter().map(Ok)))
        };
        stream::once(listing).try_flatten().boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

    type Action = Box<dyn FnOnce() + Send>;

    /// An action to run after the next listing of a table.
    #[derive(Clone, Default)]
    pub(crate) struct Hook(Arc<Mutex<Option<(Table, Action)>>>);

    impl fmt::Debug for Hook {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Hook")
        }
    }

    impl Hook {
        pub(crate) fn set(&self, table: Table, action: impl FnOnce() + Send + 'static) {
            *self.0.lock().unwrap() = Some((table, Box::new(action)));
        }

        pub(crate) fn run(&self, listed: Table) {
            let mut slot = self.0.lock().unwrap();
            if slot.as_ref().is_some_and(|(t, _)| *t == listed) {
                let (_, action) = slot.take().unwrap();
                drop(slot);
                action();
            }
        }
    }
}
