//! Crash recovery of durable instances, with the real `baton serve` as a child process on an
//! SQLite file: the server is killed with SIGKILL again and again while it starts and runs
//! fan-out instances against a local HTTP stand-in, and restarted each time. Every accepted
//! instance must complete exactly once with the right output; activities may run more than
//! once (at least once), and the test reports how often they did. The same for a queue
//! trigger killed while it holds message locks: every message is handled by one instance.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{Server, fan_outcome, fan_output, fan_workflow, http, next, stand_in};

/// Instances submitted by the kill test.
const INSTANCES: usize = 300;
/// Activities per instance.
const BRANCHES: usize = 6;
/// Kills of the server at random moments.
const KILLS: usize = 12;
/// How long the stand-in takes to answer a call.
const STAND_IN_DELAY: Duration = Duration::from_millis(15);

/// An app with one durable function, `Fan`, fanning out to the stand-in's six checks.
fn app(dir: &Path, port: u16) {
    fan_workflow(dir, port, BRANCHES);
    std::fs::write(
        dir.join("baton.toml"),
        "[functions.Fan]\nworkflow = \"fan\"\nmode = \"async\"\nauth = \"anonymous\"\n\
         [store]\npath = \"state/baton.db\"\n[durable]\nlease = \"1s\"\n\
         [http]\nallow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
}

/// Where the server currently listens; empty while it is down.
type Current = Arc<RwLock<String>>;

/// Submits instance `k` until the server answers 202 for it, across kills and restarts, with
/// one idempotency key for all attempts. Returns the instance id.
fn submit(current: &Current, k: usize) -> String {
    let key = format!("crash-{k}");
    let body = json!({"k": k}).to_string();
    for _ in 0..3000 {
        let addr = current.read().unwrap().clone();
        if !addr.is_empty() {
            match http(
                &addr,
                "POST",
                "/api/Fan",
                &[("idempotency-key", &key)],
                &body,
            ) {
                Ok((202, _, b)) => return b["id"].as_str().expect("an id").to_owned(),
                Ok((503, _, _)) | Err(_) => {}
                Ok((status, _, b)) => panic!("instance {k}: unexpected {status}: {b}"),
            }
        }
        // The server is down or busy: try again shortly.
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("instance {k} was never accepted");
}

fn expected(k: usize) -> HashSet<String> {
    fan_output(k, BRANCHES)
}

#[test]
fn durable_instances_survive_repeated_kill_9_and_finish_exactly_once() {
    let began = Instant::now();
    let stub = stand_in(STAND_IN_DELAY);
    let dir = tempfile::tempdir().unwrap();
    app(dir.path(), stub.port);
    let current: Current = Arc::new(RwLock::new(String::new()));
    let server = Server::start(dir.path(), &[]);
    *current.write().unwrap() = server.addr.clone();

    let accepted = Arc::new(Mutex::new(HashMap::<usize, String>::new()));
    let next_k = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..4)
        .map(|_| {
            let (current, accepted, next_k) = (
                Arc::clone(&current),
                Arc::clone(&accepted),
                Arc::clone(&next_k),
            );
            std::thread::spawn(move || {
                loop {
                    let k = next_k.fetch_add(1, Ordering::Relaxed);
                    if k >= INSTANCES {
                        return;
                    }
                    let id = submit(&current, k);
                    accepted.lock().unwrap().insert(k, id);
                }
            })
        })
        .collect();

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut server = Some(server);
    for round in 0..KILLS {
        // A random point: somewhere in the next 100–600 ms of work.
        std::thread::sleep(Duration::from_millis(100 + next(&mut seed) % 500));
        current.write().unwrap().clear();
        server.take().unwrap().kill();
        let done = accepted.lock().unwrap().len();
        eprintln!("kill {}: {done} of {INSTANCES} accepted so far", round + 1);
        let s = Server::start(dir.path(), &[]);
        *current.write().unwrap() = s.addr.clone();
        server = Some(s);
    }
    for s in submitters {
        s.join().expect("submitter");
    }
    let server = server.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), INSTANCES);

    // Every accepted instance completes; bounded wait.
    let deadline = Instant::now() + Duration::from_secs(120);
    let listing = loop {
        let (status, _, list) =
            http(&server.addr, "GET", "/api/instances?top=1000", &[], "").expect("listing");
        assert_eq!(status, 200, "{list}");
        let items = list.as_array().unwrap().clone();
        let open = items
            .iter()
            .filter(|i| i["runtimeStatus"] != "Completed")
            .count();
        if open == 0 && items.len() >= INSTANCES {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} instances still not Completed",
            items.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // Exactly once: one instance per accepted request, no more, each with the right output.
    let calls = stub.calls.lock().unwrap().clone();
    let (lost, duplicated, missing) = fan_outcome(&listing, &accepted, &calls, BRANCHES);
    let total: usize = calls.values().sum();
    let keys = stub.keys.lock().unwrap().len();
    eprintln!(
        "crash test: {KILLS} kills, {INSTANCES} instances, {} activities, {total} activity calls \
         ({} re-executions), {keys} distinct idempotency keys seen by the callee, \
         {lost} lost, {duplicated} duplicated, {:.1} s",
        INSTANCES * BRANCHES,
        total - INSTANCES * BRANCHES,
        began.elapsed().as_secs_f64()
    );
    assert_eq!((lost, duplicated, missing), (0, 0, 0));
    assert_eq!(
        keys,
        INSTANCES * BRANCHES,
        "each activity carries one stable idempotency key, whatever the attempts"
    );
    server.kill();
}

