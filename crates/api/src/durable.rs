//! Durable instances: listing, history, management and purge (`/{prefix}/instances…`, also
//! under `/runtime/webhooks/durabletask/instances…`), shaped like Durable Functions' HTTP API.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use baton_core::Timestamp;
use baton_host::{AuthLevel, Control, ControlError, Instances, Version};
use baton_store::{Event, Filter, InstanceRow, RuntimeStatus, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::problem::Problem;
use crate::state::{ApiState, Shared};

/// The header Durable Functions pages listings with.
pub const CONTINUATION: &str = "x-ms-continuation-token";
/// The largest page a caller may ask for.
const MAX_TOP: usize = 1000;

/// The status object of a stored instance.
pub fn status_body(
    row: &InstanceRow,
    version: Option<&Version>,
    prefix: &str,
    input: bool,
) -> Value {
    let output = match (&row.output, &row.error) {
        (Some(o), _) => o.clone(),
        (None, Some(e)) => fault(e, &format!("/{prefix}/instances/{}", row.id)),
        _ => Value::Null,
    };
    let mut body = json!({
        "name": row.function,
        "instanceId": row.id,
        "runtimeStatus": row.status.as_str(),
        "input": if input { row.input.clone() } else { Value::Null },
        "customStatus": row.custom_status.clone().unwrap_or(Value::Null),
        "output": output,
        "createdTime": Timestamp(row.created_at).to_rfc3339(),
        "lastUpdatedTime": Timestamp(row.updated_at).to_rfc3339(),
    });
    if let (Some(v), Value::Object(m)) = (version, &mut body) {
        m.insert(
            "definition".to_owned(),
            json!({"name": v.name, "version": v.version, "hash": v.hash}),
        );
    }
    body
}

/// A stored workflow error as the problem document a client sees.
pub fn fault(error: &Value, path: &str) -> Value {
    match serde_json::from_value::<baton_core::WorkflowError>(error.clone()) {
        Ok(e) => Problem::from_fault(&e, path).into_value(),
        Err(_) => error.clone(),
    }
}

/// A history event for clients.
fn event_body(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "at": Timestamp(e.at).to_rfc3339(),
        "kind": e.kind,
        "data": e.data,
    })
}

pub(crate) fn store_problem(e: &StoreError, path: &str) -> Problem {
    let p = match e {
        StoreError::Transient(m) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, m.clone())
            .header(axum::http::header::RETRY_AFTER, "1"),
        StoreError::Permanent(m) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, m.clone()),
    };
    p.at(path)
}

fn control_problem(e: &ControlError, path: &str) -> Problem {
    let status = match e {
        ControlError::Unknown(_) => StatusCode::NOT_FOUND,
        ControlError::Finished(_) => StatusCode::GONE,
        ControlError::Precondition(_) => StatusCode::PRECONDITION_FAILED,
        ControlError::Store(s) => return store_problem(s, path),
    };
    Problem::new(status, e.to_string()).at(path)
}

/// The durable side, or a 404 when the host runs none.
fn instances<'a>(s: &'a ApiState, path: &str) -> Result<&'a Arc<Instances>, Problem> {
    s.durable.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "this host runs no durable functions, so it keeps no instances",
        )
        .at(path)
    })
}

fn admin(s: &ApiState, headers: &HeaderMap, uri: &Uri) -> Result<(), Problem> {
    s.authorize(AuthLevel::Admin, None, headers, uri.query(), uri.path())
}

/// The query of a listing or a bulk purge.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    runtime_status: Option<String>,
    name: Option<String>,
    created_time_from: Option<String>,
    created_time_to: Option<String>,
    instance_id_prefix: Option<String>,
    top: Option<usize>,
    continuation_token: Option<String>,
    show_input: Option<bool>,
    #[allow(dead_code)]
    code: Option<String>,
}

