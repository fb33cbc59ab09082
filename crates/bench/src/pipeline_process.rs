//! The pipeline in a process of its own, so that the peak RSS and the CPU
//! time the bench reports are the pipeline's, not the fleet's, the waveform
//! pool's or the harness's.
//!
//! The bench runs its own executable again with [`SPEC_ENV`] set; every
//! binary that runs the bench calls [`run_if_requested`] first thing in
//! `main`. That process runs the pipeline with a probe reporting on stdout,
//! one line per event, and stops when its stdin closes:
//! - `subscribed RSS_MB`: the ingest holds its subscription (RSS then);
//! - `chunk VISIT FIRST_SAMPLE N_SAMPLES UNIX_NS`: samples went through
//!   the analysis, at that wall-clock time;
//! - `finished`: a visit's outputs were handed on;
//! - `end JSON`: last, the run's [`End`].
//!
//! [`PROFILER_ENV`] runs that process under a profiler, e.g.
//! `perf record -g -o pipeline.data --` or `heaptrack -o pipeline`: the
//! profile is then the pipeline's alone.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecg_ingest::{IngestStats, VisitKey};
use ecg_pipeline::publish::BrokerAddr;
use ecg_pipeline::service::{self, Probe, RunSummary, ServiceConfig};
use ecg_wire::{CentreId, VisitId};
use firmware_sim::broker::BrokerUrl;
use serde::{Deserialize, Serialize};

use crate::{stats, BenchError};

/// Set in the pipeline process's environment: its [`Spec`] as JSON.
pub const SPEC_ENV: &str = "ECG_BENCH_PIPELINE_PROCESS";

/// When set, a command (split on whitespace) that the pipeline process is
/// started under, its own command line appended.
pub const PROFILER_ENV: &str = "ECG_BENCH_PROFILER";

/// What the pipeline process needs to know.
#[derive(Serialize, Deserialize)]
struct Spec {
    host: String,
    port: u16,
    user: Option<(String, String)>,
    /// Its ingest spool and archive go here.
    work_dir: PathBuf,
}

/// How the pipeline process ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct End {
    pub summary: Option<RunSummary>,
    pub error: Option<String>,
    /// VmHWM of the pipeline process over its whole life.
    pub peak_rss_mb: Option<f64>,
    pub cpu_s: Option<f64>,
}

/// When this process is the bench's pipeline process: runs it and returns
/// its exit code. `None` otherwise.
pub fn run_if_requested() -> Option<ExitCode> {
    let spec = std::env::var(SPEC_ENV).ok()?;
    // As `ecgtriage run` does.
    ecg_pipeline::allocator::keep_freed_memory();
    Some(match serve(&spec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench pipeline process: {e}");
            ExitCode::FAILURE
        }
    })
}

fn config(spec: &Spec) -> ServiceConfig {
    let ingest = ecg_ingest::IngestConfig::new(
        spec.host.clone(),
        spec.port,
        "ecg-bench-pipeline",
        spec.work_dir.join("ingest-spool"),
    );
    ServiceConfig {
        ingest: ecg_ingest::IngestConfig {
            credentials: spec.user.clone(),
            ..ingest
        },
        output: BrokerAddr {
            host: spec.host.clone(),
            port: spec.port,
            credentials: spec.user.clone(),
            tls: None,
        },
        output_client_id: "ecg-bench-pipeline-out".into(),
        archive_dir: archive_dir(&spec.work_dir),
        archive: ecg_archive::WriterConfig::new("bench"),
        centre: CentreId::new("centre-1").expect("valid id"),
        metrics_addr: None,
        quarantine: ecg_pipeline::quarantine::QuarantineConfig::default(),
        // As `ecgtriage run` by default; the fresh archive's only day is
        // today, so no run merges anything unless one passes midnight.
        compaction: Some(Default::default()),
    }
}

pub(crate) fn archive_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("archive")
}

