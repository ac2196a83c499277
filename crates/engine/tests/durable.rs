//! The durable engine on a real SQLite file: activities as leased work items, durable timers,
//! restarts, terminate, idempotency keys.

// Test helpers outside #[test] functions: a failure must panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::{Format, NoResolver, load_str};
use baton_engine::durable::Activity;
use baton_engine::durable::{Durable, DurableOptions, StartError, StartRequest};
use baton_engine::{Call, Runner};
use baton_store::{IdempotencyKey, InstanceRow, RuntimeStatus, Store, WorkKind};
use baton_store_sqlite::{Options, SqliteStore};
use serde_json::{Value, json};

/// Six activities in parallel, then a short durable wait, then the answer.
const FAN_OUT: &str = r#"document: {dsl: '1.0.0', namespace: test, name: fan-out, version: '1.0.0'}
do:
  - checks:
      fork:
        branches:
          - c1: {call: check, with: {n: 1, v: '${ .v }'}}
          - c2: {call: check, with: {n: 2, v: '${ .v }'}}
          - c3: {call: check, with: {n: 3, v: '${ .v }'}}
          - c4: {call: check, with: {n: 4, v: '${ .v }'}}
          - c5: {call: check, with: {n: 5, v: '${ .v }'}}
          - c6: {call: check, with: {n: 6, v: '${ .v }'}}
  - pause: {wait: PT0.05S}
  - answer: {set: '${ {sum: (map(.n) | add)} }'}
"#;

const LONG_WAIT: &str = r#"document: {dsl: '1.0.0', namespace: test, name: long, version: '1.0.0'}
do:
  - sleep: {wait: PT1H}
"#;

struct Rig {
    engine: Arc<Durable<SqliteStore>>,
    /// The idempotency key of every call `check` served, in order.
    keys: Arc<Mutex<Vec<String>>>,
}

impl Rig {
    /// How many calls `check` served.
    fn calls(&self) -> usize {
        self.keys.lock().unwrap().len()
    }
}

fn rig(path: &std::path::Path) -> Rig {
    let store = Arc::new(SqliteStore::open(path, Options::default()).unwrap());
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&keys);
    let runner = Runner::builder()
        .function_with_call("check", move |args: Value, call: Call| {
            seen.lock().unwrap().push(call.idempotency_key);
            async move { Ok(json!({"n": args["n"], "v": args["v"]})) }
        })
        .build()
        .unwrap();
    let options = DurableOptions {
        lease: Duration::from_secs(5),
        ..DurableOptions::default()
    };
    let engine = Arc::new(Durable::new(store, Arc::new(runner), options));
    for (hash, src) in [("fan-out", FAN_OUT), ("long", LONG_WAIT)] {
        engine.pin(
            hash,
            Arc::new(load_str(src, Format::Yaml, &NoResolver).unwrap()),
        );
    }
    Rig { engine, keys }
}

fn request(id: &str, definition: &str) -> StartRequest {
    StartRequest {
        id: id.to_owned(),
        function: "Test".to_owned(),
        definition: definition.to_owned(),
        input: json!({"v": "x"}),
        idempotency: None,
    }
}

