//! `ecgtriage bench` end to end, small: its own Mosquitto, the fleet, the
//! pipeline, the archive check. Asserts on outcomes only (every key of the
//! JSON line, nothing lost or duplicated), never on timings.

use std::process::Command;

const KEYS: [&str; 11] = [
    "visits",
    "wall_s",
    "samples_per_s",
    "ceiling_samples_per_s",
    "ratio_to_ceiling",
    "bytes_per_sample",
    "lost",
    "duplicated",
    "chunk_latency_ms",
    "alert_latency_ms",
    "peak_rss_mb",
];

fn bench(args: &[&str]) -> (String, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecgtriage"))
        .arg("bench")
        .args(args)
        .output()
        .expect("ecgtriage bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let json: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}\n{stdout}"));
    (stdout, json)
}

fn check_shape(json: &serde_json::Value, visits: u64) {
    let obj = json.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "exactly the keys of issue 7");
    assert_eq!(json["visits"], visits);
    for k in ["chunk_latency_ms", "alert_latency_ms"] {
        let p = json[k].as_object().expect("percentiles object");
        let mut pk: Vec<&str> = p.keys().map(String::as_str).collect();
        pk.sort_unstable();
        assert_eq!(pk, ["max", "p50", "p95", "p99"], "{k}");
    }
    for k in [
        "wall_s",
        "samples_per_s",
        "ceiling_samples_per_s",
        "ratio_to_ceiling",
        "bytes_per_sample",
    ] {
        let v = json[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} is a number"));
        assert!(v > 0.0, "{k} = {v}");
    }
}

#[test]
fn bench_max_small_loses_and_duplicates_nothing() {
    let (stdout, json) = bench(&[
        "--visits",
        "20",
        "--max",
        "--devices",
        "4",
        "--stemi-fraction",
        "0.3",
    ]);
    check_shape(&json, 20);
    assert_eq!(json["lost"], 0, "{stdout}");
    assert_eq!(json["duplicated"], 0, "{stdout}");
    // Every chunk of every visit was measured: 20 visits x 10 chunks.
    assert!(json["chunk_latency_ms"]["max"].is_number(), "{stdout}");
    assert!(stdout.contains("chunk latency"), "{stdout}");
}

#[test]
fn bench_rate_small_loses_and_duplicates_nothing() {
    let (stdout, json) = bench(&["--visits", "6", "--rate", "3", "--stemi-fraction", "0.5"]);
    check_shape(&json, 6);
    assert_eq!(json["lost"], 0, "{stdout}");
    assert_eq!(json["duplicated"], 0, "{stdout}");
}
