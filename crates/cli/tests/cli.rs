//! `baton run` and `baton check` as a user runs them: the real binary, real files.

#![allow(clippy::expect_used, clippy::unwrap_used)] // helpers of tests may fail loudly

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn baton() -> Command {
    Command::new(env!("CARGO_BIN_EXE_baton"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn app_workflow(name: &str) -> PathBuf {
    repo()
        .join("examples/person-validation/workflows")
        .join(name)
}

fn run_with_stdin(file: &Path, input: &Value) -> Output {
    let mut child = baton()
        .arg("run")
        .arg(file)
        .args(["--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write input");
    child.wait_with_output().expect("baton finishes")
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn expected(failed: &[u32]) -> Value {
    let all = [
        (
            1,
            "CheckFirstName",
            "First name is null or not longer than 1 character",
        ),
        (
            2,
            "CheckLastName",
            "Last name is null or not longer than 1 character",
        ),
        (
            3,
            "CheckAddressLines",
            "Address line 2 is populated but line 1 is empty",
        ),
        (4, "CheckCity", "City is empty"),
        (
            5,
            "CheckState",
            "State is null or not a 2-letter abbreviation",
        ),
        (6, "CheckZip", "Zip is null or not 5 digits"),
    ];
    let errors: Vec<Value> = all
        .iter()
        .filter(|c| failed.contains(&c.0))
        .map(|(id, check, message)| json!({"id": id, "check": check, "message": message}))
        .collect();
    let passed: Vec<Value> = all
        .iter()
        .filter(|c| !failed.contains(&c.0))
        .map(|(id, check, _)| json!({"id": id, "check": check}))
        .collect();
    json!({"valid": failed.is_empty(), "errors": errors, "passed": passed})
}

#[test]
fn the_reference_scenario_runs_on_the_shared_samples() {
    let samples = repo().join("../shared/samples");
    if !samples.is_dir() {
        eprintln!("SKIPPED: ../shared/samples is absent; the reference inputs were NOT run");
        return;
    }
    for wf in ["validate.yaml", "validate-parallel.yaml"] {
        for (sample, failed) in [
            ("person-valid.json", vec![]),
            ("person-short-first-name.json", vec![1]),
        ] {
            let out = baton()
                .arg("run")
                .arg(app_workflow(wf))
                .arg("--input")
                .arg(samples.join(sample))
                .output()
                .expect("baton runs");
            assert!(
                out.status.success(),
                "{wf} {sample}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(stdout_json(&out), expected(&failed), "{wf} on {sample}");
        }
    }
}

#[test]
fn rules_follow_the_table_for_edge_cases() {
    let cases = [
        (json!({}), vec![1, 2, 4, 5, 6]),
        (json!({"Name": null, "Address": null}), vec![1, 2, 4, 5, 6]),
        (
            json!({"Name": {"First": "Zoë", "Last": "Ñu"}, "Address": {"Line1": "1 Rue", "City": "Paris", "State": "or", "Zip": "75001"}}),
            vec![],
        ),
        (
            json!({"Name": {"First": "Jo", "Last": "X"}, "Address": {"Line2": "Apt 3", "City": "", "State": "ORE", "Zip": "1234"}}),
            vec![2, 3, 4, 5, 6],
        ),
        (
            json!({"Name": {"First": "Jo", "Last": "Li"}, "Address": {"Line1": "", "Line2": "", "City": "C", "State": "O1", "Zip": "123456"}}),
            vec![5, 6],
        ),
        (
            json!({"Name": {"First": "Jo", "Last": "Li", "Extra": 1}, "Other": [1], "Address": {"City": "C", "State": "WA", "Zip": "9801a"}}),
            vec![6],
        ),
    ];
    for (input, failed) in cases {
        for wf in ["validate.yaml", "validate-parallel.yaml"] {
            let out = run_with_stdin(&app_workflow(wf), &input);
            assert!(
                out.status.success(),
                "{wf} {input}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(stdout_json(&out), expected(&failed), "{wf} on {input}");
        }
    }
}

#[test]
fn wrong_types_fault_with_a_validation_problem_listing_pointers() {
    let out = run_with_stdin(
        &app_workflow("validate.yaml"),
        &json!({"Name": {"First": 5}, "Address": "x"}),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let problem: Value = serde_json::from_slice(&out.stderr).expect("problem+json on stderr");
    assert_eq!(problem["status"], 400);
    assert_eq!(
        problem["type"],
        "https://serverlessworkflow.io/spec/1.0.0/errors/validation"
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("/Name/First") && detail.contains("/Address"),
        "{detail}"
    );
}

#[test]
fn raised_errors_become_problem_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("raise.yaml");
    std::fs::write(
        &file,
        "document: {dsl: '1.0.0', namespace: t, name: r, version: '1.0.0'}\ndo:\n  - nope:\n      raise:\n        error: {type: 'https://example.com/errors/nope', status: 422, title: Nope, detail: '${ \"bad \" + .x }'}\n",
    )
    .expect("write");
    let out = run_with_stdin(&file, &json!({"x": "thing"}));
    assert_eq!(out.status.code(), Some(1));
    let problem: Value = serde_json::from_slice(&out.stderr).expect("problem+json");
    assert_eq!(
        problem,
        json!({"type": "https://example.com/errors/nope", "status": 422, "instance": "/do/0/nope", "title": "Nope", "detail": "bad thing"})
    );
}

#[test]
fn waits_really_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wait.yaml");
    std::fs::write(
        &file,
        "document: {dsl: '1.0.0', namespace: t, name: w, version: '1.0.0'}\ndo:\n  - pause: {wait: {milliseconds: 300}}\n  - done: {set: {ok: true}}\n",
    )
    .expect("write");
    let started = std::time::Instant::now();
    let out = baton().arg("run").arg(&file).output().expect("runs");
    assert!(out.status.success());
    assert_eq!(stdout_json(&out), json!({"ok": true}));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "the wait was skipped"
    );
}

#[test]
fn malformed_documents_report_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "document: {dsl: '1.0.0'\ndo: [\n").expect("write");
    let out = baton().arg("run").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let problem: Value = serde_json::from_slice(&out.stderr).expect("problem+json");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("bad.yaml:") && detail.chars().filter(|c| *c == ':').count() >= 3,
        "{detail}"
    );
    assert_eq!(
        problem["title"],
        "The workflow document is not valid YAML or JSON"
    );
    // A fault of the whole document has no JSON pointer to give as its instance.
    assert!(problem.get("instance").is_none(), "{problem}");
}

#[test]
fn a_missing_workflow_file_is_a_file_problem_not_a_document_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nowhere.yaml");
    let out = baton().arg("run").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let problem: Value = serde_json::from_slice(&out.stderr).expect("problem+json");
    assert_eq!(problem["title"], "Cannot read the workflow file");
    assert_eq!(problem["type"], "about:blank");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("nowhere.yaml: cannot read the file:"),
        "{detail}"
    );
    let out = baton().arg("check").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "a path that is not there");
}

