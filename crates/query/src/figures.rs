//! The chest-pain centre's figures as SQL views, registered with every
//! [`crate::QueryEngine`], so that `ecgtriage query`, the dashboard's
//! figures page and any DataFusion user answer from the same definitions.
//! README ("The chest-pain centre's figures") documents them.
//!
//! Definitions (all times from the archive, all months UTC calendar months
//! of the ECG's acquisition, `YYYY-MM`):
//! - ECG to alert: first publication of the alert minus the ECG's
//!   acquisition (`acquired_at`, the device clock at the start);
//! - alert to acknowledgement: first acknowledgement minus first
//!   publication;
//! - read within 10 minutes: acknowledged at most 600 s after acquisition
//!   (the centre's "first ECG to diagnosis within 10 min"); an alert never
//!   acknowledged counts as not read in time;
//! - false alarms: alerts whose acknowledgement carries the verdict
//!   `false_alarm` (the earliest verdict given for the alert).

/// Seconds between two `timestamp[us, UTC]` expressions, as a double; null
/// when either is null.
fn secs(later: &str, earlier: &str) -> String {
    format!("(CAST({later} AS BIGINT) - CAST({earlier} AS BIGINT)) / 1000000.0")
}

/// The seconds within which an alerted ECG counts as read in time.
pub const READ_WITHIN_S: u32 = 600;

/// One row per alert: its clinic, month, the times of its life and the
/// cardiologist's verdict.
pub fn alert_timeline_sql() -> String {
    format!(
        "CREATE VIEW alert_timeline AS
WITH a AS (
    SELECT alert_id, visit_id, device_id, clinic_id, centre_id,
           min(acquired_at) AS acquired_at,
           min(published_at) AS published_at,
           bool_or(early) AS early,
           min(acked_at) AS inline_acked_at,
           min(acked_by) AS inline_acked_by
    FROM alerts
    GROUP BY alert_id, visit_id, device_id, clinic_id, centre_id
),
k AS (
    SELECT alert_id,
           min(acked_at) AS acked_at,
           first_value(acked_by ORDER BY acked_at) AS acked_by,
           first_value(verdict ORDER BY acked_at) FILTER (WHERE verdict IS NOT NULL) AS verdict
    FROM alert_acks
    GROUP BY alert_id
),
e AS (
    SELECT alert_id, max(escalation_level) AS escalated_to
    FROM alert_escalations
    GROUP BY alert_id
),
t AS (
    SELECT a.alert_id, a.visit_id, a.device_id, a.clinic_id, a.centre_id,
           to_char(a.acquired_at, '%Y-%m') AS month,
           a.early, a.acquired_at, a.published_at,
           coalesce(k.acked_at, a.inline_acked_at) AS acked_at,
           coalesce(k.acked_by, a.inline_acked_by) AS acked_by,
           k.verdict,
           coalesce(e.escalated_to, 0) AS escalated_to
    FROM a
    LEFT JOIN k ON k.alert_id = a.alert_id
    LEFT JOIN e ON e.alert_id = a.alert_id
)
SELECT alert_id, visit_id, device_id, clinic_id, centre_id, month, early,
       acquired_at, published_at, acked_at, acked_by, verdict, escalated_to,
       {ecg_to_alert} AS ecg_to_alert_s,
       {alert_to_ack} AS alert_to_ack_s,
       {ecg_to_ack} AS ecg_to_ack_s,
       coalesce({ecg_to_ack} <= {READ_WITHIN_S}, false) AS read_within_10_min
FROM t",
        ecg_to_alert = secs("published_at", "acquired_at"),
        alert_to_ack = secs("acked_at", "published_at"),
        ecg_to_ack = secs("acked_at", "acquired_at"),
    )
}

