//! The values of `baton queues` options, checked by clap before anything connects, so a bad
//! one is a usage error (exit status 2).

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::instances::args::{parse_duration, parse_rfc3339};

/// The longest a receive may wait (the server's limit).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// `--body`: JSON, sent as written (numbers keep their spelling).
pub fn parse_json(text: &str) -> Result<String, String> {
    serde_json::from_str::<Value>(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("the body is not JSON: {e}"))
}

/// The positional `-` of `send`: the body is standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stdin;

pub fn parse_stdin(text: &str) -> Result<Stdin, String> {
    if text == "-" {
        Ok(Stdin)
    } else {
        Err(format!(
            "`{text}`: give the body with --body JSON, --file FILE or - (standard input)"
        ))
    }
}

/// `--property KEY=VALUE`: VALUE as JSON when it is JSON, else as text.
pub fn parse_property(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has no key before `=`"));
    }
    let value =
        serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// `--ttl`: a duration longer than zero.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("the time to live must be longer than zero".to_owned());
    }
    Ok(d)
}

/// `--wait`: zero to 60 seconds.
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > MAX_WAIT {
        return Err(format!(
            "a receive waits at most {}",
            humantime::format_duration(MAX_WAIT)
        ));
    }
    Ok(d)
}

/// `--scheduled`: an RFC 3339 time, or a duration meaning that long after now (`10m`, `PT1H`).
/// The answer is RFC 3339 in UTC with milliseconds, as the server reads it.
pub fn parse_scheduled(text: &str, now: SystemTime) -> Result<String, String> {
    let text = text.trim();
    let looks_like_date = text.len() >= 10 && text.as_bytes()[4] == b'-';
    let at = if looks_like_date {
        parse_rfc3339(text)?
    } else {
        let after = parse_duration(text).map_err(|_| {
            format!(
                "`{text}` is neither an RFC 3339 time (2026-01-02T15:04:05Z) \
                 nor a duration from now (30s, 10m, 1h)"
            )
        })?;
        now.checked_add(after)
            .ok_or_else(|| format!("`{text}` from now is too far"))?
    };
    Ok(humantime::format_rfc3339_millis(at).to_string())
}

/// A duration as the seconds the server reads: `90`, `0.25`.
pub fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// A body's media type when none is given: JSON when it parses as JSON, text when it is UTF-8,
/// bytes otherwise.
pub fn media_type_of(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<Value>(body).is_ok() {
        "application/json"
    } else if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub fn read_stdin() -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // 2026-01-02T03:04:05Z
    const T: u64 = 1_767_323_045;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn properties_are_json_when_they_parse_and_text_otherwise() {
        assert_eq!(parse_property("n=2").unwrap(), ("n".to_owned(), json!(2)));
        assert_eq!(
            parse_property("ok=true").unwrap(),
            ("ok".to_owned(), json!(true))
        );
        assert_eq!(
            parse_property("region=eu-west=1").unwrap(),
            ("region".to_owned(), json!("eu-west=1"))
        );
        assert_eq!(
            parse_property(r#"id="42""#).unwrap(),
            ("id".to_owned(), json!("42"))
        );
        assert_eq!(parse_property("e=").unwrap(), ("e".to_owned(), json!("")));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=1").is_err());
    }

    #[test]
    fn scheduled_times_are_rfc3339_or_a_duration_from_now() {
        assert_eq!(
            parse_scheduled("2026-01-02T05:04:05+02:00", at(0)).unwrap(),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            parse_scheduled("10m", at(T)).unwrap(),
            "2026-01-02T03:14:05.000Z"
        );
        assert_eq!(
            parse_scheduled("PT1H", at(T)).unwrap(),
            "2026-01-02T04:04:05.000Z"
        );
        assert!(parse_scheduled("2026-01-02T03:04:05", at(T)).is_err());
        assert!(
            parse_scheduled("tomorrow", at(T))
                .unwrap_err()
                .contains("duration from now")
        );
    }

    #[test]
    fn durations_are_sent_as_seconds() {
        assert_eq!(seconds(Duration::from_secs(90)), "90");
        assert_eq!(seconds(Duration::from_millis(250)), "0.250");
        assert_eq!(seconds(Duration::from_millis(61_005)), "61.005");
        assert_eq!(seconds(parse_ttl("PT2M").unwrap()), "120");
        assert!(parse_ttl("0s").is_err());
    }

    #[test]
    fn a_wait_is_at_most_a_minute() {
        assert_eq!(parse_wait("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_wait("30s").unwrap(), Duration::from_secs(30));
        assert!(parse_wait("61s").unwrap_err().contains("at most 1m"));
    }

    #[test]
    fn bodies_are_json_only_when_they_are() {
        assert_eq!(parse_json(r#"{"n": 1.50}"#).unwrap(), r#"{"n": 1.50}"#);
        assert!(parse_json("{nope").unwrap_err().contains("not JSON"));
        assert_eq!(media_type_of(b"[1, 2]"), "application/json");
        assert_eq!(media_type_of(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(media_type_of(&[0xff, 0]), "application/octet-stream");
        assert_eq!(parse_stdin("-"), Ok(Stdin));
        assert!(parse_stdin("body.json").is_err());
    }
}
