//! Durable fan-out on PostgreSQL with one, two and three nodes: the fan-out of the `durable`
//! bench (a `fork` of six native-function activities, each a leased work item), a burst of
//! instances started round-robin on the nodes, and how long each took from its start to its
//! completion. A node here is a durable engine with a PostgreSQL store of its own (its own
//! connection pool and wake-up listener) in this process; all share one schema. Prints the
//! figures recorded in `docs/benchmarks.md`.
//!
//! `cargo bench -p baton-engine --bench durable_postgres` (`BATON_BENCH_INSTANCES` sets the
//! burst size, default 1000; `BATON_BENCH_NODES` the most nodes, default 3;
//! `BATON_TEST_POSTGRES` the server, default the local one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::{Format, NoResolver, load_str};
use baton_engine::Runner;
use baton_engine::durable::{Durable, DurableOptions};
use baton_store::{Filter, RuntimeStatus, Store};
use baton_store_postgres::{Options, PostgresStore};
use common::{FAN_OUT, request};
use serde_json::json;

fn main() {
    let n: usize = std::env::var("BATON_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let url = std::env::var("BATON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let most: usize = std::env::var("BATON_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for nodes in 1..=most {
        rt.block_on(run(&url, nodes, n));
    }
}

async fn run(url: &str, nodes: usize, n: usize) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("test_{secs}_{}_bench{nodes}", std::process::id());
    let mut engines = Vec::new();
    let mut stops = Vec::new();
    let mut dispatchers = Vec::new();
    for _ in 0..nodes {
        let store = Arc::new(
            PostgresStore::open(Options {
                schema: schema.clone(),
                ..Options::new(url)
            })
            .await
            .unwrap(),
        );
        let runner = Runner::builder()
            .function("check", |args| async move { Ok(json!({"n": args["n"]})) })
            .build()
            .unwrap();
        let engine = Arc::new(Durable::new(
            store,
            Arc::new(runner),
            DurableOptions::default(),
        ));
        engine.pin(
            "fan-out",
            Arc::new(load_str(FAN_OUT, Format::Yaml, &NoResolver).unwrap()),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        dispatchers.push(tokio::spawn(Arc::clone(&engine).run(async move {
            let _ = stopped.await;
        })));
        stops.push(stop);
        engines.push(engine);
    }
    let observer = PostgresStore::open(Options {
        schema: schema.clone(),
        pool_size: 2,
        ..Options::new(url)
    })
    .await
    .unwrap();

    let (db_before, own_before) = (postgres_cpu(), own_cpu());
    let xacts_before = transactions(url).await;
    let t = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..n {
        let engine = Arc::clone(&engines[i % nodes]);
        starts.spawn(async move { engine.start(request(&format!("burst-{i}"))).await });
    }
    while let Some(r) = starts.join_next().await {
        r.unwrap().unwrap();
    }
    let accepted = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while observer.count(RuntimeStatus::Completed).await.unwrap() < n as u64 {
        assert!(Instant::now() < deadline, "the burst did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = t.elapsed();
    let (db_cpu, own) = (postgres_cpu() - db_before, own_cpu() - own_before);
    let xacts = transactions(url).await - xacts_before;

    // Paced: PACED_RATE starts a second, well under the burst's rate, so that the time to
    // completion is the instances' own rather than time spent queueing.
    let interval = Duration::from_secs_f64(1.0 / PACED_RATE as f64);
    let mut ticks = tokio::time::interval(interval);
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..PACED {
        ticks.tick().await;
        let engine = Arc::clone(&engines[i % nodes]);
        starts.spawn(async move { engine.start(request(&format!("paced-{i}"))).await });
    }
    while let Some(r) = starts.join_next().await {
        r.unwrap().unwrap();
    }
    while observer.count(RuntimeStatus::Completed).await.unwrap() < (n + PACED) as u64 {
        assert!(
            Instant::now() < deadline,
            "the paced instances did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for d in dispatchers {
        let _ = d.await;
    }

    let burst = latencies(&observer, "burst-").await;
    let paced = latencies(&observer, "paced-").await;
    let secs = total.as_secs_f64();
    println!(
        "{nodes} node(s): burst of {n} fan-outs of 6 activities in {secs:.2} s: {:.0} instances/s, \
         {:.0} activities/s (all accepted after {:.2} s), start to completion p50 {} ms, p99 {} ms; \
         CPU per instance: PostgreSQL {:.0} µs, Baton {:.0} µs; {:.1} transactions per instance; \
         paced at {PACED_RATE}/s: start to completion p50 {} ms, p99 {} ms, max {} ms",
        n as f64 / secs,
        6.0 * n as f64 / secs,
        accepted.as_secs_f64(),
        burst[burst.len() / 2],
        burst[burst.len() * 99 / 100],
        db_cpu * 1e6 / n as f64,
        own * 1e6 / n as f64,
        xacts as f64 / n as f64,
        paced[paced.len() / 2],
        paced[paced.len() * 99 / 100],
        paced[paced.len() - 1],
    );
    drop_schema(url, &schema).await;
}

/// Instances started at a steady rate after the burst, and the rate.
const PACED: usize = 600;
const PACED_RATE: usize = 200;

/// Start to completion, in ms by the database's clock, of the completed instances whose ids
/// start with `prefix`, sorted.
async fn latencies(store: &PostgresStore, prefix: &str) -> Vec<i64> {
    let filter = Filter {
        statuses: vec![RuntimeStatus::Completed],
        id_prefix: Some(prefix.to_owned()),
        ..Filter::default()
    };
    let mut took = Vec::new();
    let mut continuation = None;
    loop {
        let page = store
            .list(&filter, 500, continuation.as_deref())
            .await
            .unwrap();
        took.extend(page.items.iter().map(|r| r.updated_at - r.created_at));
        continuation = page.continuation;
        if continuation.is_none() {
            break;
        }
    }
    took.sort_unstable();
    took
}

/// Transactions committed in the database so far (PostgreSQL's statistics, which lag by up to
/// half a second: the bench's own windows are seconds long).
async fn transactions(url: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    let n: i64 = client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = driver.await;
    n
}

async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
}

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat`; 0 where unreadable.
fn cpu_of(stat: &str) -> f64 {
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; clock ticks
    // are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every `postgres` process on this machine (the server and its backends).
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(postgres)"))
        .map(|stat| cpu_of(&stat))
        .sum()
}

/// CPU seconds of this process.
fn own_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat").map_or(0.0, |s| cpu_of(&s))
}
