//! Exports of an archived visit: a one-page 12-lead report (SVG, A4
//! landscape, true scale), a WFDB record (header and format-16 signal
//! file, readable by PhysioNet's tools and by `ecgtriage analyze`), and
//! FHIR R4 JSON (an Observation with one SampledData component per lead).
//!
//! Everything comes from the archive (the `visits`, `measurements` and
//! `waveforms` tables, and the `alert_timeline` view for the alert's
//! acknowledgement), so an export says what the archive says.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use ecg_query::{format_batches, OutputFormat, QueryEngine};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::ecg_svg::{self, escape, Tracing};
use crate::DEFAULT_THRESHOLD_UV;

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("visit id {0:?}: letters, digits and - only")]
    BadId(String),
    #[error("query: {0}")]
    Query(#[from] ecg_query::QueryError),
    #[error("archive: {0}")]
    Archive(#[from] ecg_archive::ArchiveError),
    #[error("archive row: {0}")]
    Row(String),
    #[error("wfdb: {0}")]
    Wfdb(#[from] ecg_wfdb::WriteError),
}

/// One lead's ST measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadSt {
    pub lead: String,
    pub st_j_uv: Option<i64>,
    pub st_j60_uv: Option<i64>,
    pub threshold_uv: i64,
}

/// An archived visit with what the exports show.
#[derive(Debug, Clone)]
pub struct ExportVisit {
    pub visit_id: String,
    pub device_id: String,
    pub clinic_id: String,
    pub patient_pseudonym: String,
    pub sex: String,
    pub age_years: Option<u64>,
    pub started_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub status: String,
    pub stemi: bool,
    pub territories: Vec<String>,
    pub heart_rate_bpm: Option<f64>,
    pub qrs_ms: Option<f64>,
    pub reasons: Vec<String>,
    pub quality_issues: Vec<String>,
    pub mimics: Vec<String>,
    pub alert_id: Option<String>,
    pub alert_published_at: Option<OffsetDateTime>,
    pub acked_at: Option<OffsetDateTime>,
    pub acked_by: Option<String>,
    pub verdict: Option<String>,
    pub st: Vec<LeadSt>,
    pub tracing: Tracing,
}

/// Ids go into SQL text: only the characters of UUIDs and of our own
/// names pass.
fn checked_id(id: &str) -> Result<&str, ExportError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then_some(id)
        .ok_or_else(|| ExportError::BadId(id.to_owned()))
}

async fn rows(engine: &QueryEngine, sql: &str) -> Result<Vec<Value>, ExportError> {
    let batches = engine.sql(sql).await?;
    let text = format_batches(&batches, OutputFormat::Json)?;
    serde_json::from_str(&text).map_err(|e| ExportError::Row(e.to_string()))
}

fn text(v: &Value, k: &str) -> Result<String, ExportError> {
    v[k].as_str()
        .map(str::to_owned)
        .ok_or_else(|| ExportError::Row(format!("{k} missing")))
}

fn opt_text(v: &Value, k: &str) -> Option<String> {
    v[k].as_str().map(str::to_owned)
}

