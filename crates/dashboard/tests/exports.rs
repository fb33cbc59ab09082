//! With a session: the figures page's data, the exports of an archived
//! visit (report SVG, WFDB round trip through ecg-wfdb, FHIR SampledData
//! back to the samples), the verdict on the ack button's path, and the
//! failed-login throttle.

mod fixture;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ecg_archive::{AlertAck, AlertRow, ArchiveWriter, LeadMeasurement, VisitRecord, WriterConfig};
use ecg_dashboard::{hash_password, Account, AckOutcome, DashboardConfig, Hub};
use ecg_wire::{Alert, Verdict};
use fixture::{example_alert, visit_row, LEADS};
use time::Duration;
use tower::ServiceExt as _;

fn samples() -> Vec<Vec<i16>> {
    (0..12)
        .map(|l| {
            (0..5000)
                .map(|i| (((i * (l + 3)) % 700) as i16) - 350)
                .collect()
        })
        .collect()
}

fn record(a: &Alert) -> VisitRecord {
    VisitRecord {
        visit: visit_row(a, Some(a.detected_at)),
        samples: samples(),
        beats: vec![],
        measurements: LEADS
            .iter()
            .map(|l| LeadMeasurement {
                lead: l.to_string(),
                st_j_uv: Some(if *l == "V2" { 310 } else { 20 }),
                st_j60_uv: Some(if *l == "V2" { 340 } else { 10 }),
                st_elevation_threshold_uv: Some(200),
                lead_ok: true,
                noise_uv: None,
            })
            .collect(),
        alerts: vec![AlertRow {
            alert_id: a.alert_id.to_string(),
            centre_id: a.centre_id.to_string(),
            territories: vec!["anterior".into()],
            early: true,
            escalation_level: 0,
            acquired_at: a.acquired_at,
            detected_at: a.detected_at,
            published_at: a.published_at,
            acked_at: None,
            acked_by: None,
        }],
    }
}

struct App {
    app: axum::Router,
    cookie: String,
    _dir: tempfile::TempDir,
}

