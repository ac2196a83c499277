//! What `baton instances` prints for people: aligned tables, the status block, problem
//! documents. Pure functions of the server's JSON, so they are tested without a server.

use serde_json::Value;

/// Columns separated by two spaces, each as wide as its widest cell; the last is not padded,
/// so no line ends in blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A member as text: strings bare, absent or `null` as `-`, anything else as compact JSON.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The `list` table of status objects.
pub fn instances(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                text(i, "instanceId"),
                text(i, "name"),
                text(i, "runtimeStatus"),
                text(i, "createdTime"),
                text(i, "lastUpdatedTime"),
            ]
        })
        .collect();
    table(&["INSTANCE", "NAME", "STATUS", "CREATED", "UPDATED"], &rows)
}

/// The `history` table; `width` is the line length the DETAIL column is cut to fit.
pub fn history(events: &[Value], width: usize) -> String {
    let mut rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let detail = match e.get("data") {
                None | Some(Value::Null) => String::new(),
                Some(d) => d.to_string(),
            };
            vec![text(e, "seq"), text(e, "at"), text(e, "kind"), detail]
        })
        .collect();
    let used = ["SEQ", "AT", "KIND"]
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
                + 2
        })
        .sum::<usize>();
    // A detail narrower than this would say nothing; the line then wraps instead.
    let room = width.saturating_sub(used).max(24);
    for row in &mut rows {
        row[3] = truncate(&row[3], room);
    }
    table(&["SEQ", "AT", "KIND", "DETAIL"], &rows)
}

/// At most `max` characters, the last one `…` when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The line length to fit: `COLUMNS` when the shell exports it, else 120.
pub fn terminal_width(columns: Option<&str>) -> usize {
    columns
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c: &usize| c >= 40)
        .unwrap_or(120)
}

