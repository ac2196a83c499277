//! `baton queues` against the real `baton serve` on a free port: queues declared in the app's
//! baton.toml on an SQLite file in a temporary folder, driven through the CLI binary.

#![allow(clippy::expect_used, clippy::unwrap_used)] // helpers of tests may fail loudly

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod support;

use support::Server;

use serde_json::{Value, json};

/// `orders` has Service Bus' defaults; `tasks` requires sessions.
fn app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("workflows")).unwrap();
    std::fs::write(
        root.join("baton.toml"),
        format!(
            "[queues.orders]\n\n[queues.tasks]\nsessions = true\n\n[store]\npath = \"{}\"\n",
            root.join("baton.db").display()
        ),
    )
    .unwrap();
    dir
}

impl Server {
    /// `baton queues ARGS` against this server.
    fn cli(&self, args: &[&str]) -> Output {
        baton(&self.url(), args)
    }

    /// `baton queues ARGS`, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "baton queues {args:?}: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// `baton queues ARGS --json`, which must succeed; its JSON.
    fn json(&self, args: &[&str]) -> Value {
        let mut line = args.to_vec();
        line.push("--json");
        let text = self.ok(&line);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// `baton queues send ARGS -` with `input` on standard input.
    fn send_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = command(&self.url())
            .args(["send"])
            .args(args)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("baton runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().expect("baton ends")
    }
}

fn command(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
    c.arg("queues")
        .env("BATON_URL", url)
        .env("COLUMNS", "200")
        .env_remove("BATON_KEY");
    c
}

fn baton(url: &str, args: &[&str]) -> Output {
    command(url).args(args).output().expect("baton runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The table's rows (without the header and any trailing hint).
fn rows(table: &str) -> Vec<&str> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("More "))
        .collect()
}

/// The cells of a table row (cells hold no double blanks).
fn cells(row: &str) -> Vec<&str> {
    row.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The row of the table whose first cell is `first`.
fn row_of<'t>(table: &'t str, first: &str) -> Vec<&'t str> {
    rows(table)
        .into_iter()
        .map(cells)
        .find(|c| c.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{table}"))
}

#[test]
fn messages_are_sent_listed_peeked_received_and_settled() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);

    let table = server.ok(&["list"]);
    assert_eq!(
        table.lines().next().unwrap(),
        "QUEUE   ACTIVE  SCHEDULED  LOCKED  DEAD-LETTERED  SESSIONS",
        "{table}"
    );
    assert_eq!(
        row_of(&table, "orders"),
        ["orders", "0", "0", "0", "0", "no"]
    );
    assert_eq!(
        row_of(&table, "tasks"),
        ["tasks", "0", "0", "0", "0", "yes"]
    );

    let sent = server.ok(&[
        "send",
        "orders",
        "--body",
        r#"{"item": "book"}"#,
        "--message-id",
        "m1",
        "--correlation-id",
        "c1",
        "--ttl",
        "1h",
        "--property",
        "region=eu",
        "--property",
        "priority=2",
    ]);
    assert_eq!(sent.trim(), "orders: sent message 1 (id m1)");
    let again = server.ok(&["send", "orders", "--body", "2", "--message-id", "m1"]);
    assert_eq!(
        again.trim(),
        "orders: duplicate of message id m1, not stored again"
    );
    let o = server.send_stdin(&["orders"], b"hello from stdin");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("orders: sent message 2 "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let file = dir.path().join("order.json");
    std::fs::write(&file, r#"[1, 2, 3]"#).unwrap();
    let sent = server.ok(&["send", "orders", "--file", file.to_str().unwrap()]);
    assert!(sent.starts_with("orders: sent message 3 "), "{sent}");
    let sent = server.ok(&[
        "send",
        "orders",
        "--body",
        r#""later""#,
        "--scheduled",
        "1h",
    ]);
    assert!(sent.starts_with("orders: sent message 4 "), "{sent}");

    let table = server.ok(&["list"]);
    assert_eq!(
        row_of(&table, "orders"),
        ["orders", "3", "1", "0", "0", "no"]
    );
    let show = server.ok(&["show", "orders"]);
    assert!(
        show.contains("lock_duration:              PT60S\n"),
        "{show}"
    );
    assert!(show.contains("active:                     3\n"), "{show}");
    assert!(show.contains("scheduled:                  1\n"), "{show}");

    let peek = server.ok(&["peek", "orders"]);
    assert_eq!(rows(&peek).len(), 4, "{peek}");
    let first = row_of(&peek, "1");
    assert_eq!(
        (first[1], first[2], first[4], first[5], first[6]),
        ("Active", "0", "m1", "-", r#"{"item":"book"}"#),
        "{peek}"
    );
    assert_eq!(
        row_of(&peek, "2").last(),
        Some(&"hello from stdin"),
        "{peek}"
    );
    assert_eq!(row_of(&peek, "3").last(), Some(&"[1,2,3]"), "{peek}");
    assert_eq!(row_of(&peek, "4")[1], "Scheduled", "{peek}");
    let doc = server.json(&["peek", "orders", "--from", "1", "--max", "1"]);
    let m = &doc["messages"][0];
    assert_eq!(
        m["properties"],
        json!({"region": "eu", "priority": 2}),
        "{doc}"
    );
    assert_eq!(m["correlationId"], "c1", "{doc}");
    assert!(m["expiresAt"].is_string(), "{doc}");
    let paged = server.ok(&["peek", "orders", "--max", "2"]);
    assert_eq!(rows(&paged).len(), 2, "{paged}");
    assert!(
        paged
            .trim_end()
            .ends_with("More messages may remain: add --from 3 for the next page."),
        "{paged}"
    );

    // Peek-lock: two messages, each with the token that settles it.
    let got = server.ok(&["receive", "orders", "--max", "2"]);
    assert!(got.starts_with("SEQ  LOCK TOKEN  DELIVERIES"), "{got}");
    let one = row_of(&got, "1");
    let two = row_of(&got, "2");
    assert_eq!((one[2], two[2]), ("1", "1"), "{got}");
    let (token1, token2) = (one[1].to_owned(), two[1].to_owned());
    let done = server.ok(&["complete", "orders", "1", &token1]);
    assert_eq!(done.trim(), "orders: message 1 completed");
    let twice = server.cli(&["complete", "orders", "1", &token1]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        stderr(&twice).starts_with("baton queues: Gone (HTTP 410)\n  the lock is lost"),
        "{}",
        stderr(&twice)
    );
    assert!(twice.stdout.is_empty());
    let back = server.ok(&["abandon", "orders", "2", &token2]);
    assert_eq!(back.trim(), "orders: message 2 abandoned");

    // Delivered again, then dead-lettered with a reason.
    let doc = server.json(&["receive", "orders"]);
    let m = &doc["messages"][0];
    assert_eq!(
        (&m["sequenceNumber"], &m["deliveryCount"]),
        (&json!(2), &json!(2)),
        "{doc}"
    );
    let token = m["lockToken"].as_str().unwrap();
    let dead = server.ok(&[
        "deadletter",
        "orders",
        "2",
        token,
        "--reason",
        "Unreadable",
        "--description",
        "not JSON",
    ]);
    assert_eq!(dead.trim(), "orders: message 2 dead-lettered");

    // --complete settles what it printed.
    let got = server.ok(&["receive", "orders", "--max", "10", "--complete"]);
    assert_eq!(row_of(&got, "3").last(), Some(&"[1,2,3]"), "{got}");
    assert!(
        got.trim_end().ends_with("orders: 1 message completed"),
        "{got}"
    );
    let empty = server.ok(&["receive", "orders"]);
    assert_eq!(empty.trim(), "orders: no messages");
    assert_eq!(
        server.json(&["receive", "orders"]),
        json!({"messages": [], "session": null})
    );
    let table = server.ok(&["list"]);
    assert_eq!(
        row_of(&table, "orders"),
        ["orders", "0", "1", "0", "1", "no"]
    );
}

#[test]
fn the_dead_letter_queue_is_shown_and_redriven() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);
    for n in 1..=3 {
        server.ok(&["send", "orders", "--body", &n.to_string()]);
    }
    let doc = server.json(&["receive", "orders", "--max", "3"]);
    for m in doc["messages"].as_array().unwrap() {
        let seq = m["sequenceNumber"].to_string();
        let token = m["lockToken"].as_str().unwrap();
        server.ok(&["deadletter", "orders", &seq, token, "--reason", "Bad"]);
    }
    let dlq = server.ok(&["dlq", "orders"]);
    assert_eq!(
        cells(dlq.lines().next().unwrap()),
        [
            "SEQ",
            "REASON",
            "DELIVERIES",
            "MESSAGE ID",
            "DESCRIPTION | BODY"
        ],
        "{dlq}"
    );
    assert_eq!(rows(&dlq).len(), 3, "{dlq}");
    let first = row_of(&dlq, "1");
    assert_eq!(
        (first[1], first[2], first.last()),
        ("Bad", "1", Some(&"1")),
        "{dlq}"
    );

    let moved = server.ok(&["redrive", "orders", "2", "9"]);
    assert_eq!(
        moved.trim(),
        "orders: 1 message of 2 redriven (the others are not in the dead-letter queue)"
    );
    let dlq = server.ok(&["dlq", "orders"]);
    let left: Vec<&str> = rows(&dlq).into_iter().map(|r| cells(r)[0]).collect();
    assert_eq!(left, ["1", "3"], "{dlq}");
    let peek = server.ok(&["peek", "orders"]);
    assert_eq!(row_of(&peek, "2")[1..3], ["Active", "0"], "{peek}");

    let moved = server.ok(&["redrive", "orders", "--all"]);
    assert_eq!(moved.trim(), "orders: 2 messages redriven");
    assert!(rows(&server.ok(&["dlq", "orders"])).is_empty());
    assert_eq!(
        server.json(&["redrive", "orders", "--all"]),
        json!({"redriven": 0})
    );
    assert_eq!(rows(&server.ok(&["peek", "orders"])).len(), 3);
}