impl ListQuery {
    fn filter(&self, path: &str) -> Result<Filter, Problem> {
        let statuses = match &self.runtime_status {
            None => Vec::new(),
            Some(s) => s
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| {
                    RuntimeStatus::ALL
                        .into_iter()
                        .find(|r| r.as_str().eq_ignore_ascii_case(x))
                        .ok_or_else(|| {
                            bad(
                                path,
                                "runtimeStatus",
                                &format!(
                                    "`{x}` is not a status (Pending, Running, Suspended, Completed, Failed, Terminated)"
                                ),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Filter {
            statuses,
            function: self.name.clone().filter(|n| !n.is_empty()),
            created_from: time(self.created_time_from.as_deref(), "createdTimeFrom", path)?,
            created_to: time(self.created_time_to.as_deref(), "createdTimeTo", path)?,
            id_prefix: self.instance_id_prefix.clone().filter(|p| !p.is_empty()),
        })
    }
}

fn bad(path: &str, parameter: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, format!("{parameter}: {detail}"))
        .with("parameter", Value::String(parameter.to_owned()))
        .at(path)
}

fn time(v: Option<&str>, parameter: &str, path: &str) -> Result<Option<i64>, Problem> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let refuse = |why: String| {
        bad(
            path,
            parameter,
            &format!("`{v}` is not an RFC 3339 time such as 2026-12-02T06:00:00Z ({why})"),
        )
    };
    // humantime reads UTC times; an explicit offset (`+02:00`) is applied here.
    let (local, offset_ms) = split_offset(v);
    let t = humantime::parse_rfc3339_weak(local).map_err(|e| refuse(e.to_string()))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - offset_ms;
    Ok(Some(ms))
}

/// `2026-12-02T08:00:00+02:00` → (`2026-12-02T08:00:00`, 2 h in ms); a `Z` or no offset → 0.
fn split_offset(v: &str) -> (&str, i64) {
    let b = v.as_bytes();
    if b.len() > 6 && b.contains(&b'T') {
        let (head, tail) = v.split_at(v.len() - 6);
        let t = tail.as_bytes();
        if (t[0] == b'+' || t[0] == b'-')
            && t[3] == b':'
            && let (Ok(h), Ok(m)) = (tail[1..3].parse::<i64>(), tail[4..6].parse::<i64>())
        {
            let sign = if t[0] == b'-' { -1 } else { 1 };
            return (head, sign * (h * 60 + m) * 60_000);
        }
    }
    (v, 0)
}

fn continuation_of<'a>(headers: &'a HeaderMap, q: &'a ListQuery) -> Option<&'a str> {
    headers
        .get(CONTINUATION)
        .and_then(|v| v.to_str().ok())
        .or(q.continuation_token.as_deref())
        .filter(|t| !t.is_empty())
}

fn with_continuation(mut r: Response, token: Option<&str>) -> Response {
    if let Some(v) = token.and_then(|t| HeaderValue::from_str(t).ok()) {
        r.headers_mut().insert(CONTINUATION, v);
    }
    r
}

/// `GET /{prefix}/instances`: status objects, newest first, paged.
pub async fn list(
    State(s): State<Shared>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    match list_page(&s, &q, &headers, &uri).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn list_page(
    s: &ApiState,
    q: &ListQuery,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, Problem> {
    let path = uri.path();
    admin(s, headers, uri)?;
    let inst = instances(s, path)?;
    let filter = q.filter(path)?;
    let top = q.top.unwrap_or(100).clamp(1, MAX_TOP);
    let page = inst
        .list(&filter, top, continuation_of(headers, q))
        .await
        .map_err(|e| match e {
            StoreError::Permanent(m) if m.contains("continuation") => {
                bad(path, "continuationToken", &m)
            }
            e => store_problem(&e, path),
        })?;
    let prefix = s.prefix();
    let mut items = Vec::with_capacity(page.items.len());
    for row in &page.items {
        let v = inst.version(&row.definition).await.ok().flatten();
        items.push(status_body(
            row,
            v.as_ref(),
            prefix,
            q.show_input.unwrap_or(true),
        ));
    }
    let r = (StatusCode::OK, axum::Json(Value::Array(items))).into_response();
    Ok(with_continuation(r, page.continuation.as_deref()))
}

#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    top: Option<usize>,
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
}

/// `GET /{prefix}/instances/{id}/history`: events oldest first, paged by sequence number.
pub async fn history(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = uri.path().to_owned();
    let run = async {
        admin(&s, &headers, &uri)?;
        let inst = instances(&s, &path)?;
        if inst
            .get(&id)
            .await
            .map_err(|e| store_problem(&e, &path))?
            .is_none()
        {
            return Err(
                Problem::new(StatusCode::NOT_FOUND, format!("no instance `{id}`")).at(&path),
            );
        }
        let token = headers
            .get(CONTINUATION)
            .and_then(|v| v.to_str().ok())
            .or(q.continuation_token.as_deref());
        let after = match token.filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => t.parse::<u64>().map_err(|_| {
                bad(
                    &path,
                    "continuationToken",
                    &format!("`{t}` is not a token this server gave"),
                )
            })?,
        };
        let top = q.top.unwrap_or(1000).clamp(1, MAX_TOP);
        // One more than asked, to know whether another page follows.
        let mut events = inst
            .history(&id, after, top + 1)
            .await
            .map_err(|e| store_problem(&e, &path))?;
        let more = events.len() > top;
        events.truncate(top);
        let next = more
            .then(|| events.last().map(|e| e.seq.to_string()))
            .flatten();
        let body = json!({
            "instanceId": id,
            "events": events.iter().map(event_body).collect::<Vec<_>>(),
        });
        Ok(with_continuation(
            (StatusCode::OK, axum::Json(body)).into_response(),
            next.as_deref(),
        ))
    };
    match run.await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

/// The history of an instance for `?showHistory=true`, at most 1000 events.
pub async fn history_events(inst: &Instances, id: &str) -> Result<Value, StoreError> {
    let events = inst.history(id, 0, MAX_TOP).await?;
    Ok(Value::Array(events.iter().map(event_body).collect()))
}

#[derive(Debug, Default, Deserialize)]
pub struct ReasonQuery {
    reason: Option<String>,
}

/// `POST /{prefix}/instances/{id}/{terminate|suspend|resume|rewind}?reason=`.
pub async fn act(
    State(s): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    Query(q): Query<ReasonQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = uri.path();
    let reason = q.reason.unwrap_or_default();
    let control = match action.as_str() {
        "terminate" => Control::Terminate { reason },
        "suspend" => Control::Suspend { reason },
        "resume" => Control::Resume { reason },
        "rewind" => Control::Rewind { reason },
        other => {
            return Problem::new(
                StatusCode::NOT_FOUND,
                format!("`{other}` is not an instance operation (terminate, suspend, resume, rewind, raiseEvent/{{name}})"),
            )
            .at(path)
            .into_response();
        }
    };
    control_answer(&s, &id, control, &headers, &uri).await
}

/// `POST /{prefix}/instances/{id}/raiseEvent/{name}` with the event data as the body.
pub async fn raise(
    State(s): State<Shared>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let limits = &s.app.config.limits;
    let data = if headers.contains_key(axum::http::header::CONTENT_TYPE)
        || headers.contains_key(axum::http::header::CONTENT_LENGTH)
    {
        match crate::body::read_json(&headers, body, limits.max_body_bytes, limits.max_json_depth)
            .await
        {
            Ok(v) => v,
            Err(p) => return p.at(uri.path()).into_response(),
        }
    } else {
        Value::Null
    };
    control_answer(&s, &id, Control::Raise { name, data }, &headers, &uri).await
}

async fn control_answer(
    s: &ApiState,
    id: &str,
    c: Control,
    headers: &HeaderMap,
    uri: &Uri,
) -> Response {
    let path = uri.path();
    let run = async {
        admin(s, headers, uri)?;
        let inst = instances(s, path)?;
        inst.control(id, c)
            .await
            .map_err(|e| control_problem(&e, path))
    };
    match run.await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(p) => p.into_response(),
    }
}

/// `DELETE /{prefix}/instances/{id}`.
pub async fn purge(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = uri.path();
    let run = async {
        admin(&s, &headers, &uri)?;
        let inst = instances(&s, path)?;
        inst.purge(&id).await.map_err(|e| control_problem(&e, path))
    };
    match run.await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"instancesDeleted": 1}))).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `DELETE /{prefix}/instances?…`: purges the finished instances that match.
