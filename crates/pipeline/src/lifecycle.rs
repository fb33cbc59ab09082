//! An alert's life after publication: pending until a cardiologist
//! acknowledges it, escalated (re-published to the escalation topic with a
//! higher `escalation_level`) each time it stays unacknowledged for the
//! configured time.
//!
//! The pending alerts live in the pipeline's spool folder, so an alert
//! that was pending when the pipeline stopped or crashed is pending again
//! when it starts: a snapshot ([`STATE_FILE`]) and a journal of the changes
//! since ([`JOURNAL_FILE`], one JSON line each, synced before the change
//! counts). The journal is folded into a new snapshot (temp file, fsync,
//! rename) every [`COMPACT_AFTER`] changes: rewriting the whole book on every
//! change cost a county's year about 30,000 rewrites of up to 200 KB.
//! Replaying a change onto a state that already has it changes nothing, so
//! a crash between the snapshot and the journal's truncation is harmless.
//! Times are wall-clock times, for the same reason as the files.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ecg_wire::topic::Topic;
use ecg_wire::{Alert, AlertAck, AlertId, CentreId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The escalation topic of a centre (pipeline -> senior staff / on-call
/// lists): the alert JSON again, `escalation_level` >= 1.
pub fn escalation_topic(centre: &CentreId) -> String {
    Topic::AlertEscalation {
        centre_id: centre.clone(),
    }
    .to_string()
}

/// The acknowledgement topic of a centre (cardiologist -> pipeline).
pub fn ack_topic(centre: &CentreId) -> String {
    Topic::AlertAck {
        centre_id: centre.clone(),
    }
    .to_string()
}

/// Name of the snapshot inside the spool folder.
pub const STATE_FILE: &str = "alerts-pending.json";

/// Name of the journal of changes since the snapshot, beside it.
pub const JOURNAL_FILE: &str = "alerts-journal.jsonl";

/// Changes in the journal that make the next change write a new snapshot.
pub const COMPACT_AFTER: usize = 1024;

/// Acked alert ids remembered so that a replayed visit (crash between
/// publish and archive) does not make an acknowledged alert pending again.
const REMEMBER_ACKED: usize = 4096;

/// When and how far to escalate.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// An alert unacknowledged this long after its publication (or its last
    /// escalation) is escalated.
    pub escalate_after: Duration,
    /// No escalation beyond this level; the alert stays pending.
    pub max_level: u8,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            // The chest-pain centre's target: an ECG read within 10 minutes
            // of acquisition; escalating at 5 leaves time to act.
            escalate_after: Duration::from_secs(300),
            max_level: 3,
        }
    }
}

/// Why the lifecycle state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} line {line}: {source}")]
    CorruptJournal {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// One pending alert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    pub alert: Alert,
    /// Publication or last escalation: the clock of the next escalation
    /// starts here (so a changed `escalate_after` applies to pending
    /// alerts too).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Escalations so far.
    pub level: u8,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    pending: BTreeMap<String, Pending>,
    acked: VecDeque<String>,
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Change {
    Published(Box<Pending>),
    Acked(String),
    Escalated {
        id: String,
        level: u8,
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
}

impl State {
    /// Applies `change`; true when it changed anything. Idempotent, and a
    /// no-op on a state that already went past it (a later escalation, an
    /// acknowledgement after the publication).
    fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Published(p) => {
                let id = p.alert.alert_id.to_string();
                if self.pending.contains_key(&id) || self.acked.contains(&id) {
                    return false;
                }
                self.pending.insert(id, (**p).clone());
                true
            }
            Change::Acked(id) => {
                if self.pending.remove(id).is_none() {
                    return false;
                }
                self.acked.push_back(id.clone());
                while self.acked.len() > REMEMBER_ACKED {
                    self.acked.pop_front();
                }
                true
            }
            Change::Escalated { id, level, since } => match self.pending.get_mut(id) {
                Some(p) if p.level < *level => {
                    p.level = *level;
                    p.since = *since;
                    true
                }
                _ => false,
            },
        }
    }
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq)]
pub enum AckEffect {
    /// The alert was pending and is now acknowledged.
    Recorded(Box<Alert>),
    /// Already acknowledged, or an alert this pipeline never published.
    NotPending,
}

