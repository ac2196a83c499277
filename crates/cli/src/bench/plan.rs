//! What one run does: the request, where it goes, how fast, for how long.
//!
//! A `Plan` is built once from the arguments and read by every connection; building it does the
//! start-up IO (reading `--body`, resolving the host) so that the load loop only sends.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use serde_json::Value;

use super::BenchArgs;

/// The body `--echo` sends when none is given: the person-validation sample's shape.
pub(super) const DEFAULT_ECHO_BODY: &str = r#"{"Name":{"First":"John"}}"#;

#[derive(Debug)]
pub(super) struct Plan {
    /// The URL as given, for the report.
    pub(super) url: Uri,
    /// The one address every connection goes to, resolved once.
    pub(super) addr: SocketAddr,
    pub(super) request: Template,
    pub(super) connections: usize,
    pub(super) pace: Pace,
    pub(super) stop: Stop,
    pub(super) warmup: Duration,
    pub(super) timeout: Duration,
    /// With `--check-echo`: the body every response must equal.
    pub(super) expect_echo: Option<Expected>,
}

/// Closed loop (back to back) or open loop (a fixed total rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Pace {
    Closed,
    Open { per_second: f64 },
}

/// When the measured part of a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    After(Duration),
    Requests(u64),
}

/// The request every connection sends, built once.
#[derive(Debug)]
pub(super) struct Template {
    method: Method,
    /// Origin form (`/path?query`): hyper's connections send the URI as it is.
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    pub(super) fn request(&self) -> Request<http_body_util::Full<Bytes>> {
        let mut req = Request::new(http_body_util::Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    pub(super) fn method(&self) -> &Method {
        &self.method
    }
}

/// The body an echo must return: its bytes, and its JSON value for bodies the server reformats.
#[derive(Debug)]
pub(super) struct Expected {
    bytes: Bytes,
    value: Option<Value>,
}

impl Expected {
    pub(super) fn matches(&self, body: &[u8]) -> bool {
        body == self.bytes
            || self.value.as_ref().is_some_and(|want| {
                serde_json::from_slice::<Value>(body).is_ok_and(|got| &got == want)
            })
    }
}

impl Plan {
    /// The plan for loading `url` as `args` say. Errors are usage errors, worded for the user.
    pub(super) fn new(args: &BenchArgs, url: Uri) -> Result<Plan, String> {
        let addr = resolve(&url)?;
        let body = match (&args.body, &args.body_json) {
            (Some(path), _) => std::fs::read(path)
                .map(Bytes::from)
                .map_err(|e| format!("cannot read the body file {}: {e}", path.display()))?,
            (None, Some(json)) => Bytes::from(json.clone()),
            (None, None) if args.echo => Bytes::from_static(DEFAULT_ECHO_BODY.as_bytes()),
            (None, None) => Bytes::new(),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &args.headers {
            headers.append(name.clone(), value.clone());
        }
        if !body.is_empty() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if !headers.contains_key(HOST) {
            let authority = url.authority().map_or("", |a| a.as_str());
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let host = HeaderValue::from_str(host).map_err(|e| format!("bad host: {e}"))?;
            headers.insert(HOST, host);
        }
        let path = url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()
            .map_err(|e| format!("bad path: {e}"))?;
        let expect_echo = (args.check_echo || args.echo).then(|| Expected {
            value: serde_json::from_slice(&body).ok(),
            bytes: body.clone(),
        });
        Ok(Plan {
            url,
            addr,
            request: Template {
                method: args.method.clone(),
                path,
                headers,
                body,
            },
            connections: args.connections as usize,
            pace: match args.rate {
                Some(per_second) => Pace::Open { per_second },
                None => Pace::Closed,
            },
            stop: match args.requests {
                Some(n) => Stop::Requests(n),
                None => Stop::After(args.duration),
            },
            warmup: args.warmup,
            timeout: args.timeout,
            expect_echo,
        })
    }
}

/// The first address of the URL's host. Every connection uses it, so a name that resolves to
/// several addresses is still loaded at one.
fn resolve(url: &Uri) -> Result<SocketAddr, String> {
    let host = url.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(80);
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}
