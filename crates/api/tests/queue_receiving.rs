//! Queues through the HTTP API, on a real SQLite file: peek-lock receiving and settling, the
//! dead-letter queue and redrive, sessions, scheduled messages, statistics, body limits, auth
//! and long polling over a real socket.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_host::Keys;
use serde_json::{Map, Value, json};
use support::queues::*;
use support::*;

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
