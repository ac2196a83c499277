//! The values of `baton instances` options, checked by clap before anything connects, so a bad
//! one is a usage error (exit status 2).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use reqwest::Url;

/// An instance's `runtimeStatus`, as the server spells it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeStatus {
    Pending,
    Running,
    Suspended,
    Completed,
    Failed,
    Terminated,
}

impl RuntimeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Suspended => "Suspended",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
        }
    }
}

/// The `runtimeStatus` query value: `Running,Failed`, or `None` for no filter.
pub fn status_filter(statuses: &[RuntimeStatus]) -> Option<String> {
    if statuses.is_empty() {
        return None;
    }
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    Some(names.join(","))
}

/// The server's base URL: http or https, usable as a base for the routes.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{text}`: only http:// and https:// URLs are served"
        ));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(format!("`{text}` names no host"));
    }
    Ok(url)
}

/// A request timeout: `30s`, `2m`, or ISO 8601 (`PT30S`).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("the timeout must be longer than zero".to_owned());
    }
    Ok(d)
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with(['P', 'p']) {
        return baton_core::time::Duration::parse_iso8601(&text.to_ascii_uppercase())
            .map(|d| d.to_std());
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e}"))
}

/// `--from`/`--to`: an RFC 3339 time, or a duration meaning that long before now (`90m`, `1h`,
/// `2d`, `PT1H`). The answer is RFC 3339 in UTC with milliseconds, as the server writes times.
pub fn parse_time(text: &str, now: SystemTime) -> Result<String, String> {
    let text = text.trim();
    let looks_like_date = text.len() >= 10 && text.as_bytes()[4] == b'-';
    let at = if looks_like_date {
        parse_rfc3339(text)?
    } else {
        let ago = parse_duration(text).map_err(|_| {
            format!(
                "`{text}` is neither an RFC 3339 time (2026-01-02T15:04:05Z) \
                 nor a duration ago (30m, 1h, 2d)"
            )
        })?;
        now.checked_sub(ago)
            .ok_or_else(|| format!("`{text}` ago is before the epoch"))?
    };
    Ok(humantime::format_rfc3339_millis(at).to_string())
}

/// RFC 3339 with `Z` or a numeric offset. A time without either is refused rather than guessed
/// to be UTC or local time.
pub(crate) fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("`{text}` is not an RFC 3339 time such as 2026-01-02T15:04:05Z");
    let (local, offset_secs) = split_offset(text).ok_or_else(|| {
        format!("`{text}` has no time zone: end it with Z (UTC) or an offset such as +02:00")
    })?;
    let local = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    // 12:00+02:00 is 10:00Z: a positive offset is subtracted.
    if offset_secs >= 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
    .ok_or_else(bad)
}

/// Splits `…Z` or `…+HH:MM` into the local part and the offset in seconds east of UTC.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    let n = text.len();
    let b = text.as_bytes();
    if n < 6 || !matches!(b[n - 6], b'+' | b'-') || b[n - 3] != b':' {
        return None;
    }
    let hours: i64 = text.get(n - 5..n - 3)?.parse().ok()?;
    let minutes: i64 = text.get(n - 2..)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let secs = (hours * 60 + minutes) * 60;
    Some((&text[..n - 6], if b[n - 6] == b'-' { -secs } else { secs }))
}

/// Where `raise --data` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// JSON given on the command line (already checked to parse).
    Inline(String),
    /// `@path`: a file holding JSON.
    File(PathBuf),
    /// `-`: standard input.
    Stdin,
}

pub fn parse_data(text: &str) -> Result<Data, String> {
    if text == "-" {
        return Ok(Data::Stdin);
    }
    if let Some(path) = text.strip_prefix('@') {
        if path.is_empty() {
            return Err("`@` needs a file name: --data @event.json".to_owned());
        }
        return Ok(Data::File(PathBuf::from(path)));
    }
    check_json(text, "--data")?;
    Ok(Data::Inline(text.to_owned()))
}

