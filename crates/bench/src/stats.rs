//! Percentiles and the process's peak resident memory.

use serde::Serialize;

/// Latency summary in milliseconds; `null` when nothing was measured.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * values.len() as f64).ceil() as usize;
            round3(values[i.clamp(1, values.len()) - 1])
        };
        Percentiles {
            p50: Some(rank(50.0)),
            p95: Some(rank(95.0)),
            p99: Some(rank(99.0)),
            max: Some(round3(values[values.len() - 1])),
        }
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `x` to three significant digits: a ratio far below 1 (a paced run
/// against the broker's ceiling) keeps its figures where `round3` gave 0.
pub fn round_sig3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// VmHWM (peak resident memory) of this process in MiB.
pub fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// VmRSS (resident memory now) of this process in MiB.
pub fn rss_mb() -> Option<f64> {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round3(kb / 1024.0))
}

/// CPU time (user + system) this process used so far, in seconds, from
/// `/proc/self/stat`: on a shared machine, CPU per visit is steadier than
/// wall time, which depends on what else runs.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux ABI Rust supports.
    Some(ticks / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(p.p50, Some(50.0));
        assert_eq!(p.p95, Some(95.0));
        assert_eq!(p.p99, Some(99.0));
        assert_eq!(p.max, Some(100.0));
        let one = Percentiles::of(vec![7.0]);
        assert_eq!(one.p50, Some(7.0));
        assert_eq!(one.max, Some(7.0));
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(round_sig3(0.000_312_45), 0.000_312);
        assert_eq!(round_sig3(0.2054), 0.205);
        assert_eq!(round_sig3(120.66), 121.0);
        assert_eq!(round_sig3(-0.012_34), -0.0123);
        assert_eq!(round_sig3(0.0), 0.0);
    }
}
