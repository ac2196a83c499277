//! Several `baton serve` nodes on one PostgreSQL database serve one app: an instance started
//! on one node is queried, fed an event and terminated through another; a timer set by a node
//! that dies goes off on another; and queue messages sent through one node are handled once
//! each by the triggers of all of them; and a node whose database fails it says so on
//! `/readyz`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{Server, http};

/// `Hold` waits for a `go` event; `Nap` sleeps a second on a durable timer; `Job` is triggered
/// by queue `jobs`.
fn app(dir: &Path, schema: &str) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let write = |name: &str, body: &str| {
        std::fs::write(
            dir.join(format!("workflows/{name}.yaml")),
            format!(
                "document: {{dsl: '1.0.0', namespace: multi, name: {name}, version: '1.0.0'}}\ndo:\n{body}"
            ),
        )
        .unwrap();
    };
    write(
        "hold",
        "  - hold:\n      listen:\n        to:\n          one:\n            with: {type: go}\n\
         \x20 - answer:\n      set: '${ {got: .} }'\n",
    );
    write(
        "nap",
        "  - nap:\n      wait: {seconds: 1}\n  - answer:\n      set: {napped: true}\n",
    );
    write("job", "  - answer:\n      set: '${ {job: .n} }'\n");
    std::fs::write(
        dir.join("baton.toml"),
        format!(
            "[functions.Hold]\nworkflow = \"hold\"\nmode = \"async\"\n\
             [functions.Nap]\nworkflow = \"nap\"\nmode = \"async\"\n\
             [queues.jobs]\nlock_duration = \"5s\"\n\
             [functions.Job]\nworkflow = \"job\"\nqueue = \"jobs\"\n\
             {}[durable]\nlease = \"2s\"\n",
            support::postgres_store_toml(schema)
        ),
    )
    .unwrap();
}

/// Starts `function` on the node at `addr`; the instance id.
fn start(addr: &str, function: &str, body: &Value) -> String {
    let (status, _, b) = http(
        addr,
        "POST",
        &format!("/api/{function}"),
        &[],
        &body.to_string(),
    )
    .expect("start");
    assert_eq!(status, 202, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// The instance's status as the node at `addr` reports it.
fn status(addr: &str, id: &str) -> (u16, Value) {
    let (code, _, b) = http(addr, "GET", &format!("/api/instances/{id}"), &[], "").expect("status");
    (code, b)
}

/// Polls the node at `addr` until the instance has finished (200); its status document.
fn finished(addr: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, b) = status(addr, id);
        if code == 200 {
            return b;
        }
        assert_eq!(code, 202, "{b}");
        assert!(Instant::now() < deadline, "{id} never finished: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_on_one_database_share_instances_timers_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    let schema = support::postgres_schema("multinode");
    app(dir.path(), &schema);
    let a = Server::start(dir.path(), &[]);
    let b = Server::start(dir.path(), &[]);

    // Started on A, seen and fed through B, finished as A sees it.
    let held = start(&a.addr, "Hold", &json!({"from": "a"}));
    let (code, s) = status(&b.addr, &held);
    assert_eq!(
        (code, s["runtimeStatus"].as_str()),
        (202, Some("Running")),
        "{s}"
    );
    let (code, _, answer) = http(
        &b.addr,
        "POST",
        &format!("/api/instances/{held}/raiseEvent/go"),
        &[],
        r#"{"via": "b"}"#,
    )
    .unwrap();
    assert_eq!(code, 202, "{answer}");
    let done = finished(&a.addr, &held);
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert!(
        done["output"].to_string().contains(r#""via":"b""#),
        "the event raised through B reached the instance: {done}"
    );

    // Started on B, terminated through A.
    let doomed = start(&b.addr, "Hold", &json!({"from": "b"}));
    let (code, _, answer) = http(
        &a.addr,
        "POST",
        &format!("/api/instances/{doomed}/terminate?reason=enough"),
        &[],
        "",
    )
    .unwrap();
    assert_eq!(code, 202, "{answer}");
    let gone = finished(&b.addr, &doomed);
    assert_eq!(gone["runtimeStatus"], "Terminated", "{gone}");

    // A timer set on A, which dies before it is due, goes off on B.
    let nap = start(&a.addr, "Nap", &json!({}));
    a.kill();
    let napped = finished(&b.addr, &nap);
    assert_eq!(napped["runtimeStatus"], "Completed", "{napped}");
    assert_eq!(napped["output"], json!({"napped": true}));

    // Messages sent through B are handled once each, by the triggers of B and a new A.
    let a = Server::start(dir.path(), &[]);
    let batch: Vec<Value> = (0..40)
        .map(|n| json!({"messageId": format!("m-{n}"), "body": {"n": n}}))
        .collect();
    let (code, _, answer) = http(
        &b.addr,
        "POST",
        "/api/queues/jobs/messages/batch",
        &[],
        &Value::Array(batch).to_string(),
    )
    .unwrap();
    assert_eq!(code, 201, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let jobs = loop {
        let (code, _, list) =
            http(&a.addr, "GET", "/api/instances?top=1000", &[], "").expect("listing");
        assert_eq!(code, 200, "{list}");
        let jobs: Vec<Value> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["name"] == "Job" && i["runtimeStatus"] == "Completed")
            .cloned()
            .collect();
        if jobs.len() >= 40 {
            break jobs;
        }
        assert!(Instant::now() < deadline, "{} of 40 jobs done", jobs.len());
        std::thread::sleep(Duration::from_millis(50));
    };
    let ns: HashSet<u64> = jobs
        .iter()
        .map(|j| j["output"]["job"].as_u64().unwrap())
        .collect();
    assert_eq!((jobs.len(), ns.len()), (40, 40), "one instance per message");

    // A node whose database cannot serve it leaves the rotation: /readyz answers 503.
    let (code, _, ready) = http(&b.addr, "GET", "/readyz", &[], "").unwrap();
    assert_eq!(
        (code, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );
    support::drop_postgres_schema(&schema);
    let (code, _, ready) = http(&b.addr, "GET", "/readyz", &[], "").unwrap();
    assert_eq!(
        (code, ready["status"].as_str()),
        (503, Some("store unavailable")),
        "{ready}"
    );
    assert!(ready["store"].is_string(), "the reason is given: {ready}");
    a.kill();
    b.kill();
}
