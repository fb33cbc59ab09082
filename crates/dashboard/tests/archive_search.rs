//! The search's reading of a day's visits while a compaction is cut short.

mod fixture;

use std::path::Path;

use ecg_archive::{compact_local, ArchiveWriter, CompactConfig, LocalDisk, ObjectStore};
use ecg_archive::{VisitRecord, WriterConfig};
use ecg_dashboard::archive_read::visits_on;
use fixture::{example_alert, visit_row, LEADS};
use time::Duration;

fn copy_all(from: &Path, to: &Path) {
    for key in LocalDisk::new(from).list("").unwrap() {
        let dest = to.join(&key);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&key), dest).unwrap();
    }
}

#[test]
fn a_days_search_lists_each_visit_once_between_a_merge_and_its_sources_retiring() {
    let a = example_alert();
    let day = a.acquired_at.to_offset(time::UtcOffset::UTC).date();
    let written = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        max_visits: 1,
        ..WriterConfig::new("t")
    };
    let mut w = ArchiveWriter::open_local(written.path(), cfg).unwrap();
    for i in 0..3 {
        let mut visit = visit_row(&a, None);
        visit.visit_id = format!("visit-{i}");
        visit.started_at = a.acquired_at + Duration::seconds(i);
        w.append(VisitRecord {
            visit,
            samples: vec![vec![i as i16; 20]; LEADS.len()],
            beats: vec![],
            measurements: vec![],
            alerts: vec![],
        })
        .unwrap();
    }
    w.flush().unwrap();
    drop(w);

    let dir = tempfile::tempdir().unwrap();
    copy_all(written.path(), dir.path());
    let report = compact_local(dir.path(), &CompactConfig::new(day.next_day().unwrap())).unwrap();
    assert_eq!(report.merges.len(), 1, "{report:?}");
    // The sources back beside their merge: a compaction between its
    // commit and its deletions.
    copy_all(written.path(), dir.path());
    assert_eq!(LocalDisk::new(dir.path()).list("visits").unwrap().len(), 4);

    let ids: Vec<String> = visits_on(dir.path(), day, None)
        .unwrap()
        .into_iter()
        .map(|h| h.visit_id)
        .collect();
    assert_eq!(ids, ["visit-0", "visit-1", "visit-2"]);
}
