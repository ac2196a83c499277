//! Secrets: what `$secrets` shows a workflow, `basic`/`bearer` authentication from a secret
//! (`use: name`), and that such credentials never reach the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::{Format, NoResolver, Workflow, load_str};
use baton_engine::durable::{Durable, DurableOptions, StartRequest};
use baton_engine::outbound::AddressPolicy;
use baton_engine::{HttpOptions, Runner};
use baton_store::RuntimeStatus;
use baton_store_sqlite::{Options, SqliteStore};
use serde_json::{Map, Value, json};

const TOKEN: &str = "tok-7f3a9c1e55d2";
const PASSWORD: &str = "pw-0b8e44d1c9";

fn secrets() -> Map<String, Value> {
    Map::from_iter([
        ("api".to_owned(), json!({"token": TOKEN})),
        (
            "ops".to_owned(),
            json!({"username": "ops", "password": PASSWORD}),
        ),
        ("unrelated".to_owned(), json!("never shown")),
    ])
}

fn wf(text: &str) -> Workflow {
    load_str(text, Format::Yaml, &NoResolver).expect("loads")
}

/// Records each request's `METHOD path authorization` and answers 202 + Location for
/// `/accept`, 200 `{}` otherwise.
async fn callee() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let log = Arc::clone(&log);
        async move {
            let auth = headers
                .get("authorization")
                .map_or("-", |v| v.to_str().unwrap())
                .to_owned();
            log.lock()
                .unwrap()
                .push(format!("{method} {} {auth}", uri.path()));
            let mut h = HeaderMap::new();
            if uri.path() == "/accept" {
                h.insert("location", "/done".parse().unwrap());
                h.insert("retry-after", "0".parse().unwrap());
                (StatusCode::ACCEPTED, h, axum::Json(json!({})))
            } else {
                (StatusCode::OK, h, axum::Json(json!({"ok": true})))
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn runner(addr: SocketAddr) -> Runner {
    Runner::builder()
        .http(HttpOptions {
            policy: AddressPolicy::allowing([addr.ip().into()]),
            ..HttpOptions::default()
        })
        .secrets(secrets())
        .build()
        .unwrap()
}

fn calls(addr: SocketAddr) -> String {
    format!(
        "document: {{dsl: '1.0.0', namespace: test, name: auth, version: '1.0.0'}}
use: {{secrets: [api, ops]}}
do:
  - bearer:
      call: http
      with:
        method: get
        endpoint:
          uri: http://{addr}/bearer
          authentication: {{bearer: {{use: api}}}}
  - basic:
      call: http
      with:
        method: get
        endpoint:
          uri: http://{addr}/accept
          authentication: {{basic: {{use: ops}}}}
"
    )
}

#[tokio::test]
async fn a_workflow_sees_only_the_secrets_it_declares() {
    let r = Runner::builder().secrets(secrets()).build().unwrap();
    let declared = wf(
        "document: {dsl: '1.0.0', namespace: t, name: s, version: '1.0.0'}\nuse: {secrets: [api]}\ndo:\n  - a: {set: {all: '${ $secrets }'}}\n",
    );
    let run = r.run(&declared, json!({})).await;
    assert_eq!(run.output, Some(json!({"all": {"api": {"token": TOKEN}}})));
    let undeclared = wf(
        "document: {dsl: '1.0.0', namespace: t, name: s, version: '1.0.0'}\ndo:\n  - a: {set: {all: '${ $secrets }'}}\n",
    );
    let run = r.run(&undeclared, json!({})).await;
    assert_eq!(run.output, Some(json!({"all": {}})));
}

#[test]
fn authentication_may_use_only_a_declared_secret() {
    let e = load_str(
        "document: {dsl: '1.0.0', namespace: t, name: s, version: '1.0.0'}\ndo:\n  - c:\n      call: http\n      with:\n        method: get\n        endpoint: {uri: 'https://example.com/', authentication: {bearer: {use: api}}}\n",
        Format::Yaml,
        &NoResolver,
    )
    .expect_err("undeclared");
    let text = e.to_string();
    assert!(
        text.contains("/do/0/c/with/endpoint/authentication/bearer/use")
            && text.contains("secret `api` is not declared in `use.secrets`"),
        "{text}"
    );
}

#[tokio::test]
async fn secret_credentials_are_sent_and_kept_across_a_poll() {
    let (addr, seen) = callee().await;
    let run = runner(addr).run(&wf(&calls(addr)), json!({})).await;
    assert_eq!(run.output, Some(json!({"ok": true})), "{:?}", run.error);
    let basic = format!(
        "Basic {}",
        baton_core::interp::base64(format!("ops:{PASSWORD}").as_bytes())
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            format!("GET /bearer Bearer {TOKEN}"),
            format!("GET /accept {basic}"),
            format!("GET /done {basic}"),
        ]
    );
}

#[tokio::test]
async fn a_secret_without_the_field_its_scheme_needs_is_a_configuration_error() {
    let (addr, seen) = callee().await;
    let r = Runner::builder()
        .http(HttpOptions {
            policy: AddressPolicy::allowing([addr.ip().into()]),
            ..HttpOptions::default()
        })
        .secrets(Map::from_iter([("api".to_owned(), json!({"tok": "x"}))]))
        .build()
        .unwrap();
    let run = r.run(&wf(&calls(addr)), json!({})).await;
    let err = run.error.expect("fails");
    assert_eq!(err.kind(), Some(baton_core::ErrorKind::Configuration));
    assert_eq!(
        err.detail.as_deref(),
        Some("secret `api` has no string `token` for bearer authentication")
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
}

/// A durable instance stores its requests with the secret's name only: the SQLite file never
/// holds the token or the password, though the callee received both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_requests_store_the_secret_name_not_the_credentials() {
    let (addr, seen) = callee().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let store = Arc::new(SqliteStore::open(&path, Options::default()).unwrap());
    let engine = Arc::new(Durable::new(
        store,
        Arc::new(runner(addr)),
        DurableOptions::default(),
    ));
    engine.pin("auth", Arc::new(wf(&calls(addr))));
    engine
        .start(StartRequest {
            id: "s1".to_owned(),
            function: "Test".to_owned(),
            definition: "auth".to_owned(),
            input: json!({}),
            idempotency: None,
        })
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&engine).run(async move {
        let _ = stopped.await;
    }));
    let row = engine
        .wait("s1", Duration::from_secs(20))
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(row.status, RuntimeStatus::Completed, "{row:?}");
    assert_eq!(seen.lock().unwrap().len(), 3);
    let _ = stop.send(());
    drop(engine);
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let file = dir.path().join(format!("baton.db{suffix}"));
        if let Ok(b) = std::fs::read(&file) {
            bytes.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("\"secret\":\"ops\""),
        "the request names its secret"
    );
    assert!(!text.contains(TOKEN), "the token is not stored");
    assert!(!text.contains(PASSWORD), "the password is not stored");
    let basic = baton_core::interp::base64(format!("ops:{PASSWORD}").as_bytes());
    assert!(!text.contains(&basic), "nor the encoded credentials");
}