fn serve(spec: &str) -> Result<(), String> {
    let spec: Spec = serde_json::from_str(spec).map_err(|e| format!("{SPEC_ENV}: {e}"))?;
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    ecg_pipeline::logging::init(ecg_pipeline::config::LogFormat::Text);
    let report = Report::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("async runtime: {e}"))?;
    let probe: Arc<dyn Probe> = Arc::new(report.clone());
    let result = rt.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The bench closes our stdin to stop us (or dies, which closes it too).
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = stop.send(());
        });
        service::run_probed(config(&spec), Some(probe), async {
            let _ = stopped.await;
        })
        .await
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let end = End {
        summary: result.as_ref().ok().copied(),
        error: result.as_ref().err().map(|e| e.to_string()),
        peak_rss_mb: stats::peak_rss_mb(),
        cpu_s: stats::process_cpu_s(),
    };
    let json = serde_json::to_string(&end).map_err(|e| e.to_string())?;
    report.line(format_args!("end {json}"), true);
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// The pipeline process's probe: event lines on stdout.
#[derive(Clone)]
struct Report {
    out: Arc<Mutex<BufWriter<std::io::Stdout>>>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            out: Arc::new(Mutex::new(BufWriter::new(std::io::stdout()))),
        }
    }
}

impl Report {
    fn line(&self, args: std::fmt::Arguments<'_>, flush: bool) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed stdout means the bench is gone; the stdin watch stops us.
        let _ = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
        if flush {
            let _ = out.flush();
        }
    }
}

impl Probe for Report {
    fn ingest_started(&self, stats: Arc<IngestStats>) {
        let report = self.clone();
        std::thread::spawn(move || {
            while stats.subscriptions.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let rss = stats::rss_mb().unwrap_or(f64::NAN);
            report.line(format_args!("subscribed {rss}"), true);
        });
    }

    fn samples_processed(&self, key: &VisitKey, first_sample: u32, n_samples: usize) {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.line(
            format_args!("chunk {} {first_sample} {n_samples} {ns}", key.visit_id),
            false,
        );
    }

    fn visit_finished(&self, _key: &VisitKey) {
        self.line(format_args!("finished"), true);
    }
}

/// What the bench does with the pipeline process's events.
pub(crate) trait Listener: Send + Sync + 'static {
    fn subscribed(&self, rss_mb: Option<f64>);
    /// `at` is the wall-clock time of the report, on this process's clock.
    fn chunk(&self, visit: VisitId, first_sample: u32, n_samples: usize, at: Instant);
    fn finished(&self);
}

/// The bench's side of a running pipeline process.
pub(crate) struct PipelineProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<std::thread::JoinHandle<Option<End>>>,
}

impl PipelineProcess {
    /// Starts this executable again as the pipeline process.
    pub(crate) fn spawn(
        broker: &BrokerUrl,
        work_dir: &Path,
        listener: Arc<dyn Listener>,
    ) -> Result<PipelineProcess, BenchError> {
        let spec = Spec {
            host: broker.host.clone(),
            port: broker.port,
            user: broker.user.clone(),
            work_dir: work_dir.to_path_buf(),
        };
        let spec = serde_json::to_string(&spec).map_err(|e| BenchError::Setup(e.to_string()))?;
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Setup(format!("finding this executable: {e}")))?;
        let profiler = std::env::var(PROFILER_ENV).unwrap_or_default();
        let mut command = match profiler
            .split_whitespace()
            .collect::<Vec<_>>()
            .split_first()
        {
            Some((tool, args)) => {
                let mut c = Command::new(tool);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .env(SPEC_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| BenchError::Setup(format!("starting {}: {e}", exe.display())))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || read_events(stdout, &*listener));
        Ok(PipelineProcess {
            child,
            stdin,
            reader: Some(reader),
        })
    }

