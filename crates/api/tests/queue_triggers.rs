//! Queue-triggered functions on a real SQLite file: a message's instance completes it, a fault
//! abandons it (so the delivery count and the dead-letter queue apply, each redelivery
//! rewinding the failed instance), a terminated instance dead-letters it; sessions keep their
//! order; `call: baton.queues.send` sends, with duplicate detection on its message id.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use baton_api::ApiState;
use baton_host::{App, Keys};
use baton_store::RuntimeStatus;
use baton_store::queues::{Message, NewMessage, QueueStats, QueueStore};
use serde_json::{Value, json};
use support::{app_dir, post, send, state};

const PATIENCE: Duration = Duration::from_secs(30);

/// Calls of the stand-in, by key, in arrival order.
type Calls = Arc<Mutex<Vec<(String, u64)>>>;
/// Calls so far, by key.
type Counts = Arc<Mutex<HashMap<String, u64>>>;

/// `POST /fail/{n}/{key}` answers 500 to the first `n` calls for `key`, then 200 with the
/// call's number; `POST /log/{key}/{value}` records the value and answers 200.
async fn stand_in() -> (u16, Calls) {
    use axum::extract::{Path, State};
    let calls: Calls = Arc::default();
    let counts: Counts = Arc::default();
    async fn fail(
        State((calls, counts)): State<(Calls, Counts)>,
        Path((n, key)): Path<(u64, String)>,
    ) -> (StatusCode, axum::Json<Value>) {
        let call = {
            let mut c = counts.lock().unwrap();
            let e = c.entry(key.clone()).or_default();
            *e += 1;
            *e
        };
        calls.lock().unwrap().push((key, call));
        if call <= n {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"call": call})),
            )
        } else {
            (StatusCode::OK, axum::Json(json!({"call": call})))
        }
    }
    async fn log(
        State((calls, _)): State<(Calls, Counts)>,
        Path((key, value)): Path<(String, u64)>,
    ) -> axum::Json<Value> {
        calls.lock().unwrap().push((key, value));
        axum::Json(json!({}))
    }
    let router = axum::Router::new()
        .route("/fail/{n}/{key}", axum::routing::post(fail))
        .route("/log/{key}/{value}", axum::routing::post(log))
        .with_state((Arc::clone(&calls), counts));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (port, calls)
}

/// An app whose `Work` function is triggered by queue `work`, running `workflow`.
async fn app(dir: &std::path::Path, queue: &str, workflow: &str) -> ApiState {
    let toml = format!(
        "[http]\nallow = [\"127.0.0.1\"]\n\
         [queues.work]\nlock_duration = \"5s\"\n{queue}\n\
         [queues.out]\n\
         [functions.Work]\nworkflow = \"work\"\nqueue = \"work\"\nmax_concurrent_calls = 2\n\
         [functions.Send]\nworkflow = \"send\"\n\
         [functions.SendTo]\nworkflow = \"send-to\"\n"
    );
    let send_to = "document: {dsl: '1.0.0', namespace: t, name: send-to, version: '1.0.0'}\n\
        do:\n  - one: {call: baton.queues.send, with: {queue: '${ .queue }', body: 1, timeToLive: '${ .ttl // 60 }'}}\n";
    let send_wf = "document: {dsl: '1.0.0', namespace: t, name: send, version: '1.0.0'}\n\
        do:\n  - one:\n      call: baton.queues.send\n      with: {queue: out, body: '${ .body }', messageId: fixed, sessionId: null}\n      \
        export: {as: '${ [.] }'}\n  \
        - two:\n      call: baton.queues.send\n      with: {queue: out, body: '${ $workflow.input.body }', messageId: fixed}\n      \
        export: {as: '${ $context + [.] }'}\n  \
        - three:\n      call: baton.queues.send\n      with: {queue: out, body: plain text, contentType: text/plain, correlationId: c-1, timeToLive: 30s, properties: {kind: note}}\n      \
        output: {as: '${ $context + [.] }'}\n";
    let app: App = app_dir(
        dir,
        &toml,
        &[
            ("work.yaml", workflow),
            ("send.yaml", send_wf),
            ("send-to.yaml", send_to),
        ],
    );
    state(app, Keys::default()).await
}

fn workflow(body: &str) -> String {
    format!("document: {{dsl: '1.0.0', namespace: t, name: work, version: '1.0.0'}}\ndo:\n{body}")
}