/// The pending alerts, persisted.
#[derive(Debug)]
pub struct AlertBook {
    cfg: LifecycleConfig,
    path: PathBuf,
    state: State,
    journal_path: PathBuf,
    /// Opened at the first change.
    journal: Option<std::fs::File>,
    /// Changes in the journal.
    journaled: usize,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LifecycleError {
    let path = path.display().to_string();
    move |source| LifecycleError::Io { what, path, source }
}

/// The pending alerts in the book at `path` (snapshot and journal), oldest
/// first, read without changing the files: for tools and tests beside a
/// running pipeline (a line being written is left out; a fold into the
/// snapshot between the two reads can hide changes, so poll).
pub fn read_pending(path: &Path) -> Result<Vec<Pending>, LifecycleError> {
    let loaded = load(path, &path.with_file_name(JOURNAL_FILE))?;
    let mut v: Vec<Pending> = loaded.state.pending.into_values().collect();
    v.sort_by_key(|p| p.since);
    Ok(v)
}

/// What the book's files hold.
struct Loaded {
    state: State,
    /// Changes in the journal.
    journaled: usize,
    /// Length of the journal's complete lines, and of the whole file.
    whole_bytes: u64,
    journal_bytes: u64,
}

fn load(path: &Path, journal_path: &Path) -> Result<Loaded, LifecycleError> {
    let mut state = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| LifecycleError::Corrupt {
            path: path.display().to_string(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => return Err(io_err("reading", path)(e)),
    };
    let bytes = match std::fs::read(journal_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err("reading", journal_path)(e)),
    };
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut journaled = 0;
    for (i, line) in bytes[..whole].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let change: Change =
            serde_json::from_slice(line).map_err(|source| LifecycleError::CorruptJournal {
                path: journal_path.display().to_string(),
                line: i + 1,
                source,
            })?;
        state.apply(&change);
        journaled += 1;
    }
    Ok(Loaded {
        state,
        journaled,
        whole_bytes: whole as u64,
        journal_bytes: bytes.len() as u64,
    })
}

/// [`load`], and a last journal line cut short (by a crash, or a failed
/// append) cut off the file, so that the next append starts a line.
fn load_whole(path: &Path, journal_path: &Path) -> Result<Loaded, LifecycleError> {
    let loaded = load(path, journal_path)?;
    if loaded.whole_bytes < loaded.journal_bytes {
        tracing::warn!(path = %journal_path.display(),
            bytes = loaded.journal_bytes - loaded.whole_bytes,
            "alert journal ends in a cut-off line (a crash or a failed write); dropped");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(journal_path)
            .map_err(io_err("opening", journal_path))?;
        f.set_len(loaded.whole_bytes)
            .map_err(io_err("truncating", journal_path))?;
        f.sync_all().map_err(io_err("syncing", journal_path))?;
    }
    Ok(loaded)
}

