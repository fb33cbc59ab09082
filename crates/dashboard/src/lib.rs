//! The chest-pain centre's dashboard, served by `ecgtriage run` and
//! `ecgtriage demo`: a live list of alerts and of recent visits per clinic
//! (server-sent events), an alert's 12-lead ECG in the standard paper layout
//! (SVG), the acknowledge button (with the cardiologist's verdict), a
//! search of past visits in the archive, the chest-pain centre's monthly
//! figures, and exports of a visit (report SVG, WFDB, FHIR). Every route but
//! the login page needs a session; failed logins are throttled.
//!
//! The pipeline feeds the [`Hub`] (alerts published, acknowledged and
//! escalated, visits archived); the dashboard's acknowledgements go back to
//! the pipeline as [`AckRequest`]s on the same channel as the acks that
//! arrive over MQTT, so both take one path.

pub mod archive_read;
pub mod auth;
pub mod ecg_svg;
pub mod export;
pub mod throttle;
mod web;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ecg_archive::VisitRecord;
use ecg_wire::{Alert, AlertAck, Verdict};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use auth::{hash_password, Account};
pub use ecg_svg::Tracing;

/// Alerts and visits kept in memory for the live lists.
const KEEP_ALERTS: usize = 500;
const KEEP_VISITS: usize = 500;
/// Tracings of alerted visits kept in memory (about 120 kB each); older
/// ones are read back from the archive.
const KEEP_TRACINGS: usize = 64;
/// The ST elevation the criteria use when the visit's own per-lead
/// thresholds are not known yet (early alert): 1 mm.
pub(crate) const DEFAULT_THRESHOLD_UV: i32 = 100;

/// An acknowledgement on its way to the pipeline; `done` hears what the
/// pipeline made of it.
#[derive(Debug)]
pub struct AckRequest {
    pub ack: AlertAck,
    pub done: Option<oneshot::Sender<AckOutcome>>,
}

/// What the pipeline made of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// Pending until now; acknowledgement recorded.
    Recorded,
    /// Already acknowledged or unknown.
    NotPending,
}

/// Dashboard settings.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub accounts: Vec<Account>,
    /// The archive to search and to read old tracings from.
    pub archive_dir: PathBuf,
    pub centre: String,
    /// Failed-login throttling (the default suits a chest-pain centre).
    pub login_throttle: throttle::ThrottleConfig,
}

/// An alert and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub alert: Alert,
    /// pending, escalated or acknowledged.
    pub status: &'static str,
    pub escalation_level: u8,
    #[serde(with = "time::serde::rfc3339::option")]
    pub escalated_at: Option<OffsetDateTime>,
    pub acked_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub acked_at: Option<OffsetDateTime>,
    pub verdict: Option<Verdict>,
}

/// A finished visit for the live list.
#[derive(Debug, Clone, Serialize)]
pub struct VisitView {
    pub visit_id: String,
    pub device_id: String,
    pub clinic_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub status: String,
    pub stemi: bool,
    pub alert_id: Option<String>,
    pub heart_rate_bpm: Option<f64>,
    pub territories: Vec<String>,
}

/// Per-lead ST values and the threshold that applied.
#[derive(Debug, Clone, Serialize)]
pub struct LeadStView {
    pub lead: String,
    pub st_j_uv: i32,
    pub st_j60_uv: i32,
    pub threshold_uv: i32,
    pub meets: bool,
}

#[derive(Default)]
struct State {
    alerts: HashMap<String, AlertView>,
    alert_order: VecDeque<String>,
    visits: VecDeque<VisitView>,
    tracings: HashMap<String, Arc<Tracing>>,
    tracing_order: VecDeque<String>,
    /// visit id -> lead -> threshold (from the archived measurements).
    thresholds: HashMap<String, HashMap<String, i32>>,
}

/// One server-sent event: its name and JSON data.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    pub event: &'static str,
    pub data: String,
}

pub(crate) struct Inner {
    pub cfg: DashboardConfig,
    pub auth: auth::Auth,
    pub throttle: throttle::Throttle,
    state: Mutex<State>,
    pub events: broadcast::Sender<Push>,
    pub acks: mpsc::Sender<AckRequest>,
}