/// The process dies after the instance is committed and before anyone is answered: the
/// instance exists after the restart, and the client's retry with its key finds it instead of
/// starting another.
#[test]
fn a_crash_between_commit_and_answer_keeps_the_instance() {
    let stub = stand_in(STAND_IN_DELAY);
    let dir = tempfile::tempdir().unwrap();
    app(dir.path(), stub.port);
    let body = json!({"k": 7}).to_string();
    let mut doomed = Server::start(dir.path(), &[("BATON_FAILPOINT_ABORT_AFTER_START", "Fan")]);
    let r = http(
        &doomed.addr,
        "POST",
        "/api/Fan",
        &[("idempotency-key", "once")],
        &body,
    );
    assert!(
        !matches!(r, Ok((202, _, _))),
        "the server answered before dying: {r:?}"
    );
    let exit = doomed.child.wait().expect("exits");
    assert!(!exit.success(), "the failpoint aborts the process: {exit}");

    let server = Server::start(dir.path(), &[]);
    let (status, _, list) = http(&server.addr, "GET", "/api/instances", &[], "").unwrap();
    assert_eq!(status, 200);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 1, "the committed instance survived: {list}");
    let id = items[0]["instanceId"].as_str().unwrap().to_owned();
    let (status, headers, answer) = http(
        &server.addr,
        "POST",
        "/api/Fan",
        &[("idempotency-key", "once")],
        &body,
    )
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["id"], id, "the retry finds the same instance");
    assert_eq!(
        headers.get("idempotent-replayed").map(String::as_str),
        Some("true")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, s) = http(
            &server.addr,
            "GET",
            &format!("/api/instances/{id}"),
            &[],
            "",
        )
        .unwrap();
        if status == 200 {
            assert_eq!(s["runtimeStatus"], "Completed", "{s}");
            let got: HashSet<String> = s["output"]
                .as_array()
                .unwrap()
                .iter()
                .map(Value::to_string)
                .collect();
            assert_eq!(got, expected(7));
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _, list) = http(&server.addr, "GET", "/api/instances", &[], "").unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "no second instance");
    server.kill();
}

/// Messages sent to a queue-triggered function.
const MESSAGES: usize = 150;
/// Kills of the server while it handles them.
const QUEUE_KILLS: usize = 4;

