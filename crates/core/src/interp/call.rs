//! Building HTTP requests from `call: http` and turning responses into output or errors.

use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, WorkflowError};
use crate::expr::{Bindings, Budget, ExprError, Template};
use crate::model::{Authentication, EndpointUri, HttpCall, HttpOutput};

use super::{HttpRequest, HttpResponse, SecretAuth};

/// Evaluates a `call: http` task's arguments into a concrete request.
pub(crate) fn build_request(
    call: &HttpCall,
    input: &Value,
    vars: &dyn Bindings,
    budget: &Budget,
) -> Result<HttpRequest, ExprError> {
    let method = call
        .method
        .eval_string(input, vars, budget)?
        .to_ascii_uppercase();
    let uri = match &call.endpoint {
        EndpointUri::Template(t) => expand_uri(t, input),
        EndpointUri::Expr(e) => e.eval_string(input, vars, budget)?,
    };
    let pairs = |t: &Option<Template>| -> Result<Vec<(String, String)>, ExprError> {
        let Some(t) = t else { return Ok(Vec::new()) };
        Ok(match t.eval(input, vars, budget)? {
            Value::Object(m) => m.into_iter().map(|(k, v)| (k, scalar_text(&v))).collect(),
            _ => Vec::new(),
        })
    };
    let mut headers = pairs(&call.headers)?;
    let auth = authorize(
        call.authentication.as_ref(),
        &mut headers,
        input,
        vars,
        budget,
    )?;
    Ok(HttpRequest {
        method,
        uri,
        headers,
        query: pairs(&call.query)?,
        body: call
            .body
            .as_ref()
            .map(|b| b.eval(input, vars, budget))
            .transpose()?,
        redirect: call.redirect,
        output: call.output,
        poll: call.poll,
        auth,
    })
}

/// Applies `authentication`: a literal scheme becomes an `authorization` header now; a
/// secret-based one is returned, for the shell to resolve when it sends the request.
pub(crate) fn authorize(
    authentication: Option<&Authentication>,
    headers: &mut Vec<(String, String)>,
    input: &Value,
    vars: &dyn Bindings,
    budget: &Budget,
) -> Result<Option<SecretAuth>, ExprError> {
    let value = match authentication {
        None => return Ok(None),
        Some(Authentication::Secret { scheme, secret }) => {
            return Ok(Some(SecretAuth {
                scheme: *scheme,
                secret: secret.clone(),
            }));
        }
        Some(Authentication::Basic { username, password }) => {
            let u = username.eval_string(input, vars, budget)?;
            let p = password.eval_string(input, vars, budget)?;
            format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))
        }
        Some(Authentication::Bearer { token }) => {
            format!("Bearer {}", token.eval_string(input, vars, budget)?)
        }
    };
    headers.push(("authorization".to_owned(), value));
    Ok(None)
}

/// The longest `Retry-After` honoured; a callee asking for more is polled this often.
const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// If `response` is a `202 Accepted` to be polled (the asynchronous pattern): the request that
/// polls its `Location` (a `GET` with the original headers, without the body's, and without
/// credentials when the location is on another origin), and how long to wait first
/// (`Retry-After` in seconds, else `default_ms`).
pub(crate) fn poll_of(
    request: &HttpRequest,
    response: &HttpResponse,
    default_ms: u64,
) -> Option<(HttpRequest, u64)> {
    if !request.poll || response.status != 202 {
        return None;
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let uri = resolve_location(&request.uri, header("location")?)?;
    let wait = header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(default_ms, |s| {
            s.saturating_mul(1000).min(MAX_RETRY_AFTER_MS)
        });
    let same_origin = origin(&uri) == origin(&request.uri);
    let headers = request
        .headers
        .iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("content-type")
                && !k.eq_ignore_ascii_case("content-length")
                && (same_origin || !k.eq_ignore_ascii_case("authorization"))
        })
        .cloned()
        .collect();
    Some((
        HttpRequest {
            method: "GET".to_owned(),
            uri,
            headers,
            query: Vec::new(),
            body: None,
            redirect: request.redirect,
            output: request.output,
            poll: true,
            auth: request.auth.clone().filter(|_| same_origin),
        },
        wait,
    ))
}

/// `scheme://authority` of an absolute URI.
pub(crate) fn origin(uri: &str) -> Option<&str> {
    let after = uri.find("://")? + 3;
    let end = uri[after..]
        .find(['/', '?', '#'])
        .map_or(uri.len(), |i| after + i);
    Some(&uri[..end])
}

