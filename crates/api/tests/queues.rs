//! Queues through the HTTP API, on a real SQLite file: managing queues, sending (one message,
//! duplicates, batches). Receiving, settling and auth are in `queue_receiving.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_host::Keys;
use serde_json::{Value, json};
use support::queues::*;
use support::*;

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
