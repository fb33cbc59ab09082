//! The synchronous heart of the pipeline: ingestion events in, messages and
//! archive records out. No I/O here, so every decision (when to alert, what
//! the device hears, what is archived) is testable without a broker.

use std::collections::HashMap;

use ecg_archive::{AlertRow, BeatRow, LeadMeasurement, VisitRecord, VisitRow};
use ecg_ingest::{AssemblyEvent, RecordId, VisitKey};
use ecg_triage::Interpretation;
use ecg_wire::{Alert, CentreId, Message, Topic, VisitMeta, VisitResult, VisitTopic};
use time::OffsetDateTime;
use tracing::{info_span, warn, Span};

use crate::alerting::{build_result, AlertGate};
use crate::analysis::VisitAnalysis;
use crate::deadletter::{source_of_topic, SharedDeadLetterBudget, PER_SECOND};
use crate::quarantine::QuarantinedMessage;

/// `ecg/v1/deadletter`.
pub const DEADLETTER_TOPIC: &str = "ecg/v1/deadletter";

/// What the desk asks the I/O around it to do, in order.
#[derive(Debug, Clone)]
pub enum Output {
    /// Publish a suspected-STEMI alert to the centre (the driver stamps
    /// `published_at`).
    Alert { key: VisitKey, alert: Box<Alert> },
    /// Publish a result or a dead letter.
    Publish { topic: String, payload: Vec<u8> },
    /// Archive the finished visit, then release it from the spool.
    Archive {
        key: VisitKey,
        record: Box<VisitRecord>,
    },
    /// Nothing to archive (no meta ever arrived, its messages refused):
    /// let the spool forget it, without calling it done.
    Release { key: VisitKey },
    /// Refused input is dealt with (its dead letter, if any, comes before):
    /// let the spool forget it.
    ReleaseInput { id: RecordId },
    /// Keep a refused message whole in the quarantine (one
    /// [`crate::quarantine::QuarantinedMessage`] line, received on `day`
    /// from `source`), durably before any later release.
    Quarantine {
        source: String,
        day: time::Date,
        line: Vec<u8>,
    },
}

struct OpenVisit {
    meta: VisitMeta,
    received_at: OffsetDateTime,
    analysis: Option<VisitAnalysis>,
    gate: AlertGate,
    alerts: Vec<Alert>,
    span: Span,
}

/// Open visits and their analysis.
pub struct TriageDesk {
    centre: CentreId,
    open: HashMap<VisitKey, OpenVisit>,
    dead_letters: SharedDeadLetterBudget,
}

fn visit_span(key: &VisitKey) -> Span {
    info_span!("visit", device = %key.device_id, visit = %key.visit_id)
}

impl TriageDesk {
    pub fn new(centre: CentreId) -> TriageDesk {
        TriageDesk::sharing(centre, SharedDeadLetterBudget::default())
    }

    /// A desk whose dead letters draw on `budget` with other desks'.
    pub fn sharing(centre: CentreId, budget: SharedDeadLetterBudget) -> TriageDesk {
        TriageDesk {
            centre,
            open: HashMap::new(),
            dead_letters: budget,
        }
    }

    /// Visits being analysed.
    pub fn in_flight(&self) -> usize {
        self.open.len()
    }

    /// The meta of an open visit.
    pub fn meta(&self, key: &VisitKey) -> Option<&VisitMeta> {
        self.open.get(key).map(|v| &v.meta)
    }

