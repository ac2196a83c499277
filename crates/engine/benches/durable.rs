//! Durable fan-out on SQLite: a burst of instances, each a `fork` of six native-function
//! activities carried out as leased work items (claimed, run, completed by a commit), and the
//! latency of one instance on an idle engine. Prints the figures recorded in
//! `docs/benchmarks.md`.
//!
//! `cargo bench -p baton-engine --bench durable` (`BATON_BENCH_INSTANCES` sets the burst size,
//! default 1000; `BATON_BENCH_DIR` the directory of the database file, default the system's
//! temporary directory).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::{Format, NoResolver, load_str};
use baton_engine::Runner;
use baton_engine::durable::{Durable, DurableOptions};
use baton_store::{RuntimeStatus, Store};
use baton_store_sqlite::{Options, SqliteStore, Synchronous};
use common::{FAN_OUT, request};
use serde_json::json;

fn main() {
    let n: usize = std::env::var("BATON_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for sync in [Synchronous::Full, Synchronous::Normal] {
        rt.block_on(run(sync, n));
    }
}

async fn run(sync: Synchronous, n: usize) {
    let base = std::env::var_os("BATON_BENCH_DIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("bench.db"),
            Options {
                synchronous: sync,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let runner = Runner::builder()
        .function("check", |args| async move { Ok(json!({"n": args["n"]})) })
        .build()
        .unwrap();
    let engine = Arc::new(Durable::new(
        Arc::clone(&store),
        Arc::new(runner),
        DurableOptions::default(),
    ));
    engine.pin(
        "fan-out",
        Arc::new(load_str(FAN_OUT, Format::Yaml, &NoResolver).unwrap()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher = tokio::spawn(Arc::clone(&engine).run(async move {
        let _ = stopped.await;
    }));

    // One instance at a time on an idle engine.
    let mut single = Vec::new();
    for i in 0..50 {
        let id = format!("single-{i}");
        let t = Instant::now();
        engine.start(request(&id)).await.unwrap();
        wait_completed(&store, &id).await;
        single.push(t.elapsed());
    }
    single.sort();

    // A burst: every start at once, then until all have completed.
    let before = store.commit_stats();
    let t = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..n {
        let engine = Arc::clone(&engine);
        starts.spawn(async move { engine.start(request(&format!("burst-{i}"))).await });
    }
    while let Some(r) = starts.join_next().await {
        r.unwrap().unwrap();
    }
    let accepted = t.elapsed();
    // Each instance in turn until it has completed: one cheap read per poll, so the waiting
    // takes next to nothing from the engine.
    for i in 0..n {
        wait_completed(&store, &format!("burst-{i}")).await;
    }
    let total = t.elapsed();
    let after = store.commit_stats();
    let _ = stop.send(());
    let _ = dispatcher.await;

    let secs = total.as_secs_f64();
    println!(
        "synchronous={sync:?}: {n} fan-outs of 6 activities in {secs:.2} s: {:.0} instances/s, {:.0} activities/s (all {n} accepted after {:.2} s); \
         {} transactions for {} writes ({:.1} writes per transaction)",
        n as f64 / secs,
        6.0 * n as f64 / secs,
        accepted.as_secs_f64(),
        after.transactions - before.transactions,
        after.writes - before.writes,
        (after.writes - before.writes) as f64
            / (after.transactions - before.transactions).max(1) as f64,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "synchronous={sync:?}: one instance on an idle engine, POST-equivalent start to Completed: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (50 runs)",
        ms(single[single.len() / 2]),
        ms(single[single.len() * 9 / 10]),
        ms(single[single.len() - 1]),
    );
}

/// Polls the instance every 0.2 ms: fine enough for a latency of milliseconds.
async fn wait_completed(store: &SqliteStore, id: &str) {
    let t = Instant::now();
    loop {
        if let Some(row) = store.instance(id).await.unwrap()
            && row.status == RuntimeStatus::Completed
        {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{id} did not finish");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}
