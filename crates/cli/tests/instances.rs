//! `baton instances` against the real `baton serve` on a free port: durable instances on an
//! SQLite file in a temporary app folder, driven through the CLI binary.

#![allow(clippy::expect_used, clippy::unwrap_used)] // helpers of tests may fail loudly

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

use support::Server;

use serde_json::Value;

/// `Slow` waits in `listen` until a `go` event is raised; `Quick` completes at once.
fn app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("workflows")).unwrap();
    std::fs::write(
        root.join("baton.toml"),
        format!(
            "[functions.Slow]\nworkflow = \"slow\"\nmode = \"async\"\n\n\
             [functions.Quick]\nworkflow = \"quick\"\nmode = \"async\"\n\n\
             [store]\npath = \"{}\"\n",
            root.join("baton.db").display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("workflows/slow.yaml"),
        "document: {dsl: '1.0.0', namespace: test, name: slow, version: '1.0.0'}\n\
         do:\n  - hold:\n      listen:\n        to:\n          one:\n            with: {type: go}\n\
         \x20 - answer:\n      set: '${ {done: true, got: .} }'\n",
    )
    .unwrap();
    std::fs::write(
        root.join("workflows/quick.yaml"),
        "document: {dsl: '1.0.0', namespace: test, name: quick, version: '1.0.0'}\n\
         do:\n  - answer:\n      set: {quick: true}\n",
    )
    .unwrap();
    dir
}

impl Server {
    /// Starts an instance of `function` and answers its id.
    fn start_instance(&self, function: &str, body: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "POST /api/{function} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        assert!(text.starts_with("HTTP/1.1 202"), "{text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        body["id"].as_str().expect("an id").to_owned()
    }

    /// `baton instances ARGS` against this server.
    fn cli(&self, args: &[&str]) -> Output {
        baton(&self.url(), args)
    }

    /// `baton instances ARGS`, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "baton instances {args:?}: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn status(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["show", id, "--json"])).expect("show --json is JSON")
    }