async fn request(
    app: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    body: Option<(&str, String)>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let body = match body {
        Some((ct, b)) => {
            req = req.header(header::CONTENT_TYPE, ct);
            Body::from(b)
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

async fn login(app: &axum::Router, user: &str, password: &str) -> (StatusCode, Option<String>) {
    let (status, headers, _) = request(
        app,
        "POST",
        "/login",
        None,
        Some((
            "application/x-www-form-urlencoded",
            format!("user={user}&password={password}"),
        )),
    )
    .await;
    let cookie = headers
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (status, cookie)
}

/// An archive with the example alert's visit, acknowledged as a false
/// alarm 4 minutes after acquisition; a hub whose acks are answered by
/// `answer`.
async fn app(answer: AckOutcome) -> (App, tokio::sync::mpsc::Receiver<Verdict>, Alert) {
    let dir = tempfile::tempdir().unwrap();
    let a = example_alert();
    let mut w = ArchiveWriter::open_local(dir.path(), WriterConfig::new("t")).unwrap();
    w.append(record(&a)).unwrap();
    w.append_ack(AlertAck {
        alert_id: a.alert_id.to_string(),
        acked_at: a.acquired_at + Duration::minutes(4),
        acked_by: "dr.li".into(),
        verdict: Some("false_alarm".into()),
    });
    w.flush().unwrap();
    drop(w);
    let (acks, mut rx) = tokio::sync::mpsc::channel::<ecg_dashboard::AckRequest>(4);
    let (verdicts, vrx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            if let Some(v) = req.ack.verdict {
                let _ = verdicts.send(v).await;
            }
            if let Some(done) = req.done {
                let _ = done.send(answer);
            }
        }
    });
    let hub = Hub::new(
        DashboardConfig {
            accounts: vec![
                Account {
                    user: "dr.li".into(),
                    password_hash: hash_password("pw-li").unwrap(),
                },
                Account {
                    user: "dr.wang".into(),
                    password_hash: hash_password("pw-wang").unwrap(),
                },
            ],
            archive_dir: dir.path().to_owned(),
            centre: "county-cpc".into(),
            login_throttle: Default::default(),
        },
        acks,
    );
    let app = ecg_dashboard::router(hub);
    let (status, cookie) = login(&app, "dr.li", "pw-li").await;
    assert!(status.is_redirection());
    (
        App {
            app,
            cookie: cookie.unwrap(),
            _dir: dir,
        },
        vrx,
        a,
    )
}

#[tokio::test]
async fn report_wfdb_and_fhir_exports_of_an_archived_visit() {
    let (app, _, a) = app(AckOutcome::Recorded).await;
    let vid = a.visit_id.to_string();
    let get = |path: String| {
        let app = &app;
        async move { request(&app.app, "GET", &path, Some(&app.cookie), None).await }
    };

    let (status, headers, body) = get(format!("/api/visits/{vid}/report.svg")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    let svg = String::from_utf8(body).unwrap();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    assert!(
        svg.contains(r#"width="297mm" height="210mm""#),
        "A4 landscape"
    );
    assert!(svg.contains(&a.patient_pseudonym.to_string()));
    assert!(svg.contains(&a.clinic_id.to_string()));
    assert!(svg.contains("63 y"));
    assert_eq!(svg.matches(r#"<g class="lead"#).count(), 13);
    assert!(svg.contains(r#"data-lead="V2" data-criteria="true""#));
    assert!(svg.contains(r#"data-lead="V3" data-criteria="false""#));
    assert!(svg.contains("V2: 310 / 340"));
    assert!(svg.contains("verdict: false alarm"), "ack from the archive");
    for reason in &a.reasons {
        let shown: String = reason.chars().take(70).collect();
        assert!(
            svg.contains(&shown.replace('<', "&lt;").replace('>', "&gt;")),
            "{reason}"
        );
    }

    // WFDB: both files, read back by ecg-wfdb, bit for bit.
    let (status, _, hea) = get(format!("/api/visits/{vid}/wfdb.hea")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, dat) = get(format!("/api/visits/{vid}/wfdb.dat")).await;
    assert_eq!(status, StatusCode::OK);
    let name = format!("visit_{}", vid.replace('-', "_"));
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains(&format!("{name}.dat")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{name}.hea")), &hea).unwrap();
    std::fs::write(dir.path().join(format!("{name}.dat")), &dat).unwrap();
    let rec = ecg_wfdb::Record::read(dir.path().join(&name)).unwrap();
    rec.verify_checksums().unwrap();
    assert_eq!(rec.fs_hz(), 500.0);
    assert_eq!(rec.lead_names(), LEADS);
    assert_eq!(rec.header().sex(), Some(ecg_wfdb::Sex::Male));
    assert_eq!(rec.header().age_years(), Some(63.0));
    let want = samples();
    for (i, lead) in want.iter().enumerate() {
        let got: Vec<i16> = rec.digital(i).unwrap().iter().map(|&v| v as i16).collect();
        assert_eq!(&got, lead, "lead {i}");
    }
    // 5 uV per count: 200 counts per mV.
    let mv = rec.millivolts(1).unwrap();
    assert!((mv[10] - f32::from(want[1][10]) * 0.005).abs() < 1e-5);

    // FHIR R4 Observation: SampledData gives the samples back.
    let (status, headers, body) = get(format!("/api/visits/{vid}/fhir.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/fhir+json");
    let obs: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(obs["resourceType"], "Observation");
    assert_eq!(obs["code"]["coding"][0]["code"], "11524-6");
    assert_eq!(
        obs["subject"]["identifier"]["value"],
        a.patient_pseudonym.to_string()
    );
    assert_eq!(obs["interpretation"][0]["coding"][0]["code"], "AA");
    let comps = obs["component"].as_array().unwrap();
    assert_eq!(comps.len(), 12);
    assert_eq!(
        comps[0]["code"]["coding"][0]["code"], "131329",
        "MDC lead I"
    );
    for (c, lead) in comps.iter().zip(&want) {
        let sd = &c["valueSampledData"];
        assert_eq!(sd["period"], 2.0);
        assert_eq!(sd["factor"], 5.0);
        assert_eq!(sd["dimensions"], 1);
        let data: Vec<i16> = sd["data"]
            .as_str()
            .unwrap()
            .split(' ')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(&data, lead);
    }
    assert!(obs["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["value"] == a.alert_id.to_string()));

    // Unknown and malformed ids.
    let (status, _, _) =
        get("/api/visits/00000000-0000-4000-8000-000000000000/fhir.json".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get("/api/visits/x'%20OR%20'1/report.svg".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn figures_come_from_the_archive_views() {
    let (app, _, a) = app(AckOutcome::Recorded).await;
    let (status, _, body) = request(&app.app, "GET", "/api/figures", Some(&app.cookie), None).await;
    assert_eq!(status, StatusCode::OK);
    let f: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let rows = f["by_clinic"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{f}");
    let r = &rows[0];
    assert_eq!(r["clinic_id"], a.clinic_id.to_string());
    assert_eq!(r["month"], "2025-03");
    assert_eq!(r["ecgs"], 1);
    assert_eq!(r["alerts"], 1);
    assert_eq!(r["acknowledged"], 1);
    assert_eq!(r["read_within_10_min"], 1);
    assert_eq!(r["false_alarms"], 1);
    let ecg_to_alert = (a.published_at - a.acquired_at).as_seconds_f64();
    assert!((r["median_ecg_to_alert_s"].as_f64().unwrap() - ecg_to_alert).abs() < 1e-3);
    assert_eq!(f["monthly"].as_array().unwrap().len(), 1);
    let (status, _, page) = request(&app.app, "GET", "/figures", Some(&app.cookie), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(page).unwrap().contains("/api/figures"));
}

#[tokio::test]
async fn the_ack_button_carries_the_verdict() {
    let (app, mut verdicts, a) = app(AckOutcome::Recorded).await;
    let uri = format!("/api/alerts/{}/ack", a.alert_id);
    let (status, _, _) = request(
        &app.app,
        "POST",
        &uri,
        Some(&app.cookie),
        Some(("application/json", r#"{"verdict":"false_alarm"}"#.into())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdicts.recv().await, Some(Verdict::FalseAlarm));
    let (status, _, _) = request(
        &app.app,
        "POST",
        &uri,
        Some(&app.cookie),
        Some(("application/json", r#"{"verdict":"maybe"}"#.into())),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Without a body: an ack without a verdict still goes through.
    let (status, _, _) = request(&app.app, "POST", &uri, Some(&app.cookie), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(verdicts.try_recv().is_err(), "no verdict sent");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_user() {
    let (app, _, _) = app(AckOutcome::Recorded).await;
    for i in 0..5 {
        let (status, cookie) = login(&app.app, "dr.li", "wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(cookie.is_none());
    }
    // Locked: even the right password is refused for now, with a hint.
    let (status, headers, body) = request(
        &app.app,
        "POST",
        "/login",
        None,
        Some((
            "application/x-www-form-urlencoded",
            "user=dr.li&password=pw-li".into(),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get(header::SET_COOKIE).is_none());
    let wait: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("Too many failed logins"));
    // Another cardiologist is not locked out by it.
    let (status, cookie) = login(&app.app, "dr.wang", "pw-wang").await;
    assert!(status.is_redirection());
    assert!(cookie.is_some());
}
