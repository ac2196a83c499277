//! Managing durable instances on a real SQLite file: suspend and resume (what arrives meanwhile
//! is held and applied on resume, even across a restart), terminate while suspended, rewind of a
//! failed instance (what had succeeded is not run again), and `customStatus`.

// Test helpers outside #[test] functions: a failure must panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_core::{Format, NoResolver, load_str};
use baton_engine::durable::{Durable, DurableOptions, StartRequest};
use baton_engine::{FunctionError, Runner};
use baton_store::{Event, InstanceRow, RuntimeStatus, Store};
use baton_store_sqlite::{Options, SqliteStore};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// A call that waits for the test's gate, then a signal, then the answer.
const GATED: &str = r#"document: {dsl: '1.0.0', namespace: test, name: gated, version: '1.0.0'}
do:
  - first:
      call: gated
      with: {n: 1}
      export: {as: '${ {first: .} }'}
  - hold: {listen: {to: {one: {with: {type: go}}}}}
  - answer: {set: {first: '${ $context.first }'}}
"#;

/// A call that succeeds, a durable wait, then a call that may fail.
const FLAKY: &str = r#"document: {dsl: '1.0.0', namespace: test, name: flaky, version: '1.0.0'}
do:
  - prepare: {call: prepare, with: {v: '${ .v }'}}
  - pause: {wait: PT0.01S}
  - flaky: {call: flaky, with: {v: '${ .v }'}}
"#;

/// Fails in its first step unless the secrets say the configuration is fixed.
const CONFIGURED: &str = r#"document: {dsl: '1.0.0', namespace: test, name: configured, version: '1.0.0'}
use: {secrets: [mode]}
do:
  - check: {set: {mode: '${ $secrets.mode | if . == "broken" then error("the configuration is broken") else . end }'}}
"#;

/// A call bounded by a timeout; `slow` outlasts it on its first call only.
const BOUNDED: &str = r#"document: {dsl: '1.0.0', namespace: test, name: bounded, version: '1.0.0'}
do:
  - slow:
      call: slow
      timeout: {after: PT1S}
"#;

const LONG_WAIT: &str = r#"document: {dsl: '1.0.0', namespace: test, name: long, version: '1.0.0'}
do:
  - sleep: {wait: PT1H}
"#;

/// Reports its stage through `$context.customStatus`, then clears it.
const STAGED: &str = r#"document: {dsl: '1.0.0', namespace: test, name: staged, version: '1.0.0'}
do:
  - mark:
      set: {stage: one}
      export: {as: '${ {customStatus: {stage: .stage}} }'}
  - hold: {listen: {to: {one: {with: {type: go}}}}}
  - clear:
      set: {done: true}
      export: {as: '${ {} }'}
"#;

struct Rig {
    engine: Arc<Durable<SqliteStore>>,
    /// Calls of `gated`, `prepare` and `flaky`.
    gated: Arc<AtomicUsize>,
    prepared: Arc<AtomicUsize>,
    flaky: Arc<AtomicUsize>,
    slow: Arc<AtomicUsize>,
    /// `gated` answers once a permit is added here.
    gate: Arc<Semaphore>,
}

