//! The baseline: a bare axum JSON echo.
//!
//! It is served the way Baton serves its HTTP functions, so the difference between the two is
//! Baton's own work: axum 0.8 over `axum::serve` with the workspace's axum features, on a
//! multi-thread tokio runtime (2 worker threads, which is also what `#[tokio::main]` gives on the
//! 2-core machine the figures come from), and a handler that parses the JSON body into a
//! `serde_json::Value` and answers it as JSON. Returning the request's bytes untouched would be
//! cheaper and so flatter the baseline.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tokio::net::TcpListener;

/// The path the echo answers on.
pub const PATH: &str = "/echo";

/// The runtime's worker threads; see the module comment.
const WORKER_THREADS: usize = 2;

/// Serves `POST /echo` on `listener` until the task is dropped.
pub async fn serve_echo(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

fn router() -> Router {
    Router::new().route(PATH, post(echo))
}

async fn echo(Json(body): Json<Value>) -> Json<Value> {
    Json(body)
}

/// The runtime the echo is served on.
pub(super) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("baton-echo")
        .enable_all()
        .build()
}

/// Starts the echo on its own runtime in the background, on a free loopback port. The server
/// lives as long as the returned runtime.
pub(super) fn start_in_process() -> std::io::Result<(tokio::runtime::Runtime, SocketAddr)> {
    let rt = runtime()?;
    let listener = rt.block_on(TcpListener::bind(("127.0.0.1", 0)))?;
    let addr = listener.local_addr()?;
    rt.spawn(serve_echo(listener));
    Ok((rt, addr))
}

/// `baton bench --echo-only`: serve until the process is killed.
pub(super) fn run_alone(listen: SocketAddr) -> ExitCode {
    let fail = |title: &str, e: std::io::Error| {
        crate::problem::print(&crate::problem::usage(title, e));
        ExitCode::from(1)
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail("Cannot start the runtime", e),
    };
    rt.block_on(async {
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("Cannot listen on {listen}"), e),
        };
        match listener.local_addr() {
            // On standard output, so a script that asked for port 0 can read where it is.
            Ok(addr) => println!("echo server listening on http://{addr}{PATH}"),
            Err(e) => return fail("Cannot read the listening address", e),
        }
        match serve_echo(listener).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("The echo server stopped", e),
        }
    })
}
