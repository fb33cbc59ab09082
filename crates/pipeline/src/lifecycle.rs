//! An alert's life after publication: pending until a cardiologist
//! acknowledges it, escalated (re-published to the escalation topic with a
//! higher `escalation_level`) each time it stays unacknowledged for the
//! configured time.
//!
//! The pending alerts live in a small JSON file in the pipeline's spool
//! folder, rewritten (temp file, fsync, rename) on every change, so an
//! alert that was pending when the pipeline stopped or crashed is pending
//! again when it starts. Times are wall-clock times for the same reason.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ecg_wire::{Alert, AlertAck, AlertId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The escalation topic of a centre (pipeline -> senior staff / on-call
/// lists): the alert JSON again, `escalation_level` >= 1.
pub fn escalation_topic(centre: &str) -> String {
    format!("ecg/v1/alerts/{centre}/escalation")
}

/// The acknowledgement topic of a centre (cardiologist -> pipeline).
pub fn ack_topic(centre: &str) -> String {
    format!("ecg/v1/alerts/{centre}/ack")
}

/// Name of the state file inside the spool folder.
pub const STATE_FILE: &str = "alerts-pending.json";

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

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    pending: BTreeMap<String, Pending>,
    acked: VecDeque<String>,
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
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LifecycleError {
    let path = path.display().to_string();
    move |source| LifecycleError::Io { what, path, source }
}

fn after(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t + time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl AlertBook {
    /// Loads the book from `path` (empty when the file does not exist).
    pub fn open(path: PathBuf, cfg: LifecycleConfig) -> Result<AlertBook, LifecycleError> {
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| LifecycleError::Corrupt {
                    path: path.display().to_string(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        Ok(AlertBook { cfg, path, state })
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
        let id = alert.alert_id.to_string();
        if self.state.pending.contains_key(&id) || self.state.acked.contains(&id) {
            return Ok(());
        }
        self.state.pending.insert(
            id,
            Pending {
                alert: alert.clone(),
                since: alert.published_at,
                level: 0,
            },
        );
        self.save()
    }

    /// Applies an acknowledgement.
    pub fn acknowledge(&mut self, ack: &AlertAck) -> Result<AckEffect, LifecycleError> {
        let id = ack.alert_id.to_string();
        match self.state.pending.remove(&id) {
            Some(p) => {
                self.state.acked.push_back(id);
                while self.state.acked.len() > REMEMBER_ACKED {
                    self.state.acked.pop_front();
                }
                self.save()?;
                Ok(AckEffect::Recorded(Box::new(p.alert)))
            }
            None => Ok(AckEffect::NotPending),
        }
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
        if sent.is_empty() {
            return Ok(());
        }
        for a in sent {
            if let Some(p) = self.state.pending.get_mut(&a.alert_id.to_string()) {
                p.level = a.escalation_level;
                p.since = now;
            }
        }
        self.save()
    }

    /// Whether `id` is pending.
    pub fn is_pending(&self, id: AlertId) -> bool {
        self.state.pending.contains_key(&id.to_string())
    }

    fn save(&self) -> Result<(), LifecycleError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serialises");
        let mut f = std::fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io_err("renaming", &tmp))?;
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
}