/// An engine on the file at `path`; `flaky` fails its first `failures` calls; `mode` is the
/// `$secrets.mode` its workflows see.
fn rig(path: &Path, failures: usize, mode: &str) -> Rig {
    let store = Arc::new(SqliteStore::open(path, Options::default()).unwrap());
    let (gated, prepared, flaky) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let slow = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&slow);
    let gate = Arc::new(Semaphore::new(0));
    let (g, p, f, open) = (
        Arc::clone(&gated),
        Arc::clone(&prepared),
        Arc::clone(&flaky),
        Arc::clone(&gate),
    );
    let runner = Runner::builder()
        .secrets(serde_json::Map::from_iter([(
            "mode".to_owned(),
            json!(mode),
        )]))
        .function("gated", move |args: Value| {
            g.fetch_add(1, Ordering::SeqCst);
            let open = Arc::clone(&open);
            async move {
                open.acquire().await.unwrap().forget();
                Ok(json!({"n": args["n"]}))
            }
        })
        .function("prepare", move |args: Value| {
            p.fetch_add(1, Ordering::SeqCst);
            async move { Ok(json!({"v": args["v"], "prepared": true})) }
        })
        .function("flaky", move |args: Value| {
            let call = f.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if call <= failures {
                    Err(FunctionError::new(format!("call {call} fails")))
                } else {
                    Ok(json!({"done": args["v"], "call": call}))
                }
            }
        })
        .function("slow", move |_| {
            let call = s.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if call == 1 {
                    // Far past the task's timeout; the test ends before this does.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(json!({"call": call}))
            }
        })
        .build()
        .unwrap();
    let options = DurableOptions {
        lease: Duration::from_secs(5),
        ..DurableOptions::default()
    };
    let engine = Arc::new(Durable::new(store, Arc::new(runner), options));
    for (hash, src) in [
        ("gated", GATED),
        ("flaky", FLAKY),
        ("configured", CONFIGURED),
        ("long", LONG_WAIT),
        ("staged", STAGED),
        ("bounded", BOUNDED),
    ] {
        engine.pin(
            hash,
            Arc::new(load_str(src, Format::Yaml, &NoResolver).unwrap()),
        );
    }
    Rig {
        engine,
        gated,
        prepared,
        flaky,
        slow,
        gate,
    }
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

fn serve(engine: &Arc<Durable<SqliteStore>>) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(engine).run(async move {
        let _ = stopped.await;
    }));
    stop
}

const PATIENCE: Duration = Duration::from_secs(20);

/// Polls (bounded) until `done` holds; panics naming `what` otherwise.
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn row(engine: &Durable<SqliteStore>, id: &str) -> InstanceRow {
    engine
        .store()
        .instance(id)
        .await
        .unwrap()
        .expect("the instance exists")
}

/// Polls until the row of `id` satisfies `done`, and returns it.
async fn row_until(
    engine: &Durable<SqliteStore>,
    id: &str,
    what: &str,
    done: impl Fn(&InstanceRow) -> bool,
) -> InstanceRow {
    let done = &done;
    until(what, move || async move { done(&row(engine, id).await) }).await;
    row(engine, id).await
}

/// Polls until no work at all is left in the store (every message consumed).
async fn no_work_left(engine: &Durable<SqliteStore>, what: &str) {
    until(what, move || async move {
        engine.store().next_due().await.unwrap().is_none()
    })
    .await;
}

async fn history(engine: &Durable<SqliteStore>, id: &str) -> Vec<Event> {
    engine.store().history(id, 0, 10_000).await.unwrap()
}

fn kinds(history: &[Event]) -> Vec<&str> {
    history.iter().map(|e| e.kind.as_str()).collect()
}

