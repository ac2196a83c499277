//! Each `baton queues` command: build the request, send it, print the answer.

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{Lock, Peek, QueuesCommand, Receive, SendArgs, args, render};
use crate::remote::{Answer, Body, Error, Remote as Client, Request};

pub async fn run(client: &Client, json: bool, command: &QueuesCommand) -> Result<(), Error> {
    match command {
        QueuesCommand::List => {
            let url = client.url(&[], &[]);
            let doc = client
                .send(Request::new(Method::GET, url.clone()))
                .await?
                .member(&url, "queues")?;
            if json {
                out(&doc.to_string());
            } else {
                out(render::queues(items(&doc)).trim_end());
            }
        }
        QueuesCommand::Show { queue } => {
            let url = client.url(&[queue], &[]);
            let answer = client.send(Request::new(Method::GET, url.clone())).await?;
            if json {
                print_body(&answer.body);
            } else {
                out(render::queue(&answer.json(&url)?).trim_end());
            }
        }
        QueuesCommand::Send(a) => send(client, json, a).await?,
        QueuesCommand::Receive(r) => receive(client, json, r).await?,
        QueuesCommand::Peek(p) => peek(client, json, p, "messages").await?,
        QueuesCommand::Dlq(p) => peek(client, json, p, "deadletter").await?,
        QueuesCommand::Complete(l) => {
            settle(client, json, l, Method::DELETE, None, None).await?;
        }
        QueuesCommand::Abandon(l) => {
            settle(client, json, l, Method::POST, Some("abandon"), None).await?;
        }
        QueuesCommand::Deadletter {
            lock,
            reason,
            description,
        } => {
            let mut why = Map::new();
            if let Some(r) = reason {
                why.insert("reason".to_owned(), json!(r));
            }
            if let Some(d) = description {
                why.insert("description".to_owned(), json!(d));
            }
            let body = Body::json(&Value::Object(why));
            settle(
                client,
                json,
                lock,
                Method::POST,
                Some("deadletter"),
                Some(body),
            )
            .await?;
        }
        QueuesCommand::Redrive {
            queue,
            sequences,
            all,
        } => {
            let url = client.url(&[queue, "deadletter", "redrive"], &[]);
            let mut req = Request::new(Method::POST, url.clone());
            if !*all {
                req.body = Some(Body::json(&json!({ "sequences": sequences })));
            }
            let answer = client.send(req).await?;
            if json {
                print_body(&answer.body);
                return Ok(());
            }
            let moved = answer
                .member(&url, "redriven")?
                .get("redriven")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            out(&redriven(queue, moved, (!*all).then_some(sequences.len())));
        }
    }
    Ok(())
}

/// `orders: 2 messages redriven`, saying so when fewer moved than were named.
pub fn redriven(queue: &str, moved: u64, asked: Option<usize>) -> String {
    match asked {
        Some(n) if moved < n as u64 => format!(
            "{queue}: {} of {n} redriven (the others are not in the dead-letter queue)",
            render::plural(moved, "message")
        ),
        _ => format!("{queue}: {} redriven", render::plural(moved, "message")),
    }
}

async fn send(client: &Client, json: bool, a: &SendArgs) -> Result<(), Error> {
    let (bytes, guessed) = match (&a.body, &a.file) {
        (Some(text), _) => (text.clone().into_bytes(), "application/json"),
        (None, Some(path)) => {
            let bytes = args::read_file(path).map_err(Error::Usage)?;
            let t = args::media_type_of(&bytes);
            (bytes, t)
        }
        (None, None) => {
            let bytes = args::read_stdin().map_err(Error::Usage)?;
            let t = args::media_type_of(&bytes);
            (bytes, t)
        }
    };
    let url = client.url(&[&a.queue, "messages"], &[]);
    let mut req = Request::new(Method::POST, url.clone());
    req.body = Some(Body {
        content_type: a.content_type.clone().unwrap_or_else(|| guessed.to_owned()),
        bytes,
    });
    let headers = [
        ("message-id", a.message_id.clone()),
        ("session-id", a.session_id.clone()),
        ("correlation-id", a.correlation_id.clone()),
        ("time-to-live", a.ttl.map(args::seconds)),
        ("scheduled-enqueue-time", a.scheduled.clone()),
    ];
    req.headers = headers
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
        .collect();
    if !a.properties.is_empty() {
        let props: Map<String, Value> = a.properties.iter().cloned().collect();
        req.headers
            .push(("message-properties", Value::Object(props).to_string()));
    }
    let answer = client.send(req).await?;
    if json {
        print_body(&answer.body);
    } else {
        out(&render::sent(&a.queue, &answer.member(&url, "messageId")?));
    }
    Ok(())
}

