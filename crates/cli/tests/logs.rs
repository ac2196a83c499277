//! What `baton serve` writes on standard error: the Functions host's execution lines around every
//! instance (express and durable, succeeded and failed), plain text when standard error is not a
//! terminal, and with `--log-format json` one JSON object per line from start-up to shutdown.

#![allow(clippy::expect_used, clippy::unwrap_used)] // helpers of tests may fail loudly

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `Hello` answers at once; `Boom` raises an error; `Later` is durable and answers 202.
fn app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("workflows")).unwrap();
    std::fs::write(
        root.join("baton.toml"),
        format!(
            "[functions.Hello]\nworkflow = \"hello\"\n\n\
             [functions.Boom]\nworkflow = \"boom\"\n\n\
             [functions.Later]\nworkflow = \"hello\"\nmode = \"async\"\n\n\
             [store]\npath = \"{}\"\n",
            root.join("baton.db").display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("workflows/hello.yaml"),
        "document: {dsl: '1.0.0', namespace: test, name: hello, version: '1.0.0'}\n\
         do:\n  - answer:\n      set: '${ {hello: .name} }'\n",
    )
    .unwrap();
    std::fs::write(
        root.join("workflows/boom.yaml"),
        "document: {dsl: '1.0.0', namespace: test, name: boom, version: '1.0.0'}\n\
         do:\n  - nope:\n      raise:\n        error: {type: 'https://example.com/errors/nope', \
         status: 422, title: Nope}\n",
    )
    .unwrap();
    dir
}

/// A `baton serve` whose standard error arrives line by line on `lines`.
struct Serve {
    child: Child,
    lines: Receiver<String>,
    /// Every line received so far.
    seen: Vec<String>,
}

impl Serve {
    fn start(app: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--listen", "127.0.0.1:0", "--app"])
            .arg(app)
            .args(extra)
            .current_dir(app)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env("BATON_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("baton starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `want` (at most 20 s in all); that line.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} within 20 s; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Reads the `Executing '{function}'` line and then its `Executed` line; those two lines and
    /// the instance id the first one gives.
    fn execution(&mut self, function: &str) -> (String, String, String) {
        let start = format!("Executing '{function}' ");
        let executing = self.until(&start, |l| l.contains(&start));
        let id = id_in(&executing);
        let end = format!("Executed '{function}' ");
        let executed = self.until(&end, |l| l.contains(&end));
        (executing, id, executed)
    }

    /// SIGTERM, then every line up to the end of standard error; the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().expect("exits");
        // The reader thread ends at end of file, and the channel with it.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` to `/api/{function}`; the status code.
fn post(addr: &str, function: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /api/{function} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line")
}

/// The `Id=…` of an execution line: 32 lowercase hex digits.
fn id_in(line: &str) -> String {
    let id: String = line
        .split("Id=")
        .nth(1)
        .expect("an Id")
        .chars()
        .take_while(|c| *c != ',' && *c != ')')
        .collect();
    assert!(
        id.len() == 32
            && id
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "not an instance id: {id} in {line}"
    );
    id
}

/// The milliseconds of `Duration=…ms`.
fn duration_in(line: &str) -> u64 {
    line.split("Duration=")
        .nth(1)
        .and_then(|rest| rest.split("ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Duration=…ms in {line}"))
}

const REASON: &str = "(Reason='This function was programmatically called via the host APIs.', Id=";

#[test]
fn every_instance_is_bracketed_by_the_hosts_execution_lines_in_plain_text() {
    let dir = app();
    let mut serve = Serve::start(dir.path(), &[]);
    let announced = serve.until("announcing the address", |l| l.contains(" on http://"));
    let addr = announced
        .split(" on http://")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();

    assert_eq!(post(&addr, "Hello", r#"{"name": "Ada"}"#), 200);
    let (executing, id, executed) = serve.execution("Hello");
    assert!(executing.contains(REASON), "{executing}");
    assert!(
        executed.contains(&format!("Executed 'Hello' (Succeeded, Id={id}, Duration=")),
        "{executed}"
    );
    assert!(duration_in(&executed) < 20_000, "{executed}");
    assert!(executed.contains(" INFO "), "{executed}");

    assert_eq!(post(&addr, "Boom", "{}"), 422);
    let (_, id, failed) = serve.execution("Boom");
    assert!(
        failed.contains(&format!("Executed 'Boom' (Failed, Id={id}, Duration=")),
        "{failed}"
    );
    assert!(
        failed.contains("Error=") && failed.contains("Nope"),
        "{failed}"
    );
    assert!(
        failed.contains(" ERROR "),
        "a failure is logged as an error: {failed}"
    );

    // A durable instance: its end is written once its commit is stored, after the 202.
    assert_eq!(post(&addr, "Later", r#"{"name": "Grace"}"#), 202);
    let (executing, id, executed) = serve.execution("Later");
    assert!(executing.contains(REASON), "{executing}");
    assert!(
        executed.contains(&format!("Executed 'Later' (Succeeded, Id={id}, Duration=")),
        "{executed}"
    );

    let (status, lines) = serve.terminate();
    assert!(status.success(), "{status}");
    assert!(lines.iter().any(|l| l == "Baton stopped."), "{lines:?}");
    // Standard error is a pipe here: no terminal colour codes.
    let coloured: Vec<_> = lines.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(coloured.is_empty(), "escape codes on a pipe: {coloured:?}");
}

#[test]
fn with_log_format_json_every_line_is_one_json_object_from_start_to_stop() {
    let dir = app();
    let mut serve = Serve::start(dir.path(), &["--log-format", "json"]);
    let doc = |line: &str| -> Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let announced = serve.until("with the address", |l| doc(l).get("address").is_some());
    let announced = doc(&announced);
    let addr = announced["address"]
        .as_str()
        .and_then(|a| a.strip_prefix("http://"))
        .expect("an http:// address")
        .to_owned();
    assert_eq!(announced["level"], "INFO");
    assert!(announced["message"].as_str().unwrap().contains(&addr));
    // The banner's functions come as events of their own.
    let hello = serve.until("describing Hello", |l| doc(l)["function"] == "Hello");
    let hello = doc(&hello);
    assert_eq!(hello["url"], format!("http://{addr}/api/Hello"));
    assert_eq!(hello["durable"], false);

    assert_eq!(post(&addr, "Hello", r#"{"name": "Ada"}"#), 200);
    // The event whose message starts `Executed '{function}'`.
    let executed_event = |serve: &mut Serve, function: &str| -> Value {
        let start = format!("Executed '{function}'");
        doc(&serve.until(&start, |l| {
            doc(l)["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&start))
        }))
    };
    let executed = executed_event(&mut serve, "Hello");
    assert_eq!(executed["level"], "INFO");
    assert_eq!(executed["function"], "Hello");
    assert!(executed["duration_ms"].is_u64(), "{executed}");
    let id = executed["instance"].as_str().expect("instance").to_owned();
    assert!(
        executed["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Executed 'Hello' (Succeeded, Id={id}, Duration=")),
        "{executed}"
    );

    assert_eq!(post(&addr, "Boom", "{}"), 422);
    let failed = executed_event(&mut serve, "Boom");
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["function"], "Boom");

    let (status, lines) = serve.terminate();
    assert!(status.success(), "{status}");
    let messages: Vec<String> = lines
        .iter()
        .map(|l| doc(l)["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    for want in [
        "Shutting down: no new connections; finishing in-flight requests.",
        "Baton stopped.",
    ] {
        assert!(
            messages.iter().any(|m| m == want),
            "no `{want}` in {messages:?}"
        );
    }
}
