//! Queues and the messaging sample, on SQLite files.
//!
//! Prints:
//! * messages/s through send → peek-lock receive → complete on the store, for
//!   `synchronous=FULL` and `NORMAL`: `BATON_BENCH_MESSAGES` (default 5000) messages, sent by 4
//!   producers while 4 consumers receive and complete them; one message per call, then
//!   batches of 10 (a batch send, a receive of up to 10, a complete per message);
//! * the same one-message path over HTTP (`POST …/messages`, `POST …/messages/head`,
//!   `DELETE …/messages/{seq}/{lock}`) on a real socket, FULL only;
//! * `ValidateQueued` and `ValidateQueuedPipeline` instances/s on the sample app (FULL):
//!   `BATON_BENCH_INSTANCES` (default 200) POSTs from 32 clients, each polled to Completed.
//!   One `ValidateQueued` is 7 durable instances and 6 messages; a pipeline is 7 instances
//!   and 6 messages in a row.
//!
//! `cargo bench -p baton-api --bench queues` (`BATON_BENCH_DIR` sets where the files go).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baton_api::ApiState;
use baton_engine::Runner;
use baton_host::{App, Express, Host, Keys, Settings};
use baton_store::queues::{NewMessage, QueueStore, Settle};
use serde_json::{Value, json};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let messages = env("BATON_BENCH_MESSAGES", 5000);
    let instances = env("BATON_BENCH_INSTANCES", 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for sync in ["full", "normal"] {
            for batch in [1, 10] {
                store_path(sync, batch, messages).await;
            }
        }
        http_path(messages.min(2000)).await;
        for route in ["ValidateQueued", "ValidateQueuedPipeline"] {
            sample(route, instances).await;
        }
    });
}

fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("BATON_BENCH_DIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    tempfile::tempdir_in(base).unwrap()
}

/// An app with queue `q` (and `extra` in its baton.toml) on a fresh file.
async fn host(dir: &std::path::Path, sync: &str, extra: &str) -> (App, Host) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("baton.toml"),
        format!(
            "[queues.q]\n[store]\npath = \"{}\"\nsynchronous = \"{sync}\"\n{extra}",
            dir.join("bench.db").display()
        ),
    )
    .unwrap();
    let app = App::from_dir(dir).unwrap();
    let host = Host::open(&app, Runner::builder()).await.unwrap();
    (app, host)
}

async fn store_path(sync: &str, batch: usize, n: usize) {
    let dir = scratch();
    let (_, host) = host(dir.path(), sync, "").await;
    let queues = host.queues.clone().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (queues, sent) = (queues.clone(), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            loop {
                let first = sent.fetch_add(batch, Ordering::Relaxed);
                if first >= n {
                    return;
                }
                let messages = (first..(first + batch).min(n))
                    .map(|i| NewMessage {
                        body: json!({"n": i}).to_string().into_bytes(),
                        ..NewMessage::default()
                    })
                    .collect();
                queues.store().enqueue("q", messages).await.unwrap();
            }
        }));
    }
    for _ in 0..4 {
        let (queues, done) = (queues.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < n {
                let got = queues
                    .receive("q", batch, Duration::from_millis(50), None)
                    .await
                    .unwrap();
                for m in got.messages {
                    queues
                        .store()
                        .settle(
                            "q",
                            m.sequence,
                            m.lock_token.as_deref().unwrap(),
                            Settle::Complete,
                        )
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = began.elapsed().as_secs_f64();
    let left = queues.store().queue_stats("q").await.unwrap();
    assert_eq!(left.active + left.locked, 0, "{left:?}");
    println!(
        "store, synchronous={sync}, {batch} per send and receive: {n} messages sent, received and completed in {secs:.2} s: {:.0} messages/s",
        n as f64 / secs
    );
}

async fn http_path(n: usize) {
    let dir = scratch();
    let (app, host) = host(dir.path(), "full", "").await;
    let state = ApiState {
        express: Express::new(host.runner.clone(), Settings::from_config(&app.config)),
        durable: host.instances.clone(),
        queues: host.queues.clone(),
        app: Arc::new(app),
        keys: Arc::new(Keys::default()),
        dev_mode: true,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/queues/q", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, baton_api::router(state)).await });
    let client = reqwest::Client::new();
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, base, sent) = (client.clone(), base.clone(), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            while sent.fetch_add(1, Ordering::Relaxed) < n {
                let r = client
                    .post(format!("{base}/messages"))
                    .json(&json!({"order": 1}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    for _ in 0..4 {
        let (client, base, done) = (client.clone(), base.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < n {
                let r = client
                    .post(format!("{base}/messages/head?timeout=0.05"))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 204 {
                    continue;
                }
                let got: Value = r.json().await.unwrap();
                for m in got["messages"].as_array().unwrap() {
                    let r = client
                        .delete(format!(
                            "{base}/messages/{}/{}",
                            m["sequenceNumber"],
                            m["lockToken"].as_str().unwrap()
                        ))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 204);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "HTTP, synchronous=full, 1 per request: {n} messages sent, received and completed in {secs:.2} s: {:.0} messages/s",
        n as f64 / secs
    );
    server.abort();
}

async fn sample(route: &str, n: usize) {
    let dir = scratch();
    let mut app = App::sample().unwrap();
    app.config.store.path = dir.path().join("bench.db").display().to_string();
    let host = Host::open(&app, Runner::builder().http(app.config.http.options()))
        .await
        .unwrap();
    let run = host.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = tokio::spawn(async move {
        run.run(async move {
            let _ = stopped.await;
        })
        .await;
    });
    let state = ApiState {
        express: Express::new(host.runner.clone(), Settings::from_config(&app.config)),
        durable: host.instances.clone(),
        queues: host.queues.clone(),
        app: Arc::new(app),
        keys: Arc::new(Keys::default()),
        dev_mode: true,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, baton_api::router(state)).await });
    let person: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/person-validation/samples/incomplete.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (client, base, next, person) = (
                client.clone(),
                base.clone(),
                Arc::clone(&next),
                person.clone(),
            );
            let route = route.to_owned();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let r = client
                        .post(format!("{base}/api/{route}"))
                        .json(&person)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let id = r.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    let deadline = Instant::now() + Duration::from_secs(300);
                    loop {
                        let r = client
                            .get(format!("{base}/api/GetResult?id={id}"))
                            .send()
                            .await
                            .unwrap();
                        if r.status() == 200 {
                            let answer: Value = r.json().await.unwrap();
                            assert_eq!(answer["errors"].as_array().map(Vec::len), Some(6));
                            break;
                        }
                        assert_eq!(r.status(), 202);
                        assert!(Instant::now() < deadline, "{id} did not complete");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{route}, synchronous=full, 32 clients: {n} answers in {secs:.2} s: {:.0} instances/s ({:.0} durable instances/s and {:.0} messages/s inside)",
        n as f64 / secs,
        7.0 * n as f64 / secs,
        6.0 * n as f64 / secs
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), engine).await;
    server.abort();
}
