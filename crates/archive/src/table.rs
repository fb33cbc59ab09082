//! The archive's tables: names, Arrow schemas (as in `schemas/archive.md`)
//! and the conversion of records into record batches. The partition column
//! `date` lives in the folder names, never in the files.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int16Builder, Int32Builder, ListBuilder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use time::OffsetDateTime;

use crate::record::{AlertAck, AlertEscalation, AlertRow, VisitRecord};
use crate::ArchiveError;

/// One table of the archive, a folder under the archive root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Visits,
    Waveforms,
    Beats,
    Measurements,
    Alerts,
    AlertAcks,
    AlertEscalations,
}

/// Every table, in the order a batch is written: `visits` last, because
/// its file is the batch's commit marker. `alert_acks` and
/// `alert_escalations` are written on their own.
pub const TABLES: [Table; 7] = [
    Table::Waveforms,
    Table::Beats,
    Table::Measurements,
    Table::Alerts,
    Table::AlertAcks,
    Table::AlertEscalations,
    Table::Visits,
];

/// Name of the hive partition column (`date=YYYY-MM-DD` folders, UTC).
pub const PARTITION_COLUMN: &str = "date";

/// The date of a `date=YYYY-MM-DD` partition folder; `None` for a folder
/// readers cannot date.
pub(crate) fn partition_date(partition: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    partition
        .strip_prefix(PARTITION_COLUMN)
        .and_then(|p| p.strip_prefix('='))
        .and_then(|d| time::Date::parse(d, &format).ok())
}

impl Table {
    /// The folder name, also the SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Visits => "visits",
            Table::Waveforms => "waveforms",
            Table::Beats => "beats",
            Table::Measurements => "measurements",
            Table::Alerts => "alerts",
            Table::AlertAcks => "alert_acks",
            Table::AlertEscalations => "alert_escalations",
        }
    }

    /// The columns stored in the files (without the partition column).
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Visits => VISITS.clone(),
            Table::Waveforms => WAVEFORMS.clone(),
            Table::Beats => BEATS.clone(),
            Table::Measurements => MEASUREMENTS.clone(),
            Table::Alerts => ALERTS.clone(),
            Table::AlertAcks => ALERT_ACKS.clone(),
            Table::AlertEscalations => ALERT_ESCALATIONS.clone(),
        }
    }
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn item(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", dt, false))
}

fn list_of(dt: DataType) -> DataType {
    DataType::List(item(dt))
}

fn f(name: &str, dt: DataType, nullable: bool) -> Field {
    Field::new(name, dt, nullable)
}

static VISITS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        f("visit_id", Utf8, false),
        f("device_id", Utf8, false),
        f("clinic_id", Utf8, false),
        f("patient_pseudonym", Utf8, false),
        f("sex", Utf8, false),
        f("age_years", UInt8, true),
        f("started_at", ts(), false),
        f("received_at", ts(), false),
        f("fs_hz", UInt32, false),
        f("gain_uv_per_lsb", Float64, false),
        f("n_leads", UInt8, false),
        f("leads", list_of(Utf8), false),
        f("n_samples", UInt32, false),
        f("samples_sha256", Utf8, true),
        f("complete", Boolean, false),
        f("status", Utf8, false),
        f("stemi", Boolean, false),
        f("stemi_criteria_met", Boolean, false),
        f("territories", list_of(Utf8), false),
        f("heart_rate_bpm", Float64, true),
        f("qrs_ms", Float64, true),
        f("quality_ok", Boolean, false),
        f("quality_issues", list_of(Utf8), false),
        f("mimics", list_of(Utf8), false),
        f("reasons", list_of(Utf8), false),
        f("alert_id", Utf8, true),
        f("firmware_version", Utf8, false),
        f("decided_at", ts(), true),
    ]))
});

static WAVEFORMS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        f("visit_id", Utf8, false),
        f("lead_index", UInt8, false),
        f("lead", Utf8, false),
        f("start_sample", UInt32, false),
        f("samples", list_of(Int16), false),
    ]))
});

static BEATS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        f("visit_id", Utf8, false),
        f("beat_index", UInt32, false),
        f("r", UInt32, false),
        f("qrs_on", UInt32, true),
        f("qrs_off", UInt32, true),
        f("rr_ms", Float64, true),
        f("kind", Utf8, false),
        f("used_for_st", Boolean, false),
    ]))
});

static MEASUREMENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        f("visit_id", Utf8, false),
        f("lead", Utf8, false),
        f("st_j_uv", Int32, true),
        f("st_j60_uv", Int32, true),
        f("st_elevation_threshold_uv", Int32, true),
        f("lead_ok", Boolean, false),
        f("noise_uv", Float64, true),
    ]))
});

static ALERTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        f("alert_id", Utf8, false),
        f("visit_id", Utf8, false),
        f("device_id", Utf8, false),
        f("clinic_id", Utf8, false),
        f("centre_id", Utf8, false),
        f("territories", list_of(Utf8), false),
        f("early", Boolean, false),
        f("escalation_level", UInt8, false),
        f("acquired_at", ts(), false),
        f("detected_at", ts(), false),
        f("published_at", ts(), false),
        f("acked_at", ts(), true),
        f("acked_by", Utf8, true),
    ]))
});

static ALERT_ESCALATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        f("alert_id", Utf8, false),
        f("centre_id", Utf8, false),
        f("escalated_at", ts(), false),
        f("escalation_level", UInt8, false),
    ]))
});

static ALERT_ACKS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    Arc::new(Schema::new(vec![
        f("alert_id", Utf8, false),
        f("acked_at", ts(), false),
        f("acked_by", Utf8, false),
        f("verdict", Utf8, true),
    ]))
});

/// Microseconds since the Unix epoch, the unit of every timestamp column.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    // i64 microseconds cover +-292k years; `time` allows +-9999 years.
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The UTC date of `t`, as the partition folder names it.
pub(crate) fn utc_date(t: OffsetDateTime) -> time::Date {
    t.to_offset(time::UtcOffset::UTC).date()
}

fn ts_builder(cap: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC")
}

fn str_list() -> ListBuilder<StringBuilder> {
    ListBuilder::new(StringBuilder::new()).with_field(item(DataType::Utf8))
}

