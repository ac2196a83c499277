//! `baton serve`: the function host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use baton_api::ApiState;
use baton_core::expr::Budget;
use baton_engine::Runner;
use baton_host::{App, Express, Host, Instances, Keys, Settings, runtime};

use crate::LogFormat;

/// Flags of `baton serve`; they win over `baton.toml` and `BATON_*` variables.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The app folder (`baton.toml`, `workflows/`, `schemas/`); the embedded sample app if absent.
    #[arg(long, env = "BATON_APP")]
    pub app: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:7071, or `host.listen` of baton.toml).
    #[arg(long)]
    pub listen: Option<String>,
    /// Where durable instances are kept: `sqlite://PATH` or a path (default `.baton/baton.db`,
    /// or `store.path` of baton.toml), or a PostgreSQL database shared by several nodes
    /// (`postgres://user@host:5432/db`, or `store.url`).
    #[arg(long)]
    pub store: Option<String>,
    /// The key file written by `baton keys`.
    #[arg(long, env = "BATON_KEYS", default_value = ".baton/keys.json")]
    pub keys: PathBuf,
}

/// Everything `serve` needs, validated before the listener opens.
struct Prepared {
    app: Arc<App>,
    keys: Arc<Keys>,
    addr: SocketAddr,
    dev_mode: bool,
    /// `[secrets]`, read and checked against what the workflows declare.
    secrets: serde_json::Map<String, serde_json::Value>,
}

fn prepare(args: &ServeArgs) -> Result<Prepared, String> {
    let mut app = match &args.app {
        Some(dir) => App::from_dir(dir).map_err(|e| e.to_string())?,
        None => App::sample().map_err(|e| e.to_string())?,
    };
    app.config
        .apply_env(|k| std::env::var(k).ok())
        .map_err(|e| e.to_string())?;
    if let Some(listen) = &args.listen {
        app.config.host.listen = listen.clone();
    }
    if let Some(store) = &args.store {
        app.config
            .set_store(store)
            .map_err(|e| format!("--store: {e}"))?;
    }
    let addr: SocketAddr = app.config.host.listen.parse().map_err(|_| {
        format!(
            "host.listen: `{}` is not an address such as 127.0.0.1:7071",
            app.config.host.listen
        )
    })?;
    let secrets =
        runtime::resolve_secrets(&app.config.secrets, &app.dir, &|k| std::env::var(k).ok())?;
    runtime::check_declared(&app, &secrets)?;
    let keys = Keys::load(&args.keys).map_err(|e| e.to_string())?;
    let dev_mode = keys.is_empty();
    if dev_mode && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without keys: create one with `baton keys create --host --name master` \
             (keys file {}), or listen on a loopback address for local development",
            args.keys.display()
        ));
    }
    Ok(Prepared {
        app: Arc::new(app),
        keys: Arc::new(keys),
        addr,
        dev_mode,
        secrets,
    })
}

pub fn serve(args: &ServeArgs, format: LogFormat) -> ExitCode {
    let out = Banner::for_format(format);
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(e) => {
            out.failed(&e.to_string());
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.failed(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(prepared, out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.failed(&e);
            ExitCode::from(1)
        }
    }
}

async fn run(p: Prepared, out: Banner) -> Result<(), String> {
    let config = &p.app.config;
    // Bound first: workflows are told the address they can call their sibling functions at.
    let listener = tokio::net::TcpListener::bind(p.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", p.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = runtime::base_url(addr, config.host.base_url.as_deref());
    // Express instances answer with their output; nobody reads their trace (the per-task
    // debug lines still print it when debug logging is on).
    let builder = Runner::builder()
        .task_trace(false)
        .budget(Budget {
            steps: config.limits.expression_steps,
        })
        .http(config.http.options())
        .secrets(p.secrets)
        .runtime_metadata(runtime::metadata(&base, &config.host.route_prefix));
    let host = Host::open(&p.app, builder)
        .await
        .map_err(|e| e.to_string())?;
    let durable = host.instances.clone();
    let runner = host.runner.clone();
    let express = Express::new(runner, Settings::from_config(config));
    announce(out, &p.app, addr, p.dev_mode, &p.keys, durable.as_deref());
    let grace = config.host.shutdown_grace.0.to_std();
    let state = ApiState {
        app: p.app.clone(),
        express,
        durable: durable.clone(),
        queues: host.queues.clone(),
        keys: p.keys.clone(),
        dev_mode: p.dev_mode,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Durable work stops being claimed, and queue triggers stop receiving, at the shutdown
    // signal; durable work in flight is left to its lease and taken over after the restart,
    // messages in hand are abandoned.
    let dispatcher = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            host.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        })
    };
    let server =
        axum::serve(listener, baton_api::router(state)).with_graceful_shutdown(async move {
            shutdown_signal(out).await;
            let _ = stop_tx.send(true);
        });
    let mut stop_rx = stop_rx;
    tokio::select! {
        r = server => r.map_err(|e| e.to_string())?,
        () = async {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {}; exiting", config.host.shutdown_grace);
        }
    }
    // Queue triggers abandon the messages they hold as they stop; give them a moment.
    if tokio::time::timeout(std::time::Duration::from_secs(2), dispatcher)
        .await
        .is_err()
    {
        tracing::debug!("the dispatcher had not stopped; exiting anyway");
    }
    out.say("Baton stopped.");
    Ok(())
}

