//! Reading a trigger's JSON body within the host's limits.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use crate::problem::Problem;

/// Reads and parses a JSON request body: 415 for a non-JSON media type, 413 past `max_bytes`,
/// 400 for an empty body, invalid JSON (with line and column) or nesting deeper than `max_depth`.
pub async fn read_json(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
    max_depth: usize,
) -> Result<Value, Problem> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if !is_json(essence) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the body must be application/json, not `{}`",
                    essence.to_ascii_lowercase()
                ),
            )
            .header(header::ACCEPT, "application/json"));
        }
    }
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {max_bytes} bytes"),
        )
        .with("limit", serde_json::json!(max_bytes))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, max_bytes)
        .await
        .map_err(|_| too_large())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "the body is empty; send the workflow input as a JSON document",
        ));
    }
    if let Some(depth) = nesting_over(&bytes, max_depth) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body nests deeper than the limit of {max_depth} levels (at byte {depth})"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
        .with("line", serde_json::json!(e.line()))
        .with("column", serde_json::json!(e.column()))
    })
}

/// `application/json` or `application/*+json`, in any case (media types are case-insensitive);
/// compared in place rather than on a lower-cased copy.
fn is_json(essence: &str) -> bool {
    let Some((kind, subtype)) = essence.split_at_checked("application/".len()) else {
        return false;
    };
    kind.eq_ignore_ascii_case("application/")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .len()
                .checked_sub("+json".len())
                .and_then(|at| subtype.get(at..))
                .is_some_and(|end| end.eq_ignore_ascii_case("+json")))
}

/// The byte offset where nesting first exceeds `max`, scanning outside strings; `None` if it
/// never does. Runs before parsing so a hostile body cannot make the parser recurse deeply.
fn nesting_over(bytes: &[u8], max: usize) -> Option<usize> {
    // Nesting deeper than `max` needs more than `max` opening brackets somewhere in the body:
    // most bodies have a handful, and counting them is one vectorised pass instead of the
    // byte-by-byte walk below.
    if bytes.iter().filter(|&&b| b == b'[' || b == b'{').count() <= max {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{is_json, nesting_over};

    #[test]
    fn json_media_types_match_in_any_case() {
        for yes in [
            "application/json",
            "Application/JSON",
            "application/problem+json",
            "APPLICATION/X+JSON",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/json",
            "application/jsonx",
            "application/",
            "json",
            "application/xml",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert_eq!(nesting_over(br#"{"a":[1,{"b":2}]}"#, 3), None);
        assert_eq!(nesting_over(br#"{"a":[1,{"b":2}]}"#, 2), Some(8));
        assert_eq!(nesting_over(br#"{"a":"[[[[[[[["}"#, 1), None);
        assert_eq!(nesting_over(br#"{"a":"\"[[["}"#, 1), None);
        // Enough brackets in all, but inside strings or side by side rather than nested.
        assert_eq!(nesting_over(br#"{"a":"{{{{","b":[1],"c":{}}"#, 2), None);
        assert_eq!(nesting_over(br#"[[],[],[],[]]"#, 2), None);
        assert_eq!(nesting_over(br#"[[],[[[]]]]"#, 3), Some(6));
    }
}
