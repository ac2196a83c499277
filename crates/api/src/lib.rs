//! Baton's HTTP API: a thin axum layer over the host.
//!
//! * `POST /{prefix}/{route}` runs the function bound to the route ([`triggers`]);
//! * `GET /{prefix}/instances/{id}` and `GET /{prefix}/GetResult?id=` report on instances
//!   ([`instances`]); listing, history, terminate, suspend, resume, raiseEvent, rewind and
//!   purge manage durable ones ([`durable`]); the same routes are mounted under
//!   `/runtime/webhooks/durabletask` for Durable Functions clients;
//! * `GET /healthz`, `GET /readyz`;
//! * `GET /metrics`: Prometheus metrics, every request counted and timed by route ([`metrics`]);
//! * `GET /openapi.json`: the OpenAPI 3.1 document of these routes, generated from the app
//!   ([`openapi`]).
//!
//! Every error is an RFC 9457 problem document ([`Problem`]).

mod body;
mod durable;
mod health;
mod instances;
mod metrics;
mod openapi;
mod problem;
mod queues;
mod state;
mod triggers;

pub use problem::Problem;
pub use state::ApiState;
use state::Shared;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};

/// The whole API. Installs the process's metrics recorder on first use.
pub fn router(state: ApiState) -> Router {
    let prefix = state.prefix().to_owned();
    metrics::install();
    let shared = Shared::new(state);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::serve))
        .route("/openapi.json", openapi::route(&shared.app, &prefix))
        .merge(instance_routes(&format!("/{prefix}")))
        .merge(instance_routes("/runtime/webhooks/durabletask"))
        .route(&format!("/{prefix}/GetResult"), get(instances::get_result))
        .merge(queue_routes(&format!("/{prefix}/queues")))
        .route(&format!("/{prefix}/{{route}}"), any(triggers::invoke))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Last, so that it wraps every route and both fallbacks.
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            metrics::track,
        ))
        .with_state(shared)
}

/// The instance routes under `base`.
fn instance_routes(base: &str) -> Router<Shared> {
    Router::new()
        .route(
            &format!("{base}/instances"),
            get(durable::list).delete(durable::purge_where),
        )
        .route(
            &format!("{base}/instances/{{id}}"),
            get(instances::get).delete(durable::purge),
        )
        .route(
            &format!("{base}/instances/{{id}}/history"),
            get(durable::history),
        )
        .route(
            &format!("{base}/instances/{{id}}/raiseEvent/{{name}}"),
            post(durable::raise),
        )
        .route(
            &format!("{base}/instances/{{id}}/{{action}}"),
            post(durable::act),
        )
}

/// The queue routes under `base` (`/api/queues`).
fn queue_routes(base: &str) -> Router<Shared> {
    Router::new()
        .route(base, get(queues::list))
        .route(
            &format!("{base}/{{queue}}"),
            get(queues::get).put(queues::put).delete(queues::delete),
        )
        .route(
            &format!("{base}/{{queue}}/messages"),
            get(queues::peek).post(queues::send),
        )
        .route(
            &format!("{base}/{{queue}}/messages/batch"),
            post(queues::send_batch),
        )
        .route(
            &format!("{base}/{{queue}}/messages/head"),
            post(queues::receive),
        )
        .route(
            &format!("{base}/{{queue}}/messages/{{sequence}}/{{lock}}"),
            axum::routing::delete(queues::complete),
        )
        .route(
            &format!("{base}/{{queue}}/messages/{{sequence}}/{{lock}}/{{action}}"),
            post(queues::act),
        )
        .route(
            &format!("{base}/{{queue}}/sessions/{{session}}/{{token}}/{{action}}"),
            post(queues::session),
        )
        .route(
            &format!("{base}/{{queue}}/deadletter"),
            get(queues::peek_dead),
        )
        .route(
            &format!("{base}/{{queue}}/deadletter/redrive"),
            post(queues::redrive),
        )
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("nothing is served at `{}`", uri.path()),
    )
    .at(uri.path())
}

async fn method_not_allowed(uri: Uri) -> impl IntoResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("`{}` does not accept this method", uri.path()),
    )
    .at(uri.path())
}
