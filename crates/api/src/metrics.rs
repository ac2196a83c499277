//! `GET /metrics`: the process's metrics in the Prometheus text format, and the middleware that
//! counts and times every request.
//!
//! * `baton_http_requests_total{route, method, status}` and
//!   `baton_http_request_duration_seconds{route, method, status}` (a histogram), recorded here;
//! * `baton_instances_started_total`, `baton_instances_completed_total`,
//!   `baton_instances_failed_total` (labels `function`, `workflow`) and the gauge
//!   `baton_instances_in_flight`, recorded by `baton-host` where instances start and finish.
//!
//! Every label has a bounded set of values: `route` is the matched route template
//! (`/api/instances/{id}`), the function's name for a trigger (`Validate`), or `unmatched` when
//! nothing is served at the path; `method` is a standard method or `other`. Ids, keys and query
//! strings never become labels.
//!
//! `/metrics` is open like `/healthz`: it shows function names and traffic but no keys, inputs or
//! outputs. Operators who do not want it public restrict it at the network edge.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::ApiState;

const REQUESTS: &str = "baton_http_requests_total";
const DURATION: &str = "baton_http_request_duration_seconds";

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
    metrics::describe_counter!("baton_instances_started_total", "Express instances started");
    metrics::describe_counter!(
        "baton_instances_completed_total",
        "Express instances that completed"
    );
    metrics::describe_counter!(
        "baton_instances_failed_total",
        "Express instances that faulted, timed out or were cancelled"
    );
    metrics::describe_gauge!("baton_instances_in_flight", "Express instances running now");
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
pub async fn serve() -> Response {
    let body = install().render();
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Middleware: counts and times every request under its bounded labels.
pub async fn track(
    State(s): State<ApiState>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = route_label(&s, req.extensions().get::<MatchedPath>(), params.ok());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", resp.status().as_u16().to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(DURATION, &labels).record(started.elapsed().as_secs_f64());
    resp
}

/// The matched route template; for a trigger (the only route with a `{route}` parameter) the
/// function's name, since every function shares one template. Anything else is `unmatched`.
fn route_label(
    s: &ApiState,
    matched: Option<&MatchedPath>,
    params: Option<RawPathParams>,
) -> String {
    let Some(matched) = matched else {
        return UNMATCHED.to_owned();
    };
    let trigger = params
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| *k == "route").map(|(_, v)| v));
    match trigger {
        None => matched.as_str().to_owned(),
        Some(route) => s
            .app
            .function(route)
            .map_or_else(|| UNMATCHED.to_owned(), |f| f.name.clone()),
    }
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
