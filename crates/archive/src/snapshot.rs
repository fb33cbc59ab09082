//! What a reader of the whole archive may read at one moment, so that a
//! compaction or a batch being written under a query neither doubles nor
//! drops rows (plain Parquet has no table format to make that atomic).
//!
//! A batch's files are readable once its `visits` file exists (it commits
//! the batch) and until a committed merge names the batch as a source; an
//! event file (acknowledgements, escalations) until a merged event file
//! names it. A table's listing is taken between two readings of the
//! commits ([`consistent`]); if a merge committed or a batch was retired
//! in between, the listing may hold a merge's sources without the merge
//! or the other way round, so it is taken again.
//!
//! A file can still vanish after the listing (a merge retiring it while
//! the reader reads): the reader's read then fails with "not found" and
//! the reader asks again (`ecg-query` does).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::compact::{is_merged, merged_sources, split_key};
use crate::reader::vanished;
use crate::store::ObjectStore;
use crate::table::Table;
use crate::ArchiveError;

/// How often a listing is taken again while compactions keep moving files
/// before the reader is told to come back later.
const ATTEMPTS: usize = 50;
const PAUSE: Duration = Duration::from_millis(20);

/// The sources each merged file names, read once: a merged file's name
/// carries a fresh UUID and the file is never rewritten.
#[derive(Debug, Default)]
pub struct MergedSources {
    known: Mutex<HashMap<String, Arc<[String]>>>,
}

