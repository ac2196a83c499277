//! Helpers shared by the API tests: apps in temporary folders and requests without a socket.

#![allow(dead_code)]

pub mod metrics;
pub mod queues;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_api::ApiState;
use baton_engine::{Runner, RunnerBuilder};
use baton_host::{App, Express, Host, Keys, Settings};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The API over `app`. When it has durable functions, their store is an SQLite file in a
/// fresh folder and a dispatcher runs their work for as long as the test's runtime does.
pub async fn state(app: App, keys: Keys) -> ApiState {
    let builder = Runner::builder().http(app.config.http.options());
    state_on(app, keys, builder).await
}

/// A real server on 127.0.0.1:0 serving `app`, whose workflows are told its address (as
/// `baton serve` tells them) and read `secrets`.
pub async fn serve(
    app: App,
    keys: Keys,
    secrets: serde_json::Map<String, Value>,
) -> (ApiState, Live) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = baton_host::runtime::base_url(addr, app.config.host.base_url.as_deref());
    let builder = Runner::builder()
        .http(app.config.http.options())
        .secrets(secrets)
        .runtime_metadata(baton_host::runtime::metadata(
            &base,
            &app.config.host.route_prefix,
        ));
    let state = state_on(app, keys, builder).await;
    let router = baton_api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let live = Live {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    };
    (state, live)
}

/// The API over `app`, opened as `baton serve` opens it: when the app needs a store, an
/// SQLite file in a fresh folder, whose durable work and queue triggers run for as long as
/// the test's runtime does.
async fn state_on(mut app: App, keys: Keys, builder: RunnerBuilder) -> ApiState {
    let dev_mode = keys.is_empty();
    if app.needs_store() {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        app.config.store.path = dir.join("baton.db").display().to_string();
    }
    let host = Host::open(&app, builder).await.expect("the host opens");
    let run = host.clone();
    tokio::spawn(async move { run.run(std::future::pending::<()>()).await });
    ApiState {
        express: Express::new(host.runner.clone(), Settings::from_config(&app.config)),
        durable: host.instances.clone(),
        queues: host.queues.clone(),
        app: Arc::new(app),
        keys: Arc::new(keys),
        dev_mode,
    }
}

/// Writes an app folder with `baton.toml` and the given workflow files.
pub fn app_dir(dir: &Path, toml: &str, workflows: &[(&str, &str)]) -> App {
    std::fs::create_dir_all(dir.join("workflows")).expect("mkdir");
    std::fs::write(dir.join("baton.toml"), toml).expect("toml");
    for (name, text) in workflows {
        std::fs::write(dir.join("workflows").join(name), text).expect("workflow");
    }
    App::from_dir(dir).expect("app loads")
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn send(state: &ApiState, req: Request<Body>) -> Answer {
    let resp = baton_api::router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

pub fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

pub fn is_problem(a: &Answer) -> bool {
    a.headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/problem+json")
        && a.body["status"] == a.status.as_u16()
        && a.body["title"].is_string()
}

/// A real server on 127.0.0.1:0 serving `state`, for tests that must cross a socket.
pub struct Live {
    pub base: String,
    client: reqwest::Client,
}

pub async fn live(state: &ApiState) -> Live {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = baton_api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Live {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    }
}

impl Live {
    /// Sends `req` (path-only URI) over HTTP and reads the answer.
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let url = format!("{}{}", self.base, parts.uri);
        let mut r = self.client.request(parts.method, url).body(bytes.to_vec());
        for (k, v) in &parts.headers {
            r = r.header(k, v);
        }
        let resp = r.send().await.expect("the server answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }
}
