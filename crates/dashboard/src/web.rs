//! Routes. Public: `/login` only. Everything else sits behind
//! [`require_session`]: pages redirect to the login, `/api/*` answers 401,
//! and neither says anything about patients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_stream::wrappers::BroadcastStream;

use crate::auth::{session_from_cookie, set_cookie};
use crate::{archive_read, ecg_svg, export, AckOutcome, AckRequest, Hub};

const APP_HTML: &str = include_str!("../assets/app.html");
const ALERT_HTML: &str = include_str!("../assets/alert.html");
const SEARCH_HTML: &str = include_str!("../assets/search.html");
const FIGURES_HTML: &str = include_str!("../assets/figures.html");
const LOGIN_HTML: &str = include_str!("../assets/login.html");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The logged-in user, put there by [`require_session`].
#[derive(Clone)]
struct User(String);

pub(crate) fn router(hub: Hub) -> Router {
    let private = Router::new()
        .route("/", get(|| async { Html(APP_HTML) }))
        .route("/alerts/{id}", get(|| async { Html(ALERT_HTML) }))
        .route("/search", get(|| async { Html(SEARCH_HTML) }))
        .route("/figures", get(|| async { Html(FIGURES_HTML) }))
        .route("/api/figures", get(figures))
        .route("/api/visits/{id}/report.svg", get(export_report))
        .route("/api/visits/{id}/wfdb.hea", get(export_wfdb_hea))
        .route("/api/visits/{id}/wfdb.dat", get(export_wfdb_dat))
        .route("/api/visits/{id}/fhir.json", get(export_fhir))
        .route("/api/me", get(me))
        .route("/api/alerts", get(alerts))
        .route("/api/alerts/{id}", get(alert))
        .route("/api/alerts/{id}/ecg.svg", get(alert_svg))
        .route("/api/alerts/{id}/ack", post(ack))
        .route("/api/visits", get(visits))
        .route("/api/search", get(search))
        .route("/api/events", get(events))
        .route("/logout", post(logout))
        .layer(middleware::from_fn_with_state(hub.clone(), require_session));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/style.css", get(style))
        .merge(private)
        .with_state(hub)
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("valid"));
    r
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css")], STYLE_CSS)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn require_session(
    State(hub): State<Hub>,
    Query(q): Query<TokenQuery>,
    mut req: Request,
    next: Next,
) -> Response {
    let session = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session_from_cookie)
        .map(str::to_owned);
    if let Some(user) = session.and_then(|s| hub.inner.auth.user(&s)) {
        req.extensions_mut().insert(User(user));
        return no_store(next.run(req).await);
    }
    let path = req.uri().path().to_owned();
    if let Some(token) = q.token {
        if let Some(session) = hub.inner.auth.redeem(&token) {
            // Drop the token from the address bar and the history.
            let mut r = Redirect::to(&path).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                set_cookie(&session).parse().expect("valid cookie"),
            );
            return r;
        }
    }
    if path.starts_with("/api/") {
        (StatusCode::UNAUTHORIZED, "login required").into_response()
    } else {
        Redirect::to("/login").into_response()
    }
}

async fn login_page() -> Html<String> {
    Html(LOGIN_HTML.replace("{{error}}", ""))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

fn login_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(LOGIN_HTML.replace(
            "{{error}}",
            &format!(r#"<p class="error" id="login-error">{message}</p>"#),
        )),
    )
        .into_response()
}

async fn login(
    State(hub): State<Hub>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let addr = peer.map(|Extension(ConnectInfo(a))| a.ip().to_string());
    if let Err(wait) = hub
        .inner
        .throttle
        .check(&f.user, addr.as_deref(), Instant::now())
    {
        let secs = wait.as_secs() + 1;
        let mut r = login_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed logins: try again in {secs} s."),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            secs.to_string().parse().expect("digits"),
        );
        return r;
    }
    let hub2 = hub.clone();
    let user = f.user.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    let session = tokio::task::spawn_blocking(move || hub2.inner.auth.login(&f.user, &f.password))
        .await
        .ok()
        .flatten();
    match &session {
        Some(_) => hub.inner.throttle.succeeded(&user, addr.as_deref()),
        None => hub
            .inner
            .throttle
            .failed(&user, addr.as_deref(), Instant::now()),
    }
    match session {
        Some(s) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                set_cookie(&s).parse().expect("valid cookie"),
            );
            r
        }
        None => login_error(StatusCode::UNAUTHORIZED, "Wrong user name or password."),
    }
}

async fn logout(State(hub): State<Hub>, headers: HeaderMap) -> Response {
    if let Some(s) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session_from_cookie)
    {
        hub.inner.auth.logout(s);
    }
    Redirect::to("/login").into_response()
}

