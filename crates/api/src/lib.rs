//! Baton's HTTP API: a thin axum layer over the host.
//!
//! * `POST /{prefix}/{route}` runs the function bound to the route ([`triggers`]);
//! * `GET /{prefix}/instances/{id}` and `GET /{prefix}/GetResult?id=` report on instances;
//! * `GET /healthz`, `GET /readyz`;
//! * `GET /metrics`: Prometheus metrics, every request counted and timed by route ([`metrics`]);
//! * `GET /openapi.json`: the OpenAPI 3.1 document of these routes, generated from the app
//!   ([`openapi`]).
//!
//! Every error is an RFC 9457 problem document ([`Problem`]).

mod body;
mod health;
mod instances;
mod metrics;
mod openapi;
mod problem;
mod state;
mod triggers;

pub use problem::Problem;
pub use state::ApiState;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};

/// The whole API. Installs the process's metrics recorder on first use.
pub fn router(state: ApiState) -> Router {
    let prefix = state.prefix().to_owned();
    metrics::install();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::serve))
        .route("/openapi.json", openapi::route(&state.app, &prefix))
        .route(&format!("/{prefix}/instances/{{id}}"), get(instances::get))
        .route(&format!("/{prefix}/GetResult"), get(instances::get_result))
        .route(&format!("/{prefix}/{{route}}"), any(triggers::invoke))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Last, so that it wraps every route and both fallbacks.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
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
