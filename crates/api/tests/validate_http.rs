//! The sample's `ValidateHttp` and `ValidateHttpAsync` against a stand-in for the Check* routes
//! (`host.base_url` points the workflows at it): what each call sends, how often a failing
//! check is called, and what the caller is answered.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use baton_host::{App, Keys};
use serde_json::{Value, json};
use support::*;

const PERSON: &str = r#"{"Name": {"First": "Ada", "Last": "Lovelace"}, "Address": {"Line1": "1 Main St", "City": "London", "State": "LN", "Zip": "10001"}}"#;

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    key: Option<String>,
    body: Value,
}

type Behaviour = dyn Fn(&str, usize) -> Response + Send + Sync;

/// A server answering every request with `behaviour(method and path, how many times that
/// method and path were seen before)`, recording each.
async fn stand_in(behaviour: Arc<Behaviour>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let (log, behaviour) = (Arc::clone(&log), Arc::clone(&behaviour));
            async move {
                let line = format!("{method} {}", uri.path());
                let before = {
                    let mut l = log.lock().unwrap();
                    let before = l.iter().filter(|s| s.line == line).count();
                    l.push(Seen {
                        line: line.clone(),
                        key: headers
                            .get("x-functions-key")
                            .map(|v| v.to_str().unwrap().to_owned()),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    before
                };
                behaviour(&line, before)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// The sample app with its workflows pointed at `base`, sending `key` to the checks.
async fn sample_calling(base: &str, key: &str) -> Live {
    let mut app = App::sample().expect("sample");
    app.config.host.base_url = Some(base.to_owned());
    let secrets = serde_json::Map::from_iter([("checks".to_owned(), json!({"key": key}))]);
    serve(app, Keys::default(), secrets).await.1
}

fn passes() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn hits(seen: &Mutex<Vec<Seen>>, line: &str) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.line == line)
        .count()
}

const ROUTES: [&str; 6] = [
    "CheckFirstName",
    "CheckLastName",
    "CheckAddressLines",
    "CheckCity",
    "CheckState",
    "CheckZip",
];

#[tokio::test]
async fn server_errors_are_retried_until_the_check_answers() {
    let (base, seen) = stand_in(Arc::new(|line: &str, before: usize| match line {
        "POST /api/CheckCity" if before < 2 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "POST /api/CheckState" => axum::Json(
            json!({"id": 5, "check": "CheckState", "message": "State is null or not a 2-letter abbreviation"}),
        )
        .into_response(),
        _ => passes(),
    }))
    .await;
    let s = sample_calling(&base, "the-key").await;
    let a = s.send(post("/api/ValidateHttp", PERSON)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.body,
        json!({
            "valid": false,
            "errors": [{"id": 5, "check": "CheckState", "message": "State is null or not a 2-letter abbreviation"}],
            "passed": [
                {"id": 1, "check": "CheckFirstName"}, {"id": 2, "check": "CheckLastName"},
                {"id": 3, "check": "CheckAddressLines"}, {"id": 4, "check": "CheckCity"},
                {"id": 6, "check": "CheckZip"},
            ],
        })
    );
    for route in ROUTES {
        let want = if route == "CheckCity" { 3 } else { 1 };
        assert_eq!(hits(&seen, &format!("POST /api/{route}")), want, "{route}");
    }
    let person: Value = serde_json::from_str(PERSON).unwrap();
    for s in seen.lock().unwrap().iter() {
        assert_eq!(s.key.as_deref(), Some("the-key"), "{}", s.line);
        assert_eq!(s.body, person, "{}", s.line);
    }
}

#[tokio::test]
async fn a_check_that_keeps_failing_fails_the_validation_after_four_attempts() {
    let (base, seen) = stand_in(Arc::new(|line: &str, _| match line {
        "POST /api/CheckZip" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => passes(),
    }))
    .await;
    let s = sample_calling(&base, "").await;
    let a = s.send(post("/api/ValidateHttp", PERSON)).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text);
    assert!(is_problem(&a), "{}", a.text);
    assert_eq!(a.body["title"], "A check could not be made");
    let detail = a.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("/api/CheckZip answered HTTP 500"),
        "{detail}"
    );
    assert_eq!(
        hits(&seen, "POST /api/CheckZip"),
        4,
        "1 attempt + 3 retries"
    );
}

#[tokio::test]
async fn a_refused_key_is_not_retried() {
    let (base, seen) = stand_in(Arc::new(|line: &str, _| match line {
        "POST /api/CheckFirstName" => StatusCode::UNAUTHORIZED.into_response(),
        _ => passes(),
    }))
    .await;
    let s = sample_calling(&base, "stale").await;
    let a = s.send(post("/api/ValidateHttp", PERSON)).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text);
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/CheckFirstName answered HTTP 401"),
        "{}",
        a.text
    );
    assert_eq!(hits(&seen, "POST /api/CheckFirstName"), 1);
}

#[tokio::test]
async fn the_async_variant_polls_the_accepted_check_to_its_answer() {
    let (base, seen) = stand_in(Arc::new(|line: &str, before: usize| {
        let accepted = |location: &str| {
            (
                StatusCode::ACCEPTED,
                [("location", location), ("retry-after", "0")],
                axum::Json(json!({"id": "z1"})),
            )
                .into_response()
        };
        match line {
            // A relative Location, as Baton's own triggers answer.
            "POST /api/CheckZipAsync" => accepted("/api/instances/z1"),
            "GET /api/instances/z1" if before < 2 => accepted("/api/instances/z1"),
            "GET /api/instances/z1" => axum::Json(json!({
                "instanceId": "z1",
                "runtimeStatus": "Completed",
                "output": {"id": 6, "check": "CheckZip", "message": "Zip is null or not 5 digits"},
            }))
            .into_response(),
            _ => passes(),
        }
    }))
    .await;
    let s = sample_calling(&base, "k").await;
    let a = s.send(post("/api/ValidateHttpAsync", PERSON)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.body["errors"],
        json!([{"id": 6, "check": "CheckZip", "message": "Zip is null or not 5 digits"}])
    );
    assert_eq!(a.body["passed"].as_array().unwrap().len(), 5);
    let zip: Vec<(String, Option<String>)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.line.contains("Zip") || s.line.contains("instances"))
        .map(|s| (s.line.clone(), s.key.clone()))
        .collect();
    let k = Some("k".to_owned());
    assert_eq!(
        zip,
        [
            ("POST /api/CheckZipAsync".to_owned(), k.clone()),
            ("GET /api/instances/z1".to_owned(), k.clone()),
            ("GET /api/instances/z1".to_owned(), k.clone()),
            ("GET /api/instances/z1".to_owned(), k),
        ],
        "one call, then polls (keeping the key) until the answer"
    );
}

/// The real thing: CheckZipAsync on the sample answers 202 with `Retry-After: 1`.
#[tokio::test]
async fn check_zip_async_answers_202_with_its_retry_after() {
    let secrets = serde_json::Map::from_iter([("checks".to_owned(), json!({"key": ""}))]);
    let (_, s) = serve(App::sample().expect("sample"), Keys::default(), secrets).await;
    let a = s.send(post("/api/CheckZipAsync", PERSON)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.headers["retry-after"], "1");
    assert!(
        a.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/api/instances/")
    );
}
