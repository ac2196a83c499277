//! The express runner against real timers (paused tokio time) and a real HTTP server on
//! 127.0.0.1:0 standing in for user functions.

#![allow(clippy::expect_used, clippy::unwrap_used)] // helpers of tests may fail loudly

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::interp::{Status, TraceKind};
use baton_core::{ErrorKind, Format, NoResolver, Workflow, load_str};
use baton_engine::outbound::AddressPolicy;
use baton_engine::{FunctionError, HttpOptions, Runner};
use serde_json::{Value, json};
use tokio::time::Instant;

const HEAD: &str = "document: {dsl: '1.0.0', namespace: test, name: t, version: '1.0.0'}\n";

fn wf(body: &str) -> Workflow {
    load_str(&format!("{HEAD}{body}"), Format::Yaml, &NoResolver).expect("loads")
}

/// A native function that fails `fails` times, then answers; it records when it was called.
fn flaky(fails: u32) -> (Runner, Arc<std::sync::Mutex<Vec<Instant>>>) {
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    let runner = Runner::builder()
        .function("flaky", move |_| {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut c = seen.lock().expect("lock");
                    c.push(Instant::now());
                    c.len() as u32
                };
                if n <= fails {
                    Err(FunctionError {
                        status: 503,
                        message: format!("attempt {n} failed"),
                    })
                } else {
                    Ok(json!({"attempt": n}))
                }
            }
        })
        .build()
        .expect("runner");
    (runner, calls)
}

fn gaps(calls: &[Instant]) -> Vec<u64> {
    calls
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect()
}

const RETRY: &str = "do:\n  - t:\n      try:\n        - c: {call: flaky}\n      catch:\n        errors:\n          with: {status: 503}\n        retry:\n";

