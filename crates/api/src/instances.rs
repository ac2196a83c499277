//! Instance status, shaped like Durable Functions' HTTP API, and `GetResult`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use baton_core::interp::Status;
use baton_host::Snapshot;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::problem::Problem;
use crate::state::ApiState;

/// How often a client should poll a running instance, in seconds.
pub const POLL_SECONDS: &str = "5";

/// The Durable Functions name of a status.
pub fn runtime_status(s: Status) -> &'static str {
    match s {
        Status::Pending => "Pending",
        Status::Running => "Running",
        Status::Completed => "Completed",
        Status::Faulted => "Failed",
        Status::Cancelled => "Terminated",
    }
}

/// The status document of an instance.
pub fn status_body(s: &Snapshot, prefix: &str) -> Value {
    let output = match (&s.output, &s.error) {
        (Some(o), _) => o.clone(),
        (None, Some(e)) => {
            crate::problem::Problem::from_fault(e, &format!("/{prefix}/instances/{}", s.id))
                .into_value()
        }
        _ => Value::Null,
    };
    json!({
        "name": s.function,
        "instanceId": s.id,
        "runtimeStatus": runtime_status(s.status),
        "input": s.input,
        "customStatus": null,
        "output": output,
        "createdTime": s.created.to_rfc3339(),
        "lastUpdatedTime": s.updated.to_rfc3339(),
    })
}

fn location(prefix: &str, id: &str) -> String {
    format!("/{prefix}/instances/{id}")
}

/// A 202 for an instance still running: where to poll and how often.
pub fn accepted(prefix: &str, id: &str, retry_after: &str, body: Value) -> Response {
    let mut r = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = location(prefix, id).parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = retry_after.parse() {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `GET /api/instances/{id}`: 202 while running, 200 once finished (the body says how), 404
/// when unknown or forgotten.
pub async fn get(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let prefix = s.prefix();
    let path = location(prefix, &id);
    match authorized_snapshot(&s, &id, &headers, &uri, &path) {
        Err(p) => p.into_response(),
        Ok(snap) if !snap.status.is_terminal() => {
            accepted(prefix, &id, POLL_SECONDS, status_body(&snap, prefix))
        }
        Ok(snap) => (StatusCode::OK, axum::Json(status_body(&snap, prefix))).into_response(),
    }
}

/// The instance's snapshot if the caller may see it; otherwise the 401 or 404 to answer.
fn authorized_snapshot(
    s: &ApiState,
    id: &str,
    headers: &HeaderMap,
    uri: &Uri,
    path: &str,
) -> Result<Arc<Snapshot>, Problem> {
    let snap = s.express.get(id);
    let function = snap.as_ref().map(|x| x.function.as_str());
    s.authorize_instance(function, headers, uri.query(), path)?;
    snap.ok_or_else(|| unknown(id, path))
}

fn unknown(id: &str, path: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("no instance `{id}` (unknown, or finished and forgotten)"),
    )
    .at(path)
}

#[derive(Debug, Deserialize)]
pub struct ResultQuery {
    id: Option<String>,
}

/// `GET /api/GetResult?id=`: 202 while running, then the output itself (204 if it is `null`),
/// or the fault as a problem document.
pub async fn get_result(
    State(s): State<ApiState>,
    Query(q): Query<ResultQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let prefix = s.prefix();
    let path = format!("/{prefix}/GetResult");
    let Some(id) = q.id.filter(|i| !i.is_empty()) else {
        return Problem::new(StatusCode::BAD_REQUEST, "'id' parameter is required")
            .at(path)
            .into_response();
    };
    match authorized_snapshot(&s, &id, &headers, &uri, &path) {
        Err(p) => p.into_response(),
        Ok(snap) if !snap.status.is_terminal() => {
            accepted(prefix, &id, POLL_SECONDS, status_body(&snap, prefix))
        }
        Ok(snap) => finished(&snap, &path),
    }
}
/// The answer for a finished instance: its output, or its fault.
pub fn finished(s: &Snapshot, path: &str) -> Response {
    match (&s.output, &s.error) {
        (Some(Value::Null), _) => StatusCode::NO_CONTENT.into_response(),
        // Serialised from the shared snapshot, not from a copy of it.
        (Some(o), _) => (StatusCode::OK, axum::Json(o)).into_response(),
        (None, Some(e)) => Problem::from_fault(e, path).into_response(),
        (None, None) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the instance ended {} without output",
                runtime_status(s.status)
            ),
        )
        .at(path)
        .into_response(),
    }
}