fn texts(v: &Value, k: &str) -> Vec<String> {
    v[k].as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A `CAST(ts AS BIGINT)` column: microseconds since the epoch.
fn time_us(v: &Value, k: &str) -> Option<OffsetDateTime> {
    let us = v[k].as_i64()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()
}

/// Reads a visit from the archive; `None` when it is not there.
pub async fn load(archive: &Path, visit_id: &str) -> Result<Option<ExportVisit>, ExportError> {
    let id = checked_id(visit_id)?;
    let engine = QueryEngine::open(archive)?;
    let visit = rows(
        &engine,
        &format!(
            "SELECT visit_id, device_id, clinic_id, patient_pseudonym, sex, age_years,
                    CAST(started_at AS BIGINT) AS started_us, CAST(decided_at AS BIGINT) AS decided_us,
                    status, stemi, territories, heart_rate_bpm, qrs_ms, reasons, quality_issues,
                    mimics, alert_id, fs_hz, gain_uv_per_lsb, leads
             FROM visits WHERE visit_id = '{id}' LIMIT 1"
        ),
    )
    .await?;
    let Some(v) = visit.into_iter().next() else {
        return Ok(None);
    };
    let started_at =
        time_us(&v, "started_us").ok_or_else(|| ExportError::Row("started_at".into()))?;
    // The visit's rows in the other tables sit in the partition of its
    // start's UTC date: read that day, not every file of the archive.
    let day = started_at.to_offset(time::UtcOffset::UTC).date();
    let st = rows(
        &engine,
        &format!(
            "SELECT lead, st_j_uv, st_j60_uv, st_elevation_threshold_uv
             FROM measurements WHERE visit_id = '{id}' AND date = DATE '{day}'"
        ),
    )
    .await?
    .into_iter()
    .map(|m| {
        Ok(LeadSt {
            lead: text(&m, "lead")?,
            st_j_uv: m["st_j_uv"].as_i64(),
            st_j60_uv: m["st_j60_uv"].as_i64(),
            threshold_uv: m["st_elevation_threshold_uv"]
                .as_i64()
                .unwrap_or(i64::from(DEFAULT_THRESHOLD_UV)),
        })
    })
    .collect::<Result<Vec<_>, ExportError>>()?;
    let alert_id = opt_text(&v, "alert_id");
    let alert = match &alert_id {
        Some(a) => rows(
            &engine,
            &format!(
                "SELECT CAST(published_at AS BIGINT) AS published_us,
                        CAST(acked_at AS BIGINT) AS acked_us, acked_by, verdict
                 FROM alert_timeline WHERE alert_id = '{}'",
                checked_id(a)?
            ),
        )
        .await?
        .into_iter()
        .next(),
        None => None,
    };
    let archive = archive.to_owned();
    let owned_id = id.to_owned();
    let samples = tokio::task::spawn_blocking(move || {
        ecg_archive::read_visit_samples_on(&archive, day, &owned_id)
    })
    .await
    .map_err(|e| ExportError::Row(e.to_string()))??;
    let alert = alert.unwrap_or(Value::Null);
    Ok(Some(ExportVisit {
        visit_id: text(&v, "visit_id")?,
        device_id: text(&v, "device_id")?,
        clinic_id: text(&v, "clinic_id")?,
        patient_pseudonym: text(&v, "patient_pseudonym")?,
        sex: text(&v, "sex")?,
        age_years: v["age_years"].as_u64(),
        started_at,
        decided_at: time_us(&v, "decided_us"),
        status: text(&v, "status")?,
        stemi: v["stemi"].as_bool().unwrap_or(false),
        territories: texts(&v, "territories"),
        heart_rate_bpm: v["heart_rate_bpm"].as_f64(),
        qrs_ms: v["qrs_ms"].as_f64(),
        reasons: texts(&v, "reasons"),
        quality_issues: texts(&v, "quality_issues"),
        mimics: texts(&v, "mimics"),
        alert_id,
        alert_published_at: time_us(&alert, "published_us"),
        acked_at: time_us(&alert, "acked_us"),
        acked_by: opt_text(&alert, "acked_by"),
        verdict: opt_text(&alert, "verdict"),
        st,
        tracing: Tracing {
            fs_hz: v["fs_hz"]
                .as_u64()
                .and_then(|f| u32::try_from(f).ok())
                .ok_or_else(|| ExportError::Row("fs_hz".into()))?,
            gain_uv_per_lsb: v["gain_uv_per_lsb"]
                .as_f64()
                .ok_or_else(|| ExportError::Row("gain_uv_per_lsb".into()))?,
            leads: texts(&v, "leads"),
            samples,
        },
    }))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `2026-11-29 08:00:12 UTC`, for people.
fn human(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(max - 1).collect();
        c.push('…');
        c
    }
}

impl ExportVisit {
    /// Leads that meet their ST-elevation threshold, highlighted on the
    /// paper; none unless the visit was alerted (else a 1 mm default would
    /// mark leads that no criterion used).
    pub fn criteria_leads(&self) -> HashSet<String> {
        if !self.stemi {
            return HashSet::new();
        }
        self.st
            .iter()
            .filter(|l| l.st_j_uv.is_some_and(|v| v >= l.threshold_uv))
            .map(|l| l.lead.clone())
            .collect()
    }

    /// The WFDB record name: the visit id with `_` for `-`.
    pub fn record_name(&self) -> String {
        format!("visit_{}", self.visit_id.replace('-', "_"))
    }
}

/// A4 landscape, millimetres.
const PAGE_MM: (f64, f64) = (297.0, 210.0);

/// The one-page 12-lead report: patient pseudonym, clinic, times,
/// measurements and reasons above the standard paper layout (25 mm/s,
/// 10 mm/mV), printable at 100 %.
pub fn report_svg(v: &ExportVisit) -> String {
    let (pw, ph) = PAGE_MM;
    let mut out = String::with_capacity(450_000);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="ecg-report" width="{pw}mm" height="{ph}mm" viewBox="0 0 {pw} {ph}" data-visit-id="{id}"><rect width="{pw}" height="{ph}" fill="#fff"/>"##,
        id = escape(&v.visit_id)
    );
    let title = if v.stemi {
        format!(
            "12-lead ECG - SUSPECTED STEMI ({})",
            v.territories.join(", ")
        )
    } else {
        format!("12-lead ECG - {}", v.status.replace('_', " "))
    };
    let _ = write!(
        out,
        r##"<text x="10" y="12" font-size="5" font-family="sans-serif" font-weight="bold">{}</text>"##,
        escape(&title)
    );
    let mut facts = vec![
        format!("Patient (pseudonym): {}", v.patient_pseudonym),
        format!(
            "Sex, age: {}, {}",
            v.sex,
            v.age_years
                .map_or("age unknown".into(), |a| format!("{a} y"))
        ),
        format!("Clinic: {}   device: {}", v.clinic_id, v.device_id),
        format!("Visit: {}", v.visit_id),
        format!(
            "Acquired: {}   decided: {}",
            human(v.started_at),
            v.decided_at.map_or("-".into(), human)
        ),
        format!(
            "Heart rate: {}   QRS: {}",
            v.heart_rate_bpm
                .map_or("-".into(), |h| format!("{h:.0}/min")),
            v.qrs_ms.map_or("-".into(), |q| format!("{q:.0} ms"))
        ),
    ];
    if let Some(a) = &v.alert_id {
        facts.push(format!(
            "Alert {a}: published {}",
            v.alert_published_at.map_or("-".into(), human)
        ));
        facts.push(match (&v.acked_by, v.acked_at) {
            (Some(by), Some(at)) => format!(
                "Acknowledged by {by} at {}; verdict: {}",
                human(at),
                v.verdict
                    .as_deref()
                    .unwrap_or("none given")
                    .replace('_', " ")
            ),
            _ => "Not acknowledged".into(),
        });
    }
    for (i, f) in facts.iter().enumerate() {
        let _ = write!(
            out,
            r##"<text class="fact" x="10" y="{y:.1}" font-size="3" font-family="sans-serif">{t}</text>"##,
            y = 19.0 + 4.5 * i as f64,
            t = escape(&clip(f, 95))
        );
    }
    let mut notes: Vec<String> = v.reasons.clone();
    notes.extend(v.quality_issues.iter().map(|q| format!("Quality: {q}")));
    notes.extend(v.mimics.iter().map(|m| format!("Mimic: {m}")));
    let _ = write!(
        out,
        r##"<text x="160" y="19" font-size="3" font-family="sans-serif" font-weight="bold">Reasons</text>"##
    );
    for (i, r) in notes.iter().take(8).enumerate() {
        let _ = write!(
            out,
            r##"<text class="reason" x="160" y="{y:.1}" font-size="2.8" font-family="sans-serif">- {t}</text>"##,
            y = 23.5 + 4.2 * i as f64,
            t = escape(&clip(r, 78))
        );
    }
    // ST table: one cell per lead, in the paper's lead order.
    let criteria = v.criteria_leads();
    let y0 = 59.0;
    let _ = write!(
        out,
        r##"<text x="10" y="{y:.1}" font-size="2.6" font-family="sans-serif">ST uV (J / J+60)</text>"##,
        y = y0 + 3.0
    );
    let order = ecg_svg::LAYOUT
        .iter()
        .flat_map(|row| row.iter())
        .copied()
        .collect::<Vec<_>>();
    let mut leads: Vec<&LeadSt> = v.st.iter().collect();
    leads.sort_by_key(|l| {
        order
            .iter()
            .position(|o| *o == l.lead)
            .unwrap_or(usize::MAX)
    });
    for (i, l) in leads.iter().take(12).enumerate() {
        let x = 38.0 + 21.0 * i as f64;
        let meets = criteria.contains(&l.lead);
        let val = |o: Option<i64>| o.map_or("-".into(), |v| v.to_string());
        let _ = write!(
            out,
            r##"<text class="st" data-lead="{n}" x="{x:.1}" y="{y:.1}" font-size="2.6" font-family="sans-serif" fill="{c}" font-weight="{w}">{n}: {j} / {j60}</text>"##,
            n = escape(&l.lead),
            y = y0 + 3.0,
            c = if meets { "#c00000" } else { "#000" },
            w = if meets { "bold" } else { "normal" },
            j = val(l.st_j_uv),
            j60 = val(l.st_j60_uv),
        );
    }
    let (paper_w, paper_h) = ecg_svg::paper_mm();
    let x = (pw - paper_w) / 2.0;
    let y = ph - paper_h - 4.0;
    let _ = write!(
        out,
        r#"<g class="paper" transform="translate({x:.2},{y:.2})">"#
    );
    let caption = format!("clinic {}  visit {}", v.clinic_id, v.visit_id);
    ecg_svg::render_paper(&mut out, &v.tracing, &criteria, &caption);
    out.push_str("</g></svg>");
    out
}

