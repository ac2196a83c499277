//! Events addressed to an instance (`emit` with the `batoninstance` attribute), on a real
//! SQLite file: delivered to the addressee in the sender's commit, exactly once, whatever the
//! order of sending and listening; one addressed to an id that no instance has is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use baton_core::{Format, NoResolver, load_str};
use baton_engine::Runner;
use baton_engine::durable::{ADDRESSEE, Durable, DurableOptions, StartRequest, events};
use baton_store::{RuntimeStatus, Store};
use baton_store_sqlite::{Options, SqliteStore};
use serde_json::{Value, json};

/// Waits for two `ping`s, then answers their data.
const LISTENER: &str = r#"document: {dsl: '1.0.0', namespace: test, name: listener, version: '1.0.0'}
do:
  - pings:
      listen:
        to:
          all:
            - with: {type: ping.a}
            - with: {type: ping.b}
"#;

/// Sends `ping.<.kind>` to the instance `.to`.
const SENDER: &str = r#"document: {dsl: '1.0.0', namespace: test, name: sender, version: '1.0.0'}
do:
  - ping:
      emit:
        event:
          with:
            source: /test
            type: '${ "ping." + .kind }'
            batoninstance: '${ .to }'
            data: {from: '${ .kind }'}
"#;

fn engine(dir: &std::path::Path) -> Arc<Durable<SqliteStore>> {
    let store = Arc::new(SqliteStore::open(dir.join("baton.db"), Options::default()).unwrap());
    let runner = Runner::builder().build().unwrap();
    let engine = Arc::new(Durable::new(
        store,
        Arc::new(runner),
        DurableOptions::default(),
    ));
    for (hash, src) in [("listener", LISTENER), ("sender", SENDER)] {
        engine.pin(
            hash,
            Arc::new(load_str(src, Format::Yaml, &NoResolver).unwrap()),
        );
    }
    engine
}

fn start(id: &str, definition: &str, input: Value) -> StartRequest {
    StartRequest {
        id: id.to_owned(),
        function: "Test".to_owned(),
        definition: definition.to_owned(),
        input,
        idempotency: None,
    }
}

/// Runs the engine's work until the sender is dropped.
fn serve(engine: &Arc<Durable<SqliteStore>>) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(engine).run(async move {
        let _ = stopped.await;
    }));
    stop
}

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_addressed_event_reaches_its_instance_once() {
    assert_eq!(ADDRESSEE, "batoninstance");
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let stop = serve(&engine);
    engine
        .start(start("L", "listener", json!({})))
        .await
        .unwrap();
    for kind in ["b", "a"] {
        let id = format!("S{kind}");
        engine
            .start(start(&id, "sender", json!({"to": "L", "kind": kind})))
            .await
            .unwrap();
        let sent = engine.wait(&id, PATIENCE).await.unwrap().unwrap();
        assert_eq!(sent.status, RuntimeStatus::Completed, "{sent:?}");
    }
    let l = engine.wait("L", PATIENCE).await.unwrap().unwrap();
    assert_eq!(l.status, RuntimeStatus::Completed, "{l:?}");
    assert_eq!(
        l.output,
        Some(json!([{"from": "a"}, {"from": "b"}])),
        "each filter took its event"
    );
    let received: Vec<Value> = engine
        .store()
        .history("L", 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == events::EVENT_RAISED)
        .map(|e| e.data["event"].clone())
        .collect();
    assert_eq!(received.len(), 2, "each event arrived once: {received:?}");
    assert!(
        received.iter().all(|e| e[ADDRESSEE] == "L"),
        "the events keep their address: {received:?}"
    );
    drop(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_addressed_to_no_instance_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let stop = serve(&engine);
    engine
        .start(start("S", "sender", json!({"to": "nobody", "kind": "a"})))
        .await
        .unwrap();
    let s = engine.wait("S", PATIENCE).await.unwrap().unwrap();
    assert_eq!(s.status, RuntimeStatus::Completed, "{s:?}");
    // The message to `nobody` is claimed, finds no instance and goes: nothing stays due.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while engine.store().next_due().await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message to `nobody` is still stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(engine.store().instance("nobody").await.unwrap().is_none());
    drop(stop);
}
