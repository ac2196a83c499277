//! What `baton queues` prints for people: tables of queues and messages, a queue's settings.
//! Pure functions of the server's JSON, so they are tested without a server.

use serde_json::Value;

use crate::instances::render::{table, truncate};

/// A member as text: strings bare, absent or `null` as `-`, anything else as compact JSON.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn count(stats: &Value, key: &str) -> String {
    stats
        .get(key)
        .and_then(Value::as_u64)
        .map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// The `list` table.
pub fn queues(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|q| {
            let s = &q["stats"];
            vec![
                text(q, "name"),
                count(s, "activeMessageCount"),
                count(s, "scheduledMessageCount"),
                count(s, "lockedMessageCount"),
                count(s, "deadLetterMessageCount"),
                if q["sessions"] == true { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "ACTIVE",
            "SCHEDULED",
            "LOCKED",
            "DEAD-LETTERED",
            "SESSIONS",
        ],
        &rows,
    )
}

/// `show`: the settings with baton.toml's names, then the counts.
pub fn queue(doc: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("{:<28}{value}\n", format!("{label}:")));
    };
    line("queue", text(doc, "name"));
    for key in [
        "lock_duration",
        "max_delivery_count",
        "time_to_live",
        "dead_letter_on_expiration",
        "duplicate_detection",
        "duplicate_detection_window",
        "sessions",
    ] {
        line(key, text(doc, key));
    }
    let s = &doc["stats"];
    line("active", count(s, "activeMessageCount"));
    line("scheduled", count(s, "scheduledMessageCount"));
    line("locked", count(s, "lockedMessageCount"));
    line("dead-lettered", count(s, "deadLetterMessageCount"));
    out
}

/// A message's body in one line: JSON compact, text as is, bytes as `base64:…`.
pub fn body(m: &Value) -> String {
    let b = &m["body"];
    match (m["bodyEncoding"].as_str(), b) {
        (Some("base64"), Value::String(s)) => format!("base64:{s}"),
        (Some("text"), Value::String(s)) => s.replace(['\n', '\r'], " "),
        _ => b.to_string(),
    }
}

/// A table whose last column (a body, a description) is cut to fit `width`.
fn fitted(headers: &[&str], mut rows: Vec<Vec<String>>, width: usize) -> String {
    let last = headers.len() - 1;
    let used = (0..last)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
                + 2
        })
        .sum::<usize>();
    // A body narrower than this would say nothing; the line then wraps instead.
    let room = width.saturating_sub(used).max(24);
    for row in &mut rows {
        row[last] = truncate(&row[last], room);
    }
    table(headers, &rows)
}

/// `peek`: the messages without their lock tokens.
pub fn messages(items: &[Value], width: usize) -> String {
    let rows = items
        .iter()
        .map(|m| {
            vec![
                text(m, "sequenceNumber"),
                text(m, "state"),
                text(m, "deliveryCount"),
                text(m, "enqueuedTime"),
                text(m, "messageId"),
                text(m, "sessionId"),
                body(m),
            ]
        })
        .collect();
    fitted(
        &[
            "SEQ",
            "STATE",
            "DELIVERIES",
            "ENQUEUED",
            "MESSAGE ID",
            "SESSION",
            "BODY",
        ],
        rows,
        width,
    )
}