#[test]
fn a_session_queue_is_received_by_session() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);
    let refused = server.cli(&["send", "tasks", "--body", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("(HTTP 400)") && stderr(&refused).contains("requires sessions"),
        "{}",
        stderr(&refused)
    );
    server.ok(&["send", "tasks", "--body", r#""a1""#, "--session-id", "a"]);
    server.ok(&["send", "tasks", "--body", r#""b1""#, "--session-id", "b"]);
    let got = server.ok(&["receive", "tasks", "--max", "5"]);
    let first = got.lines().next().unwrap();
    assert!(first.starts_with("session a: token "), "{got}");
    let token = first
        .trim_start_matches("session a: token ")
        .split(',')
        .next()
        .unwrap();
    assert_eq!(row_of(&got, "1").last(), Some(&r#""a1""#), "{got}");

    // Session a is held: another receiver asking for it is refused; the holder goes on.
    let held = server.cli(&["receive", "tasks", "--session", "a"]);
    assert_eq!(held.status.code(), Some(1));
    assert!(
        stderr(&held).contains("held by another receiver"),
        "{}",
        stderr(&held)
    );
    server.ok(&["send", "tasks", "--body", r#""a2""#, "--session-id", "a"]);
    let more = server.ok(&[
        "receive",
        "tasks",
        "--session",
        "a",
        "--session-token",
        token,
        "--complete",
    ]);
    assert_eq!(row_of(&more, "3").last(), Some(&r#""a2""#), "{more}");
    let other = server.ok(&["receive", "tasks"]);
    assert!(other.starts_with("session b: "), "{other}");
}

#[test]
fn a_waiting_receive_gets_a_message_sent_meanwhile() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);
    let waiting = command(&server.url())
        .args(["receive", "orders", "--wait", "30s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton runs");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(waiting.wait_with_output());
    });
    server.ok(&["send", "orders", "--body", r#"{"wake": 1}"#]);
    let o = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the receive answered within 20 s")
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["messages"][0]["body"], json!({"wake": 1}), "{doc}");
}

#[test]
fn unknown_queues_and_bad_usage_are_errors() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);
    for line in [
        &["peek", "nope"][..],
        &["send", "nope", "--body", "1"],
        &["receive", "nope"],
        &["show", "nope"],
        &["dlq", "nope"],
        &["redrive", "nope", "--all"],
    ] {
        let o = server.cli(line);
        assert_eq!(o.status.code(), Some(1), "{line:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with("baton queues: Not Found (HTTP 404)\n  there is no queue `nope`"),
            "{line:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{line:?}");
    }
    for line in [
        &["send", "orders"][..],
        &["send", "orders", "--body", "{oops"],
        &["receive", "orders", "--max", "0"],
        &["complete", "orders", "first", "1.1"],
        &["redrive", "orders"],
    ] {
        let o = server.cli(line);
        assert_eq!(o.status.code(), Some(2), "{line:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{line:?}");
    }
    let missing = dir.path().join("missing.json");
    let o = server.cli(&["send", "orders", "--file", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    assert!(rows(&server.ok(&["peek", "orders"])).is_empty());

    // A port that was free a moment ago: nothing listens on it now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = baton(&format!("http://127.0.0.1:{port}"), &["list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "baton queues: could not reach http://127.0.0.1:{port}/api/queues"
        )),
        "{}",
        stderr(&o)
    );
}