fn after(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t + time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl AlertBook {
    /// Loads the book from the snapshot `path` and the journal beside it
    /// (empty when neither exists). A last journal line without its newline
    /// is a write that a crash cut short: it never counted, and is cut off.
    pub fn open(path: PathBuf, cfg: LifecycleConfig) -> Result<AlertBook, LifecycleError> {
        let journal_path = path.with_file_name(JOURNAL_FILE);
        let loaded = load_whole(&path, &journal_path)?;
        Ok(AlertBook {
            cfg,
            path,
            state: loaded.state,
            journal_path,
            journal: None,
            journaled: loaded.journaled,
        })
    }

    /// The pending alerts, oldest first.
    pub fn pending(&self) -> Vec<&Pending> {
        let mut v: Vec<&Pending> = self.state.pending.values().collect();
        v.sort_by_key(|p| p.since);
        v
    }

    /// Records a published alert as pending (a re-publication of one
    /// already known keeps its deadline).
    pub fn published(&mut self, alert: &Alert) -> Result<(), LifecycleError> {
        self.change(Change::Published(Box::new(Pending {
            alert: alert.clone(),
            since: alert.published_at,
            level: 0,
        })))
    }

    /// Applies an acknowledgement.
    pub fn acknowledge(&mut self, ack: &AlertAck) -> Result<AckEffect, LifecycleError> {
        let id = ack.alert_id.to_string();
        let Some(alert) = self.state.pending.get(&id).map(|p| p.alert.clone()) else {
            return Ok(AckEffect::NotPending);
        };
        self.change(Change::Acked(id))?;
        Ok(AckEffect::Recorded(Box::new(alert)))
    }

    /// The alerts due for escalation at `now`, as the copies to publish
    /// (level raised, `published_at` = `now`).
    /// Not saved: call [`AlertBook::commit_escalations`] once they are out,
    /// so a crash in between escalates them again rather than never.
    pub fn due(&self, now: OffsetDateTime) -> Vec<Alert> {
        self.state
            .pending
            .values()
            .filter(|p| {
                after(p.since, self.cfg.escalate_after) <= now && p.level < self.cfg.max_level
            })
            .map(|p| {
                let mut a = p.alert.clone();
                a.escalation_level = p.level + 1;
                a.published_at = now.max(a.detected_at);
                a
            })
            .collect()
    }

    /// Marks escalations as published.
    pub fn commit_escalations(
        &mut self,
        sent: &[Alert],
        now: OffsetDateTime,
    ) -> Result<(), LifecycleError> {
        for a in sent {
            self.change(Change::Escalated {
                id: a.alert_id.to_string(),
                level: a.escalation_level,
                since: now,
            })?;
        }
        Ok(())
    }

    /// Whether `id` is pending.
    pub fn is_pending(&self, id: AlertId) -> bool {
        self.state.pending.contains_key(&id.to_string())
    }

    /// Applies `change` and makes it durable: one journal line, synced,
    /// or, every [`COMPACT_AFTER`] changes, a new snapshot.
    fn change(&mut self, change: Change) -> Result<(), LifecycleError> {
        if !self.state.apply(&change) {
            return Ok(());
        }
        if self.journaled >= COMPACT_AFTER {
            return self.compact();
        }
        let journal = match &mut self.journal {
            Some(f) => f,
            None => {
                self.create_folder()?;
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.journal_path)
                    .map_err(io_err("opening", &self.journal_path))?;
                self.journal.insert(f)
            }
        };
        let mut line = serde_json::to_vec(&change).expect("a change serialises");
        line.push(b'\n');
        if let Err(e) = journal.write_all(&line).and_then(|()| journal.sync_data()) {
            self.recover();
            return Err(io_err("appending to", &self.journal_path)(e));
        }
        self.journaled += 1;
        Ok(())
    }

    /// After a failed append (a full disk): the book goes back to what its
    /// files hold, with the part of the line that was written cut off, so
    /// that memory and disk agree and a later append starts a clean line.
    /// Best effort: if the files cannot be read either, the next open does
    /// the same.
    fn recover(&mut self) {
        self.journal = None;
        match load_whole(&self.path, &self.journal_path) {
            Ok(loaded) => {
                self.state = loaded.state;
                self.journaled = loaded.journaled;
            }
            Err(e) => {
                tracing::error!(error = %e, "alert book could not be re-read after a failed write")
            }
        }
    }

    /// The spool folder that holds the book, created at its first write.
    fn create_folder(&self) -> Result<(), LifecycleError> {
        match self.path.parent() {
            Some(dir) => std::fs::create_dir_all(dir).map_err(io_err("creating", dir)),
            None => Ok(()),
        }
    }

    /// Writes the whole state as the new snapshot, then empties the journal.
    fn compact(&mut self) -> Result<(), LifecycleError> {
        self.create_folder()?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serialises");
        let mut f = std::fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io_err("renaming", &tmp))?;
        // The rename must be on disk before the journal is emptied, or a
        // crash could leave the old snapshot and no journal.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("syncing", dir))?;
        }
        // A crash before the truncation replays the journal onto a snapshot
        // that has it already: no effect.
        self.journal = None;
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.journal_path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("truncating", &self.journal_path))?;
        self.journaled = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_alert() -> Alert {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/examples/alert.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn pending_survives_reopen_escalates_once_per_period_and_ack_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let cfg = LifecycleConfig {
            escalate_after: Duration::from_secs(60),
            max_level: 2,
        };
        let alert = example_alert();
        let t0 = alert.published_at;
        let mut book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        book.published(&alert).unwrap();
        assert!(book.due(t0 + time::Duration::seconds(59)).is_empty());
        drop(book);

        let mut book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        assert!(book.is_pending(alert.alert_id));
        let t1 = t0 + time::Duration::seconds(61);
        let due = book.due(t1);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].escalation_level, 1);
        assert_eq!(due[0].published_at, t1);
        book.commit_escalations(&due, t1).unwrap();
        assert!(book.due(t1 + time::Duration::seconds(30)).is_empty());
        let t2 = t1 + time::Duration::seconds(61);
        let due = book.due(t2);
        assert_eq!(due[0].escalation_level, 2);
        book.commit_escalations(&due, t2).unwrap();
        // At the highest level it stays pending without further escalation.
        assert!(book.due(t2 + time::Duration::hours(1)).is_empty());

        let ack = AlertAck {
            alert_id: alert.alert_id,
            by: "dr.li".into(),
            at: t2,
            verdict: None,
        };
        assert!(matches!(
            book.acknowledge(&ack).unwrap(),
            AckEffect::Recorded(_)
        ));
        assert_eq!(book.acknowledge(&ack).unwrap(), AckEffect::NotPending);
        // A replayed publication of an acknowledged alert stays acknowledged.
        book.published(&alert).unwrap();
        drop(book);
        let book = AlertBook::open(path, cfg).unwrap();
        assert!(!book.is_pending(alert.alert_id));
        assert!(book.pending().is_empty());
    }

    /// `n` distinct alerts, published a second apart.
    fn alerts(n: usize) -> Vec<Alert> {
        let base = example_alert();
        (0..n)
            .map(|i| {
                let mut a = base.clone();
                a.alert_id = AlertId::from_bytes((i as u128 + 1).to_be_bytes()).unwrap();
                a.published_at = base.published_at + time::Duration::seconds(i as i64);
                a
            })
            .collect()
    }

    fn ack_of(a: &Alert) -> AlertAck {
        AlertAck {
            alert_id: a.alert_id,
            by: "dr.li".into(),
            at: a.published_at,
            verdict: None,
        }
    }

    /// A fresh folder (kept while the first value lives), the snapshot and
    /// journal paths in it, and the default settings.
    fn book_files() -> (tempfile::TempDir, PathBuf, PathBuf, LifecycleConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let journal = dir.path().join(JOURNAL_FILE);
        (dir, path, journal, LifecycleConfig::default())
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    }

    #[test]
    fn a_long_run_is_journaled_compacted_and_reopens_as_it_was() {
        let (_dir, path, journal, cfg) = book_files();
        let mut book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        let all = alerts(COMPACT_AFTER + 300);
        for (i, a) in all.iter().enumerate() {
            book.published(a).unwrap();
            // Every other alert is acknowledged, every third escalated.
            if i % 2 == 0 {
                book.acknowledge(&ack_of(a)).unwrap();
            } else if i % 3 == 0 {
                let mut up = a.clone();
                up.escalation_level = 1;
                book.commit_escalations(&[up], a.published_at).unwrap();
            }
            assert!(
                lines(&journal) <= COMPACT_AFTER,
                "the journal is never folded"
            );
        }
        assert!(path.exists(), "no snapshot after {} changes", all.len());
        let reopened = AlertBook::open(path.clone(), cfg).unwrap();
        assert_eq!(reopened.state, book.state);
        assert_eq!(reopened.pending().len(), all.len() / 2);
        assert!(reopened
            .pending()
            .iter()
            .any(|p| p.level == 1 && p.alert.alert_id == all[3].alert_id));
    }

    #[test]
    fn a_journal_replayed_onto_a_snapshot_that_has_it_changes_nothing() {
        // The crash between writing the snapshot and emptying the journal.
        let (_dir, path, journal, cfg) = book_files();
        let mut book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        let a = alerts(3);
        for x in &a {
            book.published(x).unwrap();
        }
        let mut up = a[0].clone();
        for level in 1..=2 {
            up.escalation_level = level;
            book.commit_escalations(std::slice::from_ref(&up), up.published_at)
                .unwrap();
        }
        book.acknowledge(&ack_of(&a[1])).unwrap();
        let changes = std::fs::read(&journal).unwrap();
        assert_eq!(lines(&journal), 6);
        book.compact().unwrap();
        assert_eq!(lines(&journal), 0);
        std::fs::write(&journal, &changes).unwrap();
        let reopened = AlertBook::open(path, cfg).unwrap();
        assert_eq!(reopened.state, book.state);
        let levels: Vec<(AlertId, u8)> = reopened
            .pending()
            .iter()
            .map(|p| (p.alert.alert_id, p.level))
            .collect();
        assert_eq!(levels, vec![(a[0].alert_id, 2), (a[2].alert_id, 0)]);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_dropped_and_a_bad_line_is_named() {
        let (_dir, path, journal, cfg) = book_files();
        let a = alerts(2);
        let mut book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        book.published(&a[0]).unwrap();
        drop(book);
        let whole = std::fs::read(&journal).unwrap();
        // Half of the second publication's line, as a crash mid-write leaves it.
        let mut torn = whole.clone();
        torn.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(&journal, &torn).unwrap();
        // A reader beside the pipeline leaves the line being written alone.
        assert_eq!(read_pending(&path).unwrap().len(), 1);
        assert_eq!(std::fs::read(&journal).unwrap(), torn);
        let mut book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        assert_eq!(book.pending().len(), 1);
        assert_eq!(std::fs::read(&journal).unwrap(), whole, "not cut off");
        book.published(&a[1]).unwrap();
        drop(book);
        let book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        assert_eq!(book.pending().len(), 2);
        drop(book);

        let mut bad = b"{\"acked\": 12}\n".to_vec();
        bad.extend_from_slice(&std::fs::read(&journal).unwrap());
        std::fs::write(&journal, bad).unwrap();
        let err = AlertBook::open(path, cfg).unwrap_err().to_string();
        assert!(
            err.contains(JOURNAL_FILE) && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_append_leaves_memory_and_disk_as_the_last_whole_line() {
        let (_dir, path, journal, cfg) = book_files();
        let a = alerts(3);
        let mut book = AlertBook::open(path.clone(), cfg.clone()).unwrap();
        book.published(&a[0]).unwrap();
        let whole = std::fs::read(&journal).unwrap();
        // A write that fails after part of its line reached the file (a
        // disk that fills mid-line): the handle refuses the write, and the
        // file already holds the part.
        let mut part = whole.clone();
        part.extend_from_slice(&whole[..whole.len() / 3]);
        std::fs::write(&journal, &part).unwrap();
        book.journal = Some(std::fs::File::open(&journal).unwrap());
        let err = book.published(&a[1]).unwrap_err().to_string();
        assert!(err.contains(JOURNAL_FILE), "{err}");
        assert_eq!(std::fs::read(&journal).unwrap(), whole);
        assert!(!book.is_pending(a[1].alert_id));
        assert_eq!(book.pending().len(), 1);
        // The book goes on: the next line is whole, and a reopen agrees.
        book.published(&a[2]).unwrap();
        let reopened = AlertBook::open(path, cfg).unwrap();
        assert_eq!(reopened.state, book.state);
        assert_eq!(reopened.pending().len(), 2);
    }
}
