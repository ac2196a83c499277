//! Durable fan-out over HTTP: the whole path a client sees — `POST /api/{Function}` on a real
//! socket, the instance committed to SQLite before the answer, six `call: check` activities
//! carried out as leased work items by a native function, the result read back over HTTP.
//!
//! Prints, for `synchronous=FULL` and `NORMAL`:
//! * a burst: `BATON_BENCH_INSTANCES` (default 1000) async POSTs from 64 concurrent clients,
//!   then each instance polled to Completed; instances/s from the first POST to the last
//!   completion;
//! * the latency from POST to Completed of one instance on an idle server (a durable function
//!   in `sync` mode answers when the instance has completed), over 100 runs.
//!
//! `cargo bench -p baton-api --bench durable_http` (`BATON_BENCH_DIR` sets where the database
//! file goes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_api::ApiState;
use baton_engine::Runner;
use baton_host::{App, Express, Instances, Keys, Settings};
use serde_json::{Value, json};

// The fan-out workflow the engine's durable benches run, so the two measure the same thing.
#[path = "../../engine/benches/common/mod.rs"]
mod common;
use common::FAN_OUT;

fn main() {
    let n: usize = std::env::var("BATON_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for sync in ["full", "normal"] {
        rt.block_on(run(sync, n));
    }
}

async fn run(sync: &str, n: usize) {
    let base = std::env::var_os("BATON_BENCH_DIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let db = dir.path().join("bench.db");
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows/fan.yaml"), FAN_OUT).unwrap();
    std::fs::write(
        dir.path().join("baton.toml"),
        format!(
            "[functions.Fan]\nworkflow = \"fan-out\"\nmode = \"async\"\nauth = \"anonymous\"\n\
             [functions.FanSync]\nworkflow = \"fan-out\"\ndurability = \"durable\"\nauth = \"anonymous\"\n\
             [store]\npath = \"{}\"\nsynchronous = \"{sync}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let app = App::from_dir(dir.path()).unwrap();
    let runner = Runner::builder()
        .function("check", |args| async move { Ok(json!({"n": args["n"]})) })
        .build()
        .unwrap();
    let inst = Arc::new(
        Instances::open(&app, Arc::new(runner.clone()))
            .await
            .unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher = Arc::clone(&inst);
    let engine = tokio::spawn(async move {
        dispatcher
            .run(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let state = ApiState {
        express: Express::new(runner, Settings::from_config(&app.config)),
        durable: Some(inst),
        queues: None,
        app: Arc::new(app),
        keys: Arc::new(Keys::default()),
        dev_mode: true,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, baton_api::router(state)).await });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();

    // The burst.
    let began = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (client, base, next) = (client.clone(), base.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    let r = client
                        .post(format!("{base}/api/Fan"))
                        .json(&json!({}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let body: Value = r.json().await.unwrap();
                    ids.push(body["id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for c in clients {
        ids.extend(c.await.unwrap());
    }
    let accepted = began.elapsed();
    for id in &ids {
        wait_completed(&client, &base, id).await;
    }
    let all = began.elapsed();
    println!(
        "synchronous={sync}: {n} instances over HTTP: all accepted in {:.2} s ({:.0} POST/s), all Completed in {:.2} s: {:.0} instances/s, {:.0} activities/s",
        accepted.as_secs_f64(),
        n as f64 / accepted.as_secs_f64(),
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64(),
        6.0 * n as f64 / all.as_secs_f64()
    );

    // One instance at a time on the now idle server.
    let mut times = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let r = client
            .post(format!("{base}/api/FanSync"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let out: Value = r.json().await.unwrap();
        assert_eq!(out.as_array().map(Vec::len), Some(6), "{out}");
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "synchronous={sync}: one instance on an idle server, POST to Completed: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (100 runs)",
        ms(times[49]),
        ms(times[89]),
        ms(times[99])
    );
    let _ = stop.send(());
    engine.await.unwrap();
    server.abort();
}

async fn wait_completed(client: &reqwest::Client, base: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = client
            .get(format!("{base}/api/instances/{id}"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["runtimeStatus"], "Completed", "{body}");
            return;
        }
        assert!(Instant::now() < deadline, "{id} did not complete");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