/// A `Location` value made absolute against the URI it answered (RFC 3986 §5.2 for the forms
/// servers send: absolute, scheme-relative, absolute-path and relative-path references).
pub(crate) fn resolve_location(base: &str, location: &str) -> Option<String> {
    if location.is_empty() {
        return None;
    }
    if location.contains("://") {
        return Some(location.to_owned());
    }
    let origin = origin(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &base[..base.find("://")?];
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &base[origin.len()..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{origin}{dir}{location}"))
}

/// Expands `{name}` placeholders (RFC 6570 level 1) with top-level fields of `input`.
pub(crate) fn expand_uri(template: &str, input: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..open + close];
        let value = input.get(name).map(scalar_text).unwrap_or_default();
        out.push_str(&percent_encode(&value));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 (RFC 4648) — twenty lines do not justify a dependency in the core.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Turns a response into the task's raw output, or a `communication` error for non-2xx.
pub(crate) fn shape_response(
    request: &HttpRequest,
    response: HttpResponse,
    task_reference: &str,
) -> Result<Value, WorkflowError> {
    // `redirect: true` accepts 3xx answers as results; they are never followed automatically.
    let ok = if request.redirect { 200..400 } else { 200..300 };
    if !ok.contains(&response.status) {
        let mut err = WorkflowError::new(
            ErrorKind::Communication,
            task_reference,
            format!(
                "{} {} answered HTTP {}",
                request.method, request.uri, response.status
            ),
        )
        .with_status(response.status);
        if let Value::Object(body) = &response.content
            && let Some(Value::String(t)) = body.get("title")
        {
            err.title = Some(t.clone());
        }
        return Err(err);
    }
    Ok(match request.output {
        HttpOutput::Content => response.content,
        HttpOutput::Raw => Value::String(response.raw_base64),
        HttpOutput::Response => {
            let headers: Map<String, Value> = response
                .headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let req_headers: Map<String, Value> = request
                .headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "request": {"method": request.method, "uri": request.uri, "headers": req_headers},
                "statusCode": response.status,
                "headers": headers,
                "content": response.content,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_templates_take_top_level_fields() {
        assert_eq!(
            expand_uri(
                "https://h/pet/{petId}?s={status}",
                &json!({"petId": 1, "status": "a b"})
            ),
            "https://h/pet/1?s=a%20b"
        );
        assert_eq!(
            expand_uri("https://h/{missing}/x", &json!({})),
            "https://h//x"
        );
    }

    fn accepted(headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status: 202,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            content: Value::Null,
            raw_base64: String::new(),
        }
    }

    fn request(uri: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".to_owned(),
            uri: uri.to_owned(),
            headers: vec![
                ("authorization".to_owned(), "Bearer t".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-trace".to_owned(), "1".to_owned()),
            ],
            query: vec![("a".to_owned(), "b".to_owned())],
            body: Some(json!({"n": 1})),
            redirect: false,
            output: HttpOutput::Content,
            poll: true,
            auth: Some(SecretAuth {
                scheme: crate::model::AuthScheme::Bearer,
                secret: "api".to_owned(),
            }),
        }
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "http://h:8/api/start/x?q=1";
        for (loc, want) in [
            ("http://o/status/1", "http://o/status/1"),
            ("//o:9/s", "http://o:9/s"),
            ("/status/1?k=v", "http://h:8/status/1?k=v"),
            ("status/1", "http://h:8/api/start/status/1"),
        ] {
            assert_eq!(resolve_location(base, loc).as_deref(), Some(want), "{loc}");
        }
        assert_eq!(resolve_location(base, ""), None);
        assert_eq!(
            resolve_location("http://h", "s").as_deref(),
            Some("http://h/s")
        );
    }

    #[test]
    fn a_202_with_location_is_polled_by_get_after_retry_after() {
        let req = request("http://h/api/start");
        let (poll, wait) = poll_of(
            &req,
            &accepted(&[("Location", "/status/7"), ("Retry-After", "3")]),
            1000,
        )
        .expect("polled");
        assert_eq!(wait, 3000);
        assert_eq!(
            (poll.method.as_str(), poll.uri.as_str()),
            ("GET", "http://h/status/7")
        );
        assert_eq!(poll.body, None);
        assert!(poll.query.is_empty());
        let names: Vec<&str> = poll.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["authorization", "x-trace"]);
        assert_eq!(poll.auth, req.auth);
        // Elsewhere: no credentials, literal or from a secret; no Retry-After: the default
        // interval.
        let (poll, wait) =
            poll_of(&req, &accepted(&[("location", "http://other/s")]), 1500).expect("polled");
        assert_eq!(wait, 1500);
        let names: Vec<&str> = poll.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x-trace"]);
        assert_eq!(poll.auth, None);
        // Not polled: no Location, another status, or turned off.
        assert!(poll_of(&req, &accepted(&[]), 1000).is_none());
        let mut ok = accepted(&[("location", "/s")]);
        ok.status = 200;
        assert!(poll_of(&req, &ok, 1000).is_none());
        let off = HttpRequest {
            poll: false,
            ..req.clone()
        };
        assert!(poll_of(&off, &accepted(&[("location", "/s")]), 1000).is_none());
        // A huge Retry-After is capped.
        let (_, wait) = poll_of(
            &req,
            &accepted(&[("location", "/s"), ("retry-after", "99999999")]),
            1000,
        )
        .expect("polled");
        assert_eq!(wait, MAX_RETRY_AFTER_MS);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
