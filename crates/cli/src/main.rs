//! The `baton` command.

mod bench;
mod check;
mod files;
mod instances;
mod keys;
mod problem;
mod queues;
mod remote;
mod run;
mod serve;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Workflows allocate many small, short-lived JSON values on every worker thread; glibc's
// allocator spent about half of a `Validate` request's CPU time in malloc/free bookkeeping
// (perf, docs/benchmarks.md). mimalloc's thread-local free lists remove most of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    about = "A self-hosted serverless workflow orchestrator"
)]
struct Cli {
    /// Log filter (`info`, `debug`, `baton_engine=debug`, …); RUST_LOG also works.
    #[arg(long, global = true, env = "BATON_LOG", default_value = "info")]
    log: String,
    /// `text` for people, `json` (one object per line) for machines.
    #[arg(long, global = true, env = "BATON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve an app's functions over HTTP (the embedded sample app by default).
    Serve(serve::ServeArgs),
    /// Manage function and host keys.
    Keys(keys::KeysArgs),
    /// List, inspect and manage the durable instances of a running server.
    Instances(Box<instances::InstancesArgs>),
    /// Send, receive, peek and settle the messages of a running server's queues.
    Queues(Box<queues::QueuesArgs>),
    /// Run one workflow in-process and print its output as JSON.
    Run {
        /// The workflow definition (YAML or JSON).
        file: PathBuf,
        /// The input document (JSON or YAML); `-` reads standard input. Defaults to `{}`.
        #[arg(long, short)]
        input: Option<String>,
        /// A JSON or YAML document whose members the workflow reads as `$secrets`.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// An internal address range `call: http` may reach (`127.0.0.1`, `10.0.0.0/8`);
        /// repeatable. Without it, loopback, private and other internal addresses are refused.
        #[arg(long, value_name = "RANGE", value_parser = baton_engine::outbound::parse_range)]
        allow: Vec<ipnet::IpNet>,
    },
    /// Validate workflow documents without running them.
    Check {
        /// A workflow file, an app folder (its `workflows/`), or a folder of workflow files.
        path: PathBuf,
    },
    /// Load an HTTP endpoint, or the bare axum echo baseline, and report throughput and latency.
    Bench(Box<bench::BenchArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    // Colours only for a person at a terminal: a log file, a pipe or journald gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match cli.command {
        Command::Run {
            file,
            input,
            secrets,
            allow,
        } => run::run(&file, input.as_deref(), secrets.as_deref(), allow),
        Command::Serve(args) => serve::serve(&args, cli.log_format),
        Command::Keys(args) => keys::keys(&args),
        Command::Instances(args) => instances::instances(&args),
        Command::Queues(args) => queues::queues(&args),
        Command::Check { path } => check::check(&path),
        Command::Bench(args) => bench::run(*args),
    }
}
