//! `/{prefix}/{route}`: HTTP triggers.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use baton_host::{Function, Mode};
use serde_json::{Map, Value, json};

use crate::instances;
use crate::problem::Problem;
use crate::state::ApiState;

/// Runs the function bound to `route` with the request body as input.
///
/// Takes the request whole rather than as `HeaderMap`, `Uri` and `Method` extractors, which
/// would each copy their part of it.
pub async fn invoke(
    State(s): State<ApiState>,
    Path(route): Path<String>,
    req: Request,
) -> Response {
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
            "10",
            check_status_body(headers, prefix, &started.id),
        ),
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
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("http://{host}/{prefix}/instances/{id}");
    json!({
        "id": id,
        "statusQueryGetUri": base,
    })
}