/// An app whose `Work` function is triggered by queue `work`: each message calls the
/// stand-in's first check with its `k`.
fn queue_app(dir: &Path, port: u16) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("workflows/work.yaml"),
        format!(
            "document: {{dsl: '1.0.0', namespace: crash, name: work, version: '1.0.0'}}\ndo:\n  - check:\n      call: http\n      with:\n        method: post\n        endpoint: http://127.0.0.1:{port}/check/1\n        body: {{k: '${{ .k }}'}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("baton.toml"),
        "[queues.work]\nlock_duration = \"2s\"\n\
         [functions.Work]\nworkflow = \"work\"\nqueue = \"work\"\nmax_concurrent_calls = 8\n\
         [store]\npath = \"state/baton.db\"\n[durable]\nlease = \"1s\"\n\
         [http]\nallow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
}

/// The `work` queue's statistics.
fn queue_stats(addr: &str) -> Value {
    let (status, _, q) = http(addr, "GET", "/api/queues/work", &[], "").expect("queue");
    assert_eq!(status, 200, "{q}");
    q["stats"].clone()
}

/// The server is killed with SIGKILL while messages are locked by its queue trigger, again and
/// again: every message is still handled, by one instance each, and none is dead-lettered.
#[test]
fn queued_messages_survive_kill_9_while_locked() {
    let began = Instant::now();
    let stub = stand_in(STAND_IN_DELAY);
    let dir = tempfile::tempdir().unwrap();
    queue_app(dir.path(), stub.port);
    let mut server = Server::start(dir.path(), &[]);
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(50) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|k| json!({"messageId": format!("m-{k}"), "body": {"k": k}}))
            .collect();
        let (status, _, answer) = http(
            &server.addr,
            "POST",
            "/api/queues/work/messages/batch",
            &[],
            &Value::Array(batch).to_string(),
        )
        .expect("batch");
        assert_eq!(status, 201, "{answer}");
    }

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("queue kill schedule seed: {seed}");
    let mut locked_at_kills = Vec::new();
    for round in 0..QUEUE_KILLS {
        // The first kill waits until the trigger holds messages; later ones come at random.
        if round == 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while queue_stats(&server.addr)["lockedMessageCount"] == 0 {
                assert!(
                    Instant::now() < deadline,
                    "the trigger never locked a message"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            std::thread::sleep(Duration::from_millis(100 + next(&mut seed) % 400));
        }
        locked_at_kills.push(queue_stats(&server.addr)["lockedMessageCount"].clone());
        server.kill();
        server = Server::start(dir.path(), &[]);
    }
    assert_ne!(locked_at_kills[0], 0, "{locked_at_kills:?}");

    // Locks of the dead servers expire and their messages come back; bounded wait.
    let deadline = Instant::now() + Duration::from_secs(120);
    let stats = loop {
        let st = queue_stats(&server.addr);
        let open = [
            "activeMessageCount",
            "lockedMessageCount",
            "scheduledMessageCount",
        ]
        .iter()
        .map(|k| st[*k].as_u64().unwrap())
        .sum::<u64>();
        if open == 0 {
            break st;
        }
        assert!(Instant::now() < deadline, "messages still open: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["deadLetterMessageCount"], 0, "{stats}");

    let (status, _, list) =
        http(&server.addr, "GET", "/api/instances?top=1000", &[], "").expect("listing");
    assert_eq!(status, 200, "{list}");
    let work: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["name"] == "Work")
        .collect();
    let ks: HashSet<u64> = work
        .iter()
        .map(|i| i["input"]["k"].as_u64().unwrap())
        .collect();
    assert!(
        work.iter().all(|i| i["runtimeStatus"] == "Completed"),
        "every instance completed"
    );
    let calls = stub.calls.lock().unwrap().clone();
    let called = (0..MESSAGES as u64)
        .filter(|k| calls.contains_key(&(*k, 1)))
        .count();
    eprintln!(
        "queue crash test: {QUEUE_KILLS} kills with {locked_at_kills:?} messages locked, \
         {MESSAGES} messages, {} instances, {} calls, {:.1} s",
        work.len(),
        calls.values().sum::<usize>(),
        began.elapsed().as_secs_f64()
    );
    assert_eq!(work.len(), MESSAGES, "one instance per message");
    assert_eq!(ks.len(), MESSAGES, "every message ran");
    assert_eq!(called, MESSAGES, "every message's call was made");
    server.kill();
}