fn push_strs(b: &mut ListBuilder<StringBuilder>, values: &[String]) {
    for v in values {
        b.values().append_value(v);
    }
    b.append(true);
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArchiveError> {
    Ok(RecordBatch::try_new(table.schema(), columns)?)
}

pub(crate) fn visits_batch(records: &[&VisitRecord]) -> Result<RecordBatch, ArchiveError> {
    let n = records.len();
    let mut visit_id = StringBuilder::new();
    let mut device_id = StringBuilder::new();
    let mut clinic_id = StringBuilder::new();
    let mut pseudonym = StringBuilder::new();
    let mut sex = StringBuilder::new();
    let mut age = UInt8Builder::with_capacity(n);
    let mut started = ts_builder(n);
    let mut received = ts_builder(n);
    let mut fs_hz = UInt32Builder::with_capacity(n);
    let mut gain = Float64Builder::with_capacity(n);
    let mut n_leads = UInt8Builder::with_capacity(n);
    let mut leads = str_list();
    let mut n_samples = UInt32Builder::with_capacity(n);
    let mut sha = StringBuilder::new();
    let mut complete = BooleanBuilder::with_capacity(n);
    let mut status = StringBuilder::new();
    let mut stemi = BooleanBuilder::with_capacity(n);
    let mut criteria = BooleanBuilder::with_capacity(n);
    let mut territories = str_list();
    let mut hr = Float64Builder::with_capacity(n);
    let mut qrs = Float64Builder::with_capacity(n);
    let mut quality_ok = BooleanBuilder::with_capacity(n);
    let mut issues = str_list();
    let mut mimics = str_list();
    let mut reasons = str_list();
    let mut alert_id = StringBuilder::new();
    let mut firmware = StringBuilder::new();
    let mut decided = ts_builder(n);
    for r in records {
        let v = &r.visit;
        visit_id.append_value(&v.visit_id);
        device_id.append_value(&v.device_id);
        clinic_id.append_value(&v.clinic_id);
        pseudonym.append_value(&v.patient_pseudonym);
        sex.append_value(&v.sex);
        age.append_option(v.age_years);
        started.append_value(micros(v.started_at));
        received.append_value(micros(v.received_at));
        fs_hz.append_value(v.fs_hz);
        gain.append_value(v.gain_uv_per_lsb);
        // validate() bounds both conversions.
        n_leads.append_value(r.samples.len() as u8);
        push_strs(&mut leads, &v.leads);
        n_samples.append_value(r.n_samples() as u32);
        sha.append_option(v.samples_sha256.as_deref());
        complete.append_value(v.complete);
        status.append_value(&v.status);
        stemi.append_value(v.stemi);
        criteria.append_value(v.stemi_criteria_met);
        push_strs(&mut territories, &v.territories);
        hr.append_option(v.heart_rate_bpm);
        qrs.append_option(v.qrs_ms);
        quality_ok.append_value(v.quality_ok);
        push_strs(&mut issues, &v.quality_issues);
        push_strs(&mut mimics, &v.mimics);
        push_strs(&mut reasons, &v.reasons);
        alert_id.append_option(v.alert_id.as_deref());
        firmware.append_value(&v.firmware_version);
        decided.append_option(v.decided_at.map(micros));
    }
    batch(
        Table::Visits,
        vec![
            Arc::new(visit_id.finish()),
            Arc::new(device_id.finish()),
            Arc::new(clinic_id.finish()),
            Arc::new(pseudonym.finish()),
            Arc::new(sex.finish()),
            Arc::new(age.finish()),
            Arc::new(started.finish()),
            Arc::new(received.finish()),
            Arc::new(fs_hz.finish()),
            Arc::new(gain.finish()),
            Arc::new(n_leads.finish()),
            Arc::new(leads.finish()),
            Arc::new(n_samples.finish()),
            Arc::new(sha.finish()),
            Arc::new(complete.finish()),
            Arc::new(status.finish()),
            Arc::new(stemi.finish()),
            Arc::new(criteria.finish()),
            Arc::new(territories.finish()),
            Arc::new(hr.finish()),
            Arc::new(qrs.finish()),
            Arc::new(quality_ok.finish()),
            Arc::new(issues.finish()),
            Arc::new(mimics.finish()),
            Arc::new(reasons.finish()),
            Arc::new(alert_id.finish()),
            Arc::new(firmware.finish()),
            Arc::new(decided.finish()),
        ],
    )
}

/// One row per (visit, lead, segment of at most `segment_len` samples).
pub(crate) fn waveforms_batch(
    records: &[&VisitRecord],
    segment_len: usize,
) -> Result<RecordBatch, ArchiveError> {
    let segment_len = segment_len.max(1);
    let mut visit_id = StringBuilder::new();
    let mut lead_index = UInt8Builder::new();
    let mut lead = StringBuilder::new();
    let mut start = UInt32Builder::new();
    let total: usize = records
        .iter()
        .map(|r| r.samples.len() * r.n_samples())
        .sum();
    let mut samples =
        ListBuilder::new(Int16Builder::with_capacity(total)).with_field(item(DataType::Int16));
    for r in records {
        for (i, (name, lead_samples)) in r.visit.leads.iter().zip(&r.samples).enumerate() {
            for (k, seg) in lead_samples.chunks(segment_len).enumerate() {
                visit_id.append_value(&r.visit.visit_id);
                lead_index.append_value(i as u8);
                lead.append_value(name);
                start.append_value((k * segment_len) as u32);
                samples.values().append_slice(seg);
                samples.append(true);
            }
        }
    }
    batch(
        Table::Waveforms,
        vec![
            Arc::new(visit_id.finish()),
            Arc::new(lead_index.finish()),
            Arc::new(lead.finish()),
            Arc::new(start.finish()),
            Arc::new(samples.finish()),
        ],
    )
}

pub(crate) fn beats_batch(records: &[&VisitRecord]) -> Result<RecordBatch, ArchiveError> {
    let mut visit_id = StringBuilder::new();
    let mut beat_index = UInt32Builder::new();
    let mut r_peak = UInt32Builder::new();
    let mut qrs_on = UInt32Builder::new();
    let mut qrs_off = UInt32Builder::new();
    let mut rr = Float64Builder::new();
    let mut kind = StringBuilder::new();
    let mut used = BooleanBuilder::new();
    for r in records {
        for b in &r.beats {
            visit_id.append_value(&r.visit.visit_id);
            beat_index.append_value(b.beat_index);
            r_peak.append_value(b.r);
            qrs_on.append_option(b.qrs_on);
            qrs_off.append_option(b.qrs_off);
            rr.append_option(b.rr_ms);
            kind.append_value(&b.kind);
            used.append_value(b.used_for_st);
        }
    }
    batch(
        Table::Beats,
        vec![
            Arc::new(visit_id.finish()),
            Arc::new(beat_index.finish()),
            Arc::new(r_peak.finish()),
            Arc::new(qrs_on.finish()),
            Arc::new(qrs_off.finish()),
            Arc::new(rr.finish()),
            Arc::new(kind.finish()),
            Arc::new(used.finish()),
        ],
    )
}

pub(crate) fn measurements_batch(records: &[&VisitRecord]) -> Result<RecordBatch, ArchiveError> {
    let mut visit_id = StringBuilder::new();
    let mut lead = StringBuilder::new();
    let mut st_j = Int32Builder::new();
    let mut st_j60 = Int32Builder::new();
    let mut thr = Int32Builder::new();
    let mut ok = BooleanBuilder::new();
    let mut noise = Float64Builder::new();
    for r in records {
        for m in &r.measurements {
            visit_id.append_value(&r.visit.visit_id);
            lead.append_value(&m.lead);
            st_j.append_option(m.st_j_uv);
            st_j60.append_option(m.st_j60_uv);
            thr.append_option(m.st_elevation_threshold_uv);
            ok.append_value(m.lead_ok);
            noise.append_option(m.noise_uv);
        }
    }
    batch(
        Table::Measurements,
        vec![
            Arc::new(visit_id.finish()),
            Arc::new(lead.finish()),
            Arc::new(st_j.finish()),
            Arc::new(st_j60.finish()),
            Arc::new(thr.finish()),
            Arc::new(ok.finish()),
            Arc::new(noise.finish()),
        ],
    )
}

/// Alerts with the visit they belong to.
pub(crate) fn alerts_batch(
    rows: &[(&VisitRecord, &AlertRow)],
) -> Result<RecordBatch, ArchiveError> {
    let n = rows.len();
    let mut alert_id = StringBuilder::new();
    let mut visit_id = StringBuilder::new();
    let mut device_id = StringBuilder::new();
    let mut clinic_id = StringBuilder::new();
    let mut centre_id = StringBuilder::new();
    let mut territories = str_list();
    let mut early = BooleanBuilder::with_capacity(n);
    let mut level = UInt8Builder::with_capacity(n);
    let mut acquired = ts_builder(n);
    let mut detected = ts_builder(n);
    let mut published = ts_builder(n);
    let mut acked_at = ts_builder(n);
    let mut acked_by = StringBuilder::new();
    for (r, a) in rows {
        alert_id.append_value(&a.alert_id);
        visit_id.append_value(&r.visit.visit_id);
        device_id.append_value(&r.visit.device_id);
        clinic_id.append_value(&r.visit.clinic_id);
        centre_id.append_value(&a.centre_id);
        push_strs(&mut territories, &a.territories);
        early.append_value(a.early);
        level.append_value(a.escalation_level);
        acquired.append_value(micros(a.acquired_at));
        detected.append_value(micros(a.detected_at));
        published.append_value(micros(a.published_at));
        acked_at.append_option(a.acked_at.map(micros));
        acked_by.append_option(a.acked_by.as_deref());
    }
    batch(
        Table::Alerts,
        vec![
            Arc::new(alert_id.finish()),
            Arc::new(visit_id.finish()),
            Arc::new(device_id.finish()),
            Arc::new(clinic_id.finish()),
            Arc::new(centre_id.finish()),
            Arc::new(territories.finish()),
            Arc::new(early.finish()),
            Arc::new(level.finish()),
            Arc::new(acquired.finish()),
            Arc::new(detected.finish()),
            Arc::new(published.finish()),
            Arc::new(acked_at.finish()),
            Arc::new(acked_by.finish()),
        ],
    )
}

pub(crate) fn acks_batch(acks: &[&AlertAck]) -> Result<RecordBatch, ArchiveError> {
    let mut alert_id = StringBuilder::new();
    let mut acked_at = ts_builder(acks.len());
    let mut acked_by = StringBuilder::new();
    let mut verdict = StringBuilder::new();
    for a in acks {
        alert_id.append_value(&a.alert_id);
        acked_at.append_value(micros(a.acked_at));
        acked_by.append_value(&a.acked_by);
        verdict.append_option(a.verdict.as_deref());
    }
    batch(
        Table::AlertAcks,
        vec![
            Arc::new(alert_id.finish()),
            Arc::new(acked_at.finish()),
            Arc::new(acked_by.finish()),
            Arc::new(verdict.finish()),
        ],
    )
}

pub(crate) fn escalations_batch(rows: &[&AlertEscalation]) -> Result<RecordBatch, ArchiveError> {
    let mut alert_id = StringBuilder::new();
    let mut centre_id = StringBuilder::new();
    let mut at = ts_builder(rows.len());
    let mut level = UInt8Builder::with_capacity(rows.len());
    for e in rows {
        alert_id.append_value(&e.alert_id);
        centre_id.append_value(&e.centre_id);
        at.append_value(micros(e.escalated_at));
        level.append_value(e.escalation_level);
    }
    batch(
        Table::AlertEscalations,
        vec![
            Arc::new(alert_id.finish()),
            Arc::new(centre_id.finish()),
            Arc::new(at.finish()),
            Arc::new(level.finish()),
        ],
    )
}
