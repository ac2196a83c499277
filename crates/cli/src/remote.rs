//! The HTTP side shared by the commands that are clients of a running `baton serve`
//! (`baton instances`, `baton queues`): one reqwest client, the URL of a route under the API's
//! prefix, one request at a time, and how a failure is told on standard error.
//!
//! Exit status: 1 when the server cannot be reached or refuses, 2 for bad input found only at
//! run time (clap answers bad arguments with 2 too).

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::instances::render;

/// The header carrying a paging token, both ways.
const CONTINUATION: &str = "x-ms-continuation-token";

/// Why a request came to nothing.
#[derive(Debug)]
pub enum Error {
    /// No HTTP answer: refused, unresolvable, timed out.
    Unreachable { url: String, cause: String },
    /// An answer other than 2xx; `doc` is its JSON body (a problem document) or `Null`.
    Refused {
        status: u16,
        doc: Value,
        body: String,
    },
    /// A 2xx answer whose body is not what the API promises.
    Unexpected { url: String, what: String },
    /// Bad input found only at run time (an unreadable `--data` or `--file`).
    Usage(String),
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// The paging token of a list's page (`x-ms-continuation-token`), when there is a next one.
    pub continuation: Option<String>,
}

impl Answer {
    pub fn json(&self, url: &Url) -> Result<Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Unexpected {
            url: without_query(url),
            what: format!("the answer is not JSON ({e})"),
        })
    }

    /// The answer's JSON, or `what` is missing from it.
    pub fn member(&self, url: &Url, what: &str) -> Result<Value, Error> {
        let doc = self.json(url)?;
        if doc.get(what).is_none() {
            return Err(Error::Unexpected {
                url: without_query(url),
                what: format!("the answer has no `{what}`"),
            });
        }
        Ok(doc)
    }
}

/// A request body and its media type.
#[derive(Debug)]
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Body {
    pub fn json(v: &Value) -> Self {
        Self::json_text(v.to_string())
    }

    /// A body that is already JSON text.
    pub fn json_text(text: String) -> Self {
        Self {
            content_type: "application/json".to_owned(),
            bytes: text.into_bytes(),
        }
    }
}

/// One request: the route's URL, extra headers, a body, and how much longer than the client's
/// timeout the server may take (a long-polling receive's wait).
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Body>,
    pub wait: Duration,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: None,
            wait: Duration::ZERO,
        }
    }

    /// Asks for the page after the one `token` came with.
    pub fn continuation(mut self, token: Option<&str>) -> Self {
        if let Some(t) = token {
            self.headers.push((CONTINUATION, t.to_owned()));
        }
        self
    }
}

/// A client of one server's routes under `{base}/{prefix}/{collection}`.
#[derive(Debug)]
pub struct Remote {
    http: reqwest::Client,
    base: Url,
    /// The API prefix's segments, then the collection (`instances`, `queues`).
    path: Vec<String>,
    key: Option<String>,
    timeout: Duration,
}

impl Remote {
    /// `prefix` is the API's route prefix (`api`, or `/runtime/webhooks/durabletask/`); `key`
    /// goes with every request as `x-functions-key`; `timeout` bounds each request.
    pub fn new(
        base: Url,
        prefix: &str,
        collection: &str,
        key: Option<String>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        // reqwest is built with `rustls-no-provider`; the engine installs ring the same way.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            path: prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .chain([collection])
                .map(str::to_owned)
                .collect(),
            key: key.filter(|k| !k.is_empty()),
            timeout,
        })
    }

    /// `{base}/{prefix}/{collection}/{segments…}`, each segment percent-encoded; the base's own
    /// query is dropped.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(&self.path);
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// Sends one request; any answer but 2xx is an error.
    pub async fn send(&self, r: Request) -> Result<Answer, Error> {
        let limit = self.timeout + r.wait;
        let mut req = self.http.request(r.method, r.url.clone()).timeout(limit);
        if let Some(k) = &self.key {
            req = req.header("x-functions-key", k);
        }
        for (name, value) in r.headers {
            req = req.header(name, value);
        }
        if let Some(b) = r.body {
            req = req.header("content-type", b.content_type).body(b.bytes);
        }
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: without_query(&r.url),
            cause: if e.is_timeout() {
                format!("no answer within {}", humantime::format_duration(limit))
            } else {
                root_cause(&e)
            },
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let continuation = resp
            .headers()
            .get(CONTINUATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        Ok(Answer {
            status,
            body,
            continuation,
        })
    }
}