/// Waits (bounded) until `id` reaches a terminal status, through the engine's own wait.
async fn settled(engine: &Durable<SqliteStore>, id: &str) -> InstanceRow {
    let row = engine
        .wait(id, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the instance exists");
    assert!(
        row.status.is_terminal(),
        "instance {id} did not finish within 20 s: {row:?}"
    );
    row
}

fn serve(engine: &Arc<Durable<SqliteStore>>) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(engine).run(async move {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_runs_its_activities_as_work_items_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"));
    let started = r.engine.start(request("i1", "fan-out")).await.unwrap();
    assert_eq!(started.revision, 1);
    assert_eq!(started.status, RuntimeStatus::Running);
    let _stop = serve(&r.engine);
    let row = settled(&r.engine, "i1").await;
    assert_eq!(row.status, RuntimeStatus::Completed, "{row:?}");
    assert_eq!(row.output, Some(json!({"sum": 21})));
    assert_eq!(r.calls(), 6);
    let history = r.engine.store().history("i1", 0, 1000).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "ActivityScheduled").count(),
        6
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "ActivityCompleted").count(),
        6
    );
    assert!(kinds.contains(&"TimerFired"), "{kinds:?}");
    assert_eq!(kinds.first(), Some(&"ExecutionStarted"));
    assert_eq!(kinds.last(), Some(&"ExecutionCompleted"));
    // Nothing is left over.
    assert_eq!(r.engine.store().next_due().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_before_a_restart_finishes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    {
        // Started and committed, then the process "dies" before any work is carried out.
        let r = rig(&path);
        r.engine
            .start(request("survivor", "fan-out"))
            .await
            .unwrap();
        assert_eq!(r.calls(), 0);
    }
    let r = rig(&path);
    let _stop = serve(&r.engine);
    let row = settled(&r.engine, "survivor").await;
    assert_eq!(row.status, RuntimeStatus::Completed);
    assert_eq!(row.output, Some(json!({"sum": 21})));
    assert_eq!(r.calls(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_claimed_by_a_node_that_died_is_taken_over_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let r = rig(&path);
    r.engine.start(request("orphan", "fan-out")).await.unwrap();
    // A node claims every activity with a short lease and then disappears.
    let taken = r.engine.store().claim("dead-node", 200, 10).await.unwrap();
    assert_eq!(taken.len(), 6);
    assert!(taken.iter().all(|w| w.kind == WorkKind::Activity));
    let _stop = serve(&r.engine);
    let row = settled(&r.engine, "orphan").await;
    assert_eq!(row.status, RuntimeStatus::Completed);
    assert_eq!(r.calls(), 6, "each activity ran once, on the survivor");
    // The survivor handed the function the keys the dead node's claims carried.
    let mut claimed: Vec<String> = taken
        .iter()
        .map(|w| {
            let a: Activity = serde_json::from_value(w.payload.clone()).unwrap();
            a.idempotency_key
        })
        .collect();
    let mut served = r.keys.lock().unwrap().clone();
    claimed.sort();
    served.sort();
    assert_eq!(served, claimed);
    assert!(
        served.iter().all(|k| k.starts_with("orphan:/do/0/checks/")),
        "{served:?}"
    );
    served.dedup();
    assert_eq!(served.len(), 6, "one key per activity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_ends_a_waiting_instance() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"));
    r.engine.start(request("sleeper", "long")).await.unwrap();
    let _stop = serve(&r.engine);
    r.engine
        .terminate("sleeper", "no longer needed")
        .await
        .unwrap();
    let row = settled(&r.engine, "sleeper").await;
    assert_eq!(row.status, RuntimeStatus::Terminated);
    // The hour-long timer went with it.
    assert_eq!(r.engine.store().next_due().await.unwrap(), None);
}

#[tokio::test]
async fn the_same_idempotency_key_does_not_start_a_second_instance() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"));
    let now = r.engine.store().now().await.unwrap();
    let key = IdempotencyKey {
        key: "order-42".to_owned(),
        request_hash: "h1".to_owned(),
        expires_at: now + 60_000,
    };
    let mut first = request("first", "long");
    first.idempotency = Some(key.clone());
    r.engine.start(first).await.unwrap();
    let mut again = request("second", "long");
    again.idempotency = Some(key);
    match r.engine.start(again).await {
        Err(StartError::Duplicate {
            instance,
            request_hash,
        }) => {
            assert_eq!(instance, "first");
            assert_eq!(request_hash, "h1");
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert!(r.engine.store().instance("second").await.unwrap().is_none());
}

/// Waits for a signal, then answers with the version of the workflow that ran.
fn versioned(version: &str) -> String {
    format!(
        "document: {{dsl: '1.0.0', namespace: test, name: versioned, version: '{version}'}}\n\
         do:\n  - hold: {{listen: {{to: {{one: {{with: {{type: go}}}}}}}}}}\n  - answer: {{set: {{ran: '{version}'}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_keeps_the_definition_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"));
    let load = |src: &str| Arc::new(load_str(src, Format::Yaml, &NoResolver).unwrap());
    let v1 = versioned("1.0.0");
    let h1 = r.engine.register(&v1, load(&v1)).await.unwrap();
    assert_eq!(
        r.engine.register(&v1, load(&v1)).await.unwrap(),
        h1,
        "same text, same hash"
    );
    r.engine.start(request("on-v1", &h1)).await.unwrap();
    // The workflow is edited and redeployed while the first instance waits.
    let v2 = versioned("2.0.0");
    let h2 = r.engine.register(&v2, load(&v2)).await.unwrap();
    assert_ne!(h1, h2);
    r.engine.start(request("on-v2", &h2)).await.unwrap();
    let _stop = serve(&r.engine);
    for id in ["on-v1", "on-v2"] {
        r.engine
            .raise(
                id,
                json!({"type": "go", "specversion": "1.0", "id": id, "source": "test"}),
            )
            .await
            .unwrap();
    }
    let first = settled(&r.engine, "on-v1").await;
    let second = settled(&r.engine, "on-v2").await;
    assert_eq!(first.output, Some(json!({"ran": "1.0.0"})), "{first:?}");
    assert_eq!(second.output, Some(json!({"ran": "2.0.0"})), "{second:?}");
    assert_eq!(first.definition, h1);
    let stored = r.engine.store().definition(&h1).await.unwrap().unwrap();
    assert_eq!(stored.version, "1.0.0");
    assert_eq!(stored.name, "test/versioned");
    assert_eq!(stored.source, v1);
}

/// A callee that accepts with 202 and answers its status a second later.
async fn accepting_callee() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(format!("{method} {}", uri.path()));
            if uri.path() == "/start" {
                let mut h = HeaderMap::new();
                h.insert("location", "/status/1".parse().unwrap());
                h.insert("retry-after", "1".parse().unwrap());
                (StatusCode::ACCEPTED, h, axum::Json(json!({})))
            } else {
                (
                    StatusCode::OK,
                    HeaderMap::new(),
                    axum::Json(json!({"result": 42})),
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn polling_engine(path: &std::path::Path, addr: std::net::SocketAddr) -> Arc<Durable<SqliteStore>> {
    let store = Arc::new(SqliteStore::open(path, Options::default()).unwrap());
    let runner = Runner::builder()
        .http(baton_engine::HttpOptions {
            policy: baton_engine::outbound::AddressPolicy::allowing([addr.ip().into()]),
            ..baton_engine::HttpOptions::default()
        })
        .build()
        .unwrap();
    let engine = Arc::new(Durable::new(
        store,
        Arc::new(runner),
        DurableOptions::default(),
    ));
    let src = format!(
        "document: {{dsl: '1.0.0', namespace: test, name: polled, version: '1.0.0'}}\n\
         do:\n  - c: {{call: http, with: {{method: post, endpoint: 'http://{addr}/start'}}}}\n"
    );
    engine.pin(
        "polled",
        Arc::new(load_str(&src, Format::Yaml, &NoResolver).unwrap()),
    );
    engine
}

/// The asynchronous pattern is durable: the wait between polls is a stored timer, so a node
/// that stops while waiting leaves a poll to make, not a call to make again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_an_accepted_call_resumes_after_a_restart_without_calling_again() {
    let (addr, seen) = accepting_callee().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    {
        let engine = polling_engine(&path, addr);
        engine.start(request("polled-1", "polled")).await.unwrap();
        let stop = serve(&engine);
        // Until the 202 is committed with the timer of the first poll.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = engine.store().history("polled-1", 0, 100).await.unwrap();
            if events.iter().any(|e| e.kind == "TimerCreated") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no poll timer");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
    }
    let engine = polling_engine(&path, addr);
    let _stop = serve(&engine);
    let row = settled(&engine, "polled-1").await;
    assert_eq!(row.status, RuntimeStatus::Completed, "{row:?}");
    assert_eq!(row.output, Some(json!({"result": 42})));
    assert_eq!(
        *seen.lock().unwrap(),
        ["POST /start", "GET /status/1"],
        "one call, one poll"
    );
}