/// The visit as a WFDB record (format 16, gain from the archive, lead
/// names as signal descriptions); sex, age, clinic, pseudonym, times and
/// reasons as `key: value` comments.
pub fn wfdb_record(v: &ExportVisit) -> Result<ecg_wfdb::Format16Record, ExportError> {
    let signals: Vec<ecg_wfdb::SignalOut<'_>> = v
        .tracing
        .leads
        .iter()
        .zip(&v.tracing.samples)
        .map(|(name, samples)| ecg_wfdb::SignalOut { name, samples })
        .collect();
    let mut comments = vec![
        format!(
            "<sex>: {}",
            match v.sex.as_str() {
                "male" => "M",
                "female" => "F",
                _ => "?",
            }
        ),
        format!(
            "<age>: {}",
            v.age_years.map_or("?".into(), |a| a.to_string())
        ),
        format!("visit_id: {}", v.visit_id),
        format!("clinic_id: {}", v.clinic_id),
        format!("device_id: {}", v.device_id),
        format!("patient_pseudonym: {}", v.patient_pseudonym),
        format!("acquired_at: {}", rfc3339(v.started_at)),
        format!("status: {}", v.status),
    ];
    if let Some(a) = &v.alert_id {
        comments.push(format!("alert_id: {a}"));
    }
    comments.extend(v.reasons.iter().map(|r| format!("reason: {r}")));
    Ok(ecg_wfdb::encode_format16(
        &v.record_name(),
        f64::from(v.tracing.fs_hz),
        1000.0 / v.tracing.gain_uv_per_lsb,
        &signals,
        &comments,
    )?)
}