    /// Waits (bounded, 20 s) until the instance's runtimeStatus is `want`; its status object.
    fn wait_for(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let doc = self.status(id);
            if doc["runtimeStatus"] == want {
                return doc;
            }
            assert!(
                Instant::now() < deadline,
                "{id} is still {} after 20 s, not {want}",
                doc["runtimeStatus"]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn baton(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("instances")
        .args(args)
        .env("BATON_URL", url)
        .env("COLUMNS", "200")
        .env_remove("BATON_KEY")
        .output()
        .expect("baton runs")
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

#[test]
fn a_listening_instance_is_listed_shown_raised_and_purged() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);
    let slow = server.start_instance("Slow", r#"{"n": 1}"#);
    let quick = server.start_instance("Quick", "{}");
    server.wait_for(&quick, "Completed");
    server.wait_for(&slow, "Running");

    let table = server.ok(&["list"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("INSTANCE")
            && header.contains("  NAME  ")
            && header.ends_with("UPDATED"),
        "{table}"
    );
    assert_eq!(rows(&table).len(), 2, "{table}");
    let slow_row = rows(&table)
        .into_iter()
        .find(|r| r.starts_with(&slow))
        .unwrap();
    assert!(
        slow_row.contains(" Slow ") && slow_row.contains(" Running "),
        "{table}"
    );
    // Columns are aligned: every row has its NAME where the header has it.
    let at = header.find("NAME").unwrap();
    for r in rows(&table) {
        assert!(
            r[at..].starts_with("Slow") || r[at..].starts_with("Quick"),
            "{table}"
        );
    }

    let running = server.ok(&["list", "--status", "running"]);
    assert_eq!(rows(&running).len(), 1, "{running}");
    assert!(
        running.contains(&slow) && !running.contains(&quick),
        "{running}"
    );
    let quick_only: Value =
        serde_json::from_str(&server.ok(&["list", "--name", "Quick", "--json"])).unwrap();
    assert_eq!(quick_only.as_array().unwrap().len(), 1);
    assert_eq!(quick_only[0]["instanceId"], quick.as_str());
    let prefixed = server.ok(&["list", "--prefix-id", &slow[..6], "--from", "1h"]);
    assert!(prefixed.contains(&slow), "{prefixed}");
    let none = server.ok(&["list", "--to", "2020-01-01T00:00:00Z"]);
    assert!(rows(&none).is_empty(), "{none}");

    let shown = server.ok(&["show", &slow]);
    assert!(
        shown.contains(&format!("instance:     {slow}\n")),
        "{shown}"
    );
    assert!(shown.contains("name:         Slow\n"), "{shown}");
    assert!(shown.contains("status:       Running\n"), "{shown}");
    assert!(
        shown.contains("input:\n  {\n    \"n\": 1\n  }\n"),
        "{shown}"
    );

    let raised = server.ok(&["raise", &slow, "go", "--data", r#"{"x": 1}"#]);
    assert_eq!(raised.trim(), format!("{slow}: event go accepted"));
    let done = server.wait_for(&slow, "Completed");
    assert_eq!(done["output"]["done"], true, "{done}");
    let shown = server.ok(&["show", &slow, "--history"]);
    assert!(
        shown.contains("output:\n  {\n    \"done\": true,"),
        "{shown}"
    );
    assert!(shown.contains("history:\nSEQ  AT"), "{shown}");

    let history = server.ok(&["history", &slow]);
    let header = history.lines().next().unwrap();
    assert!(header.starts_with("SEQ  AT") && header.contains("KIND") && header.ends_with("DETAIL"));
    let kinds: Vec<&str> = rows(&history)
        .iter()
        .map(|r| r.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"ExecutionStarted"), "{history}");
    assert!(kinds.contains(&"EventRaised"), "{history}");
    assert_eq!(kinds.last(), Some(&"ExecutionCompleted"), "{history}");
    let paged = server.ok(&["history", &slow, "--top", "1"]);
    assert_eq!(rows(&paged).len(), 1, "{paged}");
    assert!(
        paged.contains("More events remain: add --continuation-token "),
        "{paged}"
    );
    let all = server.ok(&["history", &slow, "--top", "1", "--all", "--json"]);
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["instanceId"], slow.as_str());
    assert_eq!(all["events"].as_array().unwrap().len(), kinds.len());

    assert_eq!(server.ok(&["purge", &slow]).trim(), "1 instance deleted");
    let gone = server.cli(&["show", &slow]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("(HTTP 404)"), "{}", stderr(&gone));
    assert_eq!(
        server
            .ok(&["purge", "--status", "completed", "--name", "Quick"])
            .trim(),
        "1 instance deleted"
    );
    assert!(rows(&server.ok(&["list"])).is_empty());
}

#[test]
fn instances_are_suspended_resumed_and_terminated() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);
    let id = server.start_instance("Slow", "{}");
    server.wait_for(&id, "Running");

    let suspend = server.cli(&["suspend", &id, "--reason", "maintenance"]);
    assert!(suspend.status.success(), "{}", stderr(&suspend));
    assert_eq!(
        String::from_utf8_lossy(&suspend.stdout).trim(),
        format!("{id}: suspend accepted (reason: maintenance)")
    );
    server.wait_for(&id, "Suspended");
    assert_eq!(
        server.ok(&["resume", &id]).trim(),
        format!("{id}: resume accepted")
    );
    server.wait_for(&id, "Running");
    let not_failed = server.cli(&["rewind", &id]);
    assert_eq!(not_failed.status.code(), Some(1));
    assert!(
        stderr(&not_failed).contains("(HTTP 412)"),
        "{}",
        stderr(&not_failed)
    );

    let early = server.cli(&["purge", &id]);
    assert_eq!(
        early.status.code(),
        Some(1),
        "a running instance is not purged"
    );
    assert!(stderr(&early).contains("(HTTP 412)"), "{}", stderr(&early));
    assert_eq!(
        server
            .ok(&["terminate", &id, "--reason", "no longer needed"])
            .trim(),
        format!("{id}: terminate accepted (reason: no longer needed)")
    );
    server.wait_for(&id, "Terminated");
    let again = server.cli(&["terminate", &id]);
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert!(
        err.starts_with("baton instances: ") && err.contains("(HTTP 410)"),
        "{err}"
    );
    let late = server.cli(&["raise", &id, "go"]);
    assert_eq!(late.status.code(), Some(1));

    let bad = server.cli(&["purge", "--status", "running"]);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "only finished instances are purged"
    );
    assert!(stderr(&bad).contains("(HTTP 400)"), "{}", stderr(&bad));
    let purged: Value =
        serde_json::from_str(&server.ok(&["purge", "--status", "terminated", "--json"])).unwrap();
    assert_eq!(purged["instancesDeleted"], 1);
}

#[test]
fn listings_page_with_continuation_tokens() {
    let dir = app();
    let server = Server::start(dir.path(), &[]);
    let ids: Vec<String> = (0..3)
        .map(|_| server.start_instance("Quick", "{}"))
        .collect();
    for id in &ids {
        server.wait_for(id, "Completed");
    }

    let first = server.ok(&["list", "--top", "2"]);
    assert_eq!(rows(&first).len(), 2, "{first}");
    let hint = first.lines().last().unwrap();
    assert!(
        hint.starts_with("More instances remain: add --continuation-token "),
        "{first}"
    );
    let token = hint
        .trim_start_matches("More instances remain: add --continuation-token ")
        .split(" for the next page")
        .next()
        .unwrap()
        .trim_matches('\'');
    let next = server.ok(&["list", "--top", "2", "--continuation-token", token]);
    assert_eq!(rows(&next).len(), 1, "{next}");
    assert!(!next.contains("More instances"), "{next}");
    let mut seen: Vec<&str> = rows(&first).into_iter().chain(rows(&next)).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 3);

