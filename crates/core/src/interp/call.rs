//! Building HTTP requests from `call: http` and turning responses into output or errors.

use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, WorkflowError};
use crate::expr::{Bindings, Budget, ExprError, Template};
use crate::model::{Authentication, EndpointUri, HttpCall, HttpOutput};

use super::{HttpRequest, HttpResponse};

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
    if let Some(auth) = &call.authentication {
        let value = match auth {
            Authentication::Basic { username, password } => {
                let u = username.eval_string(input, vars, budget)?;
                let p = password.eval_string(input, vars, budget)?;
                format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))
            }
            Authentication::Bearer { token } => {
                format!("Bearer {}", token.eval_string(input, vars, budget)?)
            }
        };
        headers.push(("authorization".to_owned(), value));
    }
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
    })
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

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn percent_encode(s: &str) -> String {
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

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
