//! Queues through the HTTP API, on a real SQLite file: managing queues, sending (one message,
//! duplicates, batches), peek-lock receiving and settling, the dead-letter queue and redrive,
//! sessions, scheduled messages, statistics, long polling over a real socket, and who may call.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_api::ApiState;
use baton_host::Keys;
use serde_json::{Map, Value, json};
use support::*;

/// `orders` has Service Bus' defaults, `tasks` requires sessions, `fragile` dead-letters a
/// message at its second failed delivery.
const TOML: &str = "[queues.orders]\n\n\
                    [queues.tasks]\nsessions = true\n\n\
                    [queues.fragile]\nmax_delivery_count = 2\n";

async fn queue_app(keys: Keys) -> (tempfile::TempDir, ApiState) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(dir.path(), TOML, &[]);
    let s = state(app, keys).await;
    (dir, s)
}

fn json_body(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn empty(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}

/// Sends `body` (JSON) to `queue` with these extra headers; the answer.
async fn send_with(s: &ApiState, queue: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::post(format!("/api/queues/{queue}/messages"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(s, req.body(Body::from(body.to_owned())).unwrap()).await
}

/// Sends `body` to `queue`, which must store it; its sequence number.
async fn enqueue(s: &ApiState, queue: &str, body: &str, headers: &[(&str, &str)]) -> i64 {
    let a = send_with(s, queue, body, headers).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    a.body["sequenceNumber"]
        .as_i64()
        .expect("a sequence number")
}

/// A peek-lock receive; `query` without the leading `?`.
async fn receive(s: &ApiState, queue: &str, query: &str) -> Answer {
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
async fn receive_one(s: &ApiState, queue: &str) -> (Value, String) {
    let a = receive(s, queue, "max=1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let messages = a.body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{}", a.text);
    let m = messages[0].clone();
    let token = m["lockToken"].as_str().expect("a lock token").to_owned();
    (m, token)
}

fn seq_of(m: &Value) -> i64 {
    m["sequenceNumber"].as_i64().expect("sequenceNumber")
}

/// The messages a peek of the queue (or its dead-letter queue) shows.
async fn peek(s: &ApiState, queue: &str, dead: bool) -> Vec<Value> {
    let sub = if dead { "deadletter" } else { "messages" };
    let a = send(s, get(&format!("/api/queues/{queue}/{sub}"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["messages"].as_array().expect("messages").clone()
}

fn sequences(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(seq_of).collect()
}

async fn stats(s: &ApiState, queue: &str) -> Value {
    let a = send(s, get(&format!("/api/queues/{queue}"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["stats"].clone()
}

/// `DELETE …/messages/{seq}/{token}`.
async fn complete(s: &ApiState, queue: &str, seq: i64, token: &str) -> Answer {
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
async fn act(s: &ApiState, queue: &str, seq: i64, token: &str, action: &str, body: &str) -> Answer {
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
fn assert_problem(a: &Answer, status: StatusCode, words: &str) {
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

fn rfc3339_ms(t: &Value) -> i64 {
    let t = humantime::parse_rfc3339(t.as_str().expect("a time")).expect("RFC 3339");
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    i64::try_from(d.as_millis()).unwrap()
}

fn in_an_hour() -> String {
    humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(3600)).to_string()
}

#[tokio::test]
async fn configured_queues_are_listed_with_their_settings_and_statistics() {
    let (_dir, s) = queue_app(Keys::default()).await;
    enqueue(&s, "orders", "1", &[]).await;

    let a = send(&s, get("/api/queues")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let names: Vec<&str> = a.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fragile", "orders", "tasks"]);
    let orders = &a.body["queues"][1];
    assert_eq!(orders["stats"]["activeMessageCount"], 1, "{orders}");

    let a = send(&s, get("/api/queues/orders")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.body,
        json!({
            "name": "orders",
            "lock_duration": "PT60S",
            "max_delivery_count": 10,
            "time_to_live": null,
            "dead_letter_on_expiration": false,
            "duplicate_detection": true,
            "duplicate_detection_window": "PT600S",
            "sessions": false,
            "stats": {
                "activeMessageCount": 1,
                "scheduledMessageCount": 0,
                "lockedMessageCount": 0,
                "deadLetterMessageCount": 0
            }
        })
    );
    let tasks = send(&s, get("/api/queues/tasks")).await;
    assert_eq!(tasks.body["sessions"], true, "{}", tasks.text);
    let fragile = send(&s, get("/api/queues/fragile")).await;
    assert_eq!(fragile.body["max_delivery_count"], 2, "{}", fragile.text);

    let a = send(&s, get("/api/queues/nope")).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "nope");
}

#[tokio::test]
async fn a_put_creates_then_updates_a_queue_and_a_delete_removes_it() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let a = send(
        &s,
        json_body(
            "PUT",
            "/api/queues/invoices",
            r#"{"lock_duration": "30s", "max_delivery_count": 3, "time_to_live": "PT1H",
                "dead_letter_on_expiration": true, "duplicate_detection_window": "1m"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(
        a.body,
        json!({
            "name": "invoices",
            "lock_duration": "PT30S",
            "max_delivery_count": 3,
            "time_to_live": "PT3600S",
            "dead_letter_on_expiration": true,
            "duplicate_detection": true,
            "duplicate_detection_window": "PT60S",
            "sessions": false
        })
    );

    // A PUT states every setting: what it leaves out takes the default again.
    let a = send(
        &s,
        json_body("PUT", "/api/queues/invoices", r#"{"lock_duration": "45s"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let got = send(&s, get("/api/queues/invoices")).await;
    assert_eq!(got.body["lock_duration"], "PT45S", "{}", got.text);
    assert_eq!(got.body["max_delivery_count"], 10, "{}", got.text);
    assert_eq!(got.body["time_to_live"], Value::Null, "{}", got.text);

    // No body: every default.
    let a = send(&s, empty("PUT", "/api/queues/plain")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["lock_duration"], "PT60S", "{}", a.text);

    enqueue(&s, "invoices", r#"{"n": 1}"#, &[]).await;
    let a = send(&s, empty("DELETE", "/api/queues/invoices")).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    assert!(a.text.is_empty());
    let a = send(&s, empty("DELETE", "/api/queues/invoices")).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "invoices");
    let a = send(&s, get("/api/queues/invoices")).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "invoices");
    let a = send_with(&s, "invoices", "1", &[]).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "invoices");
}

#[tokio::test]
async fn bad_queue_settings_are_refused_naming_what_is_wrong() {
    let (_dir, s) = queue_app(Keys::default()).await;
    for (body, words) in [
        (r#"{"lock_duration": "6m"}"#, "lock duration"),
        (r#"{"lock_duration": "0s"}"#, "lock duration"),
        (
            r#"{"duplicate_detection_window": "10s"}"#,
            "duplicate-detection window",
        ),
        (r#"{"duplicate_detection_window": "8d"}"#, "unknown unit"),
        (r#"{"max_delivery_count": 0}"#, "max delivery count"),
        (r#"{"lock_duration": "soon"}"#, "not a duration"),
        (r#"{"lock_duraton": "30s"}"#, "lock_duraton"),
        (r#"{"sessions": "yes"}"#, "bad queue settings"),
        ("{nope", "not JSON"),
    ] {
        let a = send(&s, json_body("PUT", "/api/queues/bad", body)).await;
        assert_problem(&a, StatusCode::BAD_REQUEST, words);
    }
    // A window of 8 days in hours is read, and refused for its range.
    let a = send(
        &s,
        json_body(
            "PUT",
            "/api/queues/bad",
            r#"{"duplicate_detection_window": "192h"}"#,
        ),
    )
    .await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "between 20 seconds and 7 days");
    // A refused PUT creates nothing.
    let a = send(&s, get("/api/queues/bad")).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "bad");

    let a = send(&s, json_body("PUT", "/api/queues/no%20spaces", "{}")).await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "is not a queue name");
}

#[tokio::test]
async fn a_message_keeps_every_header_it_was_sent_with() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let a = send_with(
        &s,
        "orders",
        r#"{"item": "book", "qty": 2}"#,
        &[
            ("message-id", "order-1"),
            ("correlation-id", "corr-9"),
            ("time-to-live", "120"),
            ("message-properties", r#"{"region": "eu", "priority": 2}"#),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(
        a.body,
        json!({"sequenceNumber": 1, "messageId": "order-1", "duplicate": false})
    );

    let when = in_an_hour();
    let later = enqueue(
        &s,
        "orders",
        "plain words",
        &[
            ("content-type", "text/plain"),
            ("scheduled-enqueue-time", &when),
            ("time-to-live", "2m"),
        ],
    )
    .await;
    assert_eq!(later, 2);
    let session = send_with(&s, "tasks", "[1, 2]", &[("session-id", "cart-7")]).await;
    assert_eq!(session.status, StatusCode::CREATED, "{}", session.text);

    let got = peek(&s, "orders", false).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let m = &got[0];
    assert_eq!(m["sequenceNumber"], 1);
    assert_eq!(m["messageId"], "order-1");
    assert_eq!(m["correlationId"], "corr-9");
    assert_eq!(m["contentType"], "application/json");
    assert_eq!(m["body"], json!({"item": "book", "qty": 2}));
    assert_eq!(m["bodyEncoding"], "json");
    assert_eq!(m["properties"], json!({"region": "eu", "priority": 2}));
    assert_eq!(m["sessionId"], Value::Null);
    assert_eq!(m["state"], "Active");
    assert_eq!(m["deliveryCount"], 0);
    assert_eq!(m["lockToken"], Value::Null);
    assert_eq!(
        rfc3339_ms(&m["expiresAt"]) - rfc3339_ms(&m["enqueuedTime"]),
        120_000,
        "{m}"
    );

    let m = &got[1];
    assert_eq!(m["body"], "plain words");
    assert_eq!(m["bodyEncoding"], "text");
    assert_eq!(m["state"], "Scheduled");
    assert_eq!(m["scheduledEnqueueTime"], when.as_str());
    // The time to live counts from when the message becomes visible.
    assert_eq!(
        rfc3339_ms(&m["expiresAt"]) - rfc3339_ms(&m["scheduledEnqueueTime"]),
        120_000,
        "{m}"
    );
    // A message id is made up when the sender gives none.
    assert!(
        m["messageId"].as_str().is_some_and(|id| !id.is_empty()),
        "{m}"
    );

    let t = peek(&s, "tasks", false).await;
    assert_eq!(t[0]["sessionId"], "cart-7", "{t:?}");
    assert_eq!(t[0]["body"], json!([1, 2]), "{t:?}");

    // A body that is not UTF-8 comes back in base64.
    let req = Request::post("/api/queues/plainbytes/messages")
        .header("content-type", "application/octet-stream")
        .body(Body::from(vec![0xff_u8, 0x00, 0x80]))
        .unwrap();
    assert_eq!(
        send(&s, empty("PUT", "/api/queues/plainbytes"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(send(&s, req).await.status, StatusCode::CREATED);
    let b = peek(&s, "plainbytes", false).await;
    assert_eq!(
        (&b[0]["body"], &b[0]["bodyEncoding"]),
        (&json!("/wCA"), &json!("base64"))
    );
}

#[tokio::test]
async fn bad_message_headers_are_refused_and_store_nothing() {
    let (_dir, s) = queue_app(Keys::default()).await;
    for (header, value, words) in [
        ("time-to-live", "0", "positive"),
        ("time-to-live", "-5", "positive"),
        ("time-to-live", "soon", "time to live"),
        ("scheduled-enqueue-time", "tomorrow", "RFC 3339"),
        ("message-properties", "[1]", "Message-Properties"),
        ("message-properties", "{nope", "Message-Properties"),
        ("session-id", "s1", "has no sessions"),
    ] {
        let a = send_with(&s, "orders", "1", &[(header, value)]).await;
        assert_problem(&a, StatusCode::BAD_REQUEST, words);
    }
    let long = "x".repeat(129);
    let a = send_with(&s, "orders", "1", &[("message-id", &long)]).await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "1 to 128 characters");
    assert!(peek(&s, "orders", false).await.is_empty());
}

#[tokio::test]
async fn a_duplicate_message_id_is_answered_200_and_stored_once() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let first = send_with(&s, "orders", r#"{"n": 1}"#, &[("message-id", "same")]).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["duplicate"], false);
    let again = send_with(&s, "orders", r#"{"n": 2}"#, &[("message-id", "same")]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body, json!({"messageId": "same", "duplicate": true}));

    let got = peek(&s, "orders", false).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], json!({"n": 1}));

    // Another id is another message.
    enqueue(&s, "orders", r#"{"n": 3}"#, &[("message-id", "other")]).await;
    assert_eq!(peek(&s, "orders", false).await.len(), 2);
}

#[tokio::test]
async fn a_batch_is_stored_whole_or_not_at_all() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let when = in_an_hour();
    let batch = json!([
        {"body": {"n": 1}, "messageId": "b1", "correlationId": "c", "properties": {"k": "v"}},
        {"body": "two", "timeToLive": 60},
        {"body": 3, "timeToLive": "PT2M", "scheduledEnqueueTime": when},
    ]);
    let a = send(
        &s,
        post("/api/queues/orders/messages/batch", &batch.to_string()),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let sent = a.body["messages"].as_array().expect("messages");
    assert_eq!(sent.len(), 3, "{}", a.text);
    assert_eq!(
        sent[0],
        json!({"sequenceNumber": 1, "messageId": "b1", "duplicate": false})
    );
    assert_eq!(sent[1]["sequenceNumber"], 2);
    assert_eq!(sent[2]["sequenceNumber"], 3);
    let got = peek(&s, "orders", false).await;
    assert_eq!(got[0]["properties"], json!({"k": "v"}));
    assert_eq!(got[0]["correlationId"], "c");
    assert_eq!(got[1]["body"], "two", "a batch body is JSON: {got:?}");
    assert_eq!(got[1]["bodyEncoding"], "json");
    assert_eq!(got[2]["state"], "Scheduled");

    // A batch of duplicates only stores nothing: 200.
    let a = send(
        &s,
        post(
            "/api/queues/orders/messages/batch",
            r#"[{"body": 0, "messageId": "b1"}]"#,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.body["messages"][0],
        json!({"messageId": "b1", "duplicate": true})
    );

    // One bad item (found by the API, or by the store) and nothing of the batch is stored.
    for (batch, words) in [
        (
            r#"[{"body": 1}, {"body": 2, "timeToLive": -1}]"#,
            "positive",
        ),
        (
            r#"[{"body": 1}, {"body": 2, "timeToLive": true}]"#,
            "timeToLive",
        ),
        (
            r#"[{"body": 1}, {"body": 2, "sessionId": "s"}]"#,
            "message 1 has a session id",
        ),
        (
            r#"[{"body": 1}, {"body": 2, "mesageId": "typo"}]"#,
            "mesageId",
        ),
        (
            r#"[{"body": 1}, {"body": 2, "scheduledEnqueueTime": "noon"}]"#,
            "RFC 3339",
        ),
        ("[]", "1 to 100"),
        (r#"{"body": 1}"#, "JSON array"),
    ] {
        let a = send(&s, post("/api/queues/orders/messages/batch", batch)).await;
        assert_problem(&a, StatusCode::BAD_REQUEST, words);
    }
    let too_many: Vec<Value> = (0..101).map(|n| json!({"body": n})).collect();
    let a = send(
        &s,
        post(
            "/api/queues/orders/messages/batch",
            &Value::Array(too_many).to_string(),
        ),
    )
    .await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "1 to 100");
    assert_eq!(sequences(&peek(&s, "orders", false).await), [1, 2, 3]);
}

#[tokio::test]
async fn a_received_message_is_locked_and_completed_once() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let a = receive(&s, "orders", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    assert!(a.text.is_empty());

    let seq = enqueue(&s, "orders", r#"{"n": 1}"#, &[]).await;
    let a = receive(&s, "orders", "max=5").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["session"], Value::Null);
    let m = &a.body["messages"][0];
    assert_eq!(a.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        (seq_of(m), &m["state"], &m["deliveryCount"]),
        (seq, &json!("Locked"), &json!(1))
    );
    assert_eq!(m["body"], json!({"n": 1}));
    let token = m["lockToken"].as_str().expect("a lock token").to_owned();
    let until = rfc3339_ms(&m["lockedUntil"]);
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    // Locked for the queue's 60 s (the store's clock is this machine's).
    assert!((until - now - 60_000).abs() < 10_000, "{m}");

    // Locked, it is not received again; a peek shows it Locked without its token.
    assert_eq!(
        receive(&s, "orders", "").await.status,
        StatusCode::NO_CONTENT
    );
    let p = peek(&s, "orders", false).await;
    assert_eq!(
        (&p[0]["state"], &p[0]["lockToken"]),
        (&json!("Locked"), &Value::Null)
    );

    let a = complete(&s, "orders", seq, "1.999").await;
    assert_problem(&a, StatusCode::GONE, "not locked with this token");
    let a = complete(&s, "orders", seq, &token).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = complete(&s, "orders", seq, &token).await;
    assert_problem(&a, StatusCode::GONE, "lock is lost");
    assert!(peek(&s, "orders", false).await.is_empty());
    let a = complete(&s, "nope", seq, &token).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "nope");
}

#[tokio::test]
async fn receive_takes_at_most_max_oldest_first() {
    let (_dir, s) = queue_app(Keys::default()).await;
    for n in 0..5 {
        enqueue(&s, "orders", &n.to_string(), &[]).await;
    }
    let a = receive(&s, "orders", "max=3").await;
    assert_eq!(sequences(a.body["messages"].as_array().unwrap()), [1, 2, 3]);
    let a = receive(&s, "orders", "max=3").await;
    assert_eq!(sequences(a.body["messages"].as_array().unwrap()), [4, 5]);
    for q in ["max=0", "max=101", "timeout=-1", "max=abc", "timeout=soon"] {
        let a = receive(&s, "orders", q).await;
        assert_problem(&a, StatusCode::BAD_REQUEST, "");
    }
    let a = receive(&s, "nope", "").await;
    assert_problem(&a, StatusCode::NOT_FOUND, "nope");
    let a = receive(&s, "orders", "sessionId=x").await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "has no sessions");
}

#[tokio::test]
async fn an_abandoned_message_is_delivered_again_with_a_new_token() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let seq = enqueue(&s, "orders", r#""again""#, &[]).await;
    let (m, first) = receive_one(&s, "orders").await;
    assert_eq!(m["deliveryCount"], 1);
    let a = act(&s, "orders", seq, &first, "abandon", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);

    let (m, second) = receive_one(&s, "orders").await;
    assert_eq!((seq_of(&m), &m["deliveryCount"]), (seq, &json!(2)));
    assert_ne!(first, second);
    // The first delivery's token settles nothing any more.
    let a = act(&s, "orders", seq, &first, "abandon", "").await;
    assert_problem(&a, StatusCode::GONE, "not locked with this token");
    let a = complete(&s, "orders", seq, &first).await;
    assert_problem(&a, StatusCode::GONE, "not locked with this token");
    let a = complete(&s, "orders", seq, &second).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);

    let a = act(&s, "orders", seq, &second, "explode", "").await;
    assert_problem(&a, StatusCode::NOT_FOUND, "explode");
}

#[tokio::test]
async fn the_last_allowed_delivery_abandoned_dead_letters_the_message() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let seq = enqueue(&s, "fragile", "1", &[]).await;
    for delivery in 1..=2 {
        let (m, token) = receive_one(&s, "fragile").await;
        assert_eq!(m["deliveryCount"], delivery);
        let a = act(&s, "fragile", seq, &token, "abandon", "").await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    }
    assert_eq!(
        receive(&s, "fragile", "").await.status,
        StatusCode::NO_CONTENT
    );
    let dead = peek(&s, "fragile", true).await;
    assert_eq!(sequences(&dead), [seq]);
    assert_eq!(dead[0]["deadLetterReason"], "MaxDeliveryCountExceeded");
    assert_eq!(dead[0]["state"], "DeadLettered");
}

#[tokio::test]
async fn a_dead_lettered_message_shows_its_reason_and_can_be_redriven() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let mut seqs = Vec::new();
    for n in 0..3 {
        seqs.push(enqueue(&s, "orders", &n.to_string(), &[]).await);
    }
    let (m, token) = receive_one(&s, "orders").await;
    let a = act(
        &s,
        "orders",
        seq_of(&m),
        &token,
        "deadletter",
        r#"{"reason": "BadOrder", "description": "qty is negative"}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    for _ in 0..2 {
        let (m, token) = receive_one(&s, "orders").await;
        let a = act(&s, "orders", seq_of(&m), &token, "deadletter", "").await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    }
    assert_eq!(
        receive(&s, "orders", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(peek(&s, "orders", false).await.is_empty());

    let dead = peek(&s, "orders", true).await;
    assert_eq!(sequences(&dead), seqs);
    assert_eq!(dead[0]["deadLetterReason"], "BadOrder");
    assert_eq!(dead[0]["deadLetterErrorDescription"], "qty is negative");
    assert_eq!(dead[0]["state"], "DeadLettered");
    assert_eq!(dead[1]["deadLetterReason"], "DeadLetteredByReceiver");
    assert_eq!(dead[1]["deadLetterErrorDescription"], Value::Null);
    // Peeking pages with `from` and `max`.
    let a = send(&s, get("/api/queues/orders/deadletter?from=2&max=1")).await;
    assert_eq!(sequences(a.body["messages"].as_array().unwrap()), [seqs[1]]);

    let a = send(
        &s,
        post(
            "/api/queues/orders/deadletter/redrive",
            &json!({"sequences": [seqs[1], 999]}).to_string(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, json!({"redriven": 1}));
    assert_eq!(
        sequences(&peek(&s, "orders", true).await),
        [seqs[0], seqs[2]]
    );
    let back = peek(&s, "orders", false).await;
    assert_eq!(sequences(&back), [seqs[1]]);
    assert_eq!(
        (&back[0]["state"], &back[0]["deliveryCount"]),
        (&json!("Active"), &json!(0))
    );
    assert_eq!(back[0]["deadLetterReason"], Value::Null);

    // No body: every dead-lettered message.
    let a = send(&s, empty("POST", "/api/queues/orders/deadletter/redrive")).await;
    assert_eq!(a.body, json!({"redriven": 2}), "{}", a.text);
    assert!(peek(&s, "orders", true).await.is_empty());
    assert_eq!(sequences(&peek(&s, "orders", false).await), seqs);
    let (m, _) = receive_one(&s, "orders").await;
    assert_eq!((seq_of(&m), &m["deliveryCount"]), (seqs[0], &json!(1)));

    let a = send(
        &s,
        post("/api/queues/orders/deadletter/redrive", r#"{"seqs": [1]}"#),
    )
    .await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "seqs");
    let a = act(
        &s,
        "orders",
        seqs[1],
        "1.1",
        "deadletter",
        r#"{"why": "x"}"#,
    )
    .await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "why");
    let a = send(&s, empty("POST", "/api/queues/nope/deadletter/redrive")).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "nope");
    let a = send(&s, get("/api/queues/nope/deadletter")).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "nope");
}

#[tokio::test]
async fn renewing_a_lock_answers_a_later_expiry() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let seq = enqueue(&s, "orders", "1", &[]).await;
    let (m, token) = receive_one(&s, "orders").await;
    let first = rfc3339_ms(&m["lockedUntil"]);
    // The lock runs from the store's clock in milliseconds: renewing in the very millisecond of
    // the receive would answer the same expiry, so renew until the clock has moved (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let renewed = loop {
        let a = act(&s, "orders", seq, &token, "renew", "").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let until = rfc3339_ms(&a.body["lockedUntil"]);
        assert!(until >= first, "{until} < {first}");
        if until > first {
            break until;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lock never moved"
        );
    };
    let p = peek(&s, "orders", false).await;
    assert_eq!(rfc3339_ms(&p[0]["lockedUntil"]), renewed);
    let a = complete(&s, "orders", seq, &token).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = act(&s, "orders", seq, &token, "renew", "").await;
    assert_problem(&a, StatusCode::GONE, "lock is lost");
}

#[tokio::test]
async fn a_session_is_received_by_one_holder_continued_and_released() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let a = send_with(&s, "tasks", "1", &[]).await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "requires sessions");

    let a1 = enqueue(&s, "tasks", r#""a1""#, &[("session-id", "a")]).await;
    let b1 = enqueue(&s, "tasks", r#""b1""#, &[("session-id", "b")]).await;
    let a2 = enqueue(&s, "tasks", r#""a2""#, &[("session-id", "a")]).await;

    // No session named: the oldest message's free session, all its messages in order.
    let got = receive(&s, "tasks", "max=10").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(
        sequences(got.body["messages"].as_array().unwrap()),
        [a1, a2]
    );
    let session = &got.body["session"];
    assert_eq!(session["sessionId"], "a", "{}", got.text);
    let token = session["sessionToken"]
        .as_str()
        .expect("a session token")
        .to_owned();
    assert!(session["lockedUntil"].is_string(), "{session}");

    // The next receiver gets the other session; session `a` is not for it.
    let other = receive(&s, "tasks", "max=10").await;
    assert_eq!(other.body["session"]["sessionId"], "b", "{}", other.text);
    assert_eq!(sequences(other.body["messages"].as_array().unwrap()), [b1]);
    let a = receive(&s, "tasks", "sessionId=a").await;
    assert_problem(&a, StatusCode::GONE, "held by another receiver");
    let a = receive(&s, "tasks", "sessionId=a&sessionToken=999").await;
    assert_problem(&a, StatusCode::GONE, "held by another receiver");

    // The holder goes on with its token.
    let a3 = enqueue(&s, "tasks", r#""a3""#, &[("session-id", "a")]).await;
    let more = receive(
        &s,
        "tasks",
        &format!("sessionId=a&sessionToken={token}&max=10"),
    )
    .await;
    assert_eq!(more.status, StatusCode::OK, "{}", more.text);
    assert_eq!(sequences(more.body["messages"].as_array().unwrap()), [a3]);
    assert_eq!(more.body["session"]["sessionToken"], token.as_str());
    let messages = got.body["messages"].as_array().unwrap().iter();
    for m in messages.chain(more.body["messages"].as_array().unwrap()) {
        let lock = m["lockToken"].as_str().unwrap();
        assert_eq!(
            complete(&s, "tasks", seq_of(m), lock).await.status,
            StatusCode::NO_CONTENT
        );
    }

    let renew = send(
        &s,
        empty(
            "POST",
            &format!("/api/queues/tasks/sessions/a/{token}/renew"),
        ),
    )
    .await;
    assert_eq!(renew.status, StatusCode::OK, "{}", renew.text);
    assert!(renew.body["lockedUntil"].is_string(), "{}", renew.text);
    let a = send(
        &s,
        empty(
            "POST",
            &format!("/api/queues/tasks/sessions/a/{token}/release"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = send(
        &s,
        empty(
            "POST",
            &format!("/api/queues/tasks/sessions/a/{token}/renew"),
        ),
    )
    .await;
    assert_problem(&a, StatusCode::GONE, "not held with this token");
    let a = send(
        &s,
        empty(
            "POST",
            &format!("/api/queues/tasks/sessions/a/{token}/steal"),
        ),
    )
    .await;
    assert_problem(&a, StatusCode::NOT_FOUND, "steal");

    // Released, the session is anyone's; the old token no longer continues it.
    let a4 = enqueue(&s, "tasks", r#""a4""#, &[("session-id", "a")]).await;
    let a = receive(&s, "tasks", &format!("sessionId=a&sessionToken={token}")).await;
    assert_problem(&a, StatusCode::GONE, "expired");
    let again = receive(&s, "tasks", "sessionId=a").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(sequences(again.body["messages"].as_array().unwrap()), [a4]);
    assert_ne!(again.body["session"]["sessionToken"], token.as_str());
}

#[tokio::test]
async fn a_scheduled_message_is_peeked_but_not_received_and_stats_count_every_state() {
    let (_dir, s) = queue_app(Keys::default()).await;
    let locked = enqueue(&s, "orders", r#""locked""#, &[]).await;
    let dead = enqueue(&s, "orders", r#""dead""#, &[]).await;
    let _active = enqueue(&s, "orders", r#""active""#, &[]).await;
    let when = in_an_hour();
    let scheduled = enqueue(
        &s,
        "orders",
        r#""later""#,
        &[("scheduled-enqueue-time", &when)],
    )
    .await;

    let (m, _) = receive_one(&s, "orders").await;
    assert_eq!(seq_of(&m), locked);
    let (m, token) = receive_one(&s, "orders").await;
    assert_eq!(seq_of(&m), dead);
    let a = act(&s, "orders", dead, &token, "deadletter", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);

    assert_eq!(
        stats(&s, "orders").await,
        json!({
            "activeMessageCount": 1,
            "scheduledMessageCount": 1,
            "lockedMessageCount": 1,
            "deadLetterMessageCount": 1
        })
    );
    let a = send(&s, get("/api/queues")).await;
    assert_eq!(
        a.body["queues"][1]["stats"]["scheduledMessageCount"], 1,
        "{}",
        a.text
    );

    // The active one is received; the scheduled one is not, however often one asks.
    let got = receive(&s, "orders", "max=10").await;
    assert_eq!(
        got.body["messages"].as_array().unwrap().len(),
        1,
        "{}",
        got.text
    );
    assert_eq!(
        receive(&s, "orders", "max=10").await.status,
        StatusCode::NO_CONTENT
    );
    let p = peek(&s, "orders", false).await;
    let later = p.iter().find(|m| seq_of(m) == scheduled).expect("peeked");
    assert_eq!(later["state"], "Scheduled");
    assert_eq!(later["scheduledEnqueueTime"], when.as_str());
    assert_eq!(later["deliveryCount"], 0);
}

#[tokio::test]
async fn peek_pages_and_bad_queries_are_problems() {
    let (_dir, s) = queue_app(Keys::default()).await;
    for n in 0..4 {
        enqueue(&s, "orders", &n.to_string(), &[]).await;
    }
    let a = send(&s, get("/api/queues/orders/messages?from=2&max=2")).await;
    assert_eq!(sequences(a.body["messages"].as_array().unwrap()), [2, 3]);
    let a = send(&s, get("/api/queues/orders/messages?from=5")).await;
    assert_eq!(a.body["messages"], json!([]), "{}", a.text);
    let a = send(&s, get("/api/queues/orders/messages?max=many")).await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "max");
    let a = send(&s, get("/api/queues/nope/messages")).await;
    assert_problem(&a, StatusCode::NOT_FOUND, "nope");
    let a = complete(&s, "orders", 0, "x").await;
    assert_problem(&a, StatusCode::GONE, "no message 0");
    let a = send(&s, empty("DELETE", "/api/queues/orders/messages/first/x")).await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "first");
    let a = send(
        &s,
        empty("POST", "/api/queues/orders/messages/first/x/abandon"),
    )
    .await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "first");
    let a = send(&s, empty("PATCH", "/api/queues/orders")).await;
    assert_problem(&a, StatusCode::METHOD_NOT_ALLOWED, "");
    let a = send(&s, get("/api/queues/orders/messages?max=0")).await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "max");
    let a = send(
        &s,
        post("/api/queues/orders/messages/head?sessionToken=t", ""),
    )
    .await;
    assert_problem(&a, StatusCode::BAD_REQUEST, "sessionId");
}

#[tokio::test]
async fn a_message_larger_than_the_body_limit_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!("{TOML}\n[limits]\nmax_body_bytes = 1000\n");
    let s = state(app_dir(dir.path(), &toml, &[]), Keys::default()).await;
    let big = format!("\"{}\"", "x".repeat(2000));
    let a = send_with(&s, "orders", &big, &[]).await;
    assert_problem(&a, StatusCode::PAYLOAD_TOO_LARGE, "1000");
    let a = send(
        &s,
        post(
            "/api/queues/orders/messages/batch",
            &format!("[{{\"body\": {big}}}]"),
        ),
    )
    .await;
    assert_problem(&a, StatusCode::PAYLOAD_TOO_LARGE, "1000");
    assert!(peek(&s, "orders", false).await.is_empty());
    enqueue(&s, "orders", &format!("\"{}\"", "x".repeat(500)), &[]).await;
}

#[tokio::test]
async fn only_a_host_key_may_use_the_queues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!("{TOML}\n[functions.Echo]\nworkflow = \"echo\"\nauth = \"function\"\n");
    let wf = "document: {dsl: '1.0.0', namespace: t, name: echo, version: '1.0.0'}\ndo:\n  - e: {set: '${ . }'}\n";
    let app = app_dir(dir.path(), &toml, &[("echo.yaml", wf)]);
    let mut keys = Keys::default();
    let host = keys.create(None, "master", "t").expect("key");
    let function = keys.create(Some("Echo"), "default", "t").expect("key");
    let s = state(app, keys).await;

    let routes = [
        ("GET", "/api/queues"),
        ("GET", "/api/queues/orders"),
        ("PUT", "/api/queues/orders"),
        ("POST", "/api/queues/orders/messages"),
        ("GET", "/api/queues/orders/messages"),
        ("POST", "/api/queues/orders/messages/batch"),
        ("POST", "/api/queues/orders/messages/head"),
        ("DELETE", "/api/queues/orders/messages/1/1.1"),
        ("POST", "/api/queues/orders/messages/1/1.1/abandon"),
        ("POST", "/api/queues/tasks/sessions/a/1/release"),
        ("GET", "/api/queues/orders/deadletter"),
        ("POST", "/api/queues/orders/deadletter/redrive"),
        ("DELETE", "/api/queues/orders"),
    ];
    for (method, uri) in routes {
        for key in [None, Some(function.as_str()), Some("0".repeat(64).as_str())] {
            let mut req = Request::builder().method(method).uri(uri);
            if let Some(k) = key {
                req = req.header("x-functions-key", k);
            }
            let a = send(&s, req.body(Body::empty()).unwrap()).await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {key:?}: {}",
                a.text
            );
            assert!(is_problem(&a), "{method} {uri}: {}", a.text);
        }
    }
    // Nothing the refused requests asked for happened.
    let req = Request::get("/api/queues/orders").header("x-functions-key", &host);
    let a = send(&s, req.body(Body::empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["stats"]["activeMessageCount"], 0, "{}", a.text);

    // The host key opens them, in the header or in `?code=`.
    let req = Request::post("/api/queues/orders/messages").header("x-functions-key", &host);
    let a = send(&s, req.body(Body::from("1")).unwrap()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = send(
        &s,
        empty(
            "POST",
            &format!("/api/queues/orders/messages/head?code={host}&max=1"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = send(&s, get(&format!("/api/queues/orders/messages?code={host}"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["messages"][0]["state"], "Locked", "{}", a.text);
}

#[tokio::test]
async fn a_host_without_a_store_has_no_queues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = "document: {dsl: '1.0.0', namespace: t, name: echo, version: '1.0.0'}\ndo:\n  - e: {set: '${ . }'}\n";
    let app = app_dir(
        dir.path(),
        "[functions.Echo]\nworkflow = \"echo\"\n",
        &[("echo.yaml", wf)],
    );
    let s = state(app, Keys::default()).await;
    for req in [
        get("/api/queues"),
        get("/api/queues/orders"),
        json_body("PUT", "/api/queues/orders", "{}"),
        post("/api/queues/orders/messages", "1"),
        empty("POST", "/api/queues/orders/messages/head"),
    ] {
        let a = send(&s, req).await;
        assert_problem(&a, StatusCode::NOT_FOUND, "no store");
    }
}

/// The server's `/api/queues/{queue}/messages/head` over a real socket.
async fn receive_live(
    http: &reqwest::Client,
    base: &str,
    queue: &str,
    query: &str,
) -> (reqwest::StatusCode, Value) {
    let resp = http
        .post(format!("{base}/api/queues/{queue}/messages/head?{query}"))
        .send()
        .await
        .expect("the server answers");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_polling_receive_waits_and_is_woken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(dir.path(), TOML, &[]);
    let (_state, live) = serve(app, Keys::default(), Map::new()).await;
    let http = reqwest::Client::new();
    let base = live.base.clone();

    // Nothing comes: it answers 204 when its timeout is up, not before.
    let start = tokio::time::Instant::now();
    let (status, _) = receive_live(&http, &base, "orders", "timeout=0.3").await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );

    // A send from another task wakes a receive waiting for up to 30 s.
    let waiting = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let got = receive_live(&http, &base, "orders", "timeout=30").await;
            (got, start.elapsed())
        })
    };
    let sender = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/api/queues/orders/messages"))
                .header("content-type", "application/json")
                .body(r#"{"wake": true}"#)
                .send()
                .await
                .expect("sent")
                .status()
        })
    };
    assert_eq!(sender.await.unwrap(), reqwest::StatusCode::CREATED);
    let ((status, body), took) = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the receive answered within 15 s")
        .unwrap();
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["messages"][0]["body"], json!({"wake": true}), "{body}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    // A scheduled message coming due wakes a waiting receive too: it cannot be received at
    // the first look, so the answer proves the receive waited for it.
    let due = SystemTime::now() + Duration::from_millis(1500);
    let when = humantime::format_rfc3339_millis(due).to_string();
    let sent = http
        .post(format!("{base}/api/queues/orders/messages"))
        .header("scheduled-enqueue-time", &when)
        .body("due")
        .send()
        .await
        .expect("sent");
    assert_eq!(sent.status(), reqwest::StatusCode::CREATED);
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(15),
        receive_live(&http, &base, "orders", "timeout=30"),
    )
    .await
    .expect("the receive answered within 15 s");
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["messages"][0]["body"], "due", "{body}");
    assert!(SystemTime::now() >= due, "received before it was due");
}
