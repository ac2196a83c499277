//! Long-running requests: 202 + Location, polling, retention, back-pressure, and the sample's
//! delayed variants under paused time.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use baton_host::{App, Express, Keys, Settings};
use serde_json::json;
use support::*;

const SLOW: &str = "document: {dsl: '1.0.0', namespace: t, name: slow, version: '1.0.0'}\ndo:\n  - w: {wait: PT1S}\n  - done: {set: {done: true, got: '${ $workflow.input }'}}\n";
const FAIL: &str = "document: {dsl: '1.0.0', namespace: t, name: fail, version: '1.0.0'}\ndo:\n  - f:\n      raise:\n        error: {type: 'https://example.com/teapot', status: 418, title: Teapot, detail: short and stout}\n";

#[tokio::test(start_paused = true)]
async fn sync_requests_past_their_wait_get_202_and_poll_to_200() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Slow]\nworkflow = \"slow\"\nwait = \"100ms\"\n",
        &[("slow.yaml", SLOW)],
    );
    let s = state(app, Keys::default()).await;
    let a = send(&s, post("/api/Slow", r#"{"n": 1}"#)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let location = a.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/instances/"));
    assert_eq!(a.headers["retry-after"], "10");
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/instances/{id}"));
    assert!(
        a.body["statusQueryGetUri"]
            .as_str()
            .unwrap()
            .ends_with(&location)
    );

    let running = send(&s, get(&location)).await;
    assert_eq!(running.status, StatusCode::ACCEPTED);
    assert_eq!(running.body["runtimeStatus"], "Running");
    assert_eq!(running.headers["retry-after"], "5");
    let pending = send(&s, get(&format!("/api/GetResult?id={id}"))).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED);

    s.express
        .wait(&id, Duration::from_secs(5))
        .await
        .expect("known");
    let done = send(&s, get(&location)).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["runtimeStatus"], "Completed");
    assert_eq!(done.body["name"], "Slow");
    assert_eq!(done.body["input"], json!({"n": 1}));
    assert_eq!(done.body["output"], json!({"done": true, "got": {"n": 1}}));
    let result = send(&s, get(&format!("/api/GetResult?id={id}"))).await;
    assert_eq!(
        (result.status, result.body),
        (StatusCode::OK, json!({"done": true, "got": {"n": 1}}))
    );
}

#[tokio::test]
async fn faults_map_to_problem_documents_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Fail]\nworkflow = \"fail\"\n",
        &[("fail.yaml", FAIL)],
    );
    let s = state(app, Keys::default()).await;
    let a = send(&s, post("/api/Fail", "{}")).await;
    assert_eq!(a.status.as_u16(), 418);
    assert!(is_problem(&a));
    assert_eq!(a.body["type"], "https://example.com/teapot");
    assert_eq!(a.body["detail"], "short and stout");
    assert_eq!(a.body["task"], "/do/0/f");
    assert_eq!(a.body["instance"], "/api/Fail");
}

#[tokio::test(start_paused = true)]
async fn a_full_host_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[limits]\nmax_in_flight = 1\n[functions.Slow]\nworkflow = \"slow\"\nmode = \"async\"\ndurability = \"express\"\n",
        &[("slow.yaml", SLOW)],
    );
    let s = state(app, Keys::default()).await;
    assert_eq!(
        send(&s, post("/api/Slow", "{}")).await.status,
        StatusCode::ACCEPTED
    );
    let a = send(&s, post("/api/Slow", "{}")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(is_problem(&a));
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(
        a.body["detail"],
        "the host is running as many instances as it may at once (1, limits.max_in_flight)"
    );
    assert_eq!(
        send(&s, get("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn retention_is_bounded_by_count_and_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Slow]\nworkflow = \"slow\"\n",
        &[("slow.yaml", SLOW)],
    );
    let f = app.function("Slow").unwrap().clone();
    let settings = Settings {
        max_retained: 2,
        retention: baton_core::Duration::from_secs(60),
        ..Settings::from_config(&app.config)
    };
    let express = Express::new(baton_engine::Runner::builder().build().unwrap(), settings);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut started = express.start(&f, json!({})).unwrap();
        assert!(started.wait(Duration::from_secs(5)).await.is_some());
        ids.push(started.id.clone());
    }
    assert!(
        express.get(&ids[0]).is_none(),
        "the oldest is evicted past max_retained"
    );
    assert!(express.get(&ids[1]).is_some() && express.get(&ids[2]).is_some());
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(
        express.get(&ids[2]).is_none(),
        "forgotten after the retention"
    );
}

#[tokio::test(start_paused = true)]
async fn host_timeouts_stop_runaway_instances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[limits]\nworkflow_timeout = \"500ms\"\n[functions.Slow]\nworkflow = \"slow\"\n",
        &[("slow.yaml", SLOW)],
    );
    let s = state(app, Keys::default()).await;
    let a = send(&s, post("/api/Slow", "{}")).await;
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT, "{}", a.text);
    assert_eq!(
        a.body["type"],
        "https://serverlessworkflow.io/spec/1.0.0/errors/timeout"
    );
}