/// Runs `command` (named in messages as `baton {name}`) with a client made by `connect`, on a
/// runtime of its own, and tells how it ended.
pub fn execute<C, F>(
    name: &str,
    connect: impl FnOnce() -> Result<C, Error>,
    command: impl FnOnce(C) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), Error>>,
{
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))
        .and_then(|rt| {
            let client = connect()?;
            rt.block_on(command(client))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(name, &e),
    }
}

/// Prints why `baton {name}` failed and returns its exit status.
fn report(name: &str, e: &Error) -> ExitCode {
    match e {
        Error::Unreachable { url, cause } => {
            eprintln!("baton {name}: could not reach {url}: {cause}");
        }
        Error::Refused { status, doc, body } => {
            let text = render::problem(*status, doc);
            eprint!("baton {name}: {text}");
            if doc.is_null() && !body.is_empty() {
                eprintln!("  {}", render::truncate(body, 500));
            }
        }
        Error::Unexpected { url, what } => {
            eprintln!("baton {name}: {url}: {what}");
        }
        Error::Usage(what) => {
            eprintln!("baton {name}: {what}");
            return ExitCode::from(2);
        }
    }
    ExitCode::from(1)
}

fn refused(status: StatusCode, body: &[u8]) -> Error {
    Error::Refused {
        status: status.as_u16(),
        doc: serde_json::from_slice(body).unwrap_or(Value::Null),
        body: String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// The URL for messages: a key given as `?code=` must not be echoed.
pub fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// The innermost cause (`Connection refused (os error 111)`), not reqwest's outer wrapper.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(base: &str, prefix: &str, collection: &str) -> Remote {
        Remote::new(
            Url::parse(base).unwrap(),
            prefix,
            collection,
            None,
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn routes_sit_under_the_base_the_prefix_and_the_collection_with_encoded_segments() {
        let c = remote("http://127.0.0.1:7071", "api", "instances");
        assert_eq!(
            c.url(&["a b/c", "raiseEvent", "go"], &[]).as_str(),
            "http://127.0.0.1:7071/api/instances/a%20b%2Fc/raiseEvent/go"
        );
        let c = remote(
            "https://h/base/?x=1",
            "/runtime/webhooks/durabletask/",
            "instances",
        );
        assert_eq!(
            c.url(&[], &[("name", "A&B".to_owned())]).as_str(),
            "https://h/base/runtime/webhooks/durabletask/instances?name=A%26B"
        );
        let c = remote("http://127.0.0.1:7071", "api", "queues");
        assert_eq!(
            c.url(&["orders", "messages", "3", "3.1"], &[]).as_str(),
            "http://127.0.0.1:7071/api/queues/orders/messages/3/3.1"
        );
        let c = remote("https://h/base/?x=1", "/v1/", "queues");
        assert_eq!(
            c.url(
                &["q", "messages", "head"],
                &[("sessionId", "a&b".to_owned())]
            )
            .as_str(),
            "https://h/base/v1/queues/q/messages/head?sessionId=a%26b"
        );
        assert_eq!(
            remote("http://h", "", "queues").url(&[], &[]).as_str(),
            "http://h/queues"
        );
        assert_eq!(
            remote("http://h", "", "instances")
                .url(&["x"], &[])
                .as_str(),
            "http://h/instances/x"
        );
    }

    #[test]
    fn a_refusal_keeps_its_problem_document() {
        let Error::Refused { status, doc, .. } = refused(
            StatusCode::GONE,
            br#"{"title":"Gone","status":410,"detail":"the lock is lost"}"#,
        ) else {
            panic!("not a refusal");
        };
        assert_eq!(
            (status, doc["detail"].as_str()),
            (410, Some("the lock is lost"))
        );
        let Error::Refused { doc, body, .. } = refused(StatusCode::BAD_GATEWAY, b"bad gateway\n")
        else {
            panic!("not a refusal");
        };
        assert_eq!((doc, body.as_str()), (Value::Null, "bad gateway"));
    }

    #[test]
    fn a_continuation_token_rides_in_its_header_only_when_there_is_one() {
        let url = Url::parse("http://h/api/instances").unwrap();
        let r = Request::new(Method::GET, url.clone()).continuation(None);
        assert!(r.headers.is_empty());
        let r = Request::new(Method::GET, url).continuation(Some("tok"));
        assert_eq!(r.headers, vec![(CONTINUATION, "tok".to_owned())]);
    }
}