async fn receive(client: &Client, json: bool, r: &Receive) -> Result<(), Error> {
    let mut query = vec![
        ("max", r.max.to_string()),
        ("timeout", args::seconds(r.wait)),
    ];
    if let Some(s) = &r.session {
        query.push(("sessionId", s.clone()));
    }
    if let Some(t) = &r.session_token {
        query.push(("sessionToken", t.clone()));
    }
    let url = client.url(&[&r.queue, "messages", "head"], &query);
    let mut req = Request::new(Method::POST, url.clone());
    req.wait = r.wait;
    let answer = client.send(req).await?;
    let doc = if answer.status == StatusCode::NO_CONTENT {
        json!({"messages": [], "session": null})
    } else {
        answer.member(&url, "messages")?
    };
    let got = items(&doc);
    if json {
        out(&doc.to_string());
    } else if got.is_empty() {
        out(&format!("{}: no messages", r.queue));
    } else {
        out(render::received(&doc, width()).trim_end());
    }
    if r.complete && !got.is_empty() {
        for m in got {
            let (Some(seq), Some(token)) = (
                m.get("sequenceNumber").and_then(Value::as_i64),
                m.get("lockToken").and_then(Value::as_str),
            ) else {
                return Err(Error::Unexpected {
                    url: crate::remote::without_query(&url),
                    what: "a received message has no sequence number or lock token".to_owned(),
                });
            };
            let seq = seq.to_string();
            let url = client.url(&[&r.queue, "messages", &seq, token], &[]);
            client.send(Request::new(Method::DELETE, url)).await?;
        }
        if !json {
            out(&format!(
                "{}: {} completed",
                r.queue,
                render::plural(got.len() as u64, "message")
            ));
        }
    }
    Ok(())
}

async fn peek(client: &Client, json: bool, p: &Peek, sub: &str) -> Result<(), Error> {
    let query = [("from", p.from.to_string()), ("max", p.max.to_string())];
    let url = client.url(&[&p.queue, sub], &query);
    let answer: Answer = client.send(Request::new(Method::GET, url.clone())).await?;
    let doc = answer.member(&url, "messages")?;
    if json {
        out(&doc.to_string());
        return Ok(());
    }
    let got = items(&doc);
    let table = if sub == "deadletter" {
        render::dead(got, width())
    } else {
        render::messages(got, width())
    };
    out(table.trim_end());
    if let Some(hint) = render::more(got, p.max) {
        out(&hint);
    }
    Ok(())
}

/// complete (DELETE), abandon and deadletter (POST …/{action}).
async fn settle(
    client: &Client,
    json: bool,
    l: &Lock,
    method: Method,
    action: Option<&str>,
    body: Option<Body>,
) -> Result<(), Error> {
    let seq = l.sequence.to_string();
    let mut segments = vec![l.queue.as_str(), "messages", &seq, &l.lock_token];
    segments.extend(action);
    let mut req = Request::new(method, client.url(&segments, &[]));
    req.body = body;
    let answer = client.send(req).await?;
    if json {
        print_body(&answer.body);
    } else {
        let done = match action {
            None => "completed",
            Some("abandon") => "abandoned",
            Some(_) => "dead-lettered",
        };
        out(&format!("{}: message {} {done}", l.queue, l.sequence));
    }
    Ok(())
}

