//! End to end through a real Mosquitto (per-device passwords and an ACL):
//! firmware-sim's fleet -> `ecgtriage run` (the binary) -> alerts and the
//! Parquet archive, checked against the fleet's truth file; and
//! `ecgtriage demo`. The fault tests (SIGKILLs, broker restart, disk full,
//! floods) are in `faults.rs`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn run_archives_every_visit_once_and_alerts_every_flagged_stemi() {
    let s = Setup::new(16, &[]);
    let seen = watch(s.broker.port());
    let mut pipeline = s.start_pipeline();
    let truth = run_fleet(s.fleet(200, 11));
    let ids = wait_for_archive(&s.archive(), truth.len(), Duration::from_secs(180));
    let status = sigterm(&mut pipeline);
    assert!(status.success(), "ecgtriage run exited with {status}");
    std::thread::sleep(Duration::from_millis(500));
    let alerts = seen.lock().unwrap().alerts.clone();
    check_all(&s.archive(), &truth, &ids, &alerts);

    // Compacted, the pipeline's archive holds the same: one batch per day,
    // every visit once and bit-exact, every digest matching.
    let out = Command::new(ecgtriage())
        .args([
            "archive",
            "compact",
            "--before",
            "2100-01-01",
            "--json",
            "--archive",
        ])
        .arg(s.archive())
        .output()
        .expect("ecgtriage archive compact runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let merged: u64 = report["merges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["table"] == "visits")
        .map(|m| m["rows"].as_u64().unwrap())
        .sum();
    // A day with a single batch (a run across midnight) has nothing to merge.
    assert!(merged > 0 && merged <= truth.len() as u64, "{report}");
    for day in std::fs::read_dir(s.archive().join("visits")).unwrap() {
        let files = std::fs::read_dir(day.unwrap().path()).unwrap().count();
        assert_eq!(files, 1, "{report}");
    }
    check_archive(&s.archive(), &truth, &ids);
    let (ok, report) = verify_archive(&s.archive());
    assert!(ok, "{report}");
    assert_eq!(
        report["visits_matching_digest"].as_u64(),
        Some(truth.len() as u64)
    );
    assert_eq!(report["warnings"], 0, "{report}");

    // Damage one waveforms file as a failing disk would: the check names
    // it and fails, and says which visits it can no longer vouch for.
    let file = first_file(&s.archive().join("waveforms"));
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, report) = verify_archive(&s.archive());
    assert!(!ok, "{report}");
    let key = file
        .strip_prefix(s.archive())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let errors: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["file"].as_str(), Some(key.as_str()), "{report}");
    let unvouched = truth.len() as u64 - report["visits_matching_digest"].as_u64().unwrap();
    assert!(unvouched >= 1, "{report}");
}

