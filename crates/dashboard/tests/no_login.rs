//! Without a session the dashboard serves no patient data: every page
//! redirects to the login, every API route answers 401, and no answer
//! carries an id, a pseudonym or a sample. With a session, the same routes
//! do answer (so the test can fail).

mod fixture;

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ecg_archive::{LeadMeasurement, VisitRecord};
use ecg_dashboard::{hash_password, Account, DashboardConfig, Hub};
use ecg_wire::Alert;
use fixture::{example_alert, visit_row, LEADS};
use tower::ServiceExt as _;

fn record(a: &Alert) -> VisitRecord {
    VisitRecord {
        visit: visit_row(a, None),
        samples: LEADS
            .iter()
            .map(|_| (0..5000).map(|i| ((i % 500) as i16) - 250).collect())
            .collect(),
        beats: vec![],
        measurements: vec![LeadMeasurement {
            lead: "V2".into(),
            st_j_uv: Some(310),
            st_j60_uv: Some(340),
            st_elevation_threshold_uv: Some(200),
            lead_ok: true,
            noise_uv: None,
        }],
        alerts: vec![],
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    // SSE never ends: read only what is there at once.
    let body = if uri.starts_with("/api/events") && status == StatusCode::OK {
        String::new()
    } else {
        let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20)
            .await
            .unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (status, location, body)
}

#[tokio::test]
async fn no_patient_data_without_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, _rx) = tokio::sync::mpsc::channel(4);
    let hub = Hub::new(
        DashboardConfig {
            accounts: vec![Account {
                user: "dr.li".into(),
                password_hash: hash_password("pw-li").unwrap(),
            }],
            archive_dir: dir.path().to_owned(),
            centre: "county-cpc".into(),
            login_throttle: Default::default(),
        },
        acks,
    );
    let a = example_alert();
    hub.alert_published(&a, 0);
    hub.visit_archived(&record(&a));
    let app = ecg_dashboard::router(hub.clone());
    let id = a.alert_id.to_string();
    let secrets: HashSet<String> = [
        id.clone(),
        a.visit_id.to_string(),
        a.patient_pseudonym.to_string(),
        a.device_id.to_string(),
        a.clinic_id.to_string(),
    ]
    .into();

    let routes: Vec<(&str, String)> = vec![
        ("GET", "/".into()),
        ("GET", format!("/alerts/{id}")),
        ("GET", "/search".into()),
        ("GET", "/api/me".into()),
        ("GET", "/api/alerts".into()),
        ("GET", format!("/api/alerts/{id}")),
        ("GET", format!("/api/alerts/{id}/ecg.svg")),
        ("POST", format!("/api/alerts/{id}/ack")),
        ("GET", "/api/visits".into()),
        ("GET", "/api/search?from=2025-03-13".into()),
        ("GET", "/api/events".into()),
        ("GET", "/figures".into()),
        ("GET", "/api/figures".into()),
        ("GET", format!("/api/visits/{}/report.svg", a.visit_id)),
        ("GET", format!("/api/visits/{}/wfdb.hea", a.visit_id)),
        ("GET", format!("/api/visits/{}/wfdb.dat", a.visit_id)),
        ("GET", format!("/api/visits/{}/fhir.json", a.visit_id)),
    ];
    for cookie in [None, Some("ecg_session=forged-or-expired")] {
        for (method, uri) in &routes {
            let (status, location, body) = call(&app, method, uri, cookie).await;
            if uri.starts_with("/api/") {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
            } else {
                assert!(status.is_redirection(), "{method} {uri}: {status}");
                assert_eq!(location.as_deref(), Some("/login"), "{method} {uri}");
            }
            for s in &secrets {
                assert!(!body.contains(s.as_str()), "{method} {uri} leaks {s}");
            }
        }
    }
    // A one-time token that was never issued opens nothing.
    let (status, _, _) = call(&app, "GET", "/api/alerts?token=0123", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Logged in, the same routes answer with the data.
    let login = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("user=dr.li&password=pw-li"))
        .unwrap();
    let resp = app.clone().oneshot(login).await.unwrap();
    assert!(resp.status().is_redirection());
    let set = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, _, body) = call(&app, "GET", "/api/alerts", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(&id));
    let (status, _, body) = call(
        &app,
        "GET",
        &format!("/api/alerts/{id}/ecg.svg"),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"data-lead="V2" data-criteria="true""#),
        "V2 meets its 200 uV threshold"
    );
    assert!(
        body.contains(r#"data-lead="III" data-criteria="false""#),
        "III is depressed"
    );
    let (status, _, body) = call(&app, "GET", "/api/visits", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(&a.visit_id.to_string()));
}