fn count(history: &[Event], kind: &str) -> usize {
    history.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_instance_holds_what_arrives_and_applies_it_in_order_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let r = rig(&path, 0, "fixed");
    r.engine.start(request("held", "gated")).await.unwrap();
    // Resuming an instance that runs does nothing.
    r.engine.resume("held", "too early").await.unwrap();
    let stop = serve(&r.engine);
    let gated = &*r.gated;
    until("the gated call starts", move || async move {
        gated.load(Ordering::SeqCst) == 1
    })
    .await;
    r.engine.suspend("held", "maintenance").await.unwrap();
    // Suspending a suspended instance does nothing either.
    r.engine.suspend("held", "again").await.unwrap();
    row_until(&r.engine, "held", "the instance is suspended", |row| {
        row.status == RuntimeStatus::Suspended
    })
    .await;
    // The call finishes and the signal arrives while the instance is suspended.
    r.gate.add_permits(1);
    no_work_left(&r.engine, "the call's result is consumed").await;
    r.engine
        .raise(
            "held",
            json!({"type": "go", "specversion": "1.0", "id": "e1", "source": "test"}),
        )
        .await
        .unwrap();
    no_work_left(&r.engine, "the signal is consumed").await;
    let suspended = row(&r.engine, "held").await;
    assert_eq!(suspended.status, RuntimeStatus::Suspended);
    let before = history(&r.engine, "held").await;
    assert_eq!(
        count(&before, "ActivityCompleted"),
        0,
        "{:?}",
        kinds(&before)
    );
    assert_eq!(count(&before, "EventRaised"), 0, "{:?}", kinds(&before));

    // What was held survives a restart of the process.
    let _ = stop.send(());
    let r = rig(&path, 0, "fixed");
    let _stop = serve(&r.engine);
    r.engine.resume("held", "maintenance over").await.unwrap();
    let done = r.engine.wait("held", PATIENCE).await.unwrap().unwrap();
    assert_eq!(done.status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.output, Some(json!({"first": {"n": 1}})));
    assert_eq!(
        r.gated.load(Ordering::SeqCst),
        0,
        "the call did not run again"
    );
    let after = history(&r.engine, "held").await;
    let kinds = kinds(&after);
    assert_eq!(count(&after, "ExecutionSuspended"), 1, "{kinds:?}");
    assert_eq!(count(&after, "ExecutionResumed"), 1, "{kinds:?}");
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap();
    // The call's result is applied first (the listen starts), then the signal.
    assert!(
        at("ExecutionSuspended") < at("ExecutionResumed"),
        "{kinds:?}"
    );
    assert!(
        at("ExecutionResumed") < at("ActivityCompleted"),
        "{kinds:?}"
    );
    assert!(at("ActivityCompleted") < at("EventRaised"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"ExecutionCompleted"));
    let suspended = &after[at("ExecutionSuspended")];
    assert_eq!(suspended.data["reason"], "maintenance");
    let resumed = &after[at("ExecutionResumed")];
    assert_eq!(resumed.data["reason"], "maintenance over");
    let completed = &after[at("ActivityCompleted")];
    assert!(
        completed.data["arrived"].as_i64().unwrap() <= completed.data["now"].as_i64().unwrap(),
        "a held result records when it arrived: {completed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_ends_a_suspended_instance() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"), 0, "fixed");
    r.engine.start(request("sleeper", "long")).await.unwrap();
    let _stop = serve(&r.engine);
    r.engine.suspend("sleeper", "hold on").await.unwrap();
    row_until(&r.engine, "sleeper", "the instance is suspended", |row| {
        row.status == RuntimeStatus::Suspended
    })
    .await;
    r.engine.terminate("sleeper", "not needed").await.unwrap();
    let row = r.engine.wait("sleeper", PATIENCE).await.unwrap().unwrap();
    assert_eq!(row.status, RuntimeStatus::Terminated, "{row:?}");
    // The hour-long timer went with it.
    assert_eq!(r.engine.store().next_due().await.unwrap(), None);
    let events = history(&r.engine, "sleeper").await;
    let kinds = kinds(&events);
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap();
    assert!(
        at("ExecutionSuspended") < at("ExecutionTerminated"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"ExecutionTerminated"));
}

/// The sequence number of the failed activity result in `history`, the `n`th (from 0).
fn failed_result(history: &[Event], n: usize) -> u64 {
    history
        .iter()
        .filter(|e| e.kind == "ActivityCompleted" && e.data["failed"] == true)
        .nth(n)
        .unwrap_or_else(|| panic!("no failed result #{n} in {:?}", kinds(history)))
        .seq
}