    /// Handles one ingestion event; `now` is the pipeline clock.
    pub fn handle(&mut self, event: AssemblyEvent, now: OffsetDateTime) -> Vec<Output> {
        match event {
            AssemblyEvent::Started { key, meta } => {
                let span = visit_span(&key);
                let analysis = span.in_scope(|| match VisitAnalysis::new(&meta) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        warn!(error = %e, "visit cannot be analysed; it is still archived");
                        None
                    }
                });
                span.in_scope(|| tracing::debug!(fs_hz = meta.fs_hz, "visit started"));
                self.open.insert(
                    key,
                    OpenVisit {
                        meta,
                        received_at: now,
                        analysis,
                        gate: AlertGate::default(),
                        alerts: Vec::new(),
                        span,
                    },
                );
                Vec::new()
            }
            AssemblyEvent::Samples {
                key,
                first_sample,
                leads,
            } => {
                let Some(v) = self.open.get_mut(&key) else {
                    return Vec::new();
                };
                let _enter = v.span.clone().entered();
                let Some(a) = v.analysis.as_mut() else {
                    return Vec::new();
                };
                match a.push(u64::from(first_sample), leads) {
                    Ok(Some(early)) => {
                        let alert = v.gate.consider(
                            &v.meta,
                            &self.centre,
                            &early.interpretation,
                            true,
                            now,
                        );
                        match alert {
                            Some(alert) => {
                                tracing::info!(at_sample = early.at_sample, "early STEMI alert");
                                v.alerts.push(alert.clone());
                                vec![Output::Alert {
                                    key,
                                    alert: Box::new(alert),
                                }]
                            }
                            None => Vec::new(),
                        }
                    }
                    Ok(None) => Vec::new(),
                    Err(e) => {
                        // The visit is re-analysed whole at its end.
                        warn!(error = %e, "streaming analysis stopped");
                        v.analysis = None;
                        Vec::new()
                    }
                }
            }
            AssemblyEvent::Complete {
                key,
                meta,
                end,
                samples,
                digest_ok,
            } => {
                let incomplete = (!digest_ok)
                    .then(|| "the samples received do not match the device's digest".to_string());
                let digest = digest_ok.then(|| end.samples_sha256.to_string());
                self.close(key, meta, samples, incomplete, digest, now)
            }
            AssemblyEvent::Incomplete {
                key,
                meta,
                samples,
                reason,
            } => match meta {
                Some(meta) => self.close(key, meta, samples, Some(reason.to_string()), None, now),
                None => {
                    self.open.remove(&key);
                    visit_span(&key).in_scope(|| {
                        warn!(%reason, "visit abandoned before its meta arrived; its messages go to the dead-letter topic, nothing to archive")
                    });
                    vec![Output::Release { key }]
                }
            },
            AssemblyEvent::Rejected(mut r) => {
                let release = r.spooled.take().map(|id| Output::ReleaseInput { id });
                let source = r
                    .key
                    .as_ref()
                    .map(|k| k.device_id.to_string())
                    .unwrap_or_else(|| source_of_topic(&r.topic).to_owned());
                // Kept whole even when the dead letter is suppressed: the
                // budget spares the broker, the quarantine has its own.
                let quarantine = QuarantinedMessage::of(&r).map(|m| Output::Quarantine {
                    source: source.clone(),
                    day: r.received_at.date(),
                    line: m.to_line(),
                });
                let Some(suppressed) = self.dead_letters.admit(&source, now) else {
                    tracing::debug!(topic = %r.topic, reason = %r.reason, "input rejected; dead letter suppressed (budget)");
                    return quarantine.into_iter().chain(release).collect();
                };
                tracing::warn!(topic = %r.topic, code = ?r.code, reason = %r.reason, suppressed, "input rejected");
                if suppressed > 0 {
                    r.reason = format!(
                        "[{suppressed} earlier rejections of this device's input were not published one by one: more than {PER_SECOND} a second] {}",
                        r.reason
                    );
                }
                let dead_letter = Output::Publish {
                    topic: DEADLETTER_TOPIC.to_owned(),
                    payload: r.to_dead_letter().to_json(),
                };
                quarantine
                    .into_iter()
                    .chain(std::iter::once(dead_letter))
                    .chain(release)
                    .collect()
            }
        }
    }

    fn close(
        &mut self,
        key: VisitKey,
        meta: VisitMeta,
        samples: Vec<Vec<i16>>,
        incomplete: Option<String>,
        digest: Option<String>,
        now: OffsetDateTime,
    ) -> Vec<Output> {
        let mut v = self.open.remove(&key).unwrap_or_else(|| OpenVisit {
            analysis: None,
            gate: AlertGate::default(),
            alerts: Vec::new(),
            span: visit_span(&key),
            received_at: now,
            meta: meta.clone(),
        });
        let span = v.span.clone();
        let _enter = span.enter();
        let interp = final_interpretation(&mut v, &meta, &samples);
        let mut out = Vec::new();
        if let Some(i) = &interp {
            if let Some(alert) = v.gate.consider(&meta, &self.centre, i, false, now) {
                tracing::info!("STEMI alert at the end of the visit");
                v.alerts.push(alert.clone());
                out.push(Output::Alert {
                    key: key.clone(),
                    alert: Box::new(alert),
                });
            }
        }
        let result = build_result(
            meta.visit_id,
            interp.as_ref(),
            v.gate.alerted(),
            incomplete.as_deref(),
            now,
        );
        tracing::info!(status = ?result.status, complete = incomplete.is_none(), "visit decided");
        let topic = Topic::visit(meta.device_id.clone(), meta.visit_id, VisitTopic::Result);
        out.push(Output::Publish {
            topic: topic.to_string(),
            payload: result.to_json(),
        });
        let record = build_record(
            &meta,
            v.received_at,
            samples,
            interp.as_ref(),
            &result,
            &v.alerts,
            incomplete.is_none(),
            digest,
        );
        out.push(Output::Archive {
            key,
            record: Box::new(record),
        });
        out
    }
}

