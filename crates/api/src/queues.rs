//! Queues over HTTP (`/{prefix}/queues…`, host keys only): managing queues, sending, peek-lock
//! receiving and settling messages, peeking and redriving the dead-letter queue.
//!
//! Queue settings use baton.toml's names (`lock_duration`, `max_delivery_count`, …); messages
//! and statistics are camelCase, as Service Bus' REST API names them.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use baton_core::Timestamp;
use baton_host::config::{ConfigDuration, QueueConfig};
use baton_host::{AuthLevel, Queues};
use baton_store::queues::{
    Message, MessageState, NewMessage, QueueError, QueueSpec, QueueStats, QueueStore, Received,
    Sent, SessionChoice, Settle,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::durable::store_problem;
use crate::problem::Problem;
use crate::state::{ApiState, Shared};

/// The most messages one receive, peek or batch may carry.
const MAX_BATCH: usize = 100;

fn problem(e: &QueueError, path: &str) -> Problem {
    match e {
        QueueError::NoQueue(_) => Problem::new(StatusCode::NOT_FOUND, e.to_string()).at(path),
        QueueError::LockLost(_) => Problem::new(StatusCode::GONE, e.to_string()).at(path),
        QueueError::Invalid(_) => Problem::new(StatusCode::BAD_REQUEST, e.to_string()).at(path),
        QueueError::Store(s) => store_problem(s, path),
    }
}

fn bad(path: &str, what: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, what).at(path)
}

/// axum's [`Path`], refusing a bad segment (a sequence number that is not one) with a problem
/// document: axum's own rejection is plain text.
pub struct Segments<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(Self(t)),
            Err(e) => Err(bad(parts.uri.path(), e.body_text())),
        }
    }
}

/// axum's [`Query`], refusing a bad parameter (`max=many`) with a problem document.
pub struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(Self(t)),
            Err(e) => Err(bad(parts.uri.path(), e.body_text())),
        }
    }
}

/// The request body within `[limits] max_body_bytes` (413 past it), whatever its media type:
/// a message body is the sender's bytes.
async fn read_body(
    s: &ApiState,
    headers: &HeaderMap,
    body: Body,
    path: &str,
) -> Result<Bytes, Problem> {
    let max = s.app.config.limits.max_body_bytes;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {max} bytes"),
        )
        .with("limit", json!(max))
        .at(path)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large())
}

/// The queues, after checking the caller holds a host key.
fn queues<'s>(s: &'s ApiState, headers: &HeaderMap, uri: &Uri) -> Result<&'s Queues, Problem> {
    s.authorize(AuthLevel::Admin, None, headers, uri.query(), uri.path())?;
    s.queues.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "this host has no store, so no queues: declare a queue in baton.toml or make a function durable",
        )
        .at(uri.path())
    })
}

