//! The routes of docs/instances.md over [`crate::remote`], and the continuation-token paging
//! of list and history.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

pub use crate::remote::Error;
use crate::remote::{Answer, Body, Remote, Request, without_query};

/// The server refuses a larger `top`.
pub const MAX_TOP: u32 = 1000;

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

/// A client of `{base}/{prefix}/instances`.
#[derive(Debug)]
pub struct Client(Remote);

impl Client {
    pub fn new(
        base: Url,
        prefix: &str,
        key: Option<String>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        Remote::new(base, prefix, "instances", key, timeout).map(Self)
    }

    /// `{base}/{prefix}/instances/{segments…}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        self.0.url(segments, query)
    }

    /// Sends one request, with a JSON body if given; any answer but 2xx is an error.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        continuation: Option<&str>,
        body: Option<String>,
    ) -> Result<Answer, Error> {
        let mut req = Request::new(method, url.clone()).continuation(continuation);
        req.body = body.map(Body::json_text);
        self.0.send(req).await
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