/// The refined interpretation on the whole recording: the streaming
/// analysis when it saw exactly these samples, otherwise a fresh one.
fn final_interpretation(
    v: &mut OpenVisit,
    meta: &VisitMeta,
    samples: &[Vec<i16>],
) -> Option<Interpretation> {
    let n = samples.first().map_or(0, Vec::len) as u64;
    let streamed_all = v
        .analysis
        .as_ref()
        .is_some_and(|a| a.n_samples() == n && a.saw_exactly(samples));
    if !streamed_all {
        let mut fresh = VisitAnalysis::new(meta).ok()?;
        if n > 0 {
            // A copy, on this rare path (the stream missed samples): the archive
            // keeps the assembled samples.
            if let Err(e) = fresh.push(0, samples.into()) {
                warn!(error = %e, "the visit cannot be analysed");
                return None;
            }
        }
        v.analysis = Some(fresh);
    }
    let a = v.analysis.as_mut()?;
    match a.finish() {
        Ok(f) => Some(f.interpretation),
        Err(e) => {
            warn!(error = %e, "the visit cannot be interpreted");
            None
        }
    }
}

fn sex_name(s: ecg_wire::Sex) -> &'static str {
    match s {
        ecg_wire::Sex::Male => "male",
        ecg_wire::Sex::Female => "female",
        ecg_wire::Sex::Unknown => "unknown",
    }
}

fn status_name(r: &VisitResult) -> String {
    serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", r.status))
}

