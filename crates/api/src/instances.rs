//! Instance status, shaped like Durable Functions' HTTP API, and `GetResult`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use baton_core::interp::Status;
use baton_host::{Snapshot, Version};
use baton_store::InstanceRow;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::problem::Problem;
use crate::state::{ApiState, Shared};

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

/// An instance as found: in memory (express) or in the store (durable).
enum Found {
    Express(Arc<Snapshot>),
    Stored(Box<InstanceRow>, Option<Version>),
}

impl Found {
    fn is_terminal(&self) -> bool {
        match self {
            Self::Express(s) => s.status.is_terminal(),
            Self::Stored(r, _) => r.status.is_terminal(),
        }
    }

    fn body(&self, prefix: &str, input: bool) -> Value {
        match self {
            Self::Express(s) => {
                let mut b = status_body(s, prefix);
                if !input {
                    b["input"] = Value::Null;
                }
                b
            }
            Self::Stored(r, v) => crate::durable::status_body(r, v.as_ref(), prefix, input),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusQuery {
    show_history: Option<bool>,
    show_input: Option<bool>,
    return_internal_server_error_on_failure: Option<bool>,
}

/// `GET /api/instances/{id}`: 202 while running, 200 once finished (the body says how), 404
/// when unknown or forgotten.
pub async fn get(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<StatusQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let prefix = s.prefix();
    let path = uri.path().to_owned();
    let found = match authorized(&s, &id, &headers, &uri, &path).await {
        Ok(f) => f,
        Err(p) => return p.into_response(),
    };
    let mut body = found.body(prefix, q.show_input.unwrap_or(true));
    if let (Some(true), Found::Stored(..), Some(inst)) = (q.show_history, &found, &s.durable) {
        match crate::durable::history_events(inst, &id).await {
            Ok(events) => body["historyEvents"] = events,
            Err(e) => return crate::durable::store_problem(&e, &path).into_response(),
        }
    }
    let failed = body["runtimeStatus"] == "Failed";
    if !found.is_terminal() {
        accepted(prefix, &id, POLL_SECONDS, body)
    } else if failed && q.return_internal_server_error_on_failure == Some(true) {
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
    } else {
        (StatusCode::OK, axum::Json(body)).into_response()
    }
}

/// The instance if the caller may see it; otherwise the 401 or 404 to answer. Express
/// instances are looked up first (they are in memory), then the store.
async fn authorized(
    s: &ApiState,
    id: &str,
    headers: &HeaderMap,
    uri: &Uri,
    path: &str,
) -> Result<Found, Problem> {
    let found = match s.express.get(id) {
        Some(snap) => Some(Found::Express(snap)),
        None => match &s.durable {
            None => None,
            Some(inst) => match inst.get(id).await {
                Err(e) => return Err(crate::durable::store_problem(&e, path)),
                Ok(None) => None,
                Ok(Some(row)) => {
                    let v = inst.version(&row.definition).await.ok().flatten();
                    Some(Found::Stored(Box::new(row), v))
                }
            },
        },
    };
    let function = found.as_ref().map(|f| match f {
        Found::Express(s) => s.function.as_str(),
        Found::Stored(r, _) => r.function.as_str(),
    });
    s.authorize_instance(function, headers, uri.query(), path)?;
    found.ok_or_else(|| unknown(id, path))
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
    State(s): State<Shared>,
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
    match authorized(&s, &id, &headers, &uri, &path).await {
        Err(p) => p.into_response(),
        Ok(found) if !found.is_terminal() => {
            accepted(prefix, &id, POLL_SECONDS, found.body(prefix, true))
        }
        Ok(Found::Express(snap)) => finished(&snap, &path),
        Ok(Found::Stored(row, _)) => finished_row(&row, &path),
    }
}
/// The answer for a finished stored instance: its output, or its fault.
pub fn finished_row(r: &InstanceRow, path: &str) -> Response {
    match (&r.output, &r.error) {
        (Some(Value::Null), _) => StatusCode::NO_CONTENT.into_response(),
        (Some(o), _) => (StatusCode::OK, axum::Json(o)).into_response(),
        (None, Some(e)) => match serde_json::from_value::<baton_core::WorkflowError>(e.clone()) {
            Ok(e) => Problem::from_fault(&e, path).into_response(),
            Err(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the instance failed")
                .with("error", e.clone())
                .at(path)
                .into_response(),
        },
        (None, None) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the instance ended {} without output", r.status.as_str()),
        )
        .at(path)
        .into_response(),
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
