//! `/healthz` (the process answers) and `/readyz` (it can take work).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Shared;

pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

/// How long `/readyz` waits for the store to answer.
const STORE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when there is room for another instance and, if the app has a store, the store
/// answers (within [`STORE_CHECK`]): a node cut off from a shared database leaves a load
/// balancer's rotation.
pub async fn readyz(State(s): State<Shared>) -> Response {
    let in_flight = s.express.in_flight();
    let max = s.app.config.limits.max_in_flight;
    let store = match &s.durable {
        None => None,
        Some(d) => Some(match tokio::time::timeout(STORE_CHECK, d.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the store did not answer within {STORE_CHECK:?}")),
        }),
    };
    let status = match (&store, in_flight < max) {
        (Some(Err(_)), _) => "store unavailable",
        (_, false) => "full",
        _ => "ready",
    };
    let mut body = json!({"status": status, "inFlight": in_flight, "maxInFlight": max});
    if let Some(Err(why)) = &store {
        body["store"] = json!(why);
    }
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}