async fn enqueue(s: &ApiState, queue: &str, m: NewMessage) -> i64 {
    let sent = s
        .queues
        .as_ref()
        .unwrap()
        .store()
        .enqueue(queue, vec![m])
        .await
        .unwrap();
    match &sent[0] {
        baton_store::queues::Sent::Accepted { sequence, .. } => *sequence,
        other => panic!("not accepted: {other:?}"),
    }
}

fn json_message(id: &str, body: Value) -> NewMessage {
    NewMessage {
        message_id: Some(id.to_owned()),
        body: body.to_string().into_bytes(),
        content_type: Some("application/json".to_owned()),
        ..NewMessage::default()
    }
}

async fn stats(s: &ApiState, queue: &str) -> QueueStats {
    s.queues
        .as_ref()
        .unwrap()
        .store()
        .queue_stats(queue)
        .await
        .unwrap()
}

/// Polls (bounded) until `done` holds.
async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn dead_letters(s: &ApiState, queue: &str) -> Vec<Message> {
    s.queues
        .as_ref()
        .unwrap()
        .store()
        .peek(queue, 0, 100, true)
        .await
        .unwrap()
}

/// The one instance of `Work` (each test sends it one message), once it is stored.
async fn the_instance(s: &ApiState) -> baton_store::InstanceRow {
    let durable = s.durable.as_ref().unwrap();
    let filter = baton_store::Filter {
        function: Some("Work".to_owned()),
        ..baton_store::Filter::default()
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let page = durable.list(&filter, 10, None).await.unwrap();
        assert!(
            page.items.len() <= 1,
            "one message starts one instance: {page:?}"
        );
        if let Some(row) = page.items.into_iter().next() {
            return row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trigger started no instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_faults_then_success_completes_the_message_once() {
    let (port, calls) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = workflow(&format!(
        "  - call:\n      call: http\n      with: {{method: post, endpoint: 'http://127.0.0.1:{port}/fail/9/m1'}}\n      output: {{as: '${{ .call }}'}}\n"
    ));
    let s = app(dir.path(), "", &wf).await;
    enqueue(&s, "work", json_message("m1", json!({"n": 1}))).await;
    until("the message is completed", || async {
        let st = stats(&s, "work").await;
        st.active + st.locked + st.dead_lettered == 0 && calls.lock().unwrap().len() == 10
    })
    .await;
    assert!(
        dead_letters(&s, "work").await.is_empty(),
        "not dead-lettered"
    );
    let row = the_instance(&s).await;
    assert_eq!(row.status, RuntimeStatus::Completed, "{row:?}");
    assert_eq!(row.output, Some(json!(10)), "the tenth call succeeded");
    assert_eq!(row.input, json!({"n": 1}), "the body is the input");
    let h = s
        .durable
        .as_ref()
        .unwrap()
        .history(&row.id, 0, 1000)
        .await
        .unwrap();
    let rewinds = h.iter().filter(|e| e.kind == "ExecutionRewound").count();
    assert_eq!(rewinds, 9, "each redelivery rewound the one instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_faults_dead_letter_the_message() {
    let (port, calls) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = workflow(&format!(
        "  - call:\n      call: http\n      with: {{method: post, endpoint: 'http://127.0.0.1:{port}/fail/10/m2'}}\n"
    ));
    let s = app(dir.path(), "", &wf).await;
    let seq = enqueue(&s, "work", json_message("m2", json!({}))).await;
    until("the message is dead-lettered", || async {
        stats(&s, "work").await.dead_lettered == 1
    })
    .await;
    let dl = dead_letters(&s, "work").await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].sequence, seq);
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some("MaxDeliveryCountExceeded")
    );
    assert_eq!(dl[0].delivery_count, 10);
    assert_eq!(calls.lock().unwrap().len(), 10, "one call per delivery");
    let row = the_instance(&s).await;
    assert_eq!(row.status, RuntimeStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_instance_dead_letters_its_message_and_a_text_body_is_a_string() {
    let dir = tempfile::tempdir().unwrap();
    let wf = workflow("  - hold: {listen: {to: {one: {with: {type: never}}}}}\n");
    let s = app(dir.path(), "", &wf).await;
    enqueue(
        &s,
        "work",
        NewMessage {
            message_id: Some("m3".to_owned()),
            body: b"plain words".to_vec(),
            content_type: Some("text/plain".to_owned()),
            ..NewMessage::default()
        },
    )
    .await;
    until("the message is locked", || async {
        stats(&s, "work").await.locked == 1
    })
    .await;
    let row = the_instance(&s).await;
    assert_eq!(row.input, json!("plain words"));
    s.durable
        .as_ref()
        .unwrap()
        .control(
            &row.id,
            baton_host::Control::Terminate {
                reason: "enough".to_owned(),
            },
        )
        .await
        .unwrap();
    until("the message is dead-lettered", || async {
        stats(&s, "work").await.dead_lettered == 1
    })
    .await;
    let dl = dead_letters(&s, "work").await;
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some("InstanceTerminated")
    );
    assert!(
        dl[0]
            .dead_letter_description
            .as_deref()
            .unwrap()
            .contains(&row.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_queue_keeps_each_sessions_order() {
    let (port, calls) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = workflow(&format!(
        "  - log:\n      call: http\n      with: {{method: post, endpoint: '${{ \"http://127.0.0.1:{port}/log/\" + .s + \"/\" + (.n | tostring) }}'}}\n"
    ));
    let s = app(dir.path(), "sessions = true", &wf).await;
    let per = 8;
    let mut batch = Vec::new();
    for n in 0..per {
        for session in ["a", "b", "c"] {
            batch.push(NewMessage {
                session_id: Some(session.to_owned()),
                ..json_message(&format!("{session}{n}"), json!({"s": session, "n": n}))
            });
        }
    }
    s.queues
        .as_ref()
        .unwrap()
        .store()
        .enqueue("work", batch)
        .await
        .unwrap();
    until("every message is handled", || async {
        let st = stats(&s, "work").await;
        st.active + st.locked == 0 && calls.lock().unwrap().len() == 3 * per
    })
    .await;
    let calls = calls.lock().unwrap().clone();
    for session in ["a", "b", "c"] {
        let order: Vec<u64> = calls
            .iter()
            .filter(|(k, _)| k == session)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(
            order,
            (0..per as u64).collect::<Vec<_>>(),
            "session {session}"
        );
    }
    assert_eq!(stats(&s, "work").await.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_send_with_duplicate_detection() {
    let dir = tempfile::tempdir().unwrap();
    let wf = workflow("  - hold: {listen: {to: {one: {with: {type: never}}}}}\n");
    let s = app(dir.path(), "", &wf).await;
    let a = send(&s, post("/api/Send", r#"{"body": {"x": 1}}"#)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body[0]["queue"], "out");
    assert_eq!(a.body[0]["duplicate"], false);
    assert_eq!(a.body[0]["messageId"], "fixed");
    assert!(a.body[0]["sequenceNumber"].is_i64());
    assert_eq!(
        a.body[1]["duplicate"], true,
        "the same id within the window: {}",
        a.text
    );
    let peeked = s
        .queues
        .as_ref()
        .unwrap()
        .store()
        .peek("out", 0, 10, false)
        .await
        .unwrap();
    assert_eq!(peeked.len(), 2, "the duplicate was dropped");
    assert_eq!(
        serde_json::from_slice::<Value>(&peeked[0].body).unwrap(),
        json!({"x": 1})
    );
    let text = &peeked[1];
    assert_eq!(text.body, b"plain text");
    assert_eq!(text.content_type.as_deref(), Some("text/plain"));
    assert_eq!(text.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(text.properties["kind"], "note");
    let ttl = text.expires_at.unwrap() - text.enqueued_at;
    assert_eq!(ttl, 30_000, "timeToLive 30s");
    assert!(
        text.message_id.contains(":"),
        "an id made from the call's key: {}",
        text.message_id
    );

    let a = send(&s, post("/api/SendTo", r#"{"queue": "nope"}"#)).await;
    assert!(support::is_problem(&a), "{}", a.text);
    assert!(a.text.contains("no queue `nope`"), "{}", a.text);
    let a = send(
        &s,
        post("/api/SendTo", r#"{"queue": "out", "ttl": "soon"}"#),
    )
    .await;
    assert!(support::is_problem(&a), "{}", a.text);
    assert!(a.text.contains("time to live"), "{}", a.text);
}