/// The pipeline's handle on the dashboard. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl Hub {
    /// A hub whose acknowledgements go to `acks`.
    pub fn new(cfg: DashboardConfig, acks: mpsc::Sender<AckRequest>) -> Hub {
        let (events, _) = broadcast::channel(1024);
        Hub {
            inner: Arc::new(Inner {
                auth: auth::Auth::new(cfg.accounts.clone()),
                throttle: throttle::Throttle::new(cfg.login_throttle.clone()),
                cfg,
                state: Mutex::new(State::default()),
                events,
                acks,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push<T: Serialize>(&self, event: &'static str, v: &T) {
        if let Ok(data) = serde_json::to_string(v) {
            // No subscriber is fine: nobody is looking.
            let _ = self.inner.events.send(Push { event, data });
        }
    }

    /// A one-time access token for [`Hub::url_with_token`].
    pub fn issue_one_time_token(&self) -> String {
        self.inner.auth.issue_one_time()
    }

    /// `http://ADDR/?token=...`: opens a session once, like Jupyter's.
    pub fn url_with_token(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/?token={}", self.issue_one_time_token())
    }

    /// An alert was published (or was pending when the pipeline started;
    /// then `level` is its escalation level so far).
    pub fn alert_published(&self, alert: &Alert, level: u8) {
        let view = {
            let mut st = self.state();
            let id = alert.alert_id.to_string();
            if !st.alerts.contains_key(&id) {
                st.alert_order.push_back(id.clone());
                while st.alert_order.len() > KEEP_ALERTS {
                    if let Some(old) = st.alert_order.pop_front() {
                        st.alerts.remove(&old);
                    }
                }
            }
            let view = st.alerts.entry(id).or_insert_with(|| AlertView {
                alert: alert.clone(),
                status: "pending",
                escalation_level: 0,
                escalated_at: None,
                acked_by: None,
                acked_at: None,
                verdict: None,
            });
            if level > view.escalation_level {
                view.escalation_level = level;
                view.status = "escalated";
            }
            view.clone()
        };
        self.push("alert", &view);
    }

    /// The pipeline recorded an acknowledgement.
    pub fn alert_acked(&self, ack: &AlertAck) {
        let view = {
            let mut st = self.state();
            let Some(view) = st.alerts.get_mut(&ack.alert_id.to_string()) else {
                return;
            };
            view.status = "acknowledged";
            view.acked_by = Some(ack.by.clone());
            view.acked_at = Some(ack.at);
            view.verdict = ack.verdict;
            view.clone()
        };
        self.push("alert", &view);
    }

    /// The pipeline escalated an unacknowledged alert.
    pub fn alert_escalated(&self, alert: &Alert, at: OffsetDateTime) {
        self.alert_published(alert, 0);
        let view = {
            let mut st = self.state();
            let Some(view) = st.alerts.get_mut(&alert.alert_id.to_string()) else {
                return;
            };
            view.status = "escalated";
            view.escalation_level = view.escalation_level.max(alert.escalation_level);
            view.escalated_at = Some(at);
            view.clone()
        };
        self.push("alert", &view);
    }

    /// A visit was handed to the archive. Alerted visits keep their
    /// samples in memory for the 12-lead view.
    pub fn visit_archived(&self, r: &VisitRecord) {
        let v = &r.visit;
        let view = VisitView {
            visit_id: v.visit_id.clone(),
            device_id: v.device_id.clone(),
            clinic_id: v.clinic_id.clone(),
            started_at: v.started_at,
            status: v.status.clone(),
            stemi: v.stemi,
            alert_id: v.alert_id.clone(),
            heart_rate_bpm: v.heart_rate_bpm,
            territories: v.territories.clone(),
        };
        {
            let mut st = self.state();
            st.visits.push_back(view.clone());
            while st.visits.len() > KEEP_VISITS {
                st.visits.pop_front();
            }
            if v.alert_id.is_some() {
                let id = v.visit_id.clone();
                st.tracings.insert(
                    id.clone(),
                    Arc::new(Tracing {
                        fs_hz: v.fs_hz,
                        gain_uv_per_lsb: v.gain_uv_per_lsb,
                        leads: v.leads.clone(),
                        samples: r.samples.clone(),
                    }),
                );
                st.thresholds.insert(
                    id.clone(),
                    r.measurements
                        .iter()
                        .filter_map(|m| Some((m.lead.clone(), m.st_elevation_threshold_uv?)))
                        .collect(),
                );
                st.tracing_order.push_back(id);
                while st.tracing_order.len() > KEEP_TRACINGS {
                    if let Some(old) = st.tracing_order.pop_front() {
                        st.tracings.remove(&old);
                        st.thresholds.remove(&old);
                    }
                }
            }
        }
        self.push("visit", &view);
    }

    pub(crate) fn alerts(&self) -> Vec<AlertView> {
        let st = self.state();
        let mut v: Vec<AlertView> = st.alerts.values().cloned().collect();
        v.sort_by_key(|a| std::cmp::Reverse(a.alert.published_at));
        v
    }

    pub(crate) fn alert(&self, id: &str) -> Option<AlertView> {
        self.state().alerts.get(id).cloned()
    }

    pub(crate) fn visits(&self) -> Vec<VisitView> {
        self.state().visits.iter().rev().cloned().collect()
    }

    /// The ST table of an alert: the alert's values, against the visit's
    /// own thresholds once it is archived, else 1 mm.
    pub(crate) fn st_table(&self, a: &Alert) -> Vec<LeadStView> {
        let st = self.state();
        let thr = st.thresholds.get(&a.visit_id.to_string());
        a.leads
            .iter()
            .map(|(lead, v)| {
                let name = lead.to_string();
                let threshold_uv = thr
                    .and_then(|t| t.get(&name).copied())
                    .unwrap_or(DEFAULT_THRESHOLD_UV);
                LeadStView {
                    meets: v.st_j_uv >= threshold_uv,
                    lead: name,
                    st_j_uv: v.st_j_uv,
                    st_j60_uv: v.st_j60_uv,
                    threshold_uv,
                }
            })
            .collect()
    }

    pub(crate) fn criteria_leads(&self, a: &Alert) -> HashSet<String> {
        self.st_table(a)
            .into_iter()
            .filter(|l| l.meets)
            .map(|l| l.lead)
            .collect()
    }

    pub(crate) fn cached_tracing(&self, visit_id: &str) -> Option<Arc<Tracing>> {
        self.state().tracings.get(visit_id).cloned()
    }
}

/// Serves the dashboard on `addr` until the task is aborted; returns the
/// bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    hub: Hub,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // The client address feeds the failed-login throttle.
    let app = web::router(hub).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "dashboard stopped");
        }
    });
    Ok((bound, task))
}

/// The router, for tests that call it without a socket.
pub fn router(hub: Hub) -> axum::Router {
    web::router(hub)
}