async fn me(Extension(User(user)): Extension<User>, State(hub): State<Hub>) -> Response {
    Json(serde_json::json!({"user": user, "centre": hub.inner.cfg.centre})).into_response()
}

async fn alerts(State(hub): State<Hub>) -> Response {
    Json(hub.alerts()).into_response()
}

async fn visits(State(hub): State<Hub>) -> Response {
    Json(hub.visits()).into_response()
}

async fn alert(State(hub): State<Hub>, Path(id): Path<String>) -> Response {
    match hub.alert(&id) {
        Some(view) => {
            let st = hub.st_table(&view.alert);
            Json(serde_json::json!({"view": view, "st": st})).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such alert").into_response(),
    }
}

async fn alert_svg(State(hub): State<Hub>, Path(id): Path<String>) -> Response {
    let Some(view) = hub.alert(&id) else {
        return (StatusCode::NOT_FOUND, "no such alert").into_response();
    };
    let a = &view.alert;
    let visit_id = a.visit_id.to_string();
    let tracing = match hub.cached_tracing(&visit_id) {
        Some(t) => Some(t),
        None => {
            let dir = hub.inner.cfg.archive_dir.clone();
            let (vid, at) = (visit_id.clone(), a.acquired_at);
            tokio::task::spawn_blocking(move || archive_read::tracing_of(&dir, &vid, at))
                .await
                .ok()
                .and_then(|r| {
                    r.map_err(|e| tracing::warn!(error = %e, "reading a tracing"))
                        .ok()
                })
                .flatten()
                .map(std::sync::Arc::new)
        }
    };
    let Some(tr) = tracing else {
        // An early alert comes while the visit is still streaming.
        return (
            StatusCode::ACCEPTED,
            "the recording is not complete yet; it appears when the visit is archived",
        )
            .into_response();
    };
    let criteria = hub.criteria_leads(a);
    let caption = format!(
        "clinic {}  device {}  visit {}  acquired {}",
        a.clinic_id,
        a.device_id,
        a.visit_id,
        a.acquired_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    let svg = tokio::task::spawn_blocking(move || ecg_svg::render(&tr, &criteria, &caption))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

/// The ack button's optional body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    verdict: Option<ecg_wire::Verdict>,
}

async fn ack(
    State(hub): State<Hub>,
    Extension(User(user)): Extension<User>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(alert_id) = id.parse() else {
        return (StatusCode::BAD_REQUEST, "bad alert id").into_response();
    };
    // No body: an acknowledgement without a verdict.
    let verdict = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<AckBody>(&body) {
            Ok(b) => b.verdict,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("body: {{\"verdict\": \"confirmed\" | \"false_alarm\"}}: {e}"),
                )
                    .into_response()
            }
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = AckRequest {
        ack: ecg_wire::AlertAck {
            alert_id,
            by: user,
            at: OffsetDateTime::now_utc(),
            verdict,
        },
        done: Some(tx),
    };
    if hub.inner.acks.send(req).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(AckOutcome::Recorded)) => {
            Json(serde_json::json!({"outcome": "recorded"})).into_response()
        }
        Ok(Ok(AckOutcome::NotPending)) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"outcome": "not_pending"})),
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline did not answer",
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    clinic: Option<String>,
    from: String,
    to: Option<String>,
}

/// Longest search range, to bound the files read per request.
const MAX_SEARCH_DAYS: i64 = 31;

async fn search(State(hub): State<Hub>, Query(q): Query<SearchQuery>) -> Response {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let Ok(from) = time::Date::parse(&q.from, fmt) else {
        return (StatusCode::BAD_REQUEST, "from: YYYY-MM-DD").into_response();
    };
    let to = match q.to.as_deref().filter(|s| !s.is_empty()) {
        None => from,
        Some(s) => match time::Date::parse(s, fmt) {
            Ok(d) => d,
            Err(_) => return (StatusCode::BAD_REQUEST, "to: YYYY-MM-DD").into_response(),
        },
    };
    if to < from || (to - from).whole_days() >= MAX_SEARCH_DAYS {
        return (
            StatusCode::BAD_REQUEST,
            format!("from <= to, at most {MAX_SEARCH_DAYS} days"),
        )
            .into_response();
    }
    let clinic = q.clinic.filter(|c| !c.is_empty());
    let dir = hub.inner.cfg.archive_dir.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut d = from;
        loop {
            out.extend(archive_read::visits_on(&dir, d, clinic.as_deref())?);
            if d >= to {
                break;
            }
            d = d.next_day().expect("bounded range");
        }
        Ok::<_, archive_read::ReadError>(out)
    })
    .await;
    match result {
        Ok(Ok(hits)) => Json(hits).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "search failed").into_response(),
    }
}

