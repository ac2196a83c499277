//! The HTTP side of `baton instances`: one reqwest client, the routes of docs/instances.md, and
//! the continuation-token paging of list and history.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// The header carrying the paging token, both ways.
const CONTINUATION: &str = "x-ms-continuation-token";
/// The server refuses a larger `top`.
pub const MAX_TOP: u32 = 1000;

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
    /// Bad input found only at run time (an unreadable `--data` file).
    Usage(String),
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub continuation: Option<String>,
}

impl Answer {
    pub fn json(&self, url: &Url) -> Result<Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Unexpected {
            url: url.to_string(),
            what: format!("the answer is not JSON ({e})"),
        })
    }
}

/// The items of every page fetched, and what the last page said.
#[derive(Debug)]
pub struct Pages {
    pub first: Value,
    pub items: Vec<Value>,
    pub continuation: Option<String>,
}

/// How many pages to fetch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paging {
    /// The page size (`top`); the server's default when `None`.
    pub top: Option<u32>,
    /// Follow continuation tokens until none remains (or `limit` is reached).
    pub all: bool,
    /// At most this many items in all; pages are followed until it is reached.
    pub limit: Option<u32>,
}

impl Paging {
    /// The `top` for the next page when `have` items are in hand, or `None` to stop. A page is
    /// never asked for more than the limit leaves, so the token after it skips nothing.
    pub fn next_top(&self, have: usize, page: usize) -> Option<Option<u32>> {
        let left = match self.limit {
            Some(l) => {
                let left = (l as usize).saturating_sub(have);
                if left == 0 {
                    return None;
                }
                Some(u32::try_from(left).unwrap_or(MAX_TOP).min(MAX_TOP))
            }
            None => None,
        };
        if page > 0 && !self.all && self.limit.is_none() {
            return None;
        }
        Some(match (self.top, left) {
            (Some(t), Some(l)) => Some(t.min(l)),
            (t, l) => t.or(l),
        })
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
            .timeout(timeout)
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

    /// `{base}/{prefix}/instances/{segments…}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(&self.prefix);
            path.push("instances");
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// Sends one request; any answer but 2xx is an error.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        continuation: Option<&str>,
        body: Option<String>,
    ) -> Result<Answer, Error> {
        let mut req = self.http.request(method, url.clone());
        if let Some(k) = &self.key {
            req = req.header("x-functions-key", k);
        }
        if let Some(t) = continuation {
            req = req.header(CONTINUATION, t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: without_query(url),
            cause: if e.is_timeout() {
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                )
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
        Ok(Answer { body, continuation })
    }

    /// GETs `url` page after page as `paging` says; `items` finds a page's items in its body.
    pub async fn pages(
        &self,
        url: &Url,
        paging: Paging,
        mut token: Option<String>,
        items: impl Fn(&Value) -> Option<&Vec<Value>>,
    ) -> Result<Pages, Error> {
        let mut first = None;
        let mut all = Vec::new();
        let mut page = 0;
        while let Some(top) = paging.next_top(all.len(), page) {
            let mut url = url.clone();
            if let Some(top) = top {
                url.query_pairs_mut().append_pair("top", &top.to_string());
            }
            let answer = self.send(Method::GET, &url, token.as_deref(), None).await?;
            let doc = answer.json(&url)?;
            let got = items(&doc).ok_or_else(|| Error::Unexpected {
                url: without_query(&url),
                what: "the answer does not hold a list".to_owned(),
            })?;
            let empty = got.is_empty();
            all.extend(got.iter().cloned());
            first.get_or_insert(doc);
            token = answer.continuation;
            page += 1;
            // An empty page with a token would have us ask forever.
            if token.is_none() || empty {
                break;
            }
        }
        Ok(Pages {
            first: first.unwrap_or(Value::Null),
            items: all,
            continuation: token,
        })
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
fn without_query(url: &Url) -> String {
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
            c.url(&["a b/c", "raiseEvent", "go"], &[]).as_str(),
            "http://127.0.0.1:7071/api/instances/a%20b%2Fc/raiseEvent/go"
        );
        let c = client("https://h/base/?x=1", "/runtime/webhooks/durabletask/");
        assert_eq!(
            c.url(&[], &[("name", "A&B".to_owned())]).as_str(),
            "https://h/base/runtime/webhooks/durabletask/instances?name=A%26B"
        );
        let c = client("http://h", "");
        assert_eq!(c.url(&["x"], &[]).as_str(), "http://h/instances/x");
    }

    #[test]
    fn one_page_by_default() {
        let p = Paging::default();
        assert_eq!(p.next_top(0, 0), Some(None));
        assert_eq!(p.next_top(50, 1), None);
        let p = Paging {
            top: Some(10),
            ..Paging::default()
        };
        assert_eq!(p.next_top(0, 0), Some(Some(10)));
        assert_eq!(p.next_top(10, 1), None);
    }

    #[test]
    fn all_follows_every_page() {
        let p = Paging {
            top: Some(10),
            all: true,
            limit: None,
        };
        assert_eq!(p.next_top(100, 10), Some(Some(10)));
    }

    #[test]
    fn a_limit_follows_pages_and_never_asks_for_more_than_it_leaves() {
        let p = Paging {
            top: Some(10),
            all: false,
            limit: Some(25),
        };
        assert_eq!(p.next_top(0, 0), Some(Some(10)));
        assert_eq!(p.next_top(20, 2), Some(Some(5)));
        assert_eq!(p.next_top(25, 3), None);
        let p = Paging {
            top: None,
            all: true,
            limit: Some(5000),
        };
        assert_eq!(p.next_top(0, 0), Some(Some(MAX_TOP)));
        assert_eq!(p.next_top(4500, 5), Some(Some(500)));
    }

    #[test]
    fn a_refusal_keeps_its_problem_document() {
        let Error::Refused { status, doc, .. } = refused(
            StatusCode::NOT_FOUND,
            br#"{"title":"Not Found","status":404}"#,
        ) else {
            panic!("not a refusal");
        };
        assert_eq!((status, doc["title"].as_str()), (404, Some("Not Found")));
        let Error::Refused { doc, body, .. } = refused(StatusCode::BAD_GATEWAY, b"bad gateway\n")
        else {
            panic!("not a refusal");
        };
        assert_eq!((doc, body.as_str()), (Value::Null, "bad gateway"));
    }
}