#[test]
fn check_lists_every_document_and_fails_on_any_problem() {
    let out = baton()
        .arg("check")
        .arg(repo().join("examples/person-validation"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("26 checked, 0 failed"));

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ok.yaml"), "document: {dsl: '1.0.0', namespace: t, name: a, version: '1.0.0'}\ndo:\n  - a: {set: {}}\n").expect("write");
    std::fs::write(dir.path().join("grpc.yaml"), "document: {dsl: '1.0.0', namespace: t, name: b, version: '1.0.0'}\ndo:\n  - greet:\n      call: grpc\n      with: {}\n").expect("write");
    let out = baton().arg("check").arg(dir.path()).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("grpc.yaml: at /do/0/greet/call: unsupported feature: `call: grpc`"),
        "{text}"
    );
    assert!(text.contains("2 checked, 1 failed"), "{text}");
}

#[test]
fn secrets_come_from_a_file_and_never_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        "document: {dsl: '1.0.0', namespace: t, name: s, version: '1.0.0'}\nuse:\n  secrets: [api]\ndo:\n  - a: {set: {key: '${ $secrets.api.key }', env: '${ env | length }'}}\n",
    )
    .expect("write");
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"api": {"key": "s3cr3t"}}"#).expect("write");
    let out = baton()
        .arg("run")
        .arg(&file)
        .arg("--secrets")
        .arg(&secrets)
        .env("HOME", "/x")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out), json!({"key": "s3cr3t", "env": 0}));
}

/// `baton run` refuses calls to internal addresses unless `--allow` opens them: a stand-in on
/// 127.0.0.1 is not reached without it, and answers with it.
#[test]
fn run_calls_internal_addresses_only_when_allowed() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    // Answers every connection once; the thread ends with the test process.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = r#"{"ok":true}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("call.yaml");
    std::fs::write(
        &file,
        format!(
            "document: {{dsl: '1.0.0', namespace: t, name: call, version: '1.0.0'}}\n\
             do:\n  - c: {{call: http, with: {{method: get, endpoint: 'http://{addr}/'}}}}\n"
        ),
    )
    .expect("write");

    let run = |args: &[&str]| {
        baton()
            .arg("run")
            .arg(&file)
            .args(args)
            .output()
            .expect("baton runs")
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(1));
    let problem = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(
        problem.contains("outbound address policy blocks 127.0.0.1"),
        "{problem}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the stand-in was reached");

    let allowed = run(&["--allow", "127.0.0.1"]);
    assert!(allowed.status.success(), "{allowed:?}");
    assert_eq!(stdout_json(&allowed), json!({"ok": true}));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let bad = run(&["--allow", "10.0.0.0/40"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}
