//! `baton serve` as a process: start on port 0, answer the reference scenario over real HTTP,
//! refuse bad configuration, stop cleanly on SIGTERM.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `baton serve` with `args` on 127.0.0.1:0 and reads the address it announces.
    fn start(args: &[&str], cwd: &std::path::Path) -> Self {
        let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
        c.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(cwd);
        Self::spawn(c)
    }

    /// Spawns `serve` (a `baton serve` command) and reads the address it announces.
    fn spawn(mut serve: Command) -> Self {
        let mut child = serve
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("baton starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut addr = None;
        for line in lines.by_ref().take(50) {
            let line = line.expect("line");
            if let Some(rest) = line.split(" on http://").nth(1) {
                addr = Some(rest.trim().to_owned());
                break;
            }
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr: addr.expect("the server announced its address"),
        }
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        self.child.wait().expect("exits")
    }
}

#[test]
fn serves_the_embedded_sample_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&[], dir.path());
    let (status, body) = server.request(
        "POST",
        "/api/ValidateParallel",
        Some(r#"{"Name": {"First": "J", "Last": "Doe"}, "Address": {"Line1": "1 Main", "City": "Salem", "State": "OR", "Zip": "97301"}}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"],
        json!([{"id": 1, "check": "CheckFirstName", "message": "First name is null or not longer than 1 character"}])
    );
    assert_eq!(body["passed"].as_array().map(Vec::len), Some(5));
    // Over HTTP to the server's own Check* routes, on the port it was given.
    let (status, over_http) = server.request(
        "POST",
        "/api/ValidateHttp",
        Some(r#"{"Name": {"First": "J", "Last": "Doe"}, "Address": {"Line1": "1 Main", "City": "Salem", "State": "OR", "Zip": "97301"}}"#),
    );
    assert_eq!((status, &over_http), (200, &body));
    let (status, _) = server.request(
        "POST",
        "/api/CheckZip",
        Some(r#"{"Address": {"Zip": "97301"}}"#),
    );
    assert_eq!(status, 204);
    let (status, body) = server.request("GET", "/api/Validate", None);
    assert_eq!((status, body["status"].as_u64()), (405, Some(405)));
    let (status, _) = server.request("GET", "/healthz", None);
    assert_eq!(status, 200);
    assert!(
        server.terminate().success(),
        "SIGTERM must end the server with status 0"
    );
}

#[test]
fn bad_configuration_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("baton.toml"),
        "[limits]\nmax_body_bytes = 10\nmax_bodybytes = 3\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--listen", "127.0.0.1:0", "--app"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("baton.toml:3:1: limits.max_bodybytes: unknown field `max_bodybytes`"),
        "{err}"
    );
}

/// An app whose workflow reads the secret `api`, configured from `T_API_TOKEN`.
fn secret_app(dir: &std::path::Path, declared: &str) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("baton.toml"),
        "[secrets.api]\ntoken = { env = \"T_API_TOKEN\" }\n\n[functions.Token]\nworkflow = \"token\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("workflows/token.yaml"),
        format!("document: {{dsl: '1.0.0', namespace: t, name: token, version: '1.0.0'}}\nuse: {{secrets: [{declared}]}}\ndo:\n  - a: {{set: {{length: '${{ $secrets.api.token | length }}'}}}}\n"),
    )
    .unwrap();
}

#[test]
fn secrets_are_read_at_start_up_and_a_missing_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    secret_app(dir.path(), "api");
    let serve = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
        c.args(["serve", "--listen", "127.0.0.1:0", "--app"])
            .arg(dir.path())
            .env_remove("T_API_TOKEN");
        c
    };
    let out = serve().output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("secrets.api.token: the environment variable `T_API_TOKEN` is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Declaring a secret that [secrets] lacks is refused too.
    let other = tempfile::tempdir().expect("tempdir");
    secret_app(other.path(), "api, vault");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--listen", "127.0.0.1:0", "--app"])
        .arg(other.path())
        .env("T_API_TOKEN", "x")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "workflow `token` declares the secret `vault` in use.secrets, but baton.toml's [secrets] has no `vault`"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Set, it is what the workflow reads.
    let mut set = serve();
    set.env("T_API_TOKEN", "0123456789");
    let server = Server::spawn(set);
    let (status, body) = server.request("POST", "/api/Token", Some("{}"));
    assert_eq!((status, body), (200, json!({"length": 10})));
    assert!(server.terminate().success());
}

#[test]
fn non_loopback_addresses_need_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--listen", "0.0.0.0:0", "--keys"])
        .arg(dir.path().join("keys.json"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("refusing to listen on 0.0.0.0:0 without keys")
    );
}

#[test]
fn keys_created_by_the_cli_are_enforced_by_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["keys", "create", "--function", "Validate"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let server = Server::start(&[], dir.path());
    let (status, _) = server.request("POST", "/api/Validate", Some("{}"));
    assert_eq!(status, 401);
    let (status, _) = server.request("POST", &format!("/api/Validate?code={key}"), Some("{}"));
    assert_eq!(status, 200);
    let (status, _) = server.request("POST", &format!("/api/CheckZip?code={key}"), Some("{}"));
    assert_eq!(status, 401, "a function key opens only its function");
    assert!(server.terminate().success());
}
