//! Helpers of the queue API tests: an app with three queues, and the queue routes as calls.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_api::ApiState;
use baton_host::Keys;
use serde_json::Value;

use super::*;

/// `orders` has Service Bus' defaults, `tasks` requires sessions, `fragile` dead-letters a
/// message at its second failed delivery.
pub const TOML: &str = "[queues.orders]\n\n\
                    [queues.tasks]\nsessions = true\n\n\
                    [queues.fragile]\nmax_delivery_count = 2\n";

pub async fn queue_app(keys: Keys) -> (tempfile::TempDir, ApiState) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(dir.path(), TOML, &[]);
    let s = state(app, keys).await;
    (dir, s)
}

pub fn json_body(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub fn empty(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}

/// Sends `body` (JSON) to `queue` with these extra headers; the answer.
pub async fn send_with(s: &ApiState, queue: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::post(format!("/api/queues/{queue}/messages"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(s, req.body(Body::from(body.to_owned())).unwrap()).await
}

/// Sends `body` to `queue`, which must store it; its sequence number.
pub async fn enqueue(s: &ApiState, queue: &str, body: &str, headers: &[(&str, &str)]) -> i64 {
    let a = send_with(s, queue, body, headers).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    a.body["sequenceNumber"]
        .as_i64()
        .expect("a sequence number")
}

/// A peek-lock receive; `query` without the leading `?`.
pub async fn receive(s: &ApiState, queue: &str, query: &str) -> Answer {
    send(
        s,
        empty(
            "POST",
            &format!("/api/queues/{queue}/messages/head?{query}"),
        ),
    )
    .await
}

/// A receive that must lock exactly one message: it and its lock token.
pub async fn receive_one(s: &ApiState, queue: &str) -> (Value, String) {
    let a = receive(s, queue, "max=1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let messages = a.body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{}", a.text);
    let m = messages[0].clone();
    let token = m["lockToken"].as_str().expect("a lock token").to_owned();
    (m, token)
}

pub fn seq_of(m: &Value) -> i64 {
    m["sequenceNumber"].as_i64().expect("sequenceNumber")
}

/// The messages a peek of the queue (or its dead-letter queue) shows.
pub async fn peek(s: &ApiState, queue: &str, dead: bool) -> Vec<Value> {
    let sub = if dead { "deadletter" } else { "messages" };
    let a = send(s, get(&format!("/api/queues/{queue}/{sub}"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["messages"].as_array().expect("messages").clone()
}

pub fn sequences(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(seq_of).collect()
}

pub async fn stats(s: &ApiState, queue: &str) -> Value {
    let a = send(s, get(&format!("/api/queues/{queue}"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["stats"].clone()
}

/// `DELETE …/messages/{seq}/{token}`.
pub async fn complete(s: &ApiState, queue: &str, seq: i64, token: &str) -> Answer {
    send(
        s,
        empty(
            "DELETE",
            &format!("/api/queues/{queue}/messages/{seq}/{token}"),
        ),
    )
    .await
}

/// `POST …/messages/{seq}/{token}/{action}` with a JSON body (or none).
pub async fn act(
    s: &ApiState,
    queue: &str,
    seq: i64,
    token: &str,
    action: &str,
    body: &str,
) -> Answer {
    let uri = format!("/api/queues/{queue}/messages/{seq}/{token}/{action}");
    let req = if body.is_empty() {
        empty("POST", &uri)
    } else {
        json_body("POST", &uri, body)
    };
    send(s, req).await
}

/// Asserts `a` is a problem document with `status` whose detail contains `words`.
#[track_caller]
pub fn assert_problem(a: &Answer, status: StatusCode, words: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert!(
        is_problem(a),
        "not a problem document: {:?} {}",
        a.headers,
        a.text
    );
    let detail = a.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(words), "`{words}` not in: {detail}");
}

pub fn rfc3339_ms(t: &Value) -> i64 {
    let t = humantime::parse_rfc3339(t.as_str().expect("a time")).expect("RFC 3339");
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    i64::try_from(d.as_millis()).unwrap()
}

pub fn in_an_hour() -> String {
    humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(3600)).to_string()
}