#[tokio::test(start_paused = true)]
async fn exponential_retries_wait_exactly_their_backoff() {
    let w = wf(&format!(
        "{RETRY}          delay: PT1S\n          backoff: {{exponential: {{}}}}\n          limit: {{attempt: {{count: 5}}}}\n"
    ));
    let (runner, calls) = flaky(3);
    let run = runner.run(&w, json!({})).await;
    assert_eq!(run.status, Status::Completed);
    assert_eq!(run.output, Some(json!({"attempt": 4})));
    assert_eq!(gaps(&calls.lock().expect("lock")), vec![1000, 2000, 4000]);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_fall_through_to_catch_do() {
    let w = wf(
        "do:\n  - t:\n      try:\n        - c: {call: flaky}\n      catch:\n        as: e\n        retry:\n          delay: PT0.5S\n          backoff: {linear: {}}\n          limit: {attempt: {count: 2}}\n        do:\n          - give-up: {set: {gaveUp: '${ $e.detail }'}}\n",
    );
    let (runner, calls) = flaky(100);
    let run = runner.run(&w, json!({})).await;
    assert_eq!(run.output, Some(json!({"gaveUp": "attempt 3 failed"})));
    assert_eq!(gaps(&calls.lock().expect("lock")), vec![500, 1000]);
}

#[tokio::test(start_paused = true)]
async fn uncaught_function_errors_fault_the_instance() {
    let w = wf("do:\n  - outer:\n      for: {in: '[1]'}\n      do:\n        - c: {call: flaky}\n");
    let (runner, _) = flaky(100);
    let run = runner.run(&w, json!({})).await;
    let e = run.error.expect("faulted");
    assert_eq!(
        (run.status, e.status, e.kind()),
        (Status::Faulted, 503, Some(ErrorKind::Runtime))
    );
    assert_eq!(e.instance.as_deref(), Some("/do/0/outer/do/0/c"));
}

#[tokio::test(start_paused = true)]
async fn competing_waits_finish_with_the_fastest() {
    let w = wf(
        "do:\n  - race:\n      fork:\n        compete: true\n        branches:\n          - slow:\n              do:\n                - w: {wait: PT3S}\n                - s: {set: {winner: slow}}\n          - fast:\n              do:\n                - w: {wait: PT1S}\n                - s: {set: {winner: fast}}\n",
    );
    let runner = Runner::builder().build().expect("runner");
    let started = Instant::now();
    let run = runner.run(&w, json!({})).await;
    assert_eq!(run.output, Some(json!({"winner": "fast"})));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(
        run.trace
            .iter()
            .any(|t| &*t.name == "slow" && t.kind == TraceKind::Cancelled)
    );
}

#[tokio::test(start_paused = true)]
async fn fan_out_waits_overlap() {
    let w = wf(
        "do:\n  - f:\n      fork:\n        branches:\n          - a: {wait: PT1.5S}\n          - b: {wait: PT1S}\n          - c: {wait: PT1.2S}\n",
    );
    let runner = Runner::builder().build().expect("runner");
    let started = Instant::now();
    let run = runner.run(&w, json!({"x": 1})).await;
    assert_eq!(run.output, Some(json!([{"x": 1}, {"x": 1}, {"x": 1}])));
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn workflow_timeout_stops_the_instance() {
    let w = wf("timeout: {after: PT2S}\ndo:\n  - long: {wait: PT1H}\n");
    let runner = Runner::builder().build().expect("runner");
    let started = Instant::now();
    let run = runner.run(&w, json!({})).await;
    assert_eq!(run.error.and_then(|e| e.kind()), Some(ErrorKind::Timeout));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn listening_without_an_event_source_faults_instead_of_hanging() {
    let w = wf(
        "do:\n  - l:\n      listen:\n        to:\n          one:\n            with: {type: x}\n",
    );
    let run = Runner::builder()
        .build()
        .expect("runner")
        .run(&w, json!({}))
        .await;
    assert_eq!(run.status, Status::Faulted);
    assert!(
        run.error
            .and_then(|e| e.detail)
            .unwrap_or_default()
            .contains("events")
    );
}

/// A runner whose calls may reach the stand-ins on loopback (the default policy refuses them).
fn loopback_runner() -> Runner {
    loopback_runner_with(HttpOptions::default())
}

/// [`loopback_runner`] with other HTTP settings.
fn loopback_runner_with(options: HttpOptions) -> Runner {
    Runner::builder()
        .http(HttpOptions {
            policy: AddressPolicy::allowing(["127.0.0.0/8".parse().unwrap()]),
            ..options
        })
        .build()
        .expect("runner")
}

/// A stand-in for a user's HTTP function: fails with 503 `failures` times, then echoes.
async fn stand_in(failures: u32) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    use axum::Json;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    let hits = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new()
        .route(
            "/echo/{name}",
            post(
                move |State(h): State<Arc<AtomicU32>>,
                      Path(name): Path<String>,
                      Json(body): Json<Value>| async move {
                    let n = h.fetch_add(1, Ordering::SeqCst) + 1;
                    if n <= failures {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(json!({"title": "busy"})),
                        )
                    } else {
                        (
                            StatusCode::OK,
                            Json(json!({"name": name, "body": body, "attempt": n})),
                        )
                    }
                },
            ),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

#[tokio::test]
async fn http_calls_reach_the_endpoint_and_retry_on_503() {
    let (addr, hits) = stand_in(2).await;
    let w = wf(&format!(
        "do:\n  - t:\n      try:\n        - c:\n            call: http\n            with:\n              method: post\n              endpoint: http://{addr}/echo/{{who}}\n              body: {{n: '${{ .n }}'}}\n      catch:\n        errors:\n          with: {{type: 'https://serverlessworkflow.io/dsl/errors/types/communication', status: 503}}\n        retry:\n          delay: {{milliseconds: 10}}\n          limit: {{attempt: {{count: 3}}}}\n"
    ));
    let run = loopback_runner()
        .run(&w, json!({"who": "ada", "n": 7}))
        .await;
    assert_eq!(
        run.output,
        Some(json!({"name": "ada", "body": {"n": 7}, "attempt": 3})),
        "{:?}",
        run.error
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(run.calls, 3);
}

#[tokio::test]
async fn http_errors_carry_the_status_and_response_output_has_the_exchange() {
    let (addr, _) = stand_in(0).await;
    let w = wf(&format!(
        "do:\n  - c:\n      call: http\n      with:\n        method: get\n        endpoint: http://{addr}/missing\n"
    ));
    let run = loopback_runner().run(&w, json!({})).await;
    let e = run.error.expect("404 faults");
    assert_eq!((e.kind(), e.status), (Some(ErrorKind::Communication), 404));

    let w = wf(&format!(
        "do:\n  - c:\n      call: http\n      with:\n        method: post\n        endpoint: http://{addr}/echo/x\n        body: {{}}\n        output: response\n"
    ));
    let run = loopback_runner().run(&w, json!({})).await;
    let out = run.output.expect("completed");
    assert_eq!(out["statusCode"], 200);
    assert_eq!(out["request"]["method"], "POST");
    assert_eq!(out["content"]["name"], "x");
    assert!(
        out["headers"]["content-type"]
            .as_str()
            .unwrap_or_default()
            .contains("json")
    );
}

#[tokio::test]
async fn unreachable_endpoints_are_communication_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let w = wf(&format!(
        "do:\n  - c:\n      call: http\n      with:\n        method: get\n        endpoint: http://{addr}/\n"
    ));
    let run = loopback_runner().run(&w, json!({})).await;
    assert_eq!(
        run.error.and_then(|e| e.kind()),
        Some(ErrorKind::Communication)
    );
}

#[tokio::test]
async fn a_panicking_function_fails_the_call_instead_of_hanging() {
    let w = wf(
        "do:\n  - t:\n      try:\n        - c: {call: boom}\n      catch:\n        as: e\n        do:\n          - h: {set: {caught: '${ $e.detail }'}}\n",
    );
    let runner = Runner::builder()
        .function("boom", |_| async move {
            if std::hint::black_box(true) {
                panic!("deliberate test panic");
            }
            Ok(json!(null))
        })
        .build()
        .expect("runner");
    let run = runner.run(&w, json!({})).await;
    assert_eq!(run.output, Some(json!({"caught": "the function panicked"})));
}

#[tokio::test]
async fn pure_workflows_finish_inside_begin_with_their_input_handed_back() {
    let w = Arc::new(wf("do:\n  - s: {set: '${ {got: .n} }'}\n"));
    let runner = Arc::new(Runner::builder().build().expect("runner"));
    match runner.begin(&w, json!({"n": 1}), "id-1".to_owned()) {
        baton_engine::Begun::Finished(run) => {
            assert_eq!(run.instance_id, "id-1");
            assert_eq!(run.status, Status::Completed);
            assert_eq!(run.output, Some(json!({"got": 1})));
            assert_eq!(run.input, json!({"n": 1}));
        }
        baton_engine::Begun::Suspended(s) => panic!("a pure workflow suspended: {s:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn instances_that_wait_are_handed_back_and_finish_when_driven() {
    let (runner, calls) = flaky(0);
    let w = Arc::new(wf(
        "do:\n  - w: {wait: PT1S}\n  - c: {call: flaky}\n  - s: {set: '${ {attempt: .attempt, n: $workflow.input.n} }'}\n",
    ));
    let runner = Arc::new(runner);
    let started = Instant::now();
    let baton_engine::Begun::Suspended(s) = runner.begin(&w, json!({"n": 2}), "id-2".to_owned())
    else {
        panic!("a waiting workflow finished inside begin");
    };
    assert_eq!(s.input(), &json!({"n": 2}));
    assert!(
        calls.lock().unwrap().is_empty(),
        "nothing is called before the wait"
    );
    let run = tokio::spawn(s.finish()).await.expect("the run ends");
    assert_eq!(run.status, Status::Completed);
    assert_eq!(run.output, Some(json!({"attempt": 1, "n": 2})));
    assert_eq!(run.calls, 1);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn calls_made_by_the_first_step_are_carried_by_the_suspended_run() {
    let (runner, _calls) = flaky(0);
    let w = Arc::new(wf("do:\n  - c: {call: flaky}\n"));
    let runner = Arc::new(runner);
    let baton_engine::Begun::Suspended(s) = runner.begin(&w, json!({}), "id-3".to_owned()) else {
        panic!("a workflow that calls finished inside begin");
    };
    let run = s.finish().await;
    assert_eq!(run.status, Status::Completed, "{:?}", run.error);
    assert_eq!(run.output, Some(json!({"attempt": 1})));
    assert_eq!(run.calls, 1);
}

/// A callee using the asynchronous pattern: `POST /api/start` answers 202 with a relative
/// `Location`; the status answers 202 `pending` times (with `Retry-After: 0`, or without it),
/// then 200 with the result. Records each request's method and path.
async fn async_callee(pending: usize, retry_after: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let log = Arc::clone(&log);
        async move {
            let auth = headers.contains_key("authorization");
            let polls = {
                let mut l = log.lock().unwrap();
                l.push(format!("{method} {} auth={auth}", uri.path()));
                l.iter()
                    .filter(|r| r.starts_with("GET /api/status"))
                    .count()
            };
            // The start's Location is relative to it; the status's repeats an absolute path.
            let location = if uri.path() == "/api/start" {
                "status/42"
            } else {
                "/api/status/42"
            };
            let mut accepted = axum::http::HeaderMap::new();
            accepted.insert("location", location.parse().unwrap());
            if retry_after {
                accepted.insert("retry-after", "0".parse().unwrap());
            }
            if uri.path() == "/api/start" || polls <= pending {
                (
                    StatusCode::ACCEPTED,
                    accepted,
                    axum::Json(json!({"state": "running"})),
                )
            } else {
                (
                    StatusCode::OK,
                    HeaderMap::new(),
                    axum::Json(json!({"result": 42})),
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn async_call(addr: SocketAddr, metadata: &str) -> Workflow {
    wf(&format!(
        "do:\n  - c:\n      call: http\n{metadata}      with:\n        method: post\n        endpoint: http://{addr}/api/start\n        body: {{n: 1}}\n        headers: {{authorization: Bearer t}}\n"
    ))
}

#[tokio::test]
async fn accepted_answers_are_polled_at_their_location_until_the_result() {
    let (addr, seen) = async_callee(3, true).await;
    let run = loopback_runner()
        .run(&async_call(addr, ""), json!({}))
        .await;
    assert_eq!(run.output, Some(json!({"result": 42})), "{:?}", run.error);
    let log = seen.lock().unwrap().clone();
    let mut want = vec!["POST /api/start auth=true".to_owned()];
    want.extend(std::iter::repeat_n(
        "GET /api/status/42 auth=true".to_owned(),
        4,
    ));
    assert_eq!(log, want, "one start, three 202 polls, then the answer");

    // Without Retry-After the configured interval applies.
    let (addr, seen) = async_callee(1, false).await;
    let runner = loopback_runner_with(HttpOptions {
        poll_interval: Duration::from_millis(20),
        ..HttpOptions::default()
    });
    let started = std::time::Instant::now();
    let run = runner.run(&async_call(addr, ""), json!({})).await;
    assert_eq!(run.output, Some(json!({"result": 42})), "{:?}", run.error);
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "two waits of 20 ms"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_asynchronous_pattern_can_be_turned_off_per_task() {
    let (addr, seen) = async_callee(3, true).await;
    let metadata = "      metadata: {asyncPattern: false}\n";
    let run = loopback_runner()
        .run(&async_call(addr, metadata), json!({}))
        .await;
    assert_eq!(
        run.output,
        Some(json!({"state": "running"})),
        "{:?}",
        run.error
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "not polled");
}

#[tokio::test]
async fn a_task_timeout_bounds_the_polling() {
    let (addr, seen) = async_callee(usize::MAX, true).await;
    let w = wf(&format!(
        "do:\n  - c:\n      call: http\n      timeout: {{after: PT0.3S}}\n      with:\n        method: get\n        endpoint: http://{addr}/api/start\n"
    ));
    let run = loopback_runner().run(&w, json!({})).await;
    let e = run.error.expect("times out");
    assert_eq!(e.kind(), Some(ErrorKind::Timeout), "{e}");
    let polls = seen.lock().unwrap().len();
    assert!(polls > 1, "it polled before the timeout ({polls})");
}

/// An attempt over the client's limit is a `timeout` error (408), which a retry policy retries
/// an exact number of times.
/// A callee that never answers in time (30 s); counts its calls.
async fn slow_callee() -> (SocketAddr, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let h = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        h.fetch_add(1, Ordering::SeqCst);
        async {
            // Far past every limit the tests set; the caller gives up first.
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

#[tokio::test]
async fn slow_answers_time_out_per_attempt_and_are_retried_exactly() {
    let (addr, hits) = slow_callee().await;
    let runner = loopback_runner_with(HttpOptions {
        attempt_timeout: Duration::from_millis(100),
        ..HttpOptions::default()
    });
    let w = wf(&format!(
        "do:\n  - t:\n      try:\n        - c: {{call: http, with: {{method: get, endpoint: 'http://{addr}/'}}}}\n      catch:\n        errors:\n          with: {{type: 'https://serverlessworkflow.io/spec/1.0.0/errors/timeout'}}\n        as: e\n        retry:\n          delay: {{milliseconds: 10}}\n          limit: {{attempt: {{count: 3}}}}\n        do:\n          - h: {{set: {{caught: '${{ $e.type }}', status: '${{ $e.status }}'}}}}\n"
    ));
    let run = runner.run(&w, json!({})).await;
    // Retries exhausted, the last timeout is caught.
    assert_eq!(
        run.output,
        Some(json!({
            "caught": "https://serverlessworkflow.io/spec/1.0.0/errors/timeout",
            "status": 408
        })),
        "{:?}",
        run.error
    );
    // `limit.attempt.count` counts retries after the first attempt (docs/workflows.md).
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "the attempt and three retries, no more"
    );
}

/// `limit.attempt.duration` cancels each slow attempt (a `timeout` error the same catch
/// retries); `limit.duration` stops retrying once the next retry would end past it.
#[tokio::test]
async fn attempt_and_total_retry_limits_bound_slow_calls() {
    let (addr, hits) = slow_callee().await;
    let call = |limit: &str| {
        wf(&format!(
            "do:\n  - t:\n      try:\n        - c: {{call: http, with: {{method: get, endpoint: 'http://{addr}/'}}}}\n      catch:\n        errors:\n          with: {{type: 'https://serverlessworkflow.io/spec/1.0.0/errors/timeout'}}\n        retry:\n          delay: {{milliseconds: 20}}\n          limit: {limit}\n"
        ))
    };
    let run = loopback_runner()
        .run(
            &call("{attempt: {count: 2, duration: {milliseconds: 100}}}"),
            json!({}),
        )
        .await;
    // Caught and not retried any more: the try's output is its input.
    assert_eq!(run.output, Some(json!({})), "{:?}", run.error);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "the attempt and two retries"
    );

    hits.store(0, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let run = loopback_runner()
        .run(
            &call("{attempt: {count: 100, duration: {milliseconds: 100}}, duration: {milliseconds: 590}}"),
            json!({}),
        )
        .await;
    assert_eq!(run.output, Some(json!({})), "{:?}", run.error);
    // Each attempt takes 100 ms and each retry waits 20 ms first: attempts start at 0, 120,
    // 240, 360 and 480 ms; a sixth would start at 600 ms, past the 590 ms limit, so it is not
    // made (the limit is checked when a retry's delay would end, docs/workflows.md). The
    // limit sits 110 ms after the fifth start, so a slow machine's timer drift cannot flip it.
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The trace of an in-memory run is recorded by default and can be turned off by a host that
/// never reads it (no debug subscriber is installed in this test, so nothing else wants it);
/// the instance's result is the same either way.
#[tokio::test(start_paused = true)]
async fn the_task_trace_is_recorded_unless_turned_off() {
    let w = wf("do:\n  - a:\n      set: {x: 1}\n  - b:\n      wait: {milliseconds: 5}\n");
    let kept = Runner::builder()
        .build()
        .expect("runner")
        .run(&w, json!({}))
        .await;
    let kinds: Vec<(String, TraceKind)> = kept
        .trace
        .iter()
        .map(|t| (t.name.to_string(), t.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a".to_owned(), TraceKind::Started),
            ("a".to_owned(), TraceKind::Completed),
            ("b".to_owned(), TraceKind::Started),
            ("b".to_owned(), TraceKind::Completed),
        ]
    );
    let off = Runner::builder().task_trace(false).build().expect("runner");
    let dropped = off.run(&w, json!({})).await;
    assert!(dropped.trace.is_empty(), "{:?}", dropped.trace);
    assert_eq!(
        (dropped.status, dropped.output),
        (kept.status, kept.output.clone())
    );
    assert_eq!(kept.output, Some(json!({"x": 1})));
}
