//! The messaging approach of the reference scenario, on the sample app with its queues and
//! queue-triggered checks on a real SQLite file: `ValidateQueued` answers 202 + Location, the
//! Location answers 202 until all six checks have reported and then Validate's answer; the
//! serial pipeline gives the same answer.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_host::{App, Keys};
use baton_store::queues::QueueStore;
use serde_json::{Value, json};
use support::{get, post, send, state};

const PATIENCE: Duration = Duration::from_secs(20);

fn sample_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/person-validation/samples")
            .join(name),
    )
    .unwrap()
}

/// Polls `uri` (bounded) until it answers something other than 202; every answer before that
/// must be a 202 with a Location.
async fn settle(s: &baton_api::ApiState, uri: &str) -> support::Answer {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let a = send(s, get(uri)).await;
        if a.status != StatusCode::ACCEPTED {
            return a;
        }
        assert!(
            a.headers.contains_key("location"),
            "{uri}: a 202 names where to poll"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{uri}: still 202 after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn validate(s: &baton_api::ApiState, body: &str) -> Value {
    let a = send(s, post("/api/Validate", body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_queued_and_its_pipeline_answer_as_validate_does() {
    let s = state(App::sample().unwrap(), Keys::default()).await;
    for sample in ["ada.json", "incomplete.json"] {
        let body = sample_file(sample);
        let expected = validate(&s, &body).await;
        for route in ["ValidateQueued", "ValidateQueuedPipeline"] {
            let a = send(&s, post(&format!("/api/{route}"), &body)).await;
            assert_eq!(a.status, StatusCode::ACCEPTED, "{route}: {}", a.text);
            let location = a.headers["location"].to_str().unwrap().to_owned();
            let id = a.body["id"].as_str().unwrap().to_owned();
            let done = settle(&s, &location).await;
            assert_eq!(
                done.status,
                StatusCode::OK,
                "{route} {sample}: {}",
                done.text
            );
            assert_eq!(done.body["output"], expected, "{route} {sample}");
            let result = send(&s, get(&format!("/api/GetResult?id={id}"))).await;
            assert_eq!(result.status, StatusCode::OK);
            assert_eq!(result.body, expected, "{route} {sample}: GetResult");
        }
    }
    // Every message was completed: nothing is left on any queue.
    let queues = s.queues.as_ref().unwrap().store();
    for q in queues.queues().await.unwrap() {
        let st = queues.queue_stats(&q.name).await.unwrap();
        assert_eq!(
            (st.active, st.locked, st.dead_lettered),
            (0, 0, 0),
            "queue {}",
            q.name
        );
    }
}

/// Copies the sample app to `dir` without the function the `checks-zip` queue triggers.
fn sample_without_zip_check(dir: &Path) -> App {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/person-validation");
    for sub in ["schemas", "workflows", "samples"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
        }
    }
    let toml = std::fs::read_to_string(from.join("baton.toml")).unwrap();
    let block =
        "[functions.CheckZipQueued]\nworkflow = \"check-zip-queued\"\nqueue = \"checks-zip\"\n";
    assert!(
        toml.contains(block),
        "the sample binds checks-zip to CheckZipQueued"
    );
    std::fs::write(dir.join("baton.toml"), toml.replace(block, "")).unwrap();
    App::from_dir(dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_waits_for_the_last_check() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(sample_without_zip_check(dir.path()), Keys::default()).await;
    let body = sample_file("incomplete.json");
    let expected = validate(&s, &body).await;
    let a = send(&s, post("/api/ValidateQueued", &body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();

    // The zip check's message waits on its queue, untriggered, once the other five are done.
    let queues = s.queues.as_ref().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let message = loop {
        let got = queues
            .receive("checks-zip", 1, Duration::from_secs(1), None)
            .await
            .unwrap();
        if let Some(m) = got.messages.into_iter().next() {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message on checks-zip"
        );
    };
    let sent: Value = serde_json::from_slice(&message.body).unwrap();
    assert_eq!(sent["id"], id.as_str(), "the message names the instance");
    assert_eq!(
        sent["person"],
        serde_json::from_str::<Value>(&body).unwrap()
    );
    assert_eq!(message.correlation_id.as_deref(), Some(id.as_str()));
    let durable = s.durable.as_ref().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let h = durable.history(&id, 0, 1000).await.unwrap();
        let raised = h.iter().filter(|e| e.kind == "EventRaised").count();
        if raised == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{raised} of 5 checks reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        let a = send(&s, get(&format!("/api/GetResult?id={id}"))).await;
        assert_eq!(
            a.status,
            StatusCode::ACCEPTED,
            "five of six is not an answer: {}",
            a.text
        );
    }

    // The last check reports by hand, as the zip check would.
    let report = send(
        &s,
        Request::post(format!("/api/instances/{id}/raiseEvent/person-validation.check.CheckZip"))
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"id": 6, "check": "CheckZip", "message": "Zip is null or not 5 digits", "failed": true})
                    .to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(report.status, StatusCode::ACCEPTED, "{}", report.text);
    let done = settle(&s, &format!("/api/GetResult?id={id}")).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body, expected);
}