/// MDC codes (ISO/IEEE 11073-10101) of the standard leads' electric
/// potentials, as FHIR's ECG example codes its components.
fn mdc_code(lead: &str) -> Option<(&'static str, &'static str)> {
    Some(match lead {
        "I" => ("131329", "MDC_ECG_ELEC_POTL_I"),
        "II" => ("131330", "MDC_ECG_ELEC_POTL_II"),
        "III" => ("131389", "MDC_ECG_ELEC_POTL_III"),
        "aVR" => ("131390", "MDC_ECG_ELEC_POTL_AVR"),
        "aVL" => ("131391", "MDC_ECG_ELEC_POTL_AVL"),
        "aVF" => ("131392", "MDC_ECG_ELEC_POTL_AVF"),
        "V1" => ("131331", "MDC_ECG_ELEC_POTL_V1"),
        "V2" => ("131332", "MDC_ECG_ELEC_POTL_V2"),
        "V3" => ("131333", "MDC_ECG_ELEC_POTL_V3"),
        "V4" => ("131334", "MDC_ECG_ELEC_POTL_V4"),
        "V5" => ("131335", "MDC_ECG_ELEC_POTL_V5"),
        "V6" => ("131336", "MDC_ECG_ELEC_POTL_V6"),
        _ => return None,
    })
}