#[allow(clippy::too_many_arguments)]
fn build_record(
    meta: &VisitMeta,
    received_at: OffsetDateTime,
    samples: Vec<Vec<i16>>,
    interp: Option<&Interpretation>,
    result: &VisitResult,
    alerts: &[Alert],
    complete: bool,
    digest: Option<String>,
) -> VisitRecord {
    let fs = f64::from(meta.fs_hz);
    let beats: Vec<BeatRow> = interp
        .map(|i| {
            i.beats
                .iter()
                .enumerate()
                .map(|(n, b)| BeatRow {
                    beat_index: n as u32,
                    r: b.r as u32,
                    qrs_on: Some(b.qrs_on as u32),
                    qrs_off: Some(b.qrs_off as u32),
                    rr_ms: n
                        .checked_sub(1)
                        .map(|p| (b.r as f64 - i.beats[p].r as f64) * 1000.0 / fs),
                    kind: if b.dominant { "dominant" } else { "other" }.to_owned(),
                    used_for_st: b.dominant,
                })
                .collect()
        })
        .unwrap_or_default();
    let measurements: Vec<LeadMeasurement> = interp
        .map(|i| {
            i.leads
                .iter()
                .map(|(lead, m)| LeadMeasurement {
                    lead: lead.clone(),
                    st_j_uv: m.st_j_uv.is_finite().then(|| m.st_j_uv.round() as i32),
                    st_j60_uv: m.st_j60_uv.is_finite().then(|| m.st_j60_uv.round() as i32),
                    st_elevation_threshold_uv: None,
                    lead_ok: m.st_j_uv.is_finite(),
                    noise_uv: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let alert_rows: Vec<AlertRow> = alerts
        .iter()
        .map(|a| AlertRow {
            alert_id: a.alert_id.to_string(),
            centre_id: a.centre_id.to_string(),
            territories: a.territories.iter().map(|t| territory_name(*t)).collect(),
            early: a.early,
            escalation_level: a.escalation_level,
            acquired_at: a.acquired_at,
            detected_at: a.detected_at,
            published_at: a.published_at,
            acked_at: None,
            acked_by: None,
        })
        .collect();
    let status = if complete {
        status_name(result)
    } else {
        "incomplete".to_owned()
    };
    VisitRecord {
        visit: VisitRow {
            visit_id: meta.visit_id.to_string(),
            device_id: meta.device_id.to_string(),
            clinic_id: meta.clinic_id.to_string(),
            patient_pseudonym: meta.patient_pseudonym.to_string(),
            sex: sex_name(meta.sex).to_owned(),
            age_years: meta.age_years,
            started_at: meta.acquired_at,
            received_at,
            fs_hz: meta.fs_hz,
            gain_uv_per_lsb: meta.gain_uv_per_lsb,
            leads: meta.leads.iter().map(|l| l.name().to_owned()).collect(),
            samples_sha256: digest,
            complete,
            status,
            stemi: result.alert_id.is_some(),
            stemi_criteria_met: interp.is_some_and(|i| i.stemi_criteria_met),
            territories: result
                .territories
                .iter()
                .map(|t| territory_name(*t))
                .collect(),
            heart_rate_bpm: interp.and_then(|i| i.heart_rate_bpm),
            qrs_ms: interp.and_then(|i| i.qrs_ms),
            quality_ok: interp.is_some_and(|i| i.quality.ok),
            quality_issues: interp.map(|i| i.quality.issues.clone()).unwrap_or_default(),
            mimics: interp
                .map(|i| i.mimics.iter().map(|m| m.to_string()).collect())
                .unwrap_or_default(),
            reasons: result.reasons.clone(),
            alert_id: result.alert_id.map(|a| a.to_string()),
            firmware_version: meta.firmware_version.clone(),
            decided_at: Some(result.decided_at),
        },
        samples,
        beats,
        measurements,
        alerts: alert_rows,
    }
}

fn territory_name(t: ecg_wire::Territory) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_ingest::Rejection;
    use ecg_wire::{DeadLetter, DeadLetterCode};

    fn rejected(topic: &str, at: OffsetDateTime) -> AssemblyEvent {
        AssemblyEvent::Rejected(Rejection {
            key: None,
            topic: topic.to_owned(),
            payload: b"{not json".to_vec(),
            payload_len: 9,
            code: DeadLetterCode::BadJson,
            reason: "meta: not JSON".to_owned(),
            received_at: at,
            spooled: None,
        })
    }

    fn dead_letters(out: &[Output]) -> Vec<DeadLetter> {
        out.iter()
            .filter_map(|o| match o {
                Output::Publish { topic, payload } if topic == DEADLETTER_TOPIC => {
                    Some(DeadLetter::from_json(payload).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    /// A device flooding bad input gets its burst of dead letters, then its rate; the
    /// count of the rest rides on its next one; another device's still go out.
    #[test]
    fn a_flood_of_rejections_is_cut_to_the_devices_budget() {
        let mut desk = TriageDesk::new(CentreId::new("centre-1").unwrap());
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let flood = "ecg/v1/dev/flooder/visit/x/meta";
        let mut out = Vec::new();
        for _ in 0..3000 {
            out.extend(desk.handle(rejected(flood, t0), t0));
        }
        let first = dead_letters(&out);
        assert_eq!(first.len(), crate::deadletter::BURST as usize);
        assert!(first.iter().all(|d| d.reason == "meta: not JSON"));
        let other = desk.handle(rejected("ecg/v1/dev/dev-2/visit/y/meta", t0), t0);
        assert_eq!(dead_letters(&other).len(), 1);
        let t1 = t0 + time::Duration::seconds(1);
        let next = dead_letters(&desk.handle(rejected(flood, t1), t1));
        assert_eq!(next.len(), 1);
        assert!(
            next[0].reason.starts_with("[2000 earlier rejections"),
            "{}",
            next[0].reason
        );
    }

    /// Two workers' desks share one budget: a device whose rejections are
    /// spread over both gets one burst, not two.
    #[test]
    fn desks_sharing_a_budget_give_a_device_one_burst() {
        let budget = SharedDeadLetterBudget::default();
        let centre = CentreId::new("centre-1").unwrap();
        let mut desks = [
            TriageDesk::sharing(centre.clone(), budget.clone()),
            TriageDesk::sharing(centre, budget),
        ];
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let flood = "ecg/v1/dev/flooder/visit/x/meta";
        let mut out = Vec::new();
        for i in 0..3000 {
            out.extend(desks[i % 2].handle(rejected(flood, t0), t0));
        }
        assert_eq!(dead_letters(&out).len(), crate::deadletter::BURST as usize);
    }

    /// Refused input held in the spool is let go only after its dead letter
    /// (so a crash before the PUBACK replays it), or at once when the budget
    /// sends none.
    #[test]
    fn spooled_input_is_released_after_its_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) =
            ecg_ingest::Spool::open(ecg_ingest::SpoolConfig::new(dir.path())).unwrap();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let flood = "ecg/v1/dev/flooder/nonsense";
        let mut desk = TriageDesk::new(CentreId::new("centre-1").unwrap());
        let mut held = |desk: &mut TriageDesk| {
            let id = spool
                .append(&ecg_ingest::Received {
                    topic: flood.to_owned(),
                    payload: b"{not json".to_vec(),
                    received_at: t0,
                })
                .unwrap();
            let AssemblyEvent::Rejected(mut r) = rejected(flood, t0) else {
                unreachable!()
            };
            r.spooled = Some(id.clone());
            (desk.handle(AssemblyEvent::Rejected(r), t0), id)
        };
        let (out, id) = held(&mut desk);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(&out[0], Output::Quarantine { .. }));
        assert_eq!(dead_letters(&out[1..2]).len(), 1);
        assert!(matches!(&out[2], Output::ReleaseInput { id: i } if *i == id));
        for _ in 1..crate::deadletter::BURST as usize {
            held(&mut desk);
        }
        let (out, id) = held(&mut desk);
        assert!(
            matches!(&out[..], [Output::Quarantine { .. }, Output::ReleaseInput { id: i }] if *i == id),
            "past the burst: {out:?}"
        );
    }

    /// Every refused message carried whole is handed to the quarantine,
    /// past the dead-letter budget too, under its device's name; one cut to
    /// its prefix (no device sends such) is not.
    #[test]
    fn refused_input_goes_to_the_quarantine_whole() {
        let mut desk = TriageDesk::new(CentreId::new("centre-1").unwrap());
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let flood = "ecg/v1/dev/flooder/visit/x/meta";
        let mut lines = Vec::new();
        let n = crate::deadletter::BURST as usize + 5;
        for _ in 0..n {
            for o in desk.handle(rejected(flood, t0), t0) {
                if let Output::Quarantine { source, day, line } = o {
                    assert_eq!(source, "flooder");
                    assert_eq!(day, t0.date());
                    lines.push(line);
                }
            }
        }
        assert_eq!(lines.len(), n);
        let m: QuarantinedMessage = serde_json::from_slice(&lines[0]).unwrap();
        assert_eq!(m.payload().unwrap(), b"{not json");
        assert_eq!(m.topic, flood);
        assert_eq!(m.reason_code, DeadLetterCode::BadJson);

        let AssemblyEvent::Rejected(mut cut) = rejected("ecg/v1/dev/d2/visit/y/meta", t0) else {
            unreachable!()
        };
        cut.payload = vec![b'{'; ecg_wire::message::DEADLETTER_PAYLOAD_MAX_BYTES];
        cut.payload_len = 1 << 20;
        let out = desk.handle(AssemblyEvent::Rejected(cut), t0);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Quarantine { .. })),
            "{out:?}"
        );
        assert_eq!(dead_letters(&out).len(), 1);
    }
}