pub async fn purge_where(
    State(s): State<Shared>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = uri.path();
    let run = async {
        admin(&s, &headers, &uri)?;
        let inst = instances(&s, path)?;
        let mut filter = q.filter(path)?;
        if let Some(open) = filter.statuses.iter().find(|x| !x.is_terminal()) {
            return Err(bad(
                path,
                "runtimeStatus",
                &format!(
                    "only finished instances can be purged; `{}` is not finished",
                    open.as_str()
                ),
            ));
        }
        if filter.statuses.is_empty() {
            filter.statuses = RuntimeStatus::ALL
                .into_iter()
                .filter(|x| x.is_terminal())
                .collect();
        }
        inst.purge_where(&filter)
            .await
            .map_err(|e| store_problem(&e, path))
    };
    match run.await {
        Ok(n) => (StatusCode::OK, axum::Json(json!({"instancesDeleted": n}))).into_response(),
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_applied_to_filter_times() {
        let p = "/api/instances";
        let utc = time(Some("2026-12-02T06:00:00Z"), "t", p).unwrap();
        let plus = time(Some("2026-12-02T08:00:00+02:00"), "t", p).unwrap();
        let minus = time(Some("2026-12-02T01:30:00-04:30"), "t", p).unwrap();
        assert_eq!((plus, minus), (utc, utc));
        assert!(time(Some("2026-12-02T08:00:00+2"), "t", p).is_err());
        assert!(time(Some("soon"), "t", p).is_err());
    }
}