impl MergedSources {
    fn of(&self, store: &dyn ObjectStore, key: &str) -> Result<Arc<[String]>, ArchiveError> {
        if let Some(s) = self.lock().get(key) {
            return Ok(s.clone());
        }
        let sources: Arc<[String]> = merged_sources(store, key)?.into();
        self.lock().insert(key.to_string(), sources.clone());
        Ok(sources)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[String]>>> {
        // The map only caches reads: one left half-updated by a panic is
        // still a valid cache.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The archive's commits at one moment: the `visits` files, and the
/// batches a committed merge replaced.
#[derive(Debug, Clone)]
struct Commits {
    /// Keys of the `visits` files.
    visits: HashSet<String>,
    /// Stems of committed batches not replaced by a committed merge.
    readable: HashSet<String>,
}

impl Commits {
    /// Lists the `visits` files and reads the sources of the merged ones.
    /// A merged file whose metadata cannot be read replaces nothing here
    /// (its sources stay readable, as compaction leaves them); reading it
    /// fails where its rows are read, naming it.
    fn read(store: &dyn ObjectStore, sources: &MergedSources) -> Result<Self, ArchiveError> {
        let mut visits = HashSet::new();
        let mut stems = HashSet::new();
        let mut replaced = HashSet::new();
        for key in store.list(Table::Visits.name())? {
            let Some(stem) = batch_stem(&key) else {
                continue;
            };
            if is_merged(stem) {
                match sources.of(store, &key) {
                    Ok(named) => replaced.extend(named.iter().cloned()),
                    Err(ArchiveError::Corrupt { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            stems.insert(stem.to_string());
            visits.insert(key);
        }
        let readable = stems.difference(&replaced).cloned().collect();
        Ok(Self { visits, readable })
    }

    /// Whether no merge committed and no batch was retired between these
    /// commits and `later`: a listing taken in between then agrees with
    /// these. Batches committed meanwhile do not matter: their files are
    /// left out as not yet committed here.
    fn compaction_quiet_until(&self, later: &Commits) -> bool {
        self.visits.is_subset(&later.visits)
            && later
                .visits
                .difference(&self.visits)
                .all(|k| !batch_stem(k).is_some_and(is_merged))
    }

    /// Whether the file `key` of a batch table (or a `visits` file) is to
    /// be read under these commits.
    fn shows(&self, key: &str) -> bool {
        batch_stem(key).is_some_and(|stem| self.readable.contains(stem))
    }
}

/// The stem of a `table/partition/stem.parquet` key.
fn batch_stem(key: &str) -> Option<&str> {
    split_key(key).map(|(_, _, stem)| stem)
}

/// Which of `listed` (keys of files of `table`, listed after `commits` were
/// read and before a later reading found the compaction quiet) a reader
/// reads: Parquet files only, of committed batches not merged away, or
/// event files not merged away.
fn visible(
    store: &dyn ObjectStore,
    sources: &MergedSources,
    commits: &Commits,
    table: Table,
    listed: &[&str],
) -> Result<Vec<bool>, ArchiveError> {
    if !matches!(table, Table::AlertAcks | Table::AlertEscalations) {
        return Ok(listed.iter().map(|k| commits.shows(k)).collect());
    }
    // Event files commit one by one; a merged one names the files it
    // replaced by key.
    let mut replaced = HashSet::new();
    for key in listed {
        if batch_stem(key).is_some_and(is_merged) {
            match sources.of(store, key) {
                Ok(named) => replaced.extend(named.iter().cloned()),
                Err(ArchiveError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(listed
        .iter()
        .map(|k| batch_stem(k).is_some() && !replaced.contains(*k))
        .collect())
}

/// A listing of `table` that a reader can read whole: `list` lists the
/// table's files (key and whatever the caller needs of each), between two
/// readings of the commits, again while compactions move files (a file
/// gone between a listing and its metadata being read counts as moving).
/// Returns the listed entries to read, in the listing's order.
pub fn consistent<M>(
    store: &dyn ObjectStore,
    sources: &MergedSources,
    table: Table,
    mut list: impl FnMut() -> Result<Vec<(String, M)>, ArchiveError>,
) -> Result<Vec<(String, M)>, ArchiveError> {
    for attempt in 0..ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(PAUSE);
        }
        match try_once(store, sources, table, &mut list) {
            Ok(Some(files)) => return Ok(files),
            Ok(None) => {}
            Err(e) if vanished(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Err(ArchiveError::Busy(format!(
        "the {} files kept moving while they were listed ({ATTEMPTS} times; a compaction under way?): try again",
        table.name()
    )))
}

fn try_once<M>(
    store: &dyn ObjectStore,
    sources: &MergedSources,
    table: Table,
    list: &mut impl FnMut() -> Result<Vec<(String, M)>, ArchiveError>,
) -> Result<Option<Vec<(String, M)>>, ArchiveError> {
    let before = Commits::read(store, sources)?;
    let listed = list()?;
    let after = Commits::read(store, sources)?;
    if !before.compaction_quiet_until(&after) {
        return Ok(None);
    }
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    let keep = visible(store, sources, &before, table, &keys)?;
    Ok(Some(
        listed
            .into_iter()
            .zip(keep)
            .filter_map(|(entry, keep)| keep.then_some(entry))
            .collect(),
    ))
}

/// The keys of `table` to read, from the store's own listing; only those
/// of one partition (`date=YYYY-MM-DD`) when given.
pub fn visible_files(
    store: &dyn ObjectStore,
    table: Table,
    partition: Option<&str>,
) -> Result<Vec<String>, ArchiveError> {
    let prefix = match partition {
        Some(p) => format!("{}/{p}", table.name()),
        None => table.name().to_string(),
    };
    let sources = MergedSources::default();
    let files = consistent(store, &sources, table, || {
        Ok(store.list(&prefix)?.into_iter().map(|k| (k, ())).collect())
    })?;
    Ok(files.into_iter().map(|(k, ())| k).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::compact::tests::{archive, day1, files, rows, rows_of};
    use crate::compact_local;
    use crate::store::{LocalDisk, StoreError};

    type Rows = BTreeMap<&'static str, Vec<(String, Vec<u8>)>>;

    fn visible_rows(root: &Path) -> Rows {
        rows_of(root, |store, table| {
            visible_files(store, table, None).unwrap()
        })
    }

    /// Every row of an archive no compaction touched: the truth.
    fn all_rows(root: &Path) -> Rows {
        let all = rows(root);
        for table in [Table::Visits, Table::Waveforms, Table::AlertAcks] {
            assert!(!all[table.name()].is_empty(), "{table:?}");
        }
        all
    }

    #[test]
    fn a_batch_is_read_once_its_visits_file_commits_it() {
        let dir = archive(4, 0);
        let root = dir.path();
        let before = all_rows(root);
        // A batch being written: its waveforms stored, its visits not yet.
        let waveforms = files(root, "waveforms").remove(0);
        let (folder, _) = waveforms.rsplit_once('/').unwrap();
        let pending = format!("{folder}/w9-pending.parquet");
        std::fs::copy(root.join(&waveforms), root.join(&pending)).unwrap();

        let shown = visible_files(&LocalDisk::new(root), Table::Waveforms, None).unwrap();
        assert!(!shown.contains(&pending), "{shown:?}");
        assert_eq!(shown.len(), 2);
        assert_eq!(visible_rows(root), before);
    }

    /// Lists through `inner`, and runs `during` (once) inside the listing
    /// of `table`: a compaction between the reader's readings of the
    /// commits.
    struct Underfoot<F: Fn(&Path) + Send + Sync> {
        inner: LocalDisk,
        table: Table,
        during: F,
        listings: AtomicUsize,
    }

    impl<F: Fn(&Path) + Send + Sync> ObjectStore for Underfoot<F> {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.inner.get(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            if prefix == self.table.name() && self.listings.fetch_add(1, Ordering::SeqCst) == 0 {
                let listed = self.inner.list(prefix);
                (self.during)(self.inner.root());
                return listed;
            }
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
    }

    #[test]
    fn a_listing_a_compaction_overtook_is_taken_again() {
        for table in [Table::Waveforms, Table::AlertAcks, Table::Visits] {
            let dir = archive(6, 1);
            let root = dir.path();
            let before = all_rows(root);
            let store = Underfoot {
                inner: LocalDisk::new(root),
                table,
                during: |root: &Path| {
                    compact_local(root, &day1()).unwrap();
                },
                listings: AtomicUsize::new(0),
            };
            let shown = visible_files(&store, table, None).unwrap();
            // Listed again after the merge; `visits` is also listed by
            // each reading of the commits (three per attempt).
            let per_attempt = if table == Table::Visits { 3 } else { 1 };
            assert_eq!(
                store.listings.load(Ordering::SeqCst),
                2 * per_attempt,
                "{table:?}"
            );
            assert_eq!(shown, visible_files(&store.inner, table, None).unwrap());
            assert!(shown.iter().all(|k| root.join(k).exists()), "{shown:?}");
            assert_eq!(visible_rows(root), before);
        }
    }
}