/// Where `baton serve`'s own lines go (the start-up banner, shutdown, a failure to start):
/// standard error as written, for a person; or, with `--log-format json`, log events with the
/// same messages and their parts as fields, so that every line on standard error is one JSON
/// object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Banner {
    Text,
    Events,
}

impl Banner {
    fn for_format(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => Banner::Text,
            LogFormat::Json => Banner::Events,
        }
    }

    fn say(self, line: &str) {
        match self {
            Banner::Text => eprintln!("{line}"),
            Banner::Events => tracing::info!("{line}"),
        }
    }

    fn failed(self, why: &str) {
        match self {
            Banner::Text => eprintln!("baton serve: {why}"),
            Banner::Events => tracing::error!("baton serve: {why}"),
        }
    }
}

fn announce(
    out: Banner,
    app: &App,
    addr: SocketAddr,
    dev_mode: bool,
    keys: &Keys,
    durable: Option<&Instances>,
) {
    let prefix = app.config.host.route_prefix.trim_matches('/');
    let version = env!("CARGO_PKG_VERSION");
    let serving = format!("Baton {version} serving {} on http://{addr}", app.origin);
    let access = if dev_mode {
        "Local development mode: no keys are configured, so every route is open (loopback only)."
            .to_owned()
    } else {
        format!(
            "{} host key(s), keys for {} function(s).",
            keys.host.len(),
            keys.functions.values().filter(|v| !v.is_empty()).count()
        )
    };
    let store = durable.map(Instances::describe);
    match out {
        Banner::Text => {
            eprintln!("{serving}");
            eprintln!("{access}");
            if let Some(store) = &store {
                eprintln!("Durable instances are kept in {store}.");
            }
            eprintln!("\nFunctions:\n");
        }
        Banner::Events => {
            tracing::info!(version, app = %app.origin, address = %format!("http://{addr}"), "{serving}");
            if dev_mode {
                tracing::warn!(dev_mode, "{access}");
            } else {
                tracing::info!(dev_mode, "{access}");
            }
            if let Some(store) = &store {
                tracing::info!(store = %store, "Durable instances are kept in {store}.");
            }
        }
    }
    for f in &app.functions {
        let methods = f.methods.join(",");
        let url = format!("http://{addr}/{prefix}/{}", f.route);
        let (name, auth, durable) = (&f.name, f.auth.as_str(), f.is_durable());
        match (out, &f.queue) {
            (Banner::Text, Some(q)) => eprintln!("\t{name}: queueTrigger `{q}`  (durable)"),
            (Banner::Text, None) => eprintln!(
                "\t{name}: [{methods}] {url}  ({auth}{})",
                if durable { ", durable" } else { "" }
            ),
            (Banner::Events, Some(q)) => tracing::info!(
                function = %name, queue = %q, durable = true,
                "Function '{name}': queueTrigger `{q}`"
            ),
            (Banner::Events, None) => tracing::info!(
                function = %name, methods = %methods, url = %url, auth, durable,
                "Function '{name}': [{methods}] {url} ({auth})"
            ),
        }
    }
    if out == Banner::Text {
        eprintln!();
    }
}

async fn shutdown_signal(out: Banner) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    out.say("Shutting down: no new connections; finishing in-flight requests.");
}
