//! The HTTP side of `call: http`: one pooled client, requests from the core, responses back.

use std::net::SocketAddr;
use std::time::Duration;

use baton_core::interp::{HttpRequest, HttpResponse, SecretAuth, Secrets, base64};
use baton_core::model::AuthScheme;
use baton_core::{ErrorKind, WorkflowError};
use serde_json::Value;

use crate::Error;
use crate::outbound::{AddressPolicy, Blocked, Resolver};

/// How the HTTP client behaves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Limit of one HTTP attempt (Logic Apps uses 120 s too).
    pub attempt_timeout: Duration,
    /// How long to wait between polls of a `202 Accepted` answer without `Retry-After`.
    pub poll_interval: Duration,
    /// Largest response body read, in bytes.
    pub max_body: usize,
    /// Host names answered from this table instead of DNS (`host` → address). The policy
    /// applies to these addresses too.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Which addresses calls may connect to (by default, no internal one).
    pub policy: AddressPolicy,
    /// Extra trusted root certificates, PEM or DER.
    pub extra_roots: Vec<Vec<u8>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            max_body: 16 * 1024 * 1024,
            resolve: Vec::new(),
            policy: AddressPolicy::default(),
            extra_roots: Vec::new(),
        }
    }
}

/// Sends the core's [`HttpRequest`]s. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct HttpInvoker {
    client: reqwest::Client,
    max_body: usize,
    policy: AddressPolicy,
    /// What secret-based authentication reads, at send time.
    secrets: Secrets,
}

impl HttpInvoker {
    /// Builds the client (rustls with the ring provider, no automatic redirects: the core decides
    /// what a 3xx means per task).
    pub fn new(options: &HttpOptions) -> Result<Self, Error> {
        // A second installation (another invoker in the same process) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.attempt_timeout)
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")));
        let resolver = Resolver {
            policy: options.policy.clone(),
            overrides: options.resolve.clone().into(),
        };
        builder = builder.dns_resolver(resolver);
        for cert in &options.extra_roots {
            let cert = reqwest::Certificate::from_pem(cert)
                .or_else(|_| reqwest::Certificate::from_der(cert))
                .map_err(|e| Error::Http(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| Error::Http(e.to_string()))?;
        Ok(Self {
            client,
            max_body: options.max_body,
            policy: options.policy.clone(),
            secrets: Secrets::default(),
        })
    }

    /// The same client, reading secret-based authentication from `secrets`.
    #[must_use]
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// The `Authorization` value made from the secret `auth` names; marked sensitive, so the
    /// client never prints it.
    fn authorization(
        &self,
        auth: &SecretAuth,
        task: &str,
    ) -> Result<reqwest::header::HeaderValue, WorkflowError> {
        let field = |name: &str| {
            self.secrets
                .get(&auth.secret)
                .and_then(|s| s.get(name))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    WorkflowError::new(
                        ErrorKind::Configuration,
                        task,
                        format!(
                            "secret `{}` has no string `{name}` for {} authentication",
                            auth.secret,
                            match auth.scheme {
                                AuthScheme::Basic => "basic",
                                AuthScheme::Bearer => "bearer",
                            }
                        ),
                    )
                })
        };
        let text = match auth.scheme {
            AuthScheme::Basic => format!(
                "Basic {}",
                base64(format!("{}:{}", field("username")?, field("password")?).as_bytes())
            ),
            AuthScheme::Bearer => format!("Bearer {}", field("token")?),
        };
        let mut value = reqwest::header::HeaderValue::try_from(text).map_err(|_| {
            WorkflowError::new(
                ErrorKind::Configuration,
                task,
                format!(
                    "secret `{}` holds characters a header cannot carry",
                    auth.secret
                ),
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Sends one request. Transport failures come back as `communication` errors and an
    /// attempt that runs out of time as a `timeout` error, both at `task`.
    pub async fn send(&self, req: &HttpRequest, task: &str) -> Result<HttpResponse, WorkflowError> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
            WorkflowError::new(
                ErrorKind::Configuration,
                task,
                format!("`{}` is not an HTTP method", req.method),
            )
        })?;
        // The resolver checks the addresses names resolve to; a literal address is never
        // resolved, so it is checked here (the parser has made `0x7f.1` into `127.0.0.1`).
        if let Ok(url) = reqwest::Url::parse(&req.uri) {
            let literal = url
                .host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|h| h.parse::<std::net::IpAddr>().ok());
            if let Some(addr) = literal {
                self.policy
                    .check(addr)
                    .map_err(|b| blocked(req, task, &b))?;
            }
        }
        let mut builder = self.client.request(method, &req.uri);
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        for (k, v) in &req.headers {
            // Credentials are marked sensitive, so the client never prints them.
            match reqwest::header::HeaderValue::try_from(v.as_str()) {
                Ok(mut value) => {
                    value.set_sensitive(is_credential(k));
                    builder = builder.header(k, value);
                }
                // The builder reports the bad value when the request is sent.
                Err(_) => builder = builder.header(k, v),
            }
        }
        if let Some(auth) = &req.auth {
            builder = builder.header(
                reqwest::header::AUTHORIZATION,
                self.authorization(auth, task)?,
            );
        }
        if let Some(body) = &req.body {
            builder = match body {
                Value::String(s) => builder.body(s.clone()),
                other => builder.json(other),
            };
        }
        let fail = |e: reqwest::Error| {
            if e.is_timeout() {
                WorkflowError::new(
                    ErrorKind::Timeout,
                    task,
                    format!("{} {} timed out", req.method, req.uri),
                )
            } else if let Some(b) = blocked_cause(&e) {
                blocked(req, task, b)
            } else {
                WorkflowError::new(
                    ErrorKind::Communication,
                    task,
                    format!("{} {} failed: {e}", req.method, req.uri),
                )
                .with_status(503)
            }
        };
        let resp = builder.send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let is_json = headers
            .iter()
            .any(|(k, v)| k == "content-type" && (v.contains("/json") || v.contains("+json")));
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(WorkflowError::new(
                ErrorKind::Communication,
                task,
                format!(
                    "the response of {} {} is larger than {} bytes",
                    req.method, req.uri, self.max_body
                ),
            ));
        }
        let bytes = resp.bytes().await.map_err(fail)?;
        if bytes.len() > self.max_body {
            return Err(WorkflowError::new(
                ErrorKind::Communication,
                task,
                format!(
                    "the response of {} {} is larger than {} bytes",
                    req.method, req.uri, self.max_body
                ),
            ));
        }
        let content = if bytes.is_empty() {
            Value::Null
        } else if is_json {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        Ok(HttpResponse {
            status,
            headers,
            content,
            raw_base64: base64(&bytes),
        })
    }
}

/// Whether a header carries a credential.
fn is_credential(name: &str) -> bool {
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-functions-key",
        "x-api-key",
    ]
    .iter()
    .any(|c| name.eq_ignore_ascii_case(c))
}

/// The policy refusal behind a transport error, if that is what it is.
fn blocked_cause(e: &reqwest::Error) -> Option<&Blocked> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(b) = c.downcast_ref::<Blocked>() {
            return Some(b);
        }
        cause = c.source();
    }
    None
}

/// A call the outbound address policy refused: a `communication` error (403) naming the rule.
fn blocked(req: &HttpRequest, task: &str, b: &Blocked) -> WorkflowError {
    WorkflowError::new(
        ErrorKind::Communication,
        task,
        format!("{} {} was not sent: {b}", req.method, req.uri),
    )
    .with_status(403)
}
