//! `/healthz` (the process answers) and `/readyz` (it can take work).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::ApiState;

pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

pub async fn readyz(State(s): State<ApiState>) -> Response {
    let in_flight = s.express.in_flight();
    let max = s.app.config.limits.max_in_flight;
    let body = json!({"status": if in_flight < max { "ready" } else { "full" }, "inFlight": in_flight, "maxInFlight": max});
    let status = if in_flight < max {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