/// `receive`: the session held (on a session queue), then the locked messages with the tokens
/// that settle them.
pub fn received(doc: &Value, width: usize) -> String {
    let mut out = String::new();
    if let Some(s) = doc.get("session").filter(|s| !s.is_null()) {
        out.push_str(&format!(
            "session {}: token {}, locked until {}\n",
            text(s, "sessionId"),
            text(s, "sessionToken"),
            text(s, "lockedUntil")
        ));
    }
    let items = doc["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let rows = items
        .iter()
        .map(|m| {
            vec![
                text(m, "sequenceNumber"),
                text(m, "lockToken"),
                text(m, "deliveryCount"),
                text(m, "lockedUntil"),
                text(m, "messageId"),
                body(m),
            ]
        })
        .collect();
    out.push_str(&fitted(
        &[
            "SEQ",
            "LOCK TOKEN",
            "DELIVERIES",
            "LOCKED UNTIL",
            "MESSAGE ID",
            "BODY",
        ],
        rows,
        width,
    ));
    out
}

/// `dlq`: the dead-lettered messages and why.
pub fn dead(items: &[Value], width: usize) -> String {
    let rows = items
        .iter()
        .map(|m| {
            let why = match m.get("deadLetterErrorDescription").and_then(Value::as_str) {
                Some(d) => format!("{d} | {}", body(m)),
                None => body(m),
            };
            vec![
                text(m, "sequenceNumber"),
                text(m, "deadLetterReason"),
                text(m, "deliveryCount"),
                text(m, "messageId"),
                why,
            ]
        })
        .collect();
    fitted(
        &[
            "SEQ",
            "REASON",
            "DELIVERIES",
            "MESSAGE ID",
            "DESCRIPTION | BODY",
        ],
        rows,
        width,
    )
}

/// The line after a full page: where the next one starts.
pub fn more(items: &[Value], max: u32) -> Option<String> {
    if items.len() < max as usize {
        return None;
    }
    let last = items.last()?.get("sequenceNumber")?.as_i64()?;
    Some(format!(
        "More messages may remain: add --from {} for the next page.",
        last + 1
    ))
}

/// `sent message 3 (id order-1)`, or what a duplicate became.
pub fn sent(queue: &str, doc: &Value) -> String {
    if doc["duplicate"] == true {
        format!(
            "{queue}: duplicate of message id {}, not stored again",
            text(doc, "messageId")
        )
    } else {
        format!(
            "{queue}: sent message {} (id {})",
            text(doc, "sequenceNumber"),
            text(doc, "messageId")
        )
    }
}

pub fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_queue_table_has_the_counts() {
        let t = queues(&[
            json!({"name": "orders", "sessions": false, "stats": {"activeMessageCount": 3,
                "scheduledMessageCount": 1, "lockedMessageCount": 0, "deadLetterMessageCount": 12}}),
            json!({"name": "tasks", "sessions": true, "stats": {}}),
        ]);
        assert_eq!(
            t,
            "QUEUE   ACTIVE  SCHEDULED  LOCKED  DEAD-LETTERED  SESSIONS\n\
             orders  3       1          0       12             no\n\
             tasks   -       -          -       -              yes\n"
        );
    }

    #[test]
    fn show_names_every_setting_as_baton_toml_does() {
        let s = queue(&json!({
            "name": "orders", "lock_duration": "PT60S", "max_delivery_count": 10,
            "time_to_live": null, "dead_letter_on_expiration": false, "duplicate_detection": true,
            "duplicate_detection_window": "PT600S", "sessions": false,
            "stats": {"activeMessageCount": 2, "scheduledMessageCount": 0,
                      "lockedMessageCount": 1, "deadLetterMessageCount": 0}
        }));
        assert!(s.starts_with("queue:                      orders\n"), "{s}");
        assert!(s.contains("lock_duration:              PT60S\n"), "{s}");
        assert!(s.contains("time_to_live:               -\n"), "{s}");
        assert!(s.contains("active:                     2\n"), "{s}");
        assert!(s.ends_with("dead-lettered:              0\n"), "{s}");
    }

    #[test]
    fn bodies_are_one_line_whatever_their_encoding() {
        assert_eq!(
            body(&json!({"body": {"a": [1, 2]}, "bodyEncoding": "json"})),
            r#"{"a":[1,2]}"#
        );
        assert_eq!(
            body(&json!({"body": "two\nlines", "bodyEncoding": "text"})),
            "two lines"
        );
        assert_eq!(
            body(&json!({"body": "text", "bodyEncoding": "json"})),
            r#""text""#
        );
        assert_eq!(
            body(&json!({"body": "/wCA", "bodyEncoding": "base64"})),
            "base64:/wCA"
        );
    }

    #[test]
    fn received_messages_show_their_lock_tokens_and_the_session() {
        let doc = json!({
            "messages": [{"sequenceNumber": 3, "lockToken": "3.1", "deliveryCount": 1,
                "lockedUntil": "2026-01-02T03:05:05.000Z", "messageId": "m",
                "body": {"n": 1}, "bodyEncoding": "json"}],
            "session": {"sessionId": "a", "sessionToken": "2",
                        "lockedUntil": "2026-01-02T03:05:05.000Z"}
        });
        assert_eq!(
            received(&doc, 200),
            "session a: token 2, locked until 2026-01-02T03:05:05.000Z\n\
             SEQ  LOCK TOKEN  DELIVERIES  LOCKED UNTIL              MESSAGE ID  BODY\n\
             3    3.1         1           2026-01-02T03:05:05.000Z  m           {\"n\":1}\n"
        );
    }

    #[test]
    fn long_bodies_are_cut_to_the_width() {
        let m = json!({"sequenceNumber": 1, "state": "Active", "deliveryCount": 0,
            "enqueuedTime": "2026-01-02T03:04:05.000Z", "messageId": "x",
            "body": "y".repeat(300), "bodyEncoding": "text"});
        let t = messages(&[m], 100);
        let row = t.lines().nth(1).unwrap();
        assert_eq!(row.chars().count(), 100, "{t}");
        assert!(row.ends_with('…'));
    }

    #[test]
    fn dead_letters_show_reason_and_description() {
        let t = dead(
            &[
                json!({"sequenceNumber": 4, "deadLetterReason": "BadOrder",
                "deadLetterErrorDescription": "qty < 0", "deliveryCount": 1, "messageId": "o",
                "body": 7, "bodyEncoding": "json"}),
                json!({"sequenceNumber": 5, "deadLetterReason": "MaxDeliveryCountExceeded",
                "deliveryCount": 10, "messageId": "p", "body": "t", "bodyEncoding": "text"}),
            ],
            200,
        );
        assert_eq!(
            t,
            "SEQ  REASON                    DELIVERIES  MESSAGE ID  DESCRIPTION | BODY\n\
             4    BadOrder                  1           o           qty < 0 | 7\n\
             5    MaxDeliveryCountExceeded  10          p           t\n"
        );
    }

    #[test]
    fn a_full_page_points_at_the_next() {
        let page = [json!({"sequenceNumber": 7}), json!({"sequenceNumber": 9})];
        assert_eq!(
            more(&page, 2).as_deref(),
            Some("More messages may remain: add --from 10 for the next page.")
        );
        assert_eq!(more(&page, 3), None);
    }

    #[test]
    fn confirmations_are_one_line() {
        assert_eq!(
            sent(
                "orders",
                &json!({"sequenceNumber": 3, "messageId": "m", "duplicate": false})
            ),
            "orders: sent message 3 (id m)"
        );
        assert_eq!(
            sent("orders", &json!({"messageId": "m", "duplicate": true})),
            "orders: duplicate of message id m, not stored again"
        );
        assert_eq!(plural(1, "message"), "1 message");
        assert_eq!(plural(2, "message"), "2 messages");
    }
}