/// The point of fan-out, in virtual time: chained waits add up, fanned-out ones overlap.
#[tokio::test(start_paused = true)]
async fn delayed_variants_show_the_point_of_fan_out() {
    let s = state(App::sample().unwrap(), Keys::default()).await;
    let body = r#"{"Name": {"First": "Ada", "Last": "Byron"}, "Address": {"Line1": "1", "City": "L", "State": "LN", "Zip": "10001"}}"#;
    for (route, secs) in [("ValidateDelayed", 7.5), ("ValidateParallelDelayed", 1.5)] {
        let started = tokio::time::Instant::now();
        let a = send(&s, post(&format!("/api/{route}"), body)).await;
        assert_eq!(a.status, StatusCode::OK, "{route}: {}", a.text);
        assert_eq!(a.body["valid"], true);
        assert_eq!(started.elapsed(), Duration::from_secs_f64(secs), "{route}");
    }
}

#[tokio::test]
async fn get_triggers_take_their_input_from_the_decoded_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Lookup]\nworkflow = \"echo\"\nmethods = [\"GET\"]\nauth = \"anonymous\"\n",
        &[(
            "echo.yaml",
            "document: {dsl: '1.0.0', namespace: t, name: echo, version: '1.0.0'}\ndo:\n  - e: {set: '${ . }'}\n",
        )],
    );
    let s = state(app, Keys::default()).await;
    let a = send(
        &s,
        get("/api/Lookup?name=Zo%C3%AB+Li&city=S%C3%A3o%20Paulo&code=secret"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, json!({"name": "Zoë Li", "city": "São Paulo"}));
    assert_eq!(
        send(&s, post("/api/Lookup", "{}")).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn a_sync_caller_gets_its_result_even_if_it_is_evicted_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[express]\nmax_retained = 0\n[functions.Echo]\nworkflow = \"echo\"\n",
        &[(
            "echo.yaml",
            "document: {dsl: '1.0.0', namespace: t, name: echo, version: '1.0.0'}\ndo:\n  - e: {set: '${ {got: .} }'}\n",
        )],
    );
    let s = state(app, Keys::default()).await;
    let a = send(&s, post("/api/Echo", r#"{"n": 1}"#)).await;
    assert_eq!(
        (a.status, a.body),
        (StatusCode::OK, json!({"got": {"n": 1}}))
    );
}

const PURE: &str = "document: {dsl: '1.0.0', namespace: t, name: pure, version: '1.0.0'}\ndo:\n  - s: {set: '${ {got: .} }'}\n";

/// Pure workflows finish inside their first step, before the trigger answers; they are kept
/// for status queries all the same.
#[tokio::test]
async fn an_instance_finished_before_the_answer_is_retrievable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Pure]\nworkflow = \"pure\"\nmode = \"async\"\ndurability = \"express\"\n",
        &[("pure.yaml", PURE)],
    );
    let s = state(app, Keys::default()).await;
    let a = send(&s, post("/api/Pure", r#"{"n": 1}"#)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let location = a.headers["location"].to_str().unwrap().to_owned();
    let done = send(&s, get(&location)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["runtimeStatus"], "Completed");
    assert_eq!(done.body["input"], json!({"n": 1}));
    assert_eq!(done.body["output"], json!({"got": {"n": 1}}));
    let id = a.body["id"].as_str().unwrap();
    assert_eq!(
        s.express.wait(id, Duration::ZERO).await.map(|x| x.status),
        Some(baton_core::interp::Status::Completed),
        "waiting on a finished instance answers at once"
    );
    assert_eq!(s.express.in_flight(), 0);
}

/// A sync caller answers with the result of an instance that finished at once, so only
/// instances that could be asked for (given out with a 202, or still running) are kept.
#[tokio::test]
async fn instances_answered_at_once_are_not_retained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Pure]\nworkflow = \"pure\"\n[functions.Slow]\nworkflow = \"slow\"\n",
        &[
            (
                "pure.yaml",
                "document: {dsl: '1.0.0', namespace: t, name: pure, version: '1.0.0'}\ndo:\n  - a:\n      set: {ok: true}\n",
            ),
            ("slow.yaml", SLOW),
        ],
    );
    let pure = app.function("Pure").unwrap().clone();
    let slow = app.function("Slow").unwrap().clone();
    let express = Express::new(
        baton_engine::Runner::builder().build().unwrap(),
        Settings::from_config(&app.config),
    );
    let mut answered = express.start_answering(&pure, json!({})).unwrap();
    let last = answered
        .wait(Duration::from_secs(5))
        .await
        .expect("finished");
    assert_eq!(last.output, Some(json!({"ok": true})));
    assert!(express.get(&answered.id).is_none(), "nobody can ask for it");

    let kept = express.start(&pure, json!({})).unwrap();
    assert!(express.get(&kept.id).is_some(), "a 202's instance is kept");

    let mut running = express.start_answering(&slow, json!({})).unwrap();
    assert!(
        express.get(&running.id).is_some(),
        "one that goes on is kept while it runs"
    );
    assert!(running.wait(Duration::from_secs(30)).await.is_some());
    assert!(express.get(&running.id).is_some(), "and after it finished");
}
