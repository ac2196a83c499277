//! Failover on PostgreSQL: three `baton serve` processes share one database while durable
//! fan-out instances run through them. Nodes are killed with SIGKILL at random and restarted,
//! and one is frozen with SIGSTOP for longer than its leases, then let go: its work is taken
//! over by the others, and what it tries to finish afterwards is refused by fencing. Every
//! accepted instance must complete exactly once with the right output; the test reports
//! activity re-executions, lost and duplicated instances and the stale completions fencing
//! refused.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{Server, Tally, fan_outcome, fan_workflow, http, next, stand_in};

/// Instances submitted.
const INSTANCES: usize = 500;
/// Activities per instance.
const BRANCHES: usize = 6;
/// Nodes on the one database.
const NODES: usize = 3;
/// Kills (each followed by a restart) at random moments.
const KILLS: usize = 8;
/// The nodes' lease on claimed work.
const LEASE: Duration = Duration::from_secs(2);
/// How long the frozen node stays frozen: well past its leases.
const FROZEN: Duration = Duration::from_secs(5);
/// How long the stand-in takes to answer a call: long enough that a node always has calls out.
const STAND_IN_DELAY: Duration = Duration::from_millis(40);

/// Each of the four submitters pauses this long between instances (about 40 a second in all),
/// so that instances keep arriving while nodes are killed and frozen.
const SUBMIT_PAUSE: Duration = Duration::from_millis(100);

/// What the nodes log when fencing refuses what they finished, or a lease they renew is gone.
const FENCED: &str = "work taken over by another holder";
const LEASE_LOST: &str = "lost the lease of a running activity";

fn app(dir: &Path, port: u16, schema: &str) {
    fan_workflow(dir, port, BRANCHES);
    std::fs::write(
        dir.join("baton.toml"),
        format!(
            "[functions.Fan]\nworkflow = \"fan\"\nmode = \"async\"\nauth = \"anonymous\"\n\
             {}[durable]\nlease = \"{}s\"\n[http]\nallow = [\"127.0.0.1\"]\n",
            support::postgres_store_toml(schema),
            LEASE.as_secs()
        ),
    )
    .unwrap();
}

/// Where each node listens; empty while it is down (or frozen).
type Nodes = Arc<Vec<RwLock<String>>>;

/// Submits instance `k` to node `k % NODES`, or the next node up, until one answers 202, with
/// one idempotency key for all attempts. Returns the instance id.
fn submit(nodes: &Nodes, k: usize) -> String {
    let key = format!("failover-{k}");
    let body = json!({"k": k}).to_string();
    for attempt in 0..3000 {
        let addr = nodes[(k + attempt) % NODES].read().unwrap().clone();
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
        // That node is down or busy: the next one, after a short pause.
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("instance {k} was never accepted");
}

/// Every node's address that is up now.
fn up(nodes: &Nodes) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.read().unwrap().clone())
        .filter(|a| !a.is_empty())
        .collect()
}

#[test]
fn three_nodes_survive_kills_and_a_frozen_node_and_finish_every_instance_exactly_once() {
    let began = Instant::now();
    let stub = stand_in(STAND_IN_DELAY);
    let dir = tempfile::tempdir().unwrap();
    let schema = support::postgres_schema("failover");
    app(dir.path(), stub.port, &schema);
    let tally = Tally::of(&[FENCED, LEASE_LOST]);
    let start = || Server::start_watching(dir.path(), &[], &tally);

    let mut servers: Vec<Option<Server>> = (0..NODES).map(|_| Some(start())).collect();
    let nodes: Nodes = Arc::new(
        servers
            .iter()
            .map(|s| RwLock::new(s.as_ref().unwrap().addr.clone()))
            .collect(),
    );

    let accepted = Arc::new(Mutex::new(HashMap::<usize, String>::new()));
    let next_k = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..4)
        .map(|_| {
            let (nodes, accepted, next_k) = (
                Arc::clone(&nodes),
                Arc::clone(&accepted),
                Arc::clone(&next_k),
            );
            std::thread::spawn(move || {
                loop {
                    let k = next_k.fetch_add(1, Ordering::Relaxed);
                    if k >= INSTANCES {
                        return;
                    }
                    let id = submit(&nodes, k);
                    accepted.lock().unwrap().insert(k, id);
                    // A load shape, not a wait for anything: submissions spread over the chaos.
                    std::thread::sleep(SUBMIT_PAUSE);
                }
            })
        })
        .collect();

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("failover schedule seed: {seed}, schema {schema}");
    // The chaos: kills at random moments, and once, early, a node frozen past its leases.
    let freeze_at = 1;
    for round in 0..KILLS {
        std::thread::sleep(Duration::from_millis(500 + next(&mut seed) % 1500));
        let victim = (next(&mut seed) % NODES as u64) as usize;
        if round == freeze_at {
            let frozen = servers[victim].as_ref().unwrap();
            nodes[victim].write().unwrap().clear();
            frozen.pause();
            eprintln!("round {round}: node {victim} frozen for {FROZEN:?}");
            std::thread::sleep(FROZEN);
            frozen.resume();
            *nodes[victim].write().unwrap() = frozen.addr.clone();
            continue;
        }
        nodes[victim].write().unwrap().clear();
        servers[victim].take().unwrap().kill();
        let done = accepted.lock().unwrap().len();
        eprintln!("round {round}: node {victim} killed, {done} of {INSTANCES} accepted so far");
        let s = start();
        *nodes[victim].write().unwrap() = s.addr.clone();
        servers[victim] = Some(s);
    }
    for s in submitters {
        s.join().expect("submitter");
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), INSTANCES);

    // Every accepted instance completes; bounded wait. Each node sees the same instances.
    let deadline = Instant::now() + Duration::from_secs(120);
    let listing = loop {
        let mut views = Vec::new();
        for addr in up(&nodes) {
            let (status, _, list) =
                http(&addr, "GET", "/api/instances?top=1000", &[], "").expect("listing");
            assert_eq!(status, 200, "{list}");
            views.push(list.as_array().unwrap().clone());
        }
        let items = views.pop().unwrap();
        let open = items
            .iter()
            .filter(|i| i["runtimeStatus"] != "Completed")
            .count();
        if open == 0 && items.len() >= INSTANCES {
            let ids = |v: &[Value]| -> HashSet<String> {
                v.iter().map(|i| i["instanceId"].to_string()).collect()
            };
            for other in &views {
                assert_eq!(
                    ids(other),
                    ids(&items),
                    "every node lists the same instances"
                );
            }
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} instances still not Completed",
            items.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let calls = stub.calls.lock().unwrap().clone();
    let (lost, duplicated, missing) = fan_outcome(&listing, &accepted, &calls, BRANCHES);
    let total: usize = calls.values().sum();
    eprintln!(
        "failover test: {NODES} nodes, {} kills, 1 node frozen for {FROZEN:?} (lease {LEASE:?}), \
         {INSTANCES} instances, {} activities, {total} activity calls ({} re-executions), \
         {lost} lost, {duplicated} duplicated, {} stale completions refused by fencing, \
         {} lease renewals refused, {:.1} s",
        KILLS - 1,
        INSTANCES * BRANCHES,
        total - INSTANCES * BRANCHES,
        tally.get(FENCED),
        tally.get(LEASE_LOST),
        began.elapsed().as_secs_f64()
    );
    assert_eq!((lost, duplicated, missing), (0, 0, 0));
    for s in servers.into_iter().flatten() {
        s.kill();
    }
    support::drop_postgres_schema(&schema);
}