fn run(r: Result<Response, Problem>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

fn time(ms: i64) -> Value {
    Value::String(Timestamp(ms).to_rfc3339())
}

/// A queue's settings, with baton.toml's names.
fn settings(q: &QueueSpec) -> Value {
    let d = |ms: i64| {
        ConfigDuration(baton_core::Duration::from_millis(
            u64::try_from(ms).unwrap_or(0),
        ))
        .to_string()
    };
    json!({
        "name": q.name,
        "lock_duration": d(q.lock_ms),
        "max_delivery_count": q.max_delivery,
        "time_to_live": q.default_ttl_ms.map(d),
        "dead_letter_on_expiration": q.dead_letter_on_expiry,
        "duplicate_detection": q.duplicate_window_ms.is_some(),
        "duplicate_detection_window": q.duplicate_window_ms.map(d),
        "sessions": q.sessions,
    })
}

fn stats(s: &QueueStats) -> Value {
    json!({
        "activeMessageCount": s.active,
        "scheduledMessageCount": s.scheduled,
        "lockedMessageCount": s.locked,
        "deadLetterMessageCount": s.dead_lettered,
    })
}

/// A message as clients see it: a JSON body as JSON, other UTF-8 as text, anything else as
/// base64 (`bodyEncoding` says which).
fn message(m: &Message) -> Value {
    let json_type = m
        .content_type
        .as_deref()
        .is_some_and(|t| t.contains("json"));
    let (body, encoding) = match std::str::from_utf8(&m.body) {
        Ok(text) if json_type => match serde_json::from_str::<Value>(text) {
            Ok(v) => (v, "json"),
            Err(_) => (Value::String(text.to_owned()), "text"),
        },
        Ok(text) => (Value::String(text.to_owned()), "text"),
        Err(_) => (Value::String(baton_core::interp::base64(&m.body)), "base64"),
    };
    json!({
        "sequenceNumber": m.sequence,
        "messageId": m.message_id,
        "sessionId": m.session_id,
        "correlationId": m.correlation_id,
        "contentType": m.content_type,
        "body": body,
        "bodyEncoding": encoding,
        "properties": m.properties,
        "enqueuedTime": time(m.enqueued_at),
        // Known until the first delivery: a lock and an abandon move `visible_at` on.
        "scheduledEnqueueTime": (m.delivery_count == 0 && m.state != MessageState::DeadLettered)
            .then(|| time(m.visible_at.max(m.enqueued_at))),
        "expiresAt": m.expires_at.map(time),
        "deliveryCount": m.delivery_count,
        "state": match m.state {
            MessageState::Scheduled => "Scheduled",
            MessageState::Active => "Active",
            MessageState::Locked => "Locked",
            MessageState::DeadLettered => "DeadLettered",
        },
        "lockToken": m.lock_token,
        "lockedUntil": m.locked_until.map(time),
        "deadLetterReason": m.dead_letter_reason,
        "deadLetterErrorDescription": m.dead_letter_description,
    })
}

/// `GET /queues`: every queue with its statistics.
pub async fn list(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let mut out = Vec::new();
        for spec in q.store().queues().await.map_err(|e| problem(&e, path))? {
            let st = q
                .store()
                .queue_stats(&spec.name)
                .await
                .map_err(|e| problem(&e, path))?;
            let mut v = settings(&spec);
            v["stats"] = stats(&st);
            out.push(v);
        }
        Ok(Json(json!({"queues": out})).into_response())
    }
    .await)
}

/// `GET /queues/{queue}`.
pub async fn get(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let spec = q
            .store()
            .queue(&name)
            .await
            .map_err(|e| problem(&e, path))?
            .ok_or_else(|| problem(&QueueError::NoQueue(name.clone()), path))?;
        let st = q
            .store()
            .queue_stats(&name)
            .await
            .map_err(|e| problem(&e, path))?;
        let mut v = settings(&spec);
        v["stats"] = stats(&st);
        Ok(Json(v).into_response())
    }
    .await)
}

/// `PUT /queues/{queue}`: creates or updates a queue from settings named as in baton.toml.
pub async fn put(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let body = read_body(&s, &headers, body, path).await?;
        let value: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| bad(path, format!("the body is not JSON: {e}")))?
        };
        let config: QueueConfig = serde_json::from_value(value)
            .map_err(|e| bad(path, format!("bad queue settings: {e}")))?;
        let spec = config.spec(&name);
        if let Some(p) = spec.configuration_problem() {
            return Err(bad(path, p));
        }
        let existed = q
            .store()
            .queue(&name)
            .await
            .map_err(|e| problem(&e, path))?
            .is_some();
        q.store()
            .put_queue(&spec)
            .await
            .map_err(|e| problem(&e, path))?;
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((status, Json(settings(&spec))).into_response())
    }
    .await)
}

/// `DELETE /queues/{queue}`: the queue and every message in it.
pub async fn delete(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        if q.store()
            .delete_queue(&name)
            .await
            .map_err(|e| problem(&e, path))?
        {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(problem(&QueueError::NoQueue(name), path))
        }
    }
    .await)
}