/// Our own identifier systems (URNs: nothing to resolve).
const SYSTEM: &str = "urn:ecg-triage";

/// The visit (and its alert) as a FHIR R4 Observation: LOINC 11524-6 "EKG
/// study", the patient by pseudonym only, one component per lead whose
/// valueSampledData holds the raw ADC counts (`factor` = microvolts per
/// count, `period` = milliseconds per sample), the reasons as notes.
pub fn fhir_observation(v: &ExportVisit) -> Value {
    let period_ms = 1000.0 / f64::from(v.tracing.fs_hz);
    let components: Vec<Value> = v
        .tracing
        .leads
        .iter()
        .zip(&v.tracing.samples)
        .map(|(lead, samples)| {
            let mut coding = vec![json!({
                "system": format!("{SYSTEM}:lead"), "code": lead, "display": lead
            })];
            if let Some((code, display)) = mdc_code(lead) {
                coding.insert(
                    0,
                    json!({"system": "urn:oid:2.16.840.1.113883.6.24", "code": code, "display": display}),
                );
            }
            let mut data = String::with_capacity(samples.len() * 5);
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    data.push(' ');
                }
                let _ = write!(data, "{s}");
            }
            json!({
                "code": {"coding": coding, "text": lead},
                "valueSampledData": {
                    "origin": {"value": 0, "unit": "uV", "system": "http://unitsofmeasure.org", "code": "uV"},
                    "period": period_ms,
                    "factor": v.tracing.gain_uv_per_lsb,
                    "lowerLimit": f64::from(i16::MIN) * v.tracing.gain_uv_per_lsb,
                    "upperLimit": f64::from(i16::MAX) * v.tracing.gain_uv_per_lsb,
                    "dimensions": 1,
                    "data": data
                }
            })
        })
        .collect();
    let mut identifier = vec![json!({"system": format!("{SYSTEM}:visit"), "value": v.visit_id})];
    if let Some(a) = &v.alert_id {
        identifier.push(json!({"system": format!("{SYSTEM}:alert"), "value": a}));
    }
    let mut notes: Vec<Value> = v.reasons.iter().map(|r| json!({"text": r})).collect();
    if let (Some(by), Some(at)) = (&v.acked_by, v.acked_at) {
        notes.push(json!({
            "authorString": by,
            "time": rfc3339(at),
            "text": format!("Acknowledged; verdict: {}", v.verdict.as_deref().unwrap_or("none given")),
        }));
    }
    let mut obs = json!({
        "resourceType": "Observation",
        "id": v.visit_id,
        "identifier": identifier,
        "status": if v.decided_at.is_some() { "final" } else { "preliminary" },
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "procedure", "display": "Procedure"
        }]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "11524-6", "display": "EKG study"}],
                 "text": "12-lead ECG"},
        "subject": {"identifier": {"system": format!("{SYSTEM}:patient-pseudonym"), "value": v.patient_pseudonym}},
        "effectiveDateTime": rfc3339(v.started_at),
        "performer": [{"identifier": {"system": format!("{SYSTEM}:clinic"), "value": v.clinic_id}}],
        "device": {"identifier": {"system": format!("{SYSTEM}:device"), "value": v.device_id}},
        "component": components,
    });
    // Only an alert is a statement about abnormality; "no STEMI" is not
    // "normal".
    obs["interpretation"] = if v.stemi {
        json!([{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                "code": "AA", "display": "Critical abnormal"
            }],
            "text": v.status
        }])
    } else {
        json!([{"text": v.status}])
    };
    if let Some(t) = v.decided_at.or(v.alert_published_at) {
        obs["issued"] = json!(rfc3339(t));
    }
    if !notes.is_empty() {
        obs["note"] = Value::Array(notes);
    }
    obs
}