async fn events(State(hub): State<Hub>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = hub.inner.events.subscribe();
    // A client that falls behind misses events; its page reloads the lists
    // on the `resync` event it then gets.
    let stream = BroadcastStream::new(rx).map(|m| {
        Ok(match m {
            Ok(p) => Event::default().event(p.event).data(p.data),
            Err(_) => Event::default().event("resync").data("{}"),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The chest-pain centre's figures: the `centre_figures` and
/// `centre_figures_monthly` views of the archive, newest month first.
async fn figures(State(hub): State<Hub>) -> Response {
    let dir = hub.inner.cfg.archive_dir.clone();
    let engine = match ecg_query::QueryEngine::open(&dir) {
        Ok(e) => e,
        // No archive yet: no figures yet.
        Err(ecg_query::QueryError::NoArchive(_)) => {
            return Json(serde_json::json!({"by_clinic": [], "monthly": []})).into_response()
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let run = |sql: &'static str| {
        let engine = &engine;
        async move {
            let b = engine.sql(sql).await?;
            let text = ecg_query::format_batches(&b, ecg_query::OutputFormat::Json)?;
            Ok::<serde_json::Value, ecg_query::QueryError>(
                serde_json::from_str(&text).unwrap_or_default(),
            )
        }
    };
    let by_clinic = run("SELECT * FROM centre_figures ORDER BY month DESC, clinic_id").await;
    let monthly = run("SELECT * FROM centre_figures_monthly ORDER BY month DESC").await;
    match (by_clinic, monthly) {
        (Ok(c), Ok(m)) => Json(serde_json::json!({
            "by_clinic": c,
            "monthly": m,
            "read_within_s": ecg_query::figures::READ_WITHIN_S,
        }))
        .into_response(),
        (Err(e), _) | (_, Err(e)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

/// An archived visit for an export, or the answer that says why not.
async fn export_visit(hub: &Hub, id: &str) -> Result<export::ExportVisit, Response> {
    match export::load(&hub.inner.cfg.archive_dir, id).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) | Err(export::ExportError::Query(ecg_query::QueryError::NoArchive(_))) => {
            Err((StatusCode::NOT_FOUND, "no such visit in the archive").into_response())
        }
        Err(e @ export::ExportError::BadId(_)) => {
            Err((StatusCode::BAD_REQUEST, e.to_string()).into_response())
        }
        Err(e) => {
            tracing::warn!(error = %e, visit_id = id, "export failed");
            Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
        }
    }
}

fn download(content_type: &str, file_name: &str, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        content_type.parse().expect("valid content type"),
    );
    if let Ok(v) = format!("attachment; filename=\"{file_name}\"").parse() {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

async fn export_report(State(hub): State<Hub>, Path(id): Path<String>) -> Response {
    let v = match export_visit(&hub, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = format!("{}.svg", v.record_name());
    // An empty 200 would look like a (blank) report: a failed render is
    // a server error.
    match tokio::task::spawn_blocking(move || export::report_svg(&v)).await {
        Ok(svg) => download("image/svg+xml", &name, svg),
        Err(e) => {
            tracing::error!(error = %e, visit_id = id, "report rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "report rendering failed").into_response()
        }
    }
}

async fn export_wfdb(hub: &Hub, id: &str) -> Result<(String, ecg_wfdb::Format16Record), Response> {
    let v = export_visit(hub, id).await?;
    let rec = export::wfdb_record(&v)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?;
    Ok((v.record_name(), rec))
}

async fn export_wfdb_hea(State(hub): State<Hub>, Path(id): Path<String>) -> Response {
    match export_wfdb(&hub, &id).await {
        Ok((name, rec)) => download(
            "text/plain; charset=utf-8",
            &format!("{name}.hea"),
            rec.header,
        ),
        Err(r) => r,
    }
}

async fn export_wfdb_dat(State(hub): State<Hub>, Path(id): Path<String>) -> Response {
    match export_wfdb(&hub, &id).await {
        Ok((name, rec)) => download("application/octet-stream", &format!("{name}.dat"), rec.dat),
        Err(r) => r,
    }
}

async fn export_fhir(State(hub): State<Hub>, Path(id): Path<String>) -> Response {
    let v = match export_visit(&hub, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body = serde_json::to_string_pretty(&export::fhir_observation(&v)).unwrap_or_default();
    download(
        "application/fhir+json",
        &format!("{}.fhir.json", v.record_name()),
        body,
    )
}