/// A header's text, or a 400 naming it.
fn header_text(headers: &HeaderMap, name: &str, path: &str) -> Result<Option<String>, Problem> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| bad(path, format!("the `{name}` header is not text")))
        })
        .transpose()
}

/// `Time-To-Live` / `timeToLive`: seconds, or a duration (`30s`, `PT30S`).
fn ttl(v: &Value, field: &str, path: &str) -> Result<i64, Problem> {
    baton_host::parse_ttl(v).map_err(|e| bad(path, format!("`{field}`: {e}")))
}

/// `Scheduled-Enqueue-Time` / `scheduledEnqueueTime`: an RFC 3339 time in UTC.
fn scheduled(text: &str, path: &str) -> Result<i64, Problem> {
    baton_host::parse_time(text).map_err(|e| bad(path, e))
}

/// `POST /queues/{queue}/messages`: one message; the body is the message's, and `Message-Id`,
/// `Session-Id`, `Correlation-Id`, `Time-To-Live`, `Scheduled-Enqueue-Time` and
/// `Message-Properties` (a JSON object) describe it.
pub async fn send(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let body = read_body(&s, &headers, body, path).await?;
        let text = |n: &str| header_text(&headers, n, path);
        let properties = match text("message-properties")? {
            None => Map::new(),
            Some(p) => match serde_json::from_str::<Value>(&p) {
                Ok(Value::Object(m)) => m,
                _ => return Err(bad(path, "`Message-Properties` must be a JSON object")),
            },
        };
        let m = NewMessage {
            message_id: text("message-id")?,
            body: body.to_vec(),
            content_type: text(header::CONTENT_TYPE.as_str())?,
            session_id: text("session-id")?,
            correlation_id: text("correlation-id")?,
            ttl_ms: text("time-to-live")?
                .map(|t| ttl(&Value::String(t), "Time-To-Live", path))
                .transpose()?,
            scheduled_at: text("scheduled-enqueue-time")?
                .map(|t| scheduled(&t, path))
                .transpose()?,
            properties,
        };
        let sent = q
            .store()
            .enqueue(&name, vec![m])
            .await
            .map_err(|e| problem(&e, path))?;
        Ok(sent_answer(&sent))
    }
    .await)
}

fn sent_json(s: &Sent) -> Value {
    match s {
        Sent::Accepted {
            sequence,
            message_id,
        } => {
            json!({"sequenceNumber": sequence, "messageId": message_id, "duplicate": false})
        }
        Sent::Duplicate { message_id } => json!({"messageId": message_id, "duplicate": true}),
    }
}

