//! The running pipeline compacts its own archive: every closed day's small
//! batches merged ([`ecg_archive::compact_local`]) on a schedule, so that an
//! archive kept by `ecgtriage run` stays quick to read without an operator's
//! cron job. The writer commits one batch per flush, a few files per visit
//! at a county's pace; a year of them costs every query tens of seconds
//! (README, "Small files, and compaction").
//!
//! Compaction runs on a blocking thread beside the analysis and never holds
//! the driver: the writer and the readers (dashboard, queries) already cope
//! with files merged under them. A failed run is logged and counted, and
//! the next one goes on from where it stopped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ecg_archive::{ArchiveError, CompactConfig, CompactReport};
use time::OffsetDateTime;

use crate::metrics::Metrics;

/// When and how much the pipeline compacts.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionSchedule {
    /// Between the end of one run and the start of the next.
    pub every: Duration,
    /// Before the first run: start-up stays quick, and a pipeline that
    /// restarts in a loop does not compact each time.
    pub first_after: Duration,
    /// Most decoded bytes in one merged batch ([`CompactConfig::max_bytes`]);
    /// the run holds about three times this in memory.
    pub max_bytes: usize,
}

/// Hourly: a day is merged within about an hour of closing.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(3600);

/// The first run comes at most this long after start.
const FIRST_AFTER_MAX: Duration = Duration::from_secs(300);

/// Smaller than `ecgtriage archive compact`'s 256 MiB: this memory is the
/// pipeline's, beside its open visits. A county's day (about 160 visits,
/// some 20 MiB decoded) still becomes one batch.
const MAX_BYTES: usize = 64 << 20;

/// A day counts as closed this long after its midnight (UTC): visits that
/// were streaming at midnight, timed out or were replayed from a spool are
/// committed to it meanwhile, and would make the next run merge it again.
pub const SETTLE: Duration = Duration::from_secs(3600);

impl CompactionSchedule {
    /// Runs `every` apart, the first `every` after start (at most 5 min).
    pub fn every(every: Duration) -> Self {
        Self {
            every,
            first_after: every.min(FIRST_AFTER_MAX),
            max_bytes: MAX_BYTES,
        }
    }
}

impl Default for CompactionSchedule {
    fn default() -> Self {
        Self::every(DEFAULT_EVERY)
    }
}

/// Days before this date are closed at `now`.
pub fn closed_before(now: OffsetDateTime) -> time::Date {
    (now - SETTLE).to_offset(time::UtcOffset::UTC).date()
}

/// The scheduled compactions of a running pipeline.
pub struct Compactor {
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Compactor {
    /// Starts the schedule for the archive at `root`.
    pub fn spawn(root: PathBuf, schedule: CompactionSchedule, metrics: Metrics) -> Compactor {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(run(root, schedule, metrics, stop.clone(), wake.clone()));
        Compactor { stop, wake, task }
    }

    /// Stops the schedule; a run under way ends after its current merge.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "archive compaction task failed");
        }
    }
}

async fn run(
    root: PathBuf,
    schedule: CompactionSchedule,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut wait = schedule.first_after;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        wait = schedule.every;
        if !root.is_dir() {
            // Nothing committed yet: the writer makes the folder with its
            // first batch.
            continue;
        }
        let config = CompactConfig {
            max_bytes: schedule.max_bytes,
            stop: Some(stop.clone()),
            ..CompactConfig::new(closed_before(OffsetDateTime::now_utc()))
        };
        let dir = root.clone();
        let outcome =
            tokio::task::spawn_blocking(move || ecg_archive::compact_local(&dir, &config)).await;
        match outcome {
            Ok(result) => record(&root, result, &metrics),
            Err(e) => {
                metrics.archive_compaction_errors.inc();
                tracing::error!(error = %e, "archive compaction panicked");
            }
        }
    }
}

