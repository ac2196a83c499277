//! `call`, `emit` and `listen`: the tasks that talk to the outside.

use crate::expr::Template;

/// `call: http`.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: Template,
    /// The endpoint URI: a template with `{name}` placeholders, or an expression.
    pub endpoint: EndpointUri,
    pub headers: Option<Template>,
    pub query: Option<Template>,
    pub body: Option<Template>,
    pub output: HttpOutput,
    pub redirect: bool,
    pub authentication: Option<Authentication>,
    /// Whether a `202 Accepted` with `Location` is polled until the final answer (the
    /// asynchronous pattern). On unless the task's `metadata.asyncPattern` is `false`.
    pub poll: bool,
}

/// `call: openapi`: the operation `operation_id` of the OpenAPI (or Swagger 2.0) document at
/// `document`, called with `parameters`.
#[derive(Debug, Clone)]
pub struct OpenApiCall {
    /// A `GET` of the document (its endpoint, with the endpoint's own authentication).
    pub document: HttpCall,
    pub operation_id: String,
    /// An object of parameter values by name (path, query, header and cookie parameters, and
    /// `body` for the request body).
    pub parameters: Option<Template>,
    /// The operation's authentication.
    pub authentication: Option<Authentication>,
    pub output: HttpOutput,
    pub redirect: bool,
    pub poll: bool,
}

/// Where an HTTP call goes.
#[derive(Debug, Clone)]
pub enum EndpointUri {
    /// A literal URI template whose `{name}` placeholders take top-level input fields.
    Template(String),
    /// A runtime expression producing the URI.
    Expr(Template),
}

/// `output` of an HTTP call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpOutput {
    /// The parsed body.
    #[default]
    Content,
    /// `{request, statusCode, headers, content}`.
    Response,
    /// The body as base64.
    Raw,
}

/// Supported endpoint authentication.
#[derive(Debug, Clone)]
pub enum Authentication {
    Basic {
        username: Template,
        password: Template,
    },
    Bearer {
        token: Template,
    },
    /// `basic: {use: name}` or `bearer: {use: name}`: the credentials are the named secret's
    /// (`username` and `password`, or `token`), read by the shell when it sends the request, so
    /// they are never part of the stored request.
    Secret {
        scheme: AuthScheme,
        secret: String,
    },
}

/// The scheme of a secret-based authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `Authorization: Basic`, from the secret's `username` and `password`.
    Basic,
    /// `Authorization: Bearer`, from the secret's `token`.
    Bearer,
}

/// `emit.event.with`: the CloudEvent attributes to send.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    pub with: Template,
}

/// How a `listen` task consumes events.
#[derive(Debug, Clone)]
pub enum ListenStrategy {
    /// Every filter must match one event.
    All(Vec<Template>),
    /// Any filter matching one event completes the task.
    Any(Vec<Template>),
    /// Exactly one filter.
    One(Template),
}

/// `listen.to`.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    pub strategy: ListenStrategy,
}
