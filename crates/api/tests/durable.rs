//! Durable functions through the HTTP API, on a real SQLite file: 202 after commit, status
//! from the store, idempotency keys, listing and paging, history, raiseEvent, terminate, purge
//! and who may call them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_api::ApiState;
use baton_host::Keys;
use serde_json::{Value, json};
use support::*;

const PURE: &str = "document: {dsl: '1.0.0', namespace: t, name: pure, version: '2.1.0'}\ndo:\n  - a: {set: {got: '${ . }'}}\n";
const HOLD: &str = "document: {dsl: '1.0.0', namespace: t, name: hold, version: '1.0.0'}\ndo:\n  - hold: {listen: {to: {one: {with: {type: go}}}}}\n  - answer: {set: {heard: '${ . }'}}\n";

const TOML: &str = "[functions.Pure]\nworkflow = \"pure\"\nmode = \"async\"\n\
                    [functions.Hold]\nworkflow = \"hold\"\nmode = \"async\"\n\
                    [functions.PureSync]\nworkflow = \"pure\"\ndurability = \"durable\"\n";

async fn durable_app(keys: Keys) -> (tempfile::TempDir, ApiState) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        TOML,
        &[("pure.yaml", PURE), ("hold.yaml", HOLD)],
    );
    let s = state(app, keys).await;
    (dir, s)
}