fn items(doc: &Value) -> &[Value] {
    doc.get("messages")
        .or_else(|| doc.get("queues"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

fn width() -> usize {
    crate::instances::render::terminal_width(std::env::var("COLUMNS").ok().as_deref())
}

/// A closed pipe (`| head`) is not the command's failure.
fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// The server's body as is; settling answers have none, and then nothing is printed.
fn print_body(body: &[u8]) {
    if !body.iter().all(u8::is_ascii_whitespace) {
        out(String::from_utf8_lossy(body).trim_end());
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::QueuesArgs;
    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: QueuesArgs,
    }

    fn parse(line: &[&str]) -> Result<QueuesArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("baton").chain(line.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn send_takes_every_header_option() {
        let a = parse(&[
            "send",
            "orders",
            "--body",
            r#"{"n": 1}"#,
            "--message-id",
            "m1",
            "--session-id",
            "s",
            "--correlation-id",
            "c",
            "--ttl",
            "90s",
            "--scheduled",
            "2026-01-02T03:04:05Z",
            "--property",
            "n=2",
            "--property",
            "region=eu",
        ])
        .unwrap();
        let QueuesCommand::Send(s) = &a.command else {
            panic!("not send");
        };
        assert_eq!(s.body.as_deref(), Some(r#"{"n": 1}"#));
        assert_eq!(s.ttl.map(args::seconds).as_deref(), Some("90"));
        assert_eq!(s.scheduled.as_deref(), Some("2026-01-02T03:04:05.000Z"));
        assert_eq!(
            s.properties,
            [
                ("n".to_owned(), json!(2)),
                ("region".to_owned(), json!("eu"))
            ]
        );
        assert!(parse(&["send", "orders", "-"]).is_ok());
        assert!(parse(&["send", "orders", "--file", "b.json"]).is_ok());
    }

    #[test]
    fn receive_defaults_to_one_message_at_once() {
        let a = parse(&["receive", "orders"]).unwrap();
        let QueuesCommand::Receive(r) = &a.command else {
            panic!("not receive");
        };
        assert_eq!(
            (r.max, r.wait, r.complete),
            (1, std::time::Duration::ZERO, false)
        );
        let a = parse(&[
            "receive",
            "orders",
            "--max",
            "5",
            "--wait",
            "30s",
            "--complete",
        ])
        .unwrap();
        let QueuesCommand::Receive(r) = &a.command else {
            panic!("not receive");
        };
        assert_eq!((r.max, r.wait.as_secs(), r.complete), (5, 30, true));
    }

    #[test]
    fn bad_lines_are_usage_errors() {
        for line in [
            &["send", "orders"][..],
            &["send", "orders", "--body", "{nope"],
            &["send", "orders", "--body", "1", "--file", "f"],
            &["send", "orders", "body.json"],
            &["send", "orders", "--body", "1", "--ttl", "0s"],
            &["send", "orders", "--body", "1", "--property", "x"],
            &["send", "orders", "--body", "1", "--scheduled", "soon"],
            &["receive", "orders", "--max", "0"],
            &["receive", "orders", "--max", "101"],
            &["receive", "orders", "--wait", "2m"],
            &["receive", "orders", "--session-token", "1"],
            &["peek", "orders", "--max", "0"],
            &["complete", "orders", "first", "1.1"],
            &["abandon", "orders", "1"],
            &["redrive", "orders"],
            &["redrive", "orders", "1", "--all"],
            &["redrive", "orders", "one"],
            &["list", "--url", "localhost"],
            &["frobnicate"],
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{line:?}: {e}");
        }
    }

    #[test]
    fn redrive_says_when_fewer_moved_than_were_named() {
        assert_eq!(redriven("q", 2, None), "q: 2 messages redriven");
        assert_eq!(redriven("q", 1, Some(1)), "q: 1 message redriven");
        assert_eq!(
            redriven("q", 1, Some(3)),
            "q: 1 message of 3 redriven (the others are not in the dead-letter queue)"
        );
    }
}
