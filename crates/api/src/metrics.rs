//! `GET /metrics`: the process's metrics in the Prometheus text format, and the middleware that
//! counts and times every request.
//!
//! * `baton_http_requests_total{route, method, status}` and
//!   `baton_http_request_duration_seconds{route, method, status}` (a histogram), recorded here;
//! * `baton_instances_started_total`, `baton_instances_completed_total`,
//!   `baton_instances_failed_total` (labels `function`, `workflow`), express and durable alike,
//!   recorded where instances start and end (see `baton_engine::meters`);
//! * the gauge `baton_instances_in_flight`: express instances running in this process;
//! * the gauge `baton_durable_instances{status}`: durable instances in the store that are
//!   `Pending`, `Running` or `Suspended`, counted when `/metrics` is scraped.
//!
//! Every label has a bounded set of values: `route` is the matched route template
//! (`/api/instances/{id}`), the function's name for a trigger (`Validate`), or `unmatched` when
//! nothing is served at the path; `method` is a standard method or `other`. Ids, keys and query
//! strings never become labels.
//!
//! `/metrics` is open like `/healthz`: it shows function names and traffic but no keys, inputs or
//! outputs. Operators who do not want it public restrict it at the network edge.

use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::{ApiState, Shared};

const REQUESTS: &str = "baton_http_requests_total";
const DURATION: &str = "baton_http_request_duration_seconds";
const DURABLE: &str = "baton_durable_instances";

/// The `route` of a request that matched no route or no function.
const UNMATCHED: &str = "unmatched";

/// Upper bounds, in seconds: from a pure workflow answered in well under a millisecond to the
/// 30 s a sync trigger waits by default.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The media type of the Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The process-wide recorder's handle. `metrics` has one global recorder per process, and a
/// process may build several routers (the tests do), so the first call installs it and later
/// calls reuse it.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder if this process has none yet, and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Someone else's recorder came first; theirs receives the metrics and `/metrics`
            // shows only what this (unused) recorder holds, which is nothing.
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        describe();
        spawn_upkeep(handle.clone());
        handle
    })
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), LATENCY_BUCKETS)
        // Only an empty bucket list is refused, and LATENCY_BUCKETS is not empty.
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route, method and status"
    );
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route, method and status"
    );
    use baton_engine::meters::{COMPLETED, FAILED, STARTED};
    metrics::describe_counter!(STARTED, "Instances started (by this node)");
    metrics::describe_counter!(COMPLETED, "Instances that completed (ended by this node)");
    metrics::describe_counter!(
        FAILED,
        "Instances that faulted, timed out, were cancelled or terminated (ended by this node)"
    );
    metrics::describe_gauge!("baton_instances_in_flight", "Express instances running now");
    metrics::describe_gauge!(
        DURABLE,
        "Stored durable instances not yet finished, by status (read from the store at scrape)"
    );
}

/// Histogram samples are buffered until upkeep folds them into buckets; without it they would
/// pile up between scrapes (or forever, if nothing scrapes). A plain thread rather than a tokio
/// task because the recorder outlives any one runtime (each `#[tokio::test]` has its own).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the metrics upkeep thread");
    }
}

/// `GET /metrics`.
pub async fn serve(State(s): State<Shared>) -> Response {
    if let Some(durable) = &s.durable {
        // Read at scrape time from the store, so the figure is the cluster's and survives
        // restarts. A store that cannot answer leaves the last figures (and says so).
        match durable.unfinished().await {
            Ok(counts) => {
                for (status, n) in counts {
                    metrics::gauge!(DURABLE, "status" => status.as_str()).set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot count durable instances for /metrics"),
        }
    }
    let body = install().render();
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Middleware: counts and times every request under its bounded labels.
pub async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (route, req) = route_label(&s, req).await;
    let method = method_label(req.method());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    with_meters(route.as_str(), method, status, |m| {
        m.requests.increment(1);
        m.duration.record(elapsed);
    });
    resp
}

/// A request's `route` label, without copying it: a function's name lives in the app, a route
/// template in the router.
enum Route<'a> {
    Unmatched,
    Template(MatchedPath),
    Function(&'a str),
}

impl Route<'_> {
    fn as_str(&self) -> &str {
        match self {
            Route::Unmatched => UNMATCHED,
            Route::Template(m) => m.as_str(),
            Route::Function(name) => name,
        }
    }
}

/// The matched route template; for a trigger (the only route with a `{route}` parameter) the
/// function's name, since every function shares one template. Anything else is `unmatched`.
async fn route_label(s: &ApiState, req: Request) -> (Route<'_>, Request) {
    let Some(matched) = req.extensions().get::<MatchedPath>().cloned() else {
        return (Route::Unmatched, req);
    };
    if !matched.as_str().ends_with("/{route}") {
        return (Route::Template(matched), req);
    }
    // The trigger's route is the path's last segment. Read straight from the path unless it is
    // percent-encoded; then ask axum for the decoded parameter, as the trigger itself does.
    let segment = req.uri().path().rsplit('/').next().unwrap_or_default();
    if !segment.contains('%') {
        let function = s.app.function(segment);
        return (
            function.map_or(Route::Unmatched, |f| Route::Function(&f.name)),
            req,
        );
    }
    let (mut parts, body) = req.into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, s).await.ok();
    let function = params
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| *k == "route").map(|(_, v)| v))
        .and_then(|route| s.app.function(route));
    (
        function.map_or(Route::Unmatched, |f| Route::Function(&f.name)),
        Request::from_parts(parts, body),
    )
}

/// A request series' handles.
struct Meters {
    requests: Counter,
    duration: Histogram,
}

/// Handles by route, then by (method, status). Resolving a handle with `metrics::counter!`
/// allocates its three label strings and looks the key up in the recorder, on every request;
/// the labels are bounded, so each series' handles are resolved once and kept. Process-wide,
/// like the recorder they belong to.
type MeterTable = HashMap<String, HashMap<(&'static str, u16), Meters>>;

static METERS: OnceLock<RwLock<MeterTable>> = OnceLock::new();

fn with_meters(route: &str, method: &'static str, status: u16, f: impl FnOnce(&Meters)) {
    let table = METERS.get_or_init(RwLock::default);
    {
        let known = table.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = known.get(route).and_then(|by| by.get(&(method, status))) {
            return f(m);
        }
    }
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    let mut known = table.write().unwrap_or_else(PoisonError::into_inner);
    let m = known
        .entry(route.to_owned())
        .or_default()
        .entry((method, status))
        .or_insert_with(|| Meters {
            requests: metrics::counter!(REQUESTS, &labels),
            duration: metrics::histogram!(DURATION, &labels),
        });
    f(m);
}

/// Clients choose the method, so only the standard ones become label values.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