impl Data {
    /// The JSON text to send; the text as given, so numbers keep their spelling.
    pub fn read(&self) -> Result<String, String> {
        let (text, source) = match self {
            Self::Inline(text) => return Ok(text.clone()),
            Self::File(path) => (
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                path.display().to_string(),
            ),
            Self::Stdin => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| format!("cannot read standard input: {e}"))?;
                (text, "standard input".to_owned())
            }
        };
        check_json(&text, &source)?;
        Ok(text)
    }
}

fn check_json(text: &str, source: &str) -> Result<(), String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(drop)
        .map_err(|e| format!("{source} is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    // 2026-01-02T03:04:05Z
    const T: u64 = 1_767_323_045;

    #[test]
    fn times_are_rfc3339_in_utc_with_milliseconds() {
        let now = at(0);
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z", now).unwrap(),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            parse_time("2026-01-02T05:04:05.250+02:00", now).unwrap(),
            "2026-01-02T03:04:05.250Z"
        );
        assert_eq!(
            parse_time("2026-01-01T23:34:05-03:30", now).unwrap(),
            "2026-01-02T03:04:05.000Z"
        );
    }

    #[test]
    fn a_duration_is_that_long_before_now() {
        let now = at(T);
        assert_eq!(parse_time("1h", now).unwrap(), "2026-01-02T02:04:05.000Z");
        assert_eq!(parse_time("90m", now).unwrap(), "2026-01-02T01:34:05.000Z");
        assert_eq!(parse_time("2d", now).unwrap(), "2025-12-31T03:04:05.000Z");
        assert_eq!(
            parse_time("PT30S", now).unwrap(),
            "2026-01-02T03:03:35.000Z"
        );
    }

    #[test]
    fn times_without_a_zone_or_garbage_are_refused() {
        let now = at(T);
        let e = parse_time("2026-01-02T03:04:05", now).unwrap_err();
        assert!(e.contains("no time zone"), "{e}");
        let e = parse_time("yesterday", now).unwrap_err();
        assert!(e.contains("neither an RFC 3339 time"), "{e}");
        assert!(parse_time("2026-13-02T03:04:05Z", now).is_err());
        assert!(parse_time("2026-01-02T03:04:05+25:00", now).is_err());
    }

    #[test]
    fn status_filters_join_the_wire_names() {
        assert_eq!(status_filter(&[]), None);
        assert_eq!(
            status_filter(&[RuntimeStatus::Running, RuntimeStatus::Failed]).as_deref(),
            Some("Running,Failed")
        );
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(parse_url("http://127.0.0.1:7071").is_ok());
        assert!(parse_url("https://baton.example/base/").is_ok());
        assert!(parse_url("ftp://x").unwrap_err().contains("only http"));
        assert!(parse_url("127.0.0.1:7071").is_err());
    }

    #[test]
    fn data_is_inline_json_a_file_or_standard_input() {
        assert_eq!(parse_data("-").unwrap(), Data::Stdin);
        assert_eq!(
            parse_data("@ev.json").unwrap(),
            Data::File(PathBuf::from("ev.json"))
        );
        assert_eq!(
            parse_data(r#"{"n": 1.50}"#).unwrap(),
            Data::Inline(r#"{"n": 1.50}"#.to_owned())
        );
        assert!(parse_data("{nope").unwrap_err().contains("not JSON"));
        assert!(parse_data("@").is_err());
    }

    #[test]
    fn a_data_file_must_hold_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.json");
        std::fs::write(&path, "[1, 2]").unwrap();
        assert_eq!(Data::File(path.clone()).read().unwrap(), "[1, 2]");
        std::fs::write(&path, "nope").unwrap();
        assert!(Data::File(path).read().unwrap_err().contains("not JSON"));
    }

    #[test]
    fn timeouts_take_units_or_iso8601_and_not_zero() {
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("PT2M").unwrap(), Duration::from_secs(120));
        assert!(parse_timeout("0s").is_err());
    }
}
