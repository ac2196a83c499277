//! The bundled sample app over real HTTP (a server on 127.0.0.1:0): the reference scenario, its
//! edge cases and every problem answer.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use axum::http::{Request, StatusCode};
use baton_host::{App, Keys};
use serde_json::{Value, json};
use support::*;

/// The sample in local development mode, its workflows told the server's address (so
/// ValidateHttp calls this server's Check* routes), with the `checks` secret empty.
async fn sample() -> Live {
    let secrets = serde_json::Map::from_iter([("checks".to_owned(), json!({"key": ""}))]);
    serve(App::sample().expect("sample"), Keys::default(), secrets)
        .await
        .1
}

fn expected(failed: &[u32]) -> Value {
    let all = [
        (
            1,
            "CheckFirstName",
            "First name is null or not longer than 1 character",
        ),
        (
            2,
            "CheckLastName",
            "Last name is null or not longer than 1 character",
        ),
        (
            3,
            "CheckAddressLines",
            "Address line 2 is populated but line 1 is empty",
        ),
        (4, "CheckCity", "City is empty"),
        (
            5,
            "CheckState",
            "State is null or not a 2-letter abbreviation",
        ),
        (6, "CheckZip", "Zip is null or not 5 digits"),
    ];
    json!({
        "valid": failed.is_empty(),
        "errors": all.iter().filter(|c| failed.contains(&c.0)).map(|(i, c, m)| json!({"id": i, "check": c, "message": m})).collect::<Vec<_>>(),
        "passed": all.iter().filter(|c| !failed.contains(&c.0)).map(|(i, c, _)| json!({"id": i, "check": c})).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn validate_answers_the_reference_samples() {
    let s = sample().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples");
    if !dir.is_dir() {
        eprintln!("SKIPPED: ../shared/samples is absent; the reference inputs were NOT sent");
        return;
    }
    for route in [
        "Validate",
        "ValidateParallel",
        "validate",
        "ValidateHttp",
        "ValidateHttpAsync",
    ] {
        for (file, failed) in [
            ("person-valid.json", vec![]),
            ("person-short-first-name.json", vec![1]),
        ] {
            let body = std::fs::read_to_string(dir.join(file)).expect("sample");
            let a = s.send(post(&format!("/api/{route}"), &body)).await;
            assert_eq!(a.status, StatusCode::OK, "{route} {file}: {}", a.text);
            assert_eq!(a.body, expected(&failed), "{route} {file}");
            assert_eq!(a.headers["content-type"], "application/json");
        }
    }
}

#[tokio::test]
async fn edge_cases_follow_the_rules_table() {
    let s = sample().await;
    let cases = [
        (json!({}), vec![1, 2, 4, 5, 6]),
        (json!({"Name": null, "Address": null}), vec![1, 2, 4, 5, 6]),
        (
            json!({"Name": {"First": null, "Last": "Li"}, "Address": {"City": "C", "State": "WA", "Zip": "98101"}}),
            vec![1],
        ),
        (
            json!({"Name": {"First": "Zoë", "Last": "Ōe"}, "Address": {"Line1": "1", "City": "Kyōto", "State": "KY", "Zip": "60000"}}),
            vec![],
        ),
        (
            json!({"Name": {"First": "É", "Last": "ab"}, "Address": {"Line2": "Apt 1", "City": "X", "State": "or", "Zip": "1234"}}),
            vec![1, 3, 6],
        ),
        (
            json!({"Name": {"First": "Ann", "Last": "Lee"}, "Address": {"Line1": "1", "City": "X", "State": "O", "Zip": "123456"}}),
            vec![5, 6],
        ),
        (
            json!({"Name": {"First": "Ann", "Last": "Lee", "Middle": 3}, "Extra": [1], "Address": {"Line1": "1", "City": "X", "State": "NY", "Zip": "1234a"}}),
            vec![6],
        ),
    ];
    for (input, failed) in cases {
        for route in ["Validate", "ValidateParallel", "ValidateHttp"] {
            let a = s
                .send(post(&format!("/api/{route}"), &input.to_string()))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{route} {input}: {}", a.text);
            assert_eq!(a.body, expected(&failed), "{route} {input}");
        }
    }
}

#[tokio::test]
async fn check_routes_answer_the_error_or_204() {
    let s = sample().await;
    let a = s
        .send(post("/api/CheckFirstName", r#"{"Name": {"First": "J"}}"#))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({"id": 1, "check": "CheckFirstName", "message": "First name is null or not longer than 1 character"})
    );
    let a = s
        .send(post("/api/CheckFirstName", r#"{"Name": {"First": "Jo"}}"#))
        .await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::NO_CONTENT, ""));
    for (route, body) in [
        ("CheckLastName", json!({"Name": {"Last": ""}})),
        ("CheckAddressLines", json!({"Address": {"Line2": "x"}})),
        ("CheckCity", json!({"Address": {}})),
        ("CheckState", json!({"Address": {"State": "ORE"}})),
        ("CheckZip", json!({"Address": {"Zip": "1"}})),
    ] {
        let a = s
            .send(post(&format!("/api/{route}"), &body.to_string()))
            .await;
        assert_eq!(
            (a.status, a.body["check"].as_str()),
            (StatusCode::OK, Some(route)),
            "{route}"
        );
    }
}

#[tokio::test]
async fn wrong_types_are_400_listing_every_pointer() {
    let s = sample().await;
    let a = s
        .send(post(
            "/api/Validate",
            r#"{"Name": {"First": 5, "Last": ["x"]}, "Address": "here"}"#,
        ))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(is_problem(&a), "{}", a.text);
    assert_eq!(
        a.body["type"],
        "https://serverlessworkflow.io/spec/1.0.0/errors/validation"
    );
    let mut pointers: Vec<&str> = a.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    pointers.sort_unstable();
    assert_eq!(pointers, vec!["/Address", "/Name/First", "/Name/Last"]);
    let a = s.send(post("/api/Validate", "[1, 2]")).await;
    assert_eq!(
        (a.status, a.body["errors"][0]["pointer"].as_str()),
        (StatusCode::BAD_REQUEST, Some("/"))
    );
}

#[tokio::test]
async fn bad_requests_get_problem_documents() {
    let s = sample().await;
    let cases: Vec<(Request<axum::body::Body>, StatusCode, &str)> = vec![
        (
            post("/api/Validate", "{not json"),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (post("/api/Validate", ""), StatusCode::BAD_REQUEST, "empty"),
        (
            post("/api/Validate", "   \n"),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            Request::post("/api/Validate")
                .header("content-type", "text/plain")
                .body("{}".into())
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
        ),
        (get("/api/Validate"), StatusCode::METHOD_NOT_ALLOWED, "POST"),
        (
            post("/api/NoSuchFunction", "{}"),
            StatusCode::NOT_FOUND,
            "NoSuchFunction",
        ),
        (
            get("/nowhere/at/all"),
            StatusCode::NOT_FOUND,
            "/nowhere/at/all",
        ),
        (
            post("/healthz", "{}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "/healthz",
        ),
        (
            post(
                "/api/Validate",
                &format!("{}{}", "[".repeat(65), "]".repeat(65)),
            ),
            StatusCode::BAD_REQUEST,
            "nests deeper",
        ),
        (
            post(
                "/api/Validate",
                &format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "1048576",
        ),
        (
            get("/api/GetResult"),
            StatusCode::BAD_REQUEST,
            "'id' parameter is required",
        ),
        (get("/api/GetResult?id=0123"), StatusCode::NOT_FOUND, "0123"),
        (get("/api/instances/0123"), StatusCode::NOT_FOUND, "0123"),
    ];
    for (req, status, needle) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let a = s.send(req).await;
        assert_eq!(a.status, status, "{what}: {}", a.text);
        assert!(is_problem(&a), "{what}: {}", a.text);
        assert!(a.text.contains(needle), "{what}: {}", a.text);
    }
    let a = s.send(get("/api/Validate")).await;
    assert_eq!(a.headers["allow"], "POST");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let s = sample().await;
    assert_eq!(s.send(get("/healthz")).await.status, StatusCode::OK);
    let a = s.send(get("/readyz")).await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
}
