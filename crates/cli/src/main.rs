//! The `baton` command.

mod check;
mod files;
mod problem;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    about = "A self-hosted serverless workflow orchestrator"
)]
struct Cli {
    /// Log filter (`info`, `debug`, `baton_engine=debug`, …); RUST_LOG also works.
    #[arg(long, global = true, env = "BATON_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    },
    /// Validate workflow documents without running them.
    Check {
        /// A workflow file, an app folder (its `workflows/`), or a folder of workflow files.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run {
            file,
            input,
            secrets,
        } => run::run(&file, input.as_deref(), secrets.as_deref()),
        Command::Check { path } => check::check(&path),
    }
}
