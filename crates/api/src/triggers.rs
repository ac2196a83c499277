//! `/{prefix}/{route}`: HTTP triggers.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use baton_host::{BeginError, Begun, Function, Mode};
use serde_json::{Map, Value, json};

use crate::instances;
use crate::problem::Problem;
use crate::state::{ApiState, Shared};

/// Runs the function bound to `route` with the request body as input.
///
/// Takes the request whole rather than as `HeaderMap`, `Uri` and `Method` extractors, which
/// would each copy their part of it.
pub async fn invoke(State(s): State<Shared>, Path(route): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match run(&s, &route, &parts, body).await {
        Ok(r) => r,
        Err(p) => p.at(parts.uri.path()).into_response(),
    }
}

async fn run(s: &ApiState, route: &str, parts: &Parts, body: Body) -> Result<Response, Problem> {
    let (method, headers, uri) = (&parts.method, &parts.headers, &parts.uri);
    let f = s.app.function(route).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            format!("no function is bound to the route `{route}`"),
        )
    })?;
    if !f.methods.iter().any(|m| m == method.as_str()) {
        return Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("`{}` accepts {}", f.name, f.methods.join(", ")),
        )
        .header(header::ALLOW, &f.methods.join(", ")));
    }
    s.authorize(f.auth, Some(&f.name), headers, uri.query(), uri.path())?;
    let limits = &s.app.config.limits;
    let input = if *method == Method::GET || *method == Method::DELETE {
        query_input(uri)
    } else {
        crate::body::read_json(headers, body, limits.max_body_bytes, limits.max_json_depth).await?
    };
    check_schema(f, &input)?;
    if f.is_durable() {
        // Boxed: the durable path's store futures are large, and inline they would make every
        // trigger's future that large, which axum and hyper then move several times per request.
        return Box::pin(durable(s, f, parts, input)).await;
    }
    // A sync trigger answers with the result of an instance that finishes at once, so that
    // instance need not be kept for `GET /api/instances/{id}`.
    let begin = match f.mode {
        Mode::Sync => baton_host::Express::start_answering,
        Mode::Async => baton_host::Express::start,
    };
    let mut started = begin(&s.express, f, input).map_err(|full| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, full.to_string())
            .header(header::RETRY_AFTER, "1")
    })?;
    let prefix = s.prefix();
    let last = match f.mode {
        Mode::Async => None,
        Mode::Sync => started.wait(f.wait.to_std()).await,
    };
    Ok(match last {
        Some(snap) => instances::finished(&snap, uri.path()),
        None => instances::accepted(
            prefix,
            &started.id,
            &f.retry_after.to_string(),
            check_status_body(headers, prefix, &started.id),
        ),
    })
}

/// Starts a durable instance: answered only once it is committed.
async fn durable(
    s: &ApiState,
    f: &Function,
    parts: &Parts,
    input: Value,
) -> Result<Response, Problem> {
    let path = parts.uri.path();
    let inst = s.durable.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("`{}` is durable but this host has no store", f.name),
        )
    })?;
    let key = idempotency_key(&parts.headers)?;
    let begun = inst.begin(f, input, key).await.map_err(|e| match e {
        BeginError::KeyReused { ref instance } => Problem::new(StatusCode::CONFLICT, e.to_string())
            .with("instanceId", Value::String(instance.clone())),
        BeginError::Store(e) => crate::durable::store_problem(&e, path),
    })?;
    let mut row = begun.row().clone();
    if f.mode == Mode::Sync && !row.status.is_terminal() {
        match inst.wait(&row.id, f.wait.to_std()).await {
            Ok(Some(r)) => row = r,
            Ok(None) => {}
            Err(e) => return Err(crate::durable::store_problem(&e, path)),
        }
    }
    if f.mode == Mode::Sync && row.status.is_terminal() {
        return Ok(instances::finished_row(
            &row,
            &format!("/{}/instances/{}", s.prefix(), row.id),
        ));
    }
    let prefix = s.prefix();
    let mut r = instances::accepted(
        prefix,
        &row.id,
        &f.retry_after.to_string(),
        durable_status_body(&parts.headers, prefix, &row.id),
    );
    if matches!(begun, Begun::Replayed(_)) {
        r.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(r)
}

/// The longest `Idempotency-Key` accepted.
const MAX_KEY_LEN: usize = 200;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = |detail: String| {
        Problem::new(StatusCode::BAD_REQUEST, detail)
            .with("header", Value::String("Idempotency-Key".to_owned()))
    };
    let k = v
        .to_str()
        .map_err(|_| bad("Idempotency-Key must be visible ASCII text".to_owned()))?
        .trim();
    if k.is_empty() || k.len() > MAX_KEY_LEN {
        return Err(bad(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters long"
        )));
    }
    Ok(Some(k))
}

/// The Durable Functions check-status body of a durable instance: where to poll and how to
/// manage it.
fn durable_status_body(headers: &HeaderMap, prefix: &str, id: &str) -> Value {
    let base = status_uri(headers, prefix, id);
    json!({
        "id": id,
        "statusQueryGetUri": base,
        "sendEventPostUri": format!("{base}/raiseEvent/{{eventName}}"),
        "terminatePostUri": format!("{base}/terminate?reason={{text}}"),
        "suspendPostUri": format!("{base}/suspend?reason={{text}}"),
        "resumePostUri": format!("{base}/resume?reason={{text}}"),
        "rewindPostUri": format!("{base}/rewind?reason={{text}}"),
        "purgeHistoryDeleteUri": base,
    })
}

/// A GET trigger's input: its query parameters as an object (`code` excluded).
fn query_input(uri: &Uri) -> Value {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let m: Map<String, Value> = pairs
        .into_iter()
        .filter(|(k, _)| k != "code")
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Value::Object(m)
}

/// Input-schema failures are the caller's: 400 listing every failing JSON pointer, before any
/// instance is created.
fn check_schema(f: &Function, input: &Value) -> Result<(), Problem> {
    let Some(schema) = &f.workflow.input.schema else {
        return Ok(());
    };
    let violations = schema.violations(input);
    if violations.is_empty() {
        return Ok(());
    }
    let errors: Vec<Value> = violations
        .iter()
        .map(|v| json!({"pointer": if v.pointer.is_empty() { "/" } else { &v.pointer }, "detail": v.message}))
        .collect();
    let mut p = Problem::new(
        StatusCode::BAD_REQUEST,
        format!(
            "the body does not match the input schema of `{}` ({} {})",
            f.name,
            errors.len(),
            if errors.len() == 1 { "error" } else { "errors" }
        ),
    )
    .with("errors", Value::Array(errors));
    p.type_ = baton_core::ErrorKind::Validation.type_uri();
    p.title = "Validation Error".to_owned();
    Err(p)
}

/// The Durable Functions check-status body of a started instance.
fn check_status_body(headers: &HeaderMap, prefix: &str, id: &str) -> Value {
    json!({
        "id": id,
        "statusQueryGetUri": status_uri(headers, prefix, id),
    })
}

/// The absolute status URI of an instance, on the host the request named.
fn status_uri(headers: &HeaderMap, prefix: &str, id: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/{prefix}/instances/{id}")
}