/// `show`: one `key: value` line per member; documents (input, output, the error) pretty-printed
/// and indented under their key.
pub fn status(doc: &Value) -> String {
    let mut out = String::new();
    let failed = doc.get("runtimeStatus").and_then(Value::as_str) == Some("Failed");
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("{:<14}{value}\n", format!("{label}:")));
    };
    line("instance", text(doc, "instanceId"));
    line("name", text(doc, "name"));
    line("status", text(doc, "runtimeStatus"));
    line("created", text(doc, "createdTime"));
    line("updated", text(doc, "lastUpdatedTime"));
    if let Some(v) = doc.get("version").filter(|v| !v.is_null()) {
        line("version", scalar(v));
    }
    if let Some(d) = doc.get("definition").filter(|v| !v.is_null()) {
        line("definition", definition(d));
    }
    for (label, key) in [
        ("input", "input"),
        (if failed { "error" } else { "output" }, "output"),
        ("customStatus", "customStatus"),
    ] {
        if let Some(v) = doc.get(key) {
            out.push_str(&document(label, v));
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `default/validate@1.0.0 (sha256 3f2c…)`, from `{name, version, hash}`.
fn definition(d: &Value) -> String {
    let Value::Object(m) = d else {
        return scalar(d);
    };
    let mut s = m.get("name").map(scalar).unwrap_or_else(|| "-".to_owned());
    if let Some(v) = m.get("version").filter(|v| !v.is_null()) {
        s.push('@');
        s.push_str(&scalar(v));
    }
    if let Some(h) = m.get("hash").and_then(Value::as_str) {
        s.push_str(&format!(" (sha256 {})", truncate(h, 13)));
    }
    s
}

/// `label: value` for scalars and empty containers; otherwise the label alone and the pretty
/// document indented two spaces below it.
fn document(label: &str, v: &Value) -> String {
    let nested = match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    if !nested {
        return format!("{:<14}{v}\n", format!("{label}:"));
    }
    let pretty = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let mut out = format!("{label}:\n");
    for l in pretty.lines() {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A problem document (or any error answer) for standard error: `title (HTTP status)`, then the
/// detail and every entry of `errors`.
pub fn problem(status: u16, doc: &Value) -> String {
    let title = doc
        .get("title")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "Error".to_owned());
    let status = doc
        .get("status")
        .and_then(Value::as_u64)
        .unwrap_or(status.into());
    let mut out = format!("{title} (HTTP {status})\n");
    if let Some(detail) = doc.get("detail").and_then(Value::as_str) {
        out.push_str(&format!("  {detail}\n"));
    }
    if let Some(errors) = doc.get("errors").and_then(Value::as_array) {
        out.push_str("  errors:\n");
        for e in errors {
            let pointer = e.get("pointer").and_then(Value::as_str);
            let detail = e.get("detail").and_then(Value::as_str);
            match (pointer, detail) {
                (Some(p), Some(d)) => out.push_str(&format!("    {}: {d}\n", display_pointer(p))),
                (None, Some(d)) => out.push_str(&format!("    {d}\n")),
                _ => out.push_str(&format!("    {}\n", scalar(e))),
            }
        }
    }
    out
}

fn display_pointer(p: &str) -> &str {
    if p.is_empty() { "(the document)" } else { p }
}

/// `--continuation-token T` as a shell word: bare when it is plainly safe, else single-quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~=+/:,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The line after a table when the server has more: how to fetch the next page.
pub fn more(what: &str, token: &str) -> String {
    format!(
        "More {what} remain: add --continuation-token {} for the next page, or --all for every page.",
        shell_word(token)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_columns_and_leave_no_trailing_blanks() {
        let t = table(
            &["A", "BB", "C"],
            &[
                vec!["long".into(), "x".into(), "".into()],
                vec!["s".into(), "yyy".into(), "z".into()],
            ],
        );
        assert_eq!(t, "A     BB   C\nlong  x\ns     yyy  z\n");
    }

    #[test]
    fn the_instance_table_has_one_row_per_status_object() {
        let t = instances(&[
            json!({"instanceId": "abc", "name": "Slow", "runtimeStatus": "Running",
                   "createdTime": "2026-01-02T03:04:05.000Z", "lastUpdatedTime": "2026-01-02T03:04:06.000Z"}),
            json!({"instanceId": "d", "name": "Quick", "runtimeStatus": "Completed",
                   "createdTime": "2026-01-02T03:04:07.000Z"}),
        ]);
        assert_eq!(
            t,
            "INSTANCE  NAME   STATUS     CREATED                   UPDATED\n\
             abc       Slow   Running    2026-01-02T03:04:05.000Z  2026-01-02T03:04:06.000Z\n\
             d         Quick  Completed  2026-01-02T03:04:07.000Z  -\n"
        );
        assert_eq!(instances(&[]), "INSTANCE  NAME  STATUS  CREATED  UPDATED\n");
    }

    #[test]
    fn history_details_are_compact_and_cut_to_the_width() {
        let events = [
            json!({"seq": 1, "at": "2026-01-02T03:04:05.000Z", "kind": "ExecutionStarted",
                   "data": {"input": {"a": 1, "long": "x".repeat(200)}}}),
            json!({"seq": 2, "at": "2026-01-02T03:04:06.000Z", "kind": "ExecutionTerminated"}),
        ];
        let t = history(&events, 100);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "SEQ  AT                        KIND                 DETAIL"
        );
        assert!(lines[1].starts_with(
            "1    2026-01-02T03:04:05.000Z  ExecutionStarted     {\"input\":{\"a\":1,\"long\":\"xxx"
        ));
        assert_eq!(lines[1].chars().count(), 100);
        assert!(lines[1].ends_with('…'));
        assert_eq!(
            lines[2],
            "2    2026-01-02T03:04:06.000Z  ExecutionTerminated"
        );
    }

    #[test]
    fn a_narrow_terminal_still_shows_some_detail() {
        let events = [json!({"seq": 1, "at": "t", "kind": "k", "data": "y".repeat(100)})];
        let t = history(&events, 10);
        let detail = t.lines().nth(1).unwrap().rsplit("  ").next().unwrap();
        assert_eq!(detail.chars().count(), 24);
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
    }

    #[test]
    fn the_width_comes_from_columns_when_it_is_sensible() {
        assert_eq!(terminal_width(Some("80")), 80);
        assert_eq!(terminal_width(Some("3")), 120);
        assert_eq!(terminal_width(Some("wide")), 120);
        assert_eq!(terminal_width(None), 120);
    }

    #[test]
    fn the_status_block_names_every_member_and_indents_documents() {
        let doc = json!({
            "name": "Slow", "instanceId": "abc", "runtimeStatus": "Completed",
            "input": {"n": 1}, "customStatus": null, "output": "done",
            "createdTime": "2026-01-02T03:04:05.000Z", "lastUpdatedTime": "2026-01-02T03:04:06.000Z",
            "definition": {"name": "default/slow", "version": "1.0.0", "hash": "0123456789abcdef0123"}
        });
        assert_eq!(
            status(&doc),
            "instance:     abc\n\
             name:         Slow\n\
             status:       Completed\n\
             created:      2026-01-02T03:04:05.000Z\n\
             updated:      2026-01-02T03:04:06.000Z\n\
             definition:   default/slow@1.0.0 (sha256 0123456789ab…)\n\
             input:\n  {\n    \"n\": 1\n  }\n\
             output:       \"done\"\n\
             customStatus: null\n"
        );
    }

    #[test]
    fn a_failed_instance_shows_its_error_and_leaves_out_what_is_absent() {
        let doc = json!({
            "name": "F", "instanceId": "x", "runtimeStatus": "Failed",
            "output": {"title": "Boom", "status": 500}
        });
        let s = status(&doc);
        assert!(
            s.contains("error:\n  {\n    \"title\": \"Boom\",\n    \"status\": 500\n  }\n"),
            "{s}"
        );
        assert!(!s.contains("input:"), "{s}");
        assert!(!s.contains("definition:"), "{s}");
        assert!(s.contains("created:      -\n"), "{s}");
    }

    #[test]
    fn problems_show_title_status_detail_and_errors() {
        let doc = json!({
            "type": "about:blank", "title": "Bad Request", "status": 400,
            "detail": "2 errors",
            "errors": [{"pointer": "/a", "detail": "is missing"}, {"detail": "no pointer"},
                       {"pointer": "", "detail": "whole"}, "plain"]
        });
        assert_eq!(
            problem(400, &doc),
            "Bad Request (HTTP 400)\n  2 errors\n  errors:\n    /a: is missing\n    no pointer\n    \
             (the document): whole\n    plain\n"
        );
        assert_eq!(problem(404, &Value::Null), "Not Found (HTTP 404)\n");
    }

    #[test]
    fn continuation_tokens_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_word("eyJ0IjoxfQ=="), "eyJ0IjoxfQ==");
        assert_eq!(shell_word("a b'c"), r"'a b'\''c'");
        assert_eq!(
            more("instances", "tok"),
            "More instances remain: add --continuation-token tok for the next page, or --all for every page."
        );
    }
}