fn post_keyed(uri: &str, body: &str, key: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn delete(uri: &str) -> Request<Body> {
    Request::delete(uri).body(Body::empty()).unwrap()
}

/// Polls the status until it is terminal, at most 10 s.
async fn finished(s: &ApiState, id: &str) -> Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = send(s, get(&format!("/api/instances/{id}"))).await;
        if a.status != StatusCode::ACCEPTED {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running: {}",
            a.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the instance's history holds an event of `kind`, at most 10 s.
async fn history_has(s: &ApiState, id: &str, kind: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = send(s, get(&format!("/api/instances/{id}/history"))).await;
        if h.body["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == kind))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind}: {}",
            h.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_async_durable_start_is_committed_then_pollable_everywhere() {
    let (_dir, s) = durable_app(Keys::default()).await;
    let a = send(&s, post("/api/Pure", r#"{"n": 1}"#)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.headers["location"].to_str().unwrap(),
        format!("/api/instances/{id}")
    );
    assert_eq!(a.headers["retry-after"], "10");
    for link in [
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "suspendPostUri",
        "resumePostUri",
        "rewindPostUri",
        "purgeHistoryDeleteUri",
    ] {
        assert!(
            a.body[link].as_str().unwrap().contains(&id),
            "{link}: {}",
            a.text
        );
    }
    // The instance is in the store, not in memory.
    assert!(s.express.get(&id).is_none());
    let done = finished(&s, &id).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["runtimeStatus"], "Completed");
    assert_eq!(done.body["name"], "Pure");
    assert_eq!(done.body["output"], json!({"got": {"n": 1}}));
    assert_eq!(done.body["definition"]["version"], "2.1.0");
    assert_eq!(done.body["definition"]["name"], "t/pure");
    // The same resource under the Durable Functions webhook route and as GetResult.
    let webhook = send(
        &s,
        get(&format!("/runtime/webhooks/durabletask/instances/{id}")),
    )
    .await;
    assert_eq!(webhook.status, StatusCode::OK);
    assert_eq!(webhook.body, done.body);
    let r = send(&s, get(&format!("/api/GetResult?id={id}"))).await;
    assert_eq!(
        (r.status, &r.body),
        (StatusCode::OK, &json!({"got": {"n": 1}}))
    );
    let shown = send(
        &s,
        get(&format!(
            "/api/instances/{id}?showHistory=true&showInput=false"
        )),
    )
    .await;
    assert_eq!(shown.body["input"], Value::Null);
    let kinds: Vec<&str> = shown.body["historyEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"ExecutionStarted"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"ExecutionCompleted"), "{kinds:?}");
}

#[tokio::test]
async fn a_sync_durable_function_answers_with_its_output() {
    let (_dir, s) = durable_app(Keys::default()).await;
    let a = send(&s, post("/api/PureSync", r#"{"n": 2}"#)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, json!({"got": {"n": 2}}));
    let list = send(&s, get("/api/instances?name=PureSync")).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.text);
}

#[tokio::test]
async fn idempotency_keys_replay_the_same_instance_and_refuse_another_body() {
    let (_dir, s) = durable_app(Keys::default()).await;
    let first = send(
        &s,
        post_keyed("/api/Pure", r#"{"a": 1, "b": 2}"#, "order-17"),
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // The same body, its members in another order: the same instance, the same answer.
    let again = send(
        &s,
        post_keyed("/api/Pure", r#"{"b": 2, "a": 1}"#, "order-17"),
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = send(
        &s,
        post_keyed("/api/Pure", r#"{"a": 1, "b": 3}"#, "order-17"),
    )
    .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.text);
    assert!(is_problem(&other));
    assert_eq!(other.body["instanceId"], first.body["id"]);
    // The key binds the function too.
    let elsewhere = send(
        &s,
        post_keyed("/api/Hold", r#"{"a": 1, "b": 2}"#, "order-17"),
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::CONFLICT);
    let fresh = send(
        &s,
        post_keyed("/api/Pure", r#"{"a": 1, "b": 2}"#, "order-18"),
    )
    .await;
    assert_ne!(fresh.body["id"], first.body["id"]);
    let long = "k".repeat(201);
    let bad = send(&s, post_keyed("/api/Pure", "{}", &long)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let list = send(&s, get("/api/instances?name=Pure")).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2, "{}", list.text);
}

#[tokio::test]
async fn raised_events_terminate_and_purge_follow_durable_functions() {
    let (_dir, s) = durable_app(Keys::default()).await;
    let a = send(&s, post("/api/Hold", "{}")).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    let running = send(&s, get(&format!("/api/instances/{id}"))).await;
    assert_eq!(running.status, StatusCode::ACCEPTED);
    assert_eq!(running.body["runtimeStatus"], "Running");
    assert_eq!(running.headers["retry-after"], "5");
    // A running instance cannot be purged.
    let p = send(&s, delete(&format!("/api/instances/{id}"))).await;
    assert_eq!(p.status, StatusCode::PRECONDITION_FAILED, "{}", p.text);
    let r = send(
        &s,
        post(
            &format!("/api/instances/{id}/raiseEvent/go"),
            r#"{"colour": "green"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let done = finished(&s, &id).await;
    assert_eq!(done.body["runtimeStatus"], "Completed", "{}", done.text);
    assert!(
        done.text.contains("green"),
        "the event's data reached the workflow: {}",
        done.text
    );
    // Finished: no more events, no terminate.
    for op in ["raiseEvent/go", "terminate", "suspend", "resume"] {
        let gone = send(&s, post(&format!("/api/instances/{id}/{op}"), "{}")).await;
        assert_eq!(gone.status, StatusCode::GONE, "{op}: {}", gone.text);
    }
    let rewind = send(&s, post(&format!("/api/instances/{id}/rewind"), "")).await;
    assert_eq!(rewind.status, StatusCode::PRECONDITION_FAILED);

    let b = send(&s, post("/api/Hold", "{}")).await;
    let other = b.body["id"].as_str().unwrap().to_owned();
    let t = send(
        &s,
        post(
            &format!("/api/instances/{other}/terminate?reason=enough"),
            "",
        ),
    )
    .await;
    assert_eq!(t.status, StatusCode::ACCEPTED, "{}", t.text);
    let ended = finished(&s, &other).await;
    assert_eq!(ended.body["runtimeStatus"], "Terminated", "{}", ended.text);
    history_has(&s, &other, "ExecutionTerminated").await;

    let p = send(&s, delete(&format!("/api/instances/{id}"))).await;
    assert_eq!(
        (p.status, &p.body),
        (StatusCode::OK, &json!({"instancesDeleted": 1}))
    );
    assert_eq!(
        send(&s, get(&format!("/api/instances/{id}"))).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&s, post("/api/instances/nope/terminate", ""))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let h = send(&s, get(&format!("/api/instances/{id}/history"))).await;
    assert_eq!(h.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listings_filter_page_and_purge_in_bulk() {
    let (_dir, s) = durable_app(Keys::default()).await;
    let mut done = Vec::new();
    for n in 0..5 {
        let a = send(&s, post("/api/Pure", &format!(r#"{{"n": {n}}}"#))).await;
        done.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let held = send(&s, post("/api/Hold", "{}")).await;
    let held = held.body["id"].as_str().unwrap().to_owned();
    for id in &done {
        finished(&s, id).await;
    }
    // Pages of two, newest first, following the continuation header.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut req = Request::get("/api/instances?runtimeStatus=Completed&top=2");
        if let Some(t) = &token {
            req = req.header("x-ms-continuation-token", t);
        }
        let page = send(&s, req.body(Body::empty()).unwrap()).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let items = page.body.as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["instanceId"].as_str().unwrap().to_owned()),
        );
        token = page
            .headers
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_owned());
        if token.is_none() {
            break;
        }
    }
    let mut want = done.clone();
    want.reverse();
    assert_eq!(seen, want, "every Completed instance once, newest first");
    let running = send(&s, get("/api/instances?runtimeStatus=running,pending")).await;
    let ids: Vec<&str> = running
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![held.as_str()]);
    let bad = send(&s, get("/api/instances?runtimeStatus=Sleeping")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["parameter"], "runtimeStatus");
    let bad = send(&s, get("/api/instances?createdTimeFrom=yesterday")).await;
    assert_eq!(bad.body["parameter"], "createdTimeFrom");
    let future = send(
        &s,
        get("/api/instances?createdTimeFrom=2100-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(future.body, json!([]));
    // Only finished instances are purged in bulk.
    let refused = send(&s, delete("/api/instances?runtimeStatus=Running")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let purged = send(&s, delete("/runtime/webhooks/durabletask/instances")).await;
    assert_eq!(
        purged.body,
        json!({"instancesDeleted": 5}),
        "{}",
        purged.text
    );
    let left = send(&s, get("/api/instances")).await;
    assert_eq!(left.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn management_needs_a_host_key_and_status_the_functions_key() {
    let mut keys = Keys::default();
    let host = keys.create(None, "master", "t").expect("key");
    let own = keys.create(Some("Hold"), "default", "t").expect("key");
    let (_dir, s) = durable_app(keys).await;
    let with = |req: axum::http::request::Builder, key: &str| {
        req.header("x-functions-key", key)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap()
    };
    let a = send(&s, with(Request::post("/api/Hold"), &own)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let status = send(&s, with(Request::get(format!("/api/instances/{id}")), &own)).await;
    assert_eq!(status.status, StatusCode::ACCEPTED, "{}", status.text);
    for (method, uri) in [
        ("GET", "/api/instances".to_owned()),
        ("GET", format!("/api/instances/{id}/history")),
        ("POST", format!("/api/instances/{id}/terminate")),
        ("POST", format!("/api/instances/{id}/raiseEvent/go")),
        ("DELETE", format!("/api/instances/{id}")),
        ("DELETE", "/api/instances".to_owned()),
    ] {
        let req = Request::builder().method(method).uri(&uri);
        let refused = send(&s, with(req, &own)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        let none = send(
            &s,
            Request::builder()
                .method(method)
                .uri(&uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let list = send(&s, with(Request::get("/api/instances"), &host)).await;
    assert_eq!(list.status, StatusCode::OK);
    let t = send(
        &s,
        with(
            Request::post(format!("/api/instances/{id}/terminate")),
            &host,
        ),
    )
    .await;
    assert_eq!(t.status, StatusCode::ACCEPTED);
}

const STAGED: &str = "document: {dsl: '1.0.0', namespace: t, name: staged, version: '1.0.0'}\ndo:\n  - mark:\n      set: {ok: true}\n      export:\n        as: '${ $context + {customStatus: {stage: \"waiting\"}} }'\n  - hold: {listen: {to: {one: {with: {type: go}}}}}\n  - done: {set: {finished: true}}\n";

/// A stand-in that fails its first call with a 500 and answers later ones; counts calls.
async fn flaky() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let router = axum::Router::new().route(
        "/flaky",
        axum::routing::post(move || {
            let c = Arc::clone(&c);
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "not yet").into_response()
                } else {
                    axum::Json(json!({"fine": true})).into_response()
                }
            }
        }),
    );
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/flaky"), calls)
}

#[tokio::test]
async fn suspend_resume_rewind_and_custom_status_over_http() {
    let (url, calls) = flaky().await;
    let flaky_wf = format!(
        "document: {{dsl: '1.0.0', namespace: t, name: flaky, version: '1.0.0'}}\ndo:\n  - first: {{set: {{step: 1}}}}\n  - call:\n      call: http\n      with: {{method: post, endpoint: '{url}'}}\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Staged]\nworkflow = \"staged\"\nmode = \"async\"\n[functions.Flaky]\nworkflow = \"flaky\"\nmode = \"async\"\n[http]\nallow = [\"127.0.0.0/8\"]\n",
        &[("staged.yaml", STAGED), ("flaky.yaml", &flaky_wf)],
    );
    let s = state(app, Keys::default()).await;

    let a = send(&s, post("/api/Staged", "{}")).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    let status = send(&s, get(&format!("/api/instances/{id}"))).await;
    assert_eq!(
        status.body["customStatus"],
        json!({"stage": "waiting"}),
        "{}",
        status.text
    );
    let sus = send(
        &s,
        post(&format!("/api/instances/{id}/suspend?reason=lunch"), ""),
    )
    .await;
    assert_eq!(sus.status, StatusCode::ACCEPTED, "{}", sus.text);
    history_has(&s, &id, "ExecutionSuspended").await;
    let now = send(&s, get(&format!("/api/instances/{id}"))).await;
    assert_eq!(now.body["runtimeStatus"], "Suspended", "{}", now.text);
    // An event while suspended is kept, not applied…
    let r = send(
        &s,
        post(&format!("/api/instances/{id}/raiseEvent/go"), "{}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let list = send(&s, get("/api/instances?runtimeStatus=Suspended")).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.text);
    // …until the instance resumes.
    let res = send(&s, post(&format!("/api/instances/{id}/resume"), "")).await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let done = finished(&s, &id).await;
    assert_eq!(done.body["runtimeStatus"], "Completed", "{}", done.text);
    assert_eq!(done.body["output"], json!({"finished": true}));

    let f = send(&s, post("/api/Flaky", "{}")).await;
    let fid = f.body["id"].as_str().unwrap().to_owned();
    let failed = finished(&s, &fid).await;
    assert_eq!(failed.body["runtimeStatus"], "Failed", "{}", failed.text);
    assert_eq!(failed.body["output"]["status"], 500, "{}", failed.text);
    let five = send(
        &s,
        get(&format!(
            "/api/instances/{fid}?returnInternalServerErrorOnFailure=true"
        )),
    )
    .await;
    assert_eq!(five.status, StatusCode::INTERNAL_SERVER_ERROR);
    let rw = send(
        &s,
        post(&format!("/api/instances/{fid}/rewind?reason=fixed"), ""),
    )
    .await;
    assert_eq!(rw.status, StatusCode::ACCEPTED, "{}", rw.text);
    history_has(&s, &fid, "ExecutionRewound").await;
    let again = finished(&s, &fid).await;
    assert_eq!(again.body["runtimeStatus"], "Completed", "{}", again.text);
    assert_eq!(again.body["output"], json!({"fine": true}));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the failed call ran again, once"
    );
}

/// Durable instances are counted like express ones, and `/metrics` shows how many the store
/// holds unfinished. No other test of this file scrapes `/metrics`, so the gauge is this
/// store's; the counters are process-wide and compared as differences.
#[tokio::test]
async fn durable_instances_are_counted_in_metrics() {
    use support::metrics::{scrape, value};
    let (_dir, s) = durable_app(Keys::default()).await;
    let labels = [("function", "Hold"), ("workflow", "hold")];
    let count = async |name: &str| value(&scrape(&s).await, name, &labels);
    let running = async || {
        let all = scrape(&s).await;
        value(&all, "baton_durable_instances", &[("status", "Running")])
    };
    let started = count("baton_instances_started_total").await;
    let completed = count("baton_instances_completed_total").await;
    let failed = count("baton_instances_failed_total").await;

    let mut ids = Vec::new();
    for _ in 0..2 {
        let a = send(&s, post("/api/Hold", "{}")).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(running().await, 2.0, "two instances wait for their event");
    assert_eq!(count("baton_instances_started_total").await, started + 2.0);
    let all = scrape(&s).await;
    for status in ["Pending", "Suspended"] {
        assert!(
            all.iter().any(|x| x.name == "baton_durable_instances"
                && x.labels.get("status").map(String::as_str) == Some(status)),
            "the {status} count is shown too"
        );
    }

    let raise = format!("/api/instances/{}/raiseEvent/go", ids[0]);
    assert_eq!(
        send(&s, post(&raise, "{}")).await.status,
        StatusCode::ACCEPTED
    );
    let terminate = format!("/api/instances/{}/terminate", ids[1]);
    assert_eq!(
        send(&s, post(&terminate, "")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        finished(&s, &ids[0]).await.body["runtimeStatus"],
        "Completed"
    );
    assert_eq!(
        finished(&s, &ids[1]).await.body["runtimeStatus"],
        "Terminated"
    );
    assert_eq!(running().await, 0.0, "nothing is left running");
    // An end is counted just after its commit, which the status may show first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = (
            count("baton_instances_completed_total").await,
            count("baton_instances_failed_total").await,
        );
        if now == (completed + 1.0, failed + 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "(completed, failed) went from {:?} to {now:?}",
            (completed, failed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
