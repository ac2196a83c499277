//! One error type for the whole API, answered as RFC 9457 `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_core::WorkflowError;
use serde_json::{Map, Value, json};

/// A problem document: what went wrong, where, and (in `extensions`) the details a client can act on.
///
/// Boxed so that `Result<_, Problem>` stays small on the happy path.
#[derive(Debug, Clone)]
pub struct Problem(Box<ProblemData>);

/// The members of a [`Problem`].
#[derive(Debug, Clone)]
pub struct ProblemData {
    pub status: StatusCode,
    pub type_: String,
    pub title: String,
    pub detail: Option<String>,
    pub instance: Option<String>,
    pub extensions: Map<String, Value>,
    /// Extra response headers (`Allow`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl std::ops::Deref for Problem {
    type Target = ProblemData;
    fn deref(&self) -> &ProblemData {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemData {
        &mut self.0
    }
}

impl Problem {
    /// A problem with the generic `about:blank` type (its title is the status's phrase).
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self(Box::new(ProblemData {
            status,
            type_: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: Some(detail.into()),
            instance: None,
            extensions: Map::new(),
            headers: Vec::new(),
        }))
    }

    /// Sets `instance` (usually the request path).
    pub fn at(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// A workflow fault, keeping the DSL error's type, title and detail. The HTTP status is the
    /// error's when it is a client or server error status, 500 otherwise.
    pub fn from_fault(e: &WorkflowError, instance: &str) -> Self {
        let status = StatusCode::from_u16(e.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut p = Self(Box::new(ProblemData {
            status,
            type_: e.type_.clone(),
            title: e
                .title
                .clone()
                .unwrap_or_else(|| "The workflow faulted".to_owned()),
            detail: e.detail.clone(),
            instance: Some(instance.to_owned()),
            extensions: Map::new(),
            headers: Vec::new(),
        }));
        if let Some(task) = &e.instance {
            p.extensions.insert("task".to_owned(), json!(task));
        }
        p
    }
}

impl Problem {
    /// The problem document as JSON.
    pub fn into_value(self) -> Value {
        self.body()
    }

    fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".to_owned(), json!(self.type_));
        body.insert("title".to_owned(), json!(self.title));
        body.insert("status".to_owned(), json!(self.status.as_u16()));
        if let Some(d) = &self.detail {
            body.insert("detail".to_owned(), json!(d));
        }
        if let Some(i) = &self.instance {
            body.insert("instance".to_owned(), json!(i));
        }
        body.extend(self.extensions.clone());
        Value::Object(body)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), title = %self.title, detail = ?self.detail, "server error");
        }
        let body = self.body();
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (k, v) in self.0.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}