/// The figures per month (and per clinic when `by_clinic`): ECGs received,
/// alerts, acknowledgements, read within 10 minutes (count and share of
/// the alerts), median and maximum ECG-to-alert and alert-to-ack seconds,
/// verdicts and escalations.
pub fn figures_sql(view: &str, by_clinic: bool) -> String {
    let (vkey, key_v, key_t, join, sel) = if by_clinic {
        (
            "to_char(started_at, '%Y-%m') AS month, clinic_id",
            "to_char(started_at, '%Y-%m'), clinic_id",
            "month, clinic_id",
            "v.month = t.month AND v.clinic_id = t.clinic_id",
            "coalesce(v.month, t.month) AS month, coalesce(v.clinic_id, t.clinic_id) AS clinic_id",
        )
    } else {
        (
            "to_char(started_at, '%Y-%m') AS month",
            "to_char(started_at, '%Y-%m')",
            "month",
            "v.month = t.month",
            "coalesce(v.month, t.month) AS month",
        )
    };
    format!(
        "CREATE VIEW {view} AS
WITH v AS (
    SELECT {vkey}, count(*) AS ecgs
    FROM visits
    GROUP BY {key_v}
),
t AS (
    SELECT {key_t},
           count(*) AS alerts,
           count(acked_at) AS acknowledged,
           sum(CASE WHEN read_within_10_min THEN 1 ELSE 0 END) AS read_within_10_min,
           median(ecg_to_alert_s) AS median_ecg_to_alert_s,
           max(ecg_to_alert_s) AS max_ecg_to_alert_s,
           median(alert_to_ack_s) AS median_alert_to_ack_s,
           max(alert_to_ack_s) AS max_alert_to_ack_s,
           sum(CASE WHEN verdict = 'confirmed' THEN 1 ELSE 0 END) AS confirmed,
           sum(CASE WHEN verdict = 'false_alarm' THEN 1 ELSE 0 END) AS false_alarms,
           sum(CASE WHEN acked_at IS NOT NULL AND verdict IS NULL THEN 1 ELSE 0 END) AS no_verdict,
           sum(CASE WHEN escalated_to > 0 THEN 1 ELSE 0 END) AS escalated
    FROM alert_timeline
    GROUP BY {key_t}
)
SELECT {sel},
       coalesce(v.ecgs, 0) AS ecgs,
       coalesce(t.alerts, 0) AS alerts,
       coalesce(t.acknowledged, 0) AS acknowledged,
       coalesce(t.read_within_10_min, 0) AS read_within_10_min,
       CAST(t.read_within_10_min AS DOUBLE) / t.alerts AS share_read_within_10_min,
       t.median_ecg_to_alert_s, t.max_ecg_to_alert_s,
       t.median_alert_to_ack_s, t.max_alert_to_ack_s,
       coalesce(t.confirmed, 0) AS confirmed,
       coalesce(t.false_alarms, 0) AS false_alarms,
       coalesce(t.no_verdict, 0) AS no_verdict,
       coalesce(t.escalated, 0) AS escalated
FROM v FULL OUTER JOIN t ON {join}"
    )
}