/// 201 when something was stored, 200 when every message was a duplicate.
fn sent_answer(sent: &[Sent]) -> Response {
    let stored = sent.iter().any(|s| matches!(s, Sent::Accepted { .. }));
    let status = if stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = if sent.len() == 1 {
        sent_json(&sent[0])
    } else {
        json!({"messages": sent.iter().map(sent_json).collect::<Vec<_>>()})
    };
    (status, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchMessage {
    body: Value,
    message_id: Option<String>,
    session_id: Option<String>,
    correlation_id: Option<String>,
    time_to_live: Option<Value>,
    scheduled_enqueue_time: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
}

/// `POST /queues/{queue}/messages/batch`: a JSON array of `{body, messageId, sessionId,
/// correlationId, timeToLive, scheduledEnqueueTime, properties}`, stored all or none; each
/// `body` is stored as JSON.
pub async fn send_batch(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let body = read_body(&s, &headers, body, path).await?;
        let items: Vec<BatchMessage> = serde_json::from_slice(&body).map_err(|e| {
            bad(
                path,
                format!("the body must be a JSON array of messages: {e}"),
            )
        })?;
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(bad(
                path,
                format!("a batch holds 1 to {MAX_BATCH} messages"),
            ));
        }
        let mut messages = Vec::with_capacity(items.len());
        for (i, m) in items.into_iter().enumerate() {
            let at = format!("{path} (message {i})");
            messages.push(NewMessage {
                message_id: m.message_id,
                body: m.body.to_string().into_bytes(),
                content_type: Some("application/json".to_owned()),
                session_id: m.session_id,
                correlation_id: m.correlation_id,
                ttl_ms: m
                    .time_to_live
                    .map(|t| ttl(&t, "timeToLive", &at))
                    .transpose()?,
                scheduled_at: m
                    .scheduled_enqueue_time
                    .map(|t| scheduled(&t, &at))
                    .transpose()?,
                properties: m.properties,
            });
        }
        let sent = q
            .store()
            .enqueue(&name, messages)
            .await
            .map_err(|e| problem(&e, path))?;
        Ok((
            if sent.iter().any(|s| matches!(s, Sent::Accepted { .. })) {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(json!({"messages": sent.iter().map(sent_json).collect::<Vec<_>>()})),
        )
            .into_response())
    }
    .await)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiveQuery {
    /// Seconds to wait for a message (default 0, at most 60).
    timeout: Option<f64>,
    max: Option<usize>,
    /// On a session queue: the session to receive from (any free one when absent)…
    session_id: Option<String>,
    /// …and the caller's lock on it, to go on receiving from a session it holds.
    session_token: Option<String>,
}

/// `POST /queues/{queue}/messages/head`: peek-lock receive. 200 with the locked messages (and
/// the session lock on a session queue), 204 when none came within `timeout`.
pub async fn receive(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    Params(rq): Params<ReceiveQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let wait = match rq.timeout {
            None => Duration::ZERO,
            Some(t) if t.is_finite() && t >= 0.0 => Duration::from_secs_f64(t.min(baton_host::MAX_WAIT.as_secs_f64())),
            Some(_) => return Err(bad(path, "`timeout` is a number of seconds")),
        };
        let max = rq.max.unwrap_or(1);
        if !(1..=MAX_BATCH).contains(&max) {
            return Err(bad(path, format!("`max` is 1 to {MAX_BATCH}")));
        }
        let spec = q
            .store()
            .queue(&name)
            .await
            .map_err(|e| problem(&e, path))?
            .ok_or_else(|| problem(&QueueError::NoQueue(name.clone()), path))?;
        if rq.session_token.is_some() && rq.session_id.is_none() {
            return Err(bad(path, "`sessionToken` needs the `sessionId` it holds"));
        }
        let session = match (spec.sessions, rq.session_id) {
            (false, None) => None,
            (false, Some(_)) => return Err(bad(path, format!("queue `{name}` has no sessions"))),
            (true, None) => Some(SessionChoice::Next),
            (true, Some(session_id)) => Some(SessionChoice::Id {
                session_id,
                token: rq.session_token,
            }),
        };
        let got: Received = q.receive(&name, max, wait, session).await.map_err(|e| problem(&e, path))?;
        if got.messages.is_empty() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let session = got.session.map(|l| {
            json!({"sessionId": l.session_id, "sessionToken": l.token, "lockedUntil": time(l.locked_until)})
        });
        Ok(Json(json!({
            "messages": got.messages.iter().map(message).collect::<Vec<_>>(),
            "session": session,
        }))
        .into_response())
    }
    .await)
}

