//! The HTTP side of `baton queues`: one reqwest client and the routes of docs/queues.md.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

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
    /// Bad input found only at run time (an unreadable `--file`).
    Usage(String),
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
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
        Self {
            content_type: "application/json".to_owned(),
            bytes: v.to_string().into_bytes(),
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
}

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    prefix: Vec<String>,
    key: Option<String>,
    timeout: Duration,
}

impl Client {
    pub fn new(
        base: Url,
        prefix: &str,
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
            prefix: prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            key: key.filter(|k| !k.is_empty()),
            timeout,
        })
    }

    /// `{base}/{prefix}/queues/{segments…}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(&self.prefix);
            path.push("queues");
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
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        Ok(Answer { status, body })
    }
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

    fn client(base: &str, prefix: &str) -> Client {
        Client::new(
            Url::parse(base).unwrap(),
            prefix,
            None,
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn routes_sit_under_the_base_and_the_prefix_with_encoded_segments() {
        let c = client("http://127.0.0.1:7071", "api");
        assert_eq!(
            c.url(&["orders", "messages", "3", "3.1"], &[]).as_str(),
            "http://127.0.0.1:7071/api/queues/orders/messages/3/3.1"
        );
        assert_eq!(
            c.url(&["a b/c", "sessions"], &[]).as_str(),
            "http://127.0.0.1:7071/api/queues/a%20b%2Fc/sessions"
        );
        let c = client("https://h/base/?x=1", "/v1/");
        assert_eq!(
            c.url(
                &["q", "messages", "head"],
                &[("sessionId", "a&b".to_owned())]
            )
            .as_str(),
            "https://h/base/v1/queues/q/messages/head?sessionId=a%26b"
        );
        assert_eq!(
            client("http://h", "").url(&[], &[]).as_str(),
            "http://h/queues"
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
    }
}