/// The views in the order they must be created (later ones use earlier
/// ones): (name, CREATE VIEW statement).
pub fn views() -> Vec<(&'static str, String)> {
    vec![
        ("alert_timeline", alert_timeline_sql()),
        ("centre_figures", figures_sql("centre_figures", true)),
        (
            "centre_figures_monthly",
            figures_sql("centre_figures_monthly", false),
        ),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use ecg_archive::{
        AlertAck, AlertEscalation, AlertRow, ArchiveWriter, VisitRecord, VisitRow, WriterConfig,
    };
    use serde_json::Value;
    use time::{macros::datetime, Duration, OffsetDateTime};

    use crate::{format_batches, OutputFormat, QueryEngine};

    /// A one-lead visit of `clinic` at `at`, flagged with `alert` (its
    /// number and seconds to detection) when given.
    pub(crate) fn visit(
        id: u32,
        clinic: &str,
        at: OffsetDateTime,
        alert: Option<(u32, i64)>,
    ) -> VisitRecord {
        let alert_id = alert.map(|(a, _)| format!("alert-{a}"));
        VisitRecord {
            visit: VisitRow {
                visit_id: format!("visit-{id}"),
                device_id: format!("dev-{clinic}"),
                clinic_id: clinic.into(),
                patient_pseudonym: "k1-00000000000000000000000000000000".into(),
                sex: "male".into(),
                age_years: Some(60),
                started_at: at,
                received_at: at,
                fs_hz: 500,
                gain_uv_per_lsb: 5.0,
                leads: vec!["II".into()],
                samples_sha256: None,
                complete: true,
                status: if alert.is_some() {
                    "stemi_suspected"
                } else {
                    "no_stemi"
                }
                .into(),
                stemi: alert.is_some(),
                stemi_criteria_met: alert.is_some(),
                territories: vec![],
                heart_rate_bpm: None,
                qrs_ms: None,
                quality_ok: true,
                quality_issues: vec![],
                mimics: vec![],
                reasons: vec![],
                alert_id: alert_id.clone(),
                firmware_version: "1".into(),
                decided_at: None,
            },
            samples: vec![vec![0; 10]],
            beats: vec![],
            measurements: vec![],
            alerts: alert
                .map(|(a, after_s)| AlertRow {
                    alert_id: format!("alert-{a}"),
                    centre_id: "centre".into(),
                    territories: vec!["anterior".into()],
                    early: true,
                    escalation_level: 0,
                    acquired_at: at,
                    detected_at: at + Duration::seconds(after_s),
                    published_at: at + Duration::seconds(after_s),
                    acked_at: None,
                    acked_by: None,
                })
                .into_iter()
                .collect(),
        }
    }

    fn rows(engine: &QueryEngine, sql: &str) -> Vec<Value> {
        let b = engine.sql_blocking(sql).unwrap();
        serde_json::from_str(&format_batches(&b, OutputFormat::Json).unwrap()).unwrap()
    }

    #[test]
    fn figures_per_month_and_clinic_from_alerts_acks_and_escalations() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nov = datetime!(2026-11-10 08:00 UTC);
        let dec = datetime!(2026-12-03 23:00 UTC);
        let mut w = ArchiveWriter::open_local(root, WriterConfig::new("t")).unwrap();
        w.append(visit(1, "clinic-a", nov, Some((1, 20)))).unwrap();
        w.append(visit(
            2,
            "clinic-a",
            nov + Duration::hours(2),
            Some((2, 30)),
        ))
        .unwrap();
        w.append(visit(3, "clinic-a", nov + Duration::days(3), None))
            .unwrap();
        w.append(visit(4, "clinic-a", dec, None)).unwrap();
        w.append(visit(5, "clinic-b", dec, Some((5, 40)))).unwrap();
        // alert-1: read after 5 min, confirmed; alert-2: after 15 min, a
        // false alarm, escalated once; alert-5: never acknowledged.
        w.append_ack(AlertAck {
            alert_id: "alert-1".into(),
            acked_at: nov + Duration::minutes(5),
            acked_by: "dr.a".into(),
            verdict: Some("confirmed".into()),
        });
        let t2 = nov + Duration::hours(2);
        w.append_ack(AlertAck {
            alert_id: "alert-2".into(),
            acked_at: t2 + Duration::minutes(15),
            acked_by: "dr.b".into(),
            verdict: Some("false_alarm".into()),
        });
        for (alert, at, level) in [
            ("alert-2", t2 + Duration::minutes(5), 1),
            ("alert-5", dec + Duration::minutes(5), 1),
            ("alert-5", dec + Duration::minutes(10), 2),
        ] {
            w.append_escalation(AlertEscalation {
                alert_id: alert.into(),
                centre_id: "centre".into(),
                escalated_at: at,
                escalation_level: level,
            });
        }
        w.flush().unwrap();
        drop(w);
        let engine = QueryEngine::open(root).unwrap();

        let t = rows(
            &engine,
            "SELECT alert_id, month, ecg_to_alert_s, alert_to_ack_s, ecg_to_ack_s, \
             read_within_10_min, verdict, escalated_to, acked_by \
             FROM alert_timeline ORDER BY alert_id",
        );
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!(t[0]["month"], "2026-11");
        assert_eq!(t[0]["ecg_to_alert_s"], 20.0);
        assert_eq!(t[0]["alert_to_ack_s"], 280.0);
        assert_eq!(t[0]["ecg_to_ack_s"], 300.0);
        assert_eq!(t[0]["read_within_10_min"], true);
        assert_eq!(t[0]["verdict"], "confirmed");
        assert_eq!(t[0]["acked_by"], "dr.a");
        assert_eq!(t[1]["read_within_10_min"], false);
        assert_eq!(t[1]["verdict"], "false_alarm");
        assert_eq!(t[1]["escalated_to"], 1);
        assert_eq!(t[2]["month"], "2026-12");
        assert_eq!(t[2]["alert_to_ack_s"], Value::Null);
        assert_eq!(t[2]["read_within_10_min"], false);
        assert_eq!(t[2]["escalated_to"], 2);

        let f = rows(
            &engine,
            "SELECT * FROM centre_figures ORDER BY month, clinic_id",
        );
        assert_eq!(f.len(), 3, "{f:?}");
        let a_nov = &f[0];
        assert_eq!(
            (a_nov["month"].as_str(), a_nov["clinic_id"].as_str()),
            (Some("2026-11"), Some("clinic-a"))
        );
        assert_eq!(a_nov["ecgs"], 3);
        assert_eq!(a_nov["alerts"], 2);
        assert_eq!(a_nov["acknowledged"], 2);
        assert_eq!(a_nov["read_within_10_min"], 1);
        assert_eq!(a_nov["share_read_within_10_min"], 0.5);
        assert_eq!(a_nov["median_ecg_to_alert_s"], 25.0);
        assert_eq!(a_nov["max_ecg_to_alert_s"], 30.0);
        assert_eq!(a_nov["median_alert_to_ack_s"], 575.0);
        assert_eq!(a_nov["max_alert_to_ack_s"], 870.0);
        assert_eq!(a_nov["confirmed"], 1);
        assert_eq!(a_nov["false_alarms"], 1);
        assert_eq!(a_nov["no_verdict"], 0);
        assert_eq!(a_nov["escalated"], 1);
        // A month without alerts: its ECGs count, its shares are empty.
        let a_dec = &f[1];
        assert_eq!(a_dec["clinic_id"], "clinic-a");
        assert_eq!(
            (a_dec["ecgs"].as_u64(), a_dec["alerts"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(a_dec["share_read_within_10_min"], Value::Null);
        let b_dec = &f[2];
        assert_eq!(b_dec["clinic_id"], "clinic-b");
        assert_eq!(b_dec["alerts"], 1);
        assert_eq!(b_dec["acknowledged"], 0);
        assert_eq!(b_dec["share_read_within_10_min"], 0.0);
        assert_eq!(b_dec["escalated"], 1);

        let m = rows(
            &engine,
            "SELECT * FROM centre_figures_monthly ORDER BY month",
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            (m[0]["ecgs"].as_u64(), m[0]["alerts"].as_u64()),
            (Some(3), Some(2))
        );
        assert_eq!(
            (m[1]["ecgs"].as_u64(), m[1]["alerts"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(m[1]["share_read_within_10_min"], 0.0);
    }

    #[test]
    fn acks_written_before_the_verdict_column_read_as_no_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nov = datetime!(2026-11-10 08:00 UTC);
        let mut w = ArchiveWriter::open_local(root, WriterConfig::new("t")).unwrap();
        w.append(visit(1, "clinic-a", nov, Some((1, 20)))).unwrap();
        w.flush().unwrap();
        drop(w);
        // An alert_acks file as the pipeline wrote it before `verdict`.
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("alert_id", DataType::Utf8, false),
            Field::new("acked_at", ts, false),
            Field::new("acked_by", DataType::Utf8, false),
        ]));
        let acked_us = (nov + Duration::minutes(3)).unix_timestamp() * 1_000_000;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["alert-1"])),
                Arc::new(TimestampMicrosecondArray::from(vec![acked_us]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["dr.old"])),
            ],
        )
        .unwrap();
        let part = root.join("alert_acks/date=2026-11-10");
        std::fs::create_dir_all(&part).unwrap();
        let file = std::fs::File::create(part.join("old.parquet")).unwrap();
        let mut wr = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        wr.write(&batch).unwrap();
        wr.close().unwrap();

        let engine = QueryEngine::open(root).unwrap();
        let k = rows(&engine, "SELECT acked_by, verdict FROM alert_acks");
        assert_eq!(k.len(), 1);
        assert_eq!(k[0]["verdict"], Value::Null);
        let f = rows(&engine, "SELECT * FROM centre_figures");
        assert_eq!(f[0]["acknowledged"], 1);
        assert_eq!(f[0]["read_within_10_min"], 1);
        assert_eq!(f[0]["no_verdict"], 1);
        assert_eq!(f[0]["false_alarms"], 0);
    }
}
