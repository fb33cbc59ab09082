//! Prometheus metrics of the running pipeline and the tiny HTTP endpoint
//! that serves them (`GET /metrics`, text exposition format).
//!
//! Rates (messages/s) are Prometheus' `rate()` over the counters; the
//! gauges are sampled when the pipeline loop ticks.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every metric the pipeline exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub events: Counter,
    pub messages_received: Gauge<u64, AtomicU64>,
    pub messages_acked: Gauge<u64, AtomicU64>,
    pub visits_started: Counter,
    pub visits_archived: Counter,
    pub visits_incomplete: Counter,
    pub alerts: Counter,
    pub dead_letters: Counter,
    /// Refused messages kept whole in the quarantine.
    pub quarantined: Counter,
    /// Refused messages the quarantine did not keep (full, or the device
    /// over its daily share).
    pub quarantine_dropped: Counter,
    /// Quarantine writes or syncs that failed (the message is let go with
    /// its dead letter, as when nothing is kept).
    pub quarantine_errors: Counter,
    pub quarantine_bytes: Gauge<u64, AtomicU64>,
    pub visits_in_flight: Gauge,
    pub ingest_visits_in_flight: Gauge,
    pub event_queue_depth: Gauge,
    pub archive_buffered: Gauge,
    /// Failed archive commits (each retried while intake is held).
    pub archive_errors: Counter,
    /// Scheduled compactions of the archive that ran to their end.
    pub archive_compactions: Counter,
    /// Scheduled compactions that failed or left files out.
    pub archive_compaction_errors: Counter,
    /// Files merged away by scheduled compactions.
    pub archive_files_compacted: Counter,
    /// Failed spool writes or fsyncs (each retried, acks held).
    pub spool_errors: Gauge<u64, AtomicU64>,
    /// Device-clock age of the newest samples analysed: how far the
    /// analysis runs behind the recording.
    pub analysis_lag_s: Gauge<f64, AtomicU64>,
    /// Seconds from the visit's meta reaching the pipeline to its alert's
    /// PUBACK.
    pub alert_latency_s: Histogram,
    /// Seconds from the device's acquisition time to the alert's PUBACK.
    pub alert_age_s: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("ecgtriage");
        let events = Counter::default();
        r.register(
            "ingest_events",
            "Events taken from ingestion",
            events.clone(),
        );
        let messages_received = Gauge::<u64, AtomicU64>::default();
        r.register(
            "mqtt_messages_received",
            "MQTT messages received from devices (monotonic; rate() gives messages/s)",
            messages_received.clone(),
        );
        let messages_acked = Gauge::<u64, AtomicU64>::default();
        r.register(
            "mqtt_messages_acked",
            "MQTT messages acknowledged after the spool made them durable (monotonic)",
            messages_acked.clone(),
        );
        let visits_started = Counter::default();
        r.register(
            "visits_started",
            "Visits whose meta arrived",
            visits_started.clone(),
        );
        let visits_archived = Counter::default();
        r.register(
            "visits_archived",
            "Visits committed to the archive",
            visits_archived.clone(),
        );
        let visits_incomplete = Counter::default();
        r.register(
            "visits_incomplete",
            "Visits closed incomplete",
            visits_incomplete.clone(),
        );
        let alerts = Counter::default();
        r.register("alerts", "Suspected-STEMI alerts published", alerts.clone());
        let dead_letters = Counter::default();
        r.register(
            "dead_letters",
            "Rejected inputs published",
            dead_letters.clone(),
        );
        let quarantined = Counter::default();
        r.register(
            "quarantined_messages",
            "Refused messages kept whole in the quarantine folder",
            quarantined.clone(),
        );
        let quarantine_dropped = Counter::default();
        r.register(
            "quarantine_dropped_messages",
            "Refused messages not kept: the quarantine full or the device over its daily share",
            quarantine_dropped.clone(),
        );
        let quarantine_errors = Counter::default();
        r.register(
            "quarantine_errors",
            "Quarantine writes or syncs that failed",
            quarantine_errors.clone(),
        );
        let quarantine_bytes = Gauge::<u64, AtomicU64>::default();
        r.register(
            "quarantine_bytes",
            "Bytes in the quarantine folder",
            quarantine_bytes.clone(),
        );
        let visits_in_flight = Gauge::default();
        r.register(
            "visits_in_flight",
            "Visits being analysed",
            visits_in_flight.clone(),
        );
        let ingest_visits_in_flight = Gauge::default();
        r.register(
            "ingest_visits_in_flight",
            "Visits open in the ingest assembler",
            ingest_visits_in_flight.clone(),
        );
        let event_queue_depth = Gauge::default();
        r.register(
            "event_queue_depth",
            "Ingestion events waiting for the pipeline",
            event_queue_depth.clone(),
        );
        let archive_buffered = Gauge::default();
        r.register(
            "archive_buffered_visits",
            "Visits waiting for the next archive commit",
            archive_buffered.clone(),
        );
        let archive_errors = Counter::default();
        r.register(
            "archive_errors",
            "Archive commits that failed and are being retried (intake held meanwhile)",
            archive_errors.clone(),
        );
        let archive_compactions = Counter::default();
        r.register(
            "archive_compactions",
            "Scheduled archive compactions (closed days' batches merged) that ran to their end",
            archive_compactions.clone(),
        );
        let archive_compaction_errors = Counter::default();
        r.register(
            "archive_compaction_errors",
            "Scheduled archive compactions that failed or left damaged files where they were",
            archive_compaction_errors.clone(),
        );
        let archive_files_compacted = Counter::default();
        r.register(
            "archive_files_compacted",
            "Archive files merged away by scheduled compactions",
            archive_files_compacted.clone(),
        );
        let spool_errors = Gauge::<u64, AtomicU64>::default();
        r.register(
            "spool_errors",
            "Spool writes or fsyncs that failed and were retried, acks held (monotonic)",
            spool_errors.clone(),
        );
        let analysis_lag_s = Gauge::<f64, AtomicU64>::default();
        r.register(
            "analysis_lag_seconds",
            "Age (device clock) of the newest samples analysed",
            analysis_lag_s.clone(),
        );
        let alert_latency_s = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        r.register(
            "alert_latency_seconds",
            "From the visit's meta reaching the pipeline to its alert being acknowledged by the broker",
            alert_latency_s.clone(),
        );
        let alert_age_s = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        r.register(
            "alert_age_seconds",
            "From acquisition (device clock) to the alert being acknowledged by the broker",
            alert_age_s.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            events,
            messages_received,
            messages_acked,
            visits_started,
            visits_archived,
            visits_incomplete,
            alerts,
            dead_letters,
            quarantined,
            quarantine_dropped,
            quarantine_errors,
            quarantine_bytes,
            visits_in_flight,
            ingest_visits_in_flight,
            event_queue_depth,
            archive_buffered,
            archive_errors,
            archive_compactions,
            archive_compaction_errors,
            archive_files_compacted,
            spool_errors,
            analysis_lag_s,
            alert_latency_s,
            alert_age_s,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` until the task is aborted. Returns the
/// bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // One small request per connection; the request line is all
                // that matters, but the whole head is read: closing a socket
                // with unread bytes sends a reset, and a client whose
                // request came in several segments lost the answer to it.
                let mut buf = [0u8; 2048];
                let mut n = 0;
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout_at(deadline, sock.read(&mut buf[n..])).await {
                        Ok(Ok(0)) => break,
                        Ok(Ok(k)) => n += k,
                        _ => return,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("");
                let (status, ctype, body) = if path == "/metrics" || path.starts_with("/metrics?") {
                    (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.render(),
                    )
                } else {
                    ("404 Not Found", "text/plain", "try /metrics\n".to_owned())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_serves_the_registry() {
        let m = Metrics::new();
        m.alerts.inc();
        m.alert_latency_s.observe(0.3);
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("ecgtriage_alerts_total 1"), "{body}");
        assert!(
            body.contains("ecgtriage_alert_latency_seconds_bucket"),
            "{body}"
        );
        task.abort();
    }

    /// A request that arrives in pieces (a client writing as it formats)
    /// still gets its answer, not a 404 for half a path or a reset.
    #[tokio::test]
    async fn a_request_in_pieces_is_answered() {
        let m = Metrics::new();
        m.alerts.inc();
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        for piece in ["GET /metr", "ics HTTP/1.1\r\nHost: x\r\n", "\r\n"] {
            s.write_all(piece.as_bytes()).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("ecgtriage_alerts_total 1"), "{body}");
        task.abort();
    }
}