    assert_eq!(rows(&server.ok(&["list", "--top", "1", "--all"])).len(), 3);
    let limited = server.ok(&["list", "--top", "1", "--limit", "2"]);
    assert_eq!(rows(&limited).len(), 2, "{limited}");
    assert!(limited.contains("More instances remain"), "{limited}");

    let o = server.cli(&["list", "--top", "1", "--all", "--json"]);
    assert!(o.status.success());
    let all: Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let mut got: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instanceId"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn a_host_key_is_sent_and_refusals_are_readable() {
    let dir = app();
    let key = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["keys", "create", "--host", "--name", "admin"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let server = Server::start(dir.path(), &[]);

    let refused = server.cli(&["list"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(
        err.starts_with("baton instances: ") && err.contains("(HTTP 401)"),
        "{err}"
    );
    assert!(refused.stdout.is_empty());
    assert!(rows(&server.ok(&["list", "--key", &key])).is_empty());
    let with_env = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["instances", "list", "--json"])
        .env("BATON_URL", server.url())
        .env("BATON_KEY", &key)
        .output()
        .unwrap();
    assert!(with_env.status.success(), "{}", stderr(&with_env));
    assert_eq!(String::from_utf8_lossy(&with_env.stdout).trim(), "[]");
}

#[test]
fn an_unreachable_server_is_named_and_bad_usage_exits_2() {
    // A port that was free a moment ago: nothing listens on it now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = baton(&url, &["list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "could not reach http://127.0.0.1:{port}/api/instances"
        )),
        "{}",
        stderr(&o)
    );
    for args in [
        &["purge"][..],
        &["purge", "x", "--status", "failed"],
        &["list", "--status", "asleep"],
        &["raise", "x"],
    ] {
        assert_eq!(baton(&url, args).status.code(), Some(2), "{args:?}");
    }
    let missing = tempfile::tempdir().unwrap();
    let file = format!("@{}", missing.path().join("nope.json").display());
    let o = baton(&url, &["raise", "x", "go", "--data", &file]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}
