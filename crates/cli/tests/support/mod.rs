//! What the process-level tests share: a `baton serve` child process, one-shot HTTP/1.1
//! exchanges, the activities' HTTP stand-in, a fan-out app over it and a small deterministic
//! generator for chaos schedules.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// Counts of log lines containing given patterns, across every server started with it.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Vec<(&'static str, AtomicUsize)>>);

impl Tally {
    pub fn of(patterns: &[&'static str]) -> Self {
        Self(Arc::new(
            patterns.iter().map(|p| (*p, AtomicUsize::new(0))).collect(),
        ))
    }

    fn count(&self, line: &str) {
        for (p, n) in self.0.iter() {
            if line.contains(p) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many lines contained `pattern` so far.
    pub fn get(&self, pattern: &str) -> usize {
        self.0
            .iter()
            .find(|(p, _)| *p == pattern)
            .map_or(0, |(_, n)| n.load(Ordering::Relaxed))
    }
}

fn signal(pid: u32, which: &str) {
    let ok = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {which} {pid}");
}

/// A running `baton serve`.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(app: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_watching(app, env, &Tally::default())
    }

    /// [`Server::start`], counting the log lines that contain each of `tally`'s patterns.
    pub fn start_watching(app: &Path, env: &[(&str, &str)], tally: &Tally) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--app"])
            .arg(app)
            .current_dir(app)
            .env_remove("RUST_LOG")
            .env("BATON_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("baton starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut addr = None;
        let mut seen = Vec::new();
        for line in lines.by_ref().take(50) {
            let line = line.expect("line");
            if let Some(rest) = line.split(" on http://").nth(1) {
                addr = Some(rest.trim().to_owned());
                break;
            }
            seen.push(line);
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        let tally = tally.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                tally.count(&line);
            }
        });
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server announced no address:\n{}", seen.join("\n"))
        };
        Self { child, addr }
    }

    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the process stays, frozen, until [`Server::resume`].
    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    /// SIGKILL, as `kill -9` does.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

/// A server still running when its test ends (or panics) is killed, not left behind.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange on a fresh connection: status, lower-cased headers, body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, HashMap<String, String>, Value)> {
    let sock: SocketAddr = addr.parse().expect("address");
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no complete response")
    })?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    ))
}

/// The activities' stand-in: `POST /check/{n}` with `{"k": …}` answers `{"n": n, "k": …}`
/// after `delay`, and counts every call by `(k, n)` and every idempotency key it is sent.
pub struct StandIn {
    pub port: u16,
    pub calls: Arc<Mutex<HashMap<(u64, u64), usize>>>,
    pub keys: Arc<Mutex<HashSet<String>>>,
    _rt: tokio::runtime::Runtime,
}

pub fn stand_in(delay: Duration) -> StandIn {
    use axum::extract::{Json, Path as UrlPath, State};
    use axum::http::HeaderMap;
    type Shared = (
        Arc<Mutex<HashMap<(u64, u64), usize>>>,
        Arc<Mutex<HashSet<String>>>,
        Duration,
    );
    async fn check(
        State((calls, keys, delay)): State<Shared>,
        UrlPath(n): UrlPath<u64>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        let k = body["k"].as_u64().unwrap_or(u64::MAX);
        *calls.lock().unwrap().entry((k, n)).or_default() += 1;
        if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            keys.lock().unwrap().insert(key.to_owned());
        }
        tokio::time::sleep(delay).await;
        Json(json!({"n": n, "k": k}))
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let keys = Arc::new(Mutex::new(HashSet::new()));
    let router = axum::Router::new()
        .route("/check/{n}", axum::routing::post(check))
        .with_state((Arc::clone(&calls), Arc::clone(&keys), delay));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, router).await });
    StandIn {
        port,
        calls,
        keys,
        _rt: rt,
    }
}

/// A tiny deterministic generator for the kill schedule; the seed is printed.
pub fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// Writes `workflows/fan.yaml` into `dir`: workflow `fan`, a `fork` of `branches` calls to the
/// stand-in's checks `1..=branches`, each with the input's `k`.
pub fn fan_workflow(dir: &Path, port: u16, branches: usize) {
    let calls: String = (1..=branches)
        .map(|n| {
            format!(
                "          - c{n}:\n              call: http\n              with:\n                method: post\n                endpoint: http://127.0.0.1:{port}/check/{n}\n                body: {{k: '${{ .k }}'}}\n"
            )
        })
        .collect();
    let wf = format!(
        "document: {{dsl: '1.0.0', namespace: crash, name: fan, version: '1.0.0'}}\ndo:\n  - checks:\n      fork:\n        branches:\n{calls}"
    );
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(dir.join("workflows/fan.yaml"), wf).unwrap();
}

/// What `fan` answers for `k`: one `{"n", "k"}` per branch, in any order.
pub fn fan_output(k: usize, branches: usize) -> HashSet<String> {
    (1..=branches)
        .map(|n| json!({"n": n, "k": k}).to_string())
        .collect()
}

/// How a fan-out run ended, from the final listing, the accepted instances (`k` → id) and the
/// stand-in's calls: instances accepted but not listed, instances listed but never accepted,
/// and `(k, branch)` activities never called. Panics if an instance's output is not `fan`'s
/// for its `k`.
pub fn fan_outcome(
    listing: &[Value],
    accepted: &HashMap<usize, String>,
    calls: &HashMap<(u64, u64), usize>,
    branches: usize,
) -> (usize, usize, usize) {
    let ids: HashSet<&str> = listing
        .iter()
        .map(|i| i["instanceId"].as_str().unwrap())
        .collect();
    let duplicated = listing.len() - accepted.len();
    let lost = accepted
        .values()
        .filter(|id| !ids.contains(id.as_str()))
        .count();
    for (k, id) in accepted {
        let item = listing.iter().find(|i| i["instanceId"] == **id).unwrap();
        let got: HashSet<String> = item["output"]
            .as_array()
            .unwrap_or_else(|| panic!("instance {k}: output {}", item["output"]))
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(got, fan_output(*k, branches), "instance {k} ({id})");
    }
    let missing = (0..accepted.len() as u64)
        .flat_map(|k| (1..=branches as u64).map(move |n| (k, n)))
        .filter(|c| !calls.contains_key(c))
        .count();
    (lost, duplicated, missing)
}

/// The PostgreSQL server the tests use: `BATON_TEST_POSTGRES`, by default the local one.
pub fn postgres_url() -> String {
    std::env::var("BATON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name of its own for one test: `test_<unix seconds>_<pid>_<tag>`. The store's
/// tests drop `test_…` schemas more than 15 minutes old.
pub fn postgres_schema(tag: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("test_{secs}_{}_{tag}", std::process::id())
}

/// `[store]` of a baton.toml on PostgreSQL.
pub fn postgres_store_toml(schema: &str) -> String {
    format!(
        "[store]\nurl = \"{}\"\nschema = \"{schema}\"\npool_size = 8\n",
        postgres_url()
    )
}

/// Drops a test's schema (behind any node's back).
pub fn drop_postgres_schema(schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
            .await
            .expect("the test database");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .expect("the schema is dropped");
        drop(client);
        let _ = driver.await;
    });
}