/// `DELETE /queues/{queue}/messages/{sequence}/{lockToken}`: complete.
pub async fn complete(
    State(s): State<Shared>,
    Segments((name, seq, token)): Segments<(String, i64, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        q.store()
            .settle(&name, seq, &token, Settle::Complete)
            .await
            .map_err(|e| problem(&e, uri.path()))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeadLetterBody {
    reason: Option<String>,
    description: Option<String>,
}

/// `POST /queues/{queue}/messages/{sequence}/{lockToken}/{abandon|deadletter|renew}`.
pub async fn act(
    State(s): State<Shared>,
    Segments((name, seq, token, action)): Segments<(String, i64, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let body = read_body(&s, &headers, body, path).await?;
        let fail = |e: QueueError| problem(&e, path);
        match action.as_str() {
            "abandon" => {
                q.store()
                    .settle(&name, seq, &token, Settle::Abandon)
                    .await
                    .map_err(fail)?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            "deadletter" => {
                let b: DeadLetterBody = if body.is_empty() {
                    DeadLetterBody::default()
                } else {
                    serde_json::from_slice(&body)
                        .map_err(|e| bad(path, format!("bad dead-letter body: {e}")))?
                };
                let how = Settle::DeadLetter {
                    reason: b
                        .reason
                        .unwrap_or_else(|| "DeadLetteredByReceiver".to_owned()),
                    description: b.description,
                };
                q.store()
                    .settle(&name, seq, &token, how)
                    .await
                    .map_err(fail)?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            "renew" => {
                let until = q.store().renew(&name, seq, &token).await.map_err(fail)?;
                Ok(Json(json!({"lockedUntil": time(until)})).into_response())
            }
            other => Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!("`{other}` is not an action on a message (abandon, deadletter, renew)"),
            )
            .at(path)),
        }
    }
    .await)
}

/// `POST /queues/{queue}/sessions/{sessionId}/{sessionToken}/{renew|release}`.
pub async fn session(
    State(s): State<Shared>,
    Segments((name, session_id, token, action)): Segments<(String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let release = match action.as_str() {
            "renew" => false,
            "release" => true,
            other => {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    format!("`{other}` is not an action on a session (renew, release)"),
                )
                .at(path));
            }
        };
        let until = q
            .store()
            .renew_session(&name, &session_id, &token, release)
            .await
            .map_err(|e| problem(&e, path))?;
        Ok(match until {
            Some(u) => Json(json!({"lockedUntil": time(u)})).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await)
}

#[derive(Debug, Deserialize)]
pub struct PeekQuery {
    from: Option<i64>,
    max: Option<usize>,
}

async fn peek_of(
    s: &ApiState,
    name: &str,
    pq: &PeekQuery,
    dead: bool,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, Problem> {
    let q = queues(s, headers, uri)?;
    let path = uri.path();
    let max = pq.max.unwrap_or(MAX_BATCH);
    if !(1..=MAX_BATCH).contains(&max) {
        return Err(bad(path, format!("`max` is 1 to {MAX_BATCH}")));
    }
    let got = q
        .store()
        .peek(name, pq.from.unwrap_or(0), max, dead)
        .await
        .map_err(|e| problem(&e, path))?;
    Ok(Json(json!({"messages": got.iter().map(message).collect::<Vec<_>>()})).into_response())
}

/// `GET /queues/{queue}/messages?from=&max=`: peek, locking nothing.
pub async fn peek(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    Params(pq): Params<PeekQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run(peek_of(&s, &name, &pq, false, &headers, &uri).await)
}

/// `GET /queues/{queue}/deadletter?from=&max=`: peek the dead-letter queue.
pub async fn peek_dead(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    Params(pq): Params<PeekQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run(peek_of(&s, &name, &pq, true, &headers, &uri).await)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    sequences: Option<Vec<i64>>,
}

/// `POST /queues/{queue}/deadletter/redrive`: `{"sequences": [..]}`, or every dead-lettered
/// message with no body.
pub async fn redrive(
    State(s): State<Shared>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    run(async {
        let q = queues(&s, &headers, &uri)?;
        let path = uri.path();
        let body = read_body(&s, &headers, body, path).await?;
        let b: RedriveBody = if body.is_empty() {
            RedriveBody::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| bad(path, format!("bad redrive body: {e}")))?
        };
        let moved = q
            .store()
            .redrive(&name, b.sequences.as_deref())
            .await
            .map_err(|e| problem(&e, path))?;
        Ok(Json(json!({"redriven": moved})).into_response())
    }
    .await)
}