#[test]
fn compaction_while_the_pipeline_writes_loses_nothing() {
    let s = Setup::new(8, &[]);
    let seen = watch(s.broker.port());
    let mut pipeline = s.start_pipeline();
    let fleet = spawn_fleet(s.fleet(120, 23));
    // Today's partition, merged again and again while the pipeline commits
    // new batches to it: the harshest case (the nightly run merges closed
    // days only).
    let compact = || {
        let out = Command::new(ecgtriage())
            .args(["archive", "compact", "--before", "2100-01-01", "--archive"])
            .arg(s.archive())
            .output()
            .expect("ecgtriage archive compact runs");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).contains(" -> ")
    };
    let mut merges = 0;
    while !fleet.is_finished() {
        if s.archive().join("visits").is_dir() {
            merges += usize::from(compact());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let truth = fleet.join().unwrap();
    let t0 = std::time::Instant::now();
    loop {
        merges += usize::from(compact());
        let ids = archived_ids(&s.archive());
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        if unique.len() >= truth.len() || t0.elapsed() > Duration::from_secs(180) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = sigterm(&mut pipeline);
    assert!(status.success(), "ecgtriage run exited with {status}");
    compact();
    assert!(merges >= 2, "only {merges} compactions merged anything");
    std::thread::sleep(Duration::from_millis(500));
    let alerts = seen.lock().unwrap().alerts.clone();
    let ids = archived_ids(&s.archive());
    check_all(&s.archive(), &truth, &ids, &alerts);
}

#[test]
fn the_running_pipeline_merges_closed_days_on_its_own() {
    let s = Setup::new(8, &[]);
    let seen = watch(s.broker.port());
    let metrics = free_addr();
    let mut pipeline = s.start_pipeline_in(
        s.dir.path(),
        &["--archive-compact-every-s", "1", "--metrics", &metrics],
    );
    // Devices whose clocks run three days behind: their visits are filed
    // under a closed day, which the pipeline's own schedule merges while
    // it goes on committing batches to it.
    let mut fleet = s.fleet(60, 29);
    fleet.stream.faults.clock_skew_s = -3.0 * 86_400.0;
    let truth = run_fleet(fleet);
    // Every day's `visits` files (all of them closed days), by day.
    let days = || -> Vec<Vec<String>> {
        let names = |dir: std::path::PathBuf| -> Vec<String> {
            std::fs::read_dir(dir).map_or(Vec::new(), |d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
        };
        let root = s.archive().join("visits");
        names(root.clone())
            .into_iter()
            .map(|day| names(root.join(day)))
            .collect()
    };
    let merged_days = |days: &[Vec<String>]| {
        !days.is_empty()
            && days
                .iter()
                .all(|files| files.len() == 1 && files[0].starts_with("compact-"))
    };
    let t0 = std::time::Instant::now();
    loop {
        // The schedule merges and retires files under the query, which
        // must neither fail nor count a visit twice meanwhile.
        let ids = archived_ids(&s.archive());
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "a visit counted twice: {ids:?}");
        let merged = metric(&metrics, "ecgtriage_archive_files_compacted").unwrap_or(0.0);
        if (unique.len() >= truth.len() && merged_days(&days()) && merged > 0.0)
            || t0.elapsed() > Duration::from_secs(180)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let merged = metric(&metrics, "ecgtriage_archive_files_compacted");
    let runs = metric(&metrics, "ecgtriage_archive_compactions");
    let errors = metric(&metrics, "ecgtriage_archive_compaction_errors");
    let status = sigterm(&mut pipeline);
    assert!(status.success(), "ecgtriage run exited with {status}");
    let days = days();
    assert!(merged_days(&days), "not one merged batch a day: {days:?}");
    assert!(merged.is_some_and(|n| n > 0.0), "{merged:?}");
    assert!(runs.is_some_and(|n| n >= 1.0), "{runs:?}");
    assert_eq!(errors, Some(0.0));
    std::thread::sleep(Duration::from_millis(500));
    let alerts = seen.lock().unwrap().alerts.clone();
    let ids = archived_ids(&s.archive());
    check_all(&s.archive(), &truth, &ids, &alerts);
}

/// The first file, in name order, anywhere under `dir`.
fn first_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let first = entries.into_iter().next().expect("a file");
    if first.is_dir() {
        first_file(&first)
    } else {
        first
    }
}

#[test]
fn demo_prints_an_alert_and_leaves_a_queryable_archive() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let out = Command::new(ecgtriage())
        .args(["demo", "--duration", "20", "--archive"])
        .arg(&archive)
        .stdin(Stdio::null())
        .output()
        .expect("ecgtriage demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ALERT"), "no alert printed:\n{stdout}");
    assert!(stdout.contains("ecgtriage query"), "{stdout}");
    assert!(
        stdout.contains("dashboard: http://127.0.0.1:") && stdout.contains("/?token="),
        "no dashboard URL with a one-time token:\n{stdout}"
    );
    // Every visit the fleet started is streamed to its end at the stop
    // and archived whole.
    let sent: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo done: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no visit count in the summary:\n{stdout}"));
    assert!(sent >= 1, "{stdout}");
    let n = query(
        &archive,
        "SELECT count(*) AS n, count(*) FILTER (WHERE complete) AS whole FROM visits",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(n[0]["n"].as_u64(), Some(sent), "{n:?}\n{stdout}\n{stderr}");
    assert_eq!(
        n[0]["whole"].as_u64(),
        Some(sent),
        "{n:?}\n{stdout}\n{stderr}"
    );
}
