//! `call: openapi` against a stand-in on 127.0.0.1 that serves an OpenAPI 3 document and the
//! operation it describes, in express and in durable mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::{Format, NoResolver, Workflow, load_str};
use baton_engine::durable::{Durable, DurableOptions, StartRequest};
use baton_engine::outbound::AddressPolicy;
use baton_engine::{HttpOptions, Runner};
use baton_store::{RuntimeStatus, Store};
use baton_store_sqlite::{Options, SqliteStore};
use serde_json::{Value, json};

/// Serves `/specs/orders.yaml` (OpenAPI 3, YAML, a relative server URL with a variable) and
/// `POST /api/v1/orders/{id}/notes`; records every request line with its query and body.
async fn stand_in() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
            let log = Arc::clone(&log);
            async move {
                let trace = headers
                    .get("x-trace")
                    .map_or("-", |v| v.to_str().unwrap())
                    .to_owned();
                log.lock()
                    .unwrap()
                    .push(format!("{method} {uri} trace={trace} {body}"));
                if uri.path() == "/specs/orders.yaml" {
                    let doc = "openapi: 3.0.3\n\
                               info: {title: orders, version: '1'}\n\
                               servers:\n  - url: /api/{version}\n    variables: {version: {default: v1}}\n\
                               paths:\n  /orders/{id}/notes:\n    parameters:\n      - {name: id, in: path, required: true, schema: {type: string}}\n\
                               \x20   post:\n      operationId: addNote\n      parameters:\n        - {name: tag, in: query, schema: {type: array}}\n        - {name: x-trace, in: header, schema: {type: string}}\n\
                               \x20     requestBody: {required: true, content: {application/json: {}}}\n";
                    return (StatusCode::OK, [("content-type", "application/yaml")], doc.to_owned());
                }
                (
                    StatusCode::CREATED,
                    [("content-type", "application/json")],
                    json!({"saved": true}).to_string(),
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn workflow(addr: SocketAddr) -> Workflow {
    let text = format!(
        "document: {{dsl: '1.0.0', namespace: test, name: notes, version: '1.0.0'}}
do:
  - note:
      call: openapi
      with:
        document: {{endpoint: 'http://{addr}/specs/orders.yaml'}}
        operationId: addNote
        parameters:
          id: '${{ .order }}'
          tag: [a, b]
          x-trace: t1
          body: {{text: '${{ .text }}'}}
        output: response
      output:
        as: '${{ {{status: .statusCode, uri: .request.uri, method: .request.method, saved: .content.saved}} }}'
"
    );
    load_str(&text, Format::Yaml, &NoResolver).expect("loads")
}

fn runner(addr: SocketAddr) -> Runner {
    Runner::builder()
        .http(HttpOptions {
            policy: AddressPolicy::allowing([addr.ip().into()]),
            ..HttpOptions::default()
        })
        .build()
        .unwrap()
}

fn expected(addr: SocketAddr) -> (Value, Vec<String>) {
    (
        json!({"status": 201, "uri": format!("http://{addr}/api/v1/orders/A%2F7/notes"), "method": "POST", "saved": true}),
        vec![
            "GET /specs/orders.yaml trace=- ".to_owned(),
            r#"POST /api/v1/orders/A%2F7/notes?tag=a&tag=b trace=t1 {"text":"hi"}"#.to_owned(),
        ],
    )
}

#[tokio::test]
async fn the_document_is_read_and_the_operation_called() {
    let (addr, seen) = stand_in().await;
    let run = runner(addr)
        .run(&workflow(addr), json!({"order": "A/7", "text": "hi"}))
        .await;
    let (output, calls) = expected(addr);
    assert_eq!(run.output, Some(output), "{:?}", run.error);
    assert_eq!(*seen.lock().unwrap(), calls);
    assert_eq!(run.calls, 2, "the document, then the operation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_instance_fetches_and_calls_as_two_activities() {
    let (addr, seen) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(dir.path().join("baton.db"), Options::default()).unwrap());
    let engine = Arc::new(Durable::new(
        store,
        Arc::new(runner(addr)),
        DurableOptions::default(),
    ));
    engine.pin("notes", Arc::new(workflow(addr)));
    engine
        .start(StartRequest {
            id: "n1".to_owned(),
            function: "Test".to_owned(),
            definition: "notes".to_owned(),
            input: json!({"order": "A/7", "text": "hi"}),
            idempotency: None,
        })
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&engine).run(async move {
        let _ = stopped.await;
    }));
    let row = engine
        .wait("n1", Duration::from_secs(20))
        .await
        .unwrap()
        .expect("exists");
    let _ = stop.send(());
    let (output, calls) = expected(addr);
    assert_eq!(row.status, RuntimeStatus::Completed, "{row:?}");
    assert_eq!(row.output, Some(output));
    assert_eq!(*seen.lock().unwrap(), calls);
    let history = engine.store().history("n1", 0, 100).await.unwrap();
    let scheduled = history
        .iter()
        .filter(|e| e.kind == "ActivityScheduled")
        .count();
    assert_eq!(scheduled, 2);
}