/// Logs and counts one run.
fn record(root: &std::path::Path, result: Result<CompactReport, ArchiveError>, metrics: &Metrics) {
    let report = match result {
        Ok(report) => report,
        Err(ArchiveError::Busy(why)) => {
            // An operator's `ecgtriage archive compact` is doing the work.
            tracing::info!(%why, "archive compaction skipped");
            return;
        }
        Err(e) => {
            metrics.archive_compaction_errors.inc();
            tracing::warn!(archive = %root.display(), error = %e, "archive compaction failed; retried at the next run");
            return;
        }
    };
    metrics.archive_compactions.inc();
    let merged: usize = report
        .merges
        .iter()
        .map(|m| m.files_before.saturating_sub(m.files_after))
        .sum();
    metrics.archive_files_compacted.inc_by(merged as u64);
    for finding in &report.refused {
        tracing::warn!(file = %finding.file, problem = %finding.problem, "left out of archive compaction; `ecgtriage archive verify` checks the whole archive");
    }
    if !report.refused.is_empty() {
        metrics.archive_compaction_errors.inc();
    }
    if !report.merges.is_empty() || !report.finished.is_empty() {
        let days: std::collections::BTreeSet<&str> =
            report.merges.iter().map(|m| m.partition.as_str()).collect();
        tracing::info!(
            days = ?days,
            files_before = report.merges.iter().map(|m| m.files_before).sum::<usize>(),
            files_after = report.merges.iter().map(|m| m.files_after).sum::<usize>(),
            finished_cut_short = report.finished.len(),
            stopped = report.stopped,
            "archive compacted"
        );
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn a_day_closes_an_hour_after_its_midnight() {
        assert_eq!(
            closed_before(datetime!(2026-12-01 00:59 UTC)),
            date!(2026 - 11 - 30)
        );
        assert_eq!(
            closed_before(datetime!(2026-12-01 01:00 UTC)),
            date!(2026 - 12 - 01)
        );
        // The archive's days are UTC days, whatever the local offset.
        assert_eq!(
            closed_before(datetime!(2026-12-01 03:00 +05:00)),
            date!(2026 - 11 - 30)
        );
    }

    #[test]
    fn first_run_comes_within_five_minutes() {
        let s = CompactionSchedule::default();
        assert_eq!((s.every, s.first_after), (DEFAULT_EVERY, FIRST_AFTER_MAX));
        let quick = CompactionSchedule::every(Duration::from_secs(2));
        assert_eq!(quick.first_after, Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_busy_archive_is_skipped_a_broken_one_counted_and_stop_ends_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        // Another compaction holds the lock: skipped, neither run nor error.
        let lock = std::fs::File::create(dir.path().join(ecg_archive::compact::LOCK_FILE)).unwrap();
        lock.lock().unwrap();
        let busy =
            ecg_archive::compact_local(dir.path(), &CompactConfig::new(date!(2026 - 12 - 01)));
        assert!(matches!(busy, Err(ArchiveError::Busy(_))), "{busy:?}");
        record(dir.path(), busy, &metrics);
        assert_eq!(metrics.archive_compactions.get(), 0);
        assert_eq!(metrics.archive_compaction_errors.get(), 0);
        drop(lock);

        // A file that is not Parquet under a closed day: refused, counted.
        let day = dir.path().join("visits/date=2026-11-29");
        std::fs::create_dir_all(&day).unwrap();
        for name in ["w-1.parquet", "w-2.parquet"] {
            std::fs::write(day.join(name), b"not parquet").unwrap();
        }
        let schedule = CompactionSchedule {
            every: Duration::from_millis(50),
            first_after: Duration::ZERO,
            max_bytes: MAX_BYTES,
        };
        let compactor = Compactor::spawn(dir.path().to_path_buf(), schedule, metrics.clone());
        let t0 = std::time::Instant::now();
        while metrics.archive_compactions.get() < 2 && t0.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        compactor.stop().await;
        assert!(metrics.archive_compactions.get() >= 2);
        assert_eq!(
            metrics.archive_compaction_errors.get(),
            metrics.archive_compactions.get(),
            "each run counts the refused files"
        );
        // Nothing was merged and the damaged files are where they were.
        assert_eq!(metrics.archive_files_compacted.get(), 0);
        assert!(day.join("w-1.parquet").is_file() && day.join("w-2.parquet").is_file());
    }
}