fn rewinds(history: &[Event]) -> Vec<&Event> {
    history
        .iter()
        .filter(|e| e.kind == "ExecutionRewound")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_runs_a_failed_instance_again_from_the_failed_call_only() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"), 1, "fixed");
    r.engine.start(request("flaky-1", "flaky")).await.unwrap();
    let _stop = serve(&r.engine);
    let failed = r.engine.wait("flaky-1", PATIENCE).await.unwrap().unwrap();
    assert_eq!(failed.status, RuntimeStatus::Failed, "{failed:?}");
    assert!(failed.error.is_some());
    assert_eq!(r.flaky.load(Ordering::SeqCst), 1);

    r.engine
        .rewind("flaky-1", "the callee is fixed")
        .await
        .unwrap();
    let row = row_until(
        &r.engine,
        "flaky-1",
        "the rewound instance completes",
        |row| row.status == RuntimeStatus::Completed,
    )
    .await;
    assert_eq!(row.output, Some(json!({"done": "x", "call": 2})));
    assert_eq!(row.error, None);
    assert_eq!(row.custom_status, None);
    assert_eq!(r.prepared.load(Ordering::SeqCst), 1, "prepare ran once");
    assert_eq!(r.flaky.load(Ordering::SeqCst), 2);
    let events = history(&r.engine, "flaky-1").await;
    let rewound = rewinds(&events);
    assert_eq!(rewound.len(), 1, "{:?}", kinds(&events));
    assert_eq!(rewound[0].data["reason"], "the callee is fixed");
    assert_eq!(rewound[0].data["skipped"], failed_result(&events, 0));
    assert_eq!(
        count(&events, "TimerFired"),
        1,
        "the wait was not waited again"
    );
    assert_eq!(kinds(&events).last(), Some(&"ExecutionCompleted"));
    assert_eq!(r.engine.store().next_due().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_rewound_gets_its_whole_timeout_again() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"), 0, "fixed");
    r.engine
        .start(request("bounded-1", "bounded"))
        .await
        .unwrap();
    let _stop = serve(&r.engine);
    let failed = row_until(&r.engine, "bounded-1", "the call times out", |row| {
        row.status.is_terminal()
    })
    .await;
    assert_eq!(failed.status, RuntimeStatus::Failed, "{failed:?}");
    let error = failed.error.clone().unwrap_or_default();
    assert!(
        error["type"].as_str().unwrap_or("").ends_with("/timeout"),
        "{error}"
    );

    r.engine.rewind("bounded-1", "try again").await.unwrap();
    let row = row_until(&r.engine, "bounded-1", "the rewound call answers", |row| {
        row.status == RuntimeStatus::Completed
    })
    .await;
    assert_eq!(row.output, Some(json!({"call": 2})), "{row:?}");
    assert_eq!(r.slow.load(Ordering::SeqCst), 2, "called once more");
    let events = history(&r.engine, "bounded-1").await;
    assert_eq!(rewinds(&events).len(), 1, "{:?}", kinds(&events));
    assert_eq!(count(&events, "ExecutionFailed"), 1, "{:?}", kinds(&events));
    // The timeout armed again by the rewind was cancelled when the call answered.
    assert_eq!(r.engine.store().next_due().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_rewound_twice_leaves_out_both_failures() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"), 2, "fixed");
    r.engine.start(request("flaky-2", "flaky")).await.unwrap();
    let _stop = serve(&r.engine);
    let failed = r.engine.wait("flaky-2", PATIENCE).await.unwrap().unwrap();
    assert_eq!(failed.status, RuntimeStatus::Failed, "{failed:?}");
    r.engine.rewind("flaky-2", "first try").await.unwrap();
    // The second call is made only after the rewind is committed, so a Failed row read after
    // it is the second failure.
    let (flaky, engine) = (&*r.flaky, &*r.engine);
    until("the rewound instance fails again", move || async move {
        flaky.load(Ordering::SeqCst) == 2
            && row(engine, "flaky-2").await.status == RuntimeStatus::Failed
    })
    .await;
    r.engine.rewind("flaky-2", "second try").await.unwrap();
    let row = row_until(&r.engine, "flaky-2", "the instance completes", |row| {
        row.status == RuntimeStatus::Completed
    })
    .await;
    assert_eq!(row.output, Some(json!({"done": "x", "call": 3})));
    assert_eq!(r.prepared.load(Ordering::SeqCst), 1, "prepare ran once");
    assert_eq!(r.flaky.load(Ordering::SeqCst), 3);
    let events = history(&r.engine, "flaky-2").await;
    let rewound = rewinds(&events);
    assert_eq!(rewound.len(), 2, "{:?}", kinds(&events));
    assert_eq!(rewound[0].data["skipped"], failed_result(&events, 0));
    assert_eq!(rewound[1].data["skipped"], failed_result(&events, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_start_failed_is_rewound_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let broken = rig(&path, 0, "broken");
    let started = broken
        .engine
        .start(request("configured", "configured"))
        .await
        .unwrap();
    assert_eq!(started.status, RuntimeStatus::Failed, "{started:?}");
    // The configuration is fixed and the host restarted.
    let r = rig(&path, 0, "fixed");
    let _stop = serve(&r.engine);
    r.engine.rewind("configured", "fixed").await.unwrap();
    let row = row_until(&r.engine, "configured", "the instance completes", |row| {
        row.status == RuntimeStatus::Completed
    })
    .await;
    assert_eq!(row.output, Some(json!({"mode": "fixed"})));
    assert_eq!(row.error, None);
    let events = history(&r.engine, "configured").await;
    let rewound = rewinds(&events);
    assert_eq!(rewound.len(), 1, "{:?}", kinds(&events));
    assert_eq!(events[0].kind, "ExecutionStarted");
    assert_eq!(rewound[0].data["skipped"], events[0].seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_of_an_instance_that_has_not_failed_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"), 0, "fixed");
    r.engine.start(request("fine", "flaky")).await.unwrap();
    r.engine.start(request("sleeper", "long")).await.unwrap();
    let _stop = serve(&r.engine);
    let done = r.engine.wait("fine", PATIENCE).await.unwrap().unwrap();
    assert_eq!(done.status, RuntimeStatus::Completed, "{done:?}");
    r.engine.rewind("fine", "why not").await.unwrap();
    r.engine.rewind("sleeper", "why not").await.unwrap();
    // Both messages are consumed when only the hour-long timer is left.
    let now = r.engine.store().now().await.unwrap();
    let engine = &*r.engine;
    until("the rewind messages are consumed", move || async move {
        engine
            .store()
            .next_due()
            .await
            .unwrap()
            .is_some_and(|due| due > now + 30 * 60 * 1000)
    })
    .await;
    let fine = row(&r.engine, "fine").await;
    assert_eq!(fine.status, RuntimeStatus::Completed);
    assert_eq!(fine.output, done.output);
    assert_eq!(
        fine.revision,
        done.revision + 1,
        "the message was only marked done"
    );
    let sleeper = row(&r.engine, "sleeper").await;
    assert_eq!(sleeper.status, RuntimeStatus::Running);
    for id in ["fine", "sleeper"] {
        assert!(rewinds(&history(&r.engine, id).await).is_empty(), "{id}");
    }
    assert_eq!(r.prepared.load(Ordering::SeqCst), 1);
    assert_eq!(r.flaky.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_status_follows_the_workflow_context() {
    let dir = tempfile::tempdir().unwrap();
    let r = rig(&dir.path().join("baton.db"), 0, "fixed");
    let started = r.engine.start(request("staged", "staged")).await.unwrap();
    assert_eq!(started.custom_status, Some(json!({"stage": "one"})));
    assert_eq!(
        row(&r.engine, "staged").await.custom_status,
        Some(json!({"stage": "one"})),
        "stored with the first step"
    );
    let _stop = serve(&r.engine);
    r.engine
        .raise(
            "staged",
            json!({"type": "go", "specversion": "1.0", "id": "e1", "source": "test"}),
        )
        .await
        .unwrap();
    let done = r.engine.wait("staged", PATIENCE).await.unwrap().unwrap();
    assert_eq!(done.status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.custom_status, None, "cleared by the last export");
}