    /// Whether the process has already exited.
    pub(crate) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the pipeline to stop (it finishes what it received) and waits
    /// for its end report.
    pub(crate) fn stop(mut self) -> Result<End, BenchError> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(|e| BenchError::Pipeline(format!("waiting for the pipeline process: {e}")))?;
        let end = self.reader.take().and_then(|r| r.join().ok().flatten());
        match end {
            Some(End { error: Some(e), .. }) => Err(BenchError::Pipeline(e)),
            Some(end) if status.success() => Ok(end),
            _ => Err(BenchError::Pipeline(format!(
                "the pipeline process exited with {status} without its end report"
            ))),
        }
    }
}

impl Drop for PipelineProcess {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the event lines until the pipeline process's stdout closes; the
/// `end` report if one came.
fn read_events(stdout: impl std::io::Read, listener: &dyn Listener) -> Option<End> {
    // The child stamps wall-clock time; latencies are measured against
    // this process's monotonic clock, anchored once.
    let anchor = (Instant::now(), SystemTime::now());
    let at = |unix_ns: u128| {
        let t = UNIX_EPOCH + Duration::from_nanos(unix_ns.min(u64::MAX as u128) as u64);
        match t.duration_since(anchor.1) {
            Ok(after) => anchor.0 + after,
            Err(e) => anchor.0.checked_sub(e.duration()).unwrap_or(anchor.0),
        }
    };
    let mut end = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("chunk") => {
                if let Some((visit, first, n, ns)) = chunk_fields(&mut words) {
                    listener.chunk(visit, first, n, at(ns));
                }
            }
            Some("finished") => listener.finished(),
            Some("subscribed") => {
                listener.subscribed(words.next().and_then(|w| w.parse().ok()));
            }
            Some("end") => {
                end = serde_json::from_str(line["end".len()..].trim()).ok();
            }
            _ => {}
        }
    }
    end
}

fn chunk_fields<'a>(
    words: &mut impl Iterator<Item = &'a str>,
) -> Option<(VisitId, u32, usize, u128)> {
    let visit = words.next()?.parse().ok()?;
    let first = words.next()?.parse().ok()?;
    let n = words.next()?.parse().ok()?;
    let ns = words.next()?.parse().ok()?;
    Some((visit, first, n, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Heard {
        events: Mutex<Vec<String>>,
    }

    impl Listener for Heard {
        fn subscribed(&self, rss_mb: Option<f64>) {
            self.events
                .lock()
                .unwrap()
                .push(format!("subscribed {rss_mb:?}"));
        }
        fn chunk(&self, visit: VisitId, first_sample: u32, n_samples: usize, _at: Instant) {
            self.events
                .lock()
                .unwrap()
                .push(format!("chunk {visit} {first_sample} {n_samples}"));
        }
        fn finished(&self) {
            self.events.lock().unwrap().push("finished".into());
        }
    }

    #[test]
    fn event_lines_are_read_and_anything_else_is_skipped() {
        let visit = "0b7c6f5e-2d1a-4c3b-9a8f-7e6d5c4b3a29";
        let end = End {
            summary: Some(RunSummary {
                visits_archived: 3,
                ..RunSummary::default()
            }),
            error: None,
            peak_rss_mb: Some(12.5),
            cpu_s: Some(0.25),
        };
        let text = format!(
            "subscribed 40.5\n\
             chunk {visit} 500 500 1764400000000000000\n\
             chunk not-a-uuid 0 500 1\n\
             a stray line\n\
             finished\n\
             end {}\n",
            serde_json::to_string(&end).unwrap()
        );
        let heard = Heard::default();
        let got = read_events(text.as_bytes(), &heard).expect("the end report");
        assert_eq!(got.summary, end.summary);
        assert_eq!(got.peak_rss_mb, Some(12.5));
        assert_eq!(
            *heard.events.lock().unwrap(),
            [
                "subscribed Some(40.5)".to_string(),
                format!("chunk {visit} 500 500"),
                "finished".to_string(),
            ]
        );
        assert!(read_events(&b"finished\n"[..], &heard).is_none());
    }
}
