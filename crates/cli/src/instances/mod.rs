//! `baton instances`: read and manage the durable instances of a running `baton serve`, as a
//! client of its HTTP API (docs/instances.md).
//!
//! Tables and the status block are for people; `--json` prints the server's JSON instead (for
//! paged answers, one array of every item fetched). An error answer is printed from its problem
//! document on standard error and the command exits 1; a server that cannot be reached exits 1
//! too, naming the URL; bad arguments exit 2.

pub(crate) mod args;
mod client;
mod commands;
pub(crate) mod render;

use std::process::ExitCode;
use std::time::Duration;

use clap::ArgGroup;
use reqwest::Url;

use args::{Data, RuntimeStatus};
use client::{Client, MAX_TOP};

/// Options shared by every `baton instances` command.
#[derive(Debug, clap::Args)]
pub struct InstancesArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "BATON_URL",
        default_value = "http://127.0.0.1:7071",
        value_parser = args::parse_url,
        global = true
    )]
    url: Url,
    /// A host (admin) key, sent as `x-functions-key`; not needed in local development mode.
    #[arg(long, env = "BATON_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    /// Print the server's JSON as is (list and history: one document of every page fetched).
    #[arg(long, global = true)]
    json: bool,
    /// The server's route prefix (`[host] route_prefix`).
    #[arg(long, default_value = "api", global = true)]
    prefix: String,
    /// Give up on a request after this long (`30s`, `2m`, `PT1M`).
    #[arg(long, default_value = "30s", value_parser = args::parse_timeout, global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: InstancesCommand,
}

/// `--from`/`--to` as RFC 3339, from the wall clock when given as a duration ago.
fn parse_time_now(text: &str) -> Result<String, String> {
    args::parse_time(text, std::time::SystemTime::now())
}

#[derive(Debug, clap::Args)]
struct Filter {
    /// Only instances in these states (repeat or separate with commas).
    #[arg(
        long = "status",
        value_name = "STATUS",
        value_enum,
        ignore_case = true,
        value_delimiter = ','
    )]
    statuses: Vec<RuntimeStatus>,
    /// Only instances of this function.
    #[arg(long)]
    name: Option<String>,
    /// Created at or after: RFC 3339 or a duration ago (`1h`, `2d`).
    #[arg(long, value_name = "TIME", value_parser = parse_time_now)]
    from: Option<String>,
    /// Created at or before: RFC 3339 or a duration ago.
    #[arg(long, value_name = "TIME", value_parser = parse_time_now)]
    to: Option<String>,
}

#[derive(Debug, clap::Args)]
struct Pager {
    /// The page size (at most 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TOP)))]
    top: Option<u32>,
    /// Follow continuation tokens to the last page.
    #[arg(long)]
    all: bool,
    /// Start at the page this token (printed after a table) names.
    #[arg(long, value_name = "TOKEN")]
    continuation_token: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum InstancesCommand {
    /// List instances, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Only instances whose id starts with this.
        #[arg(long, value_name = "PREFIX")]
        prefix_id: Option<String>,
        #[command(flatten)]
        pager: Pager,
        /// At most this many instances in all, following pages as needed.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Show one instance's status, input, output and custom status.
    Show {
        id: String,
        /// Add the instance's history.
        #[arg(long)]
        history: bool,
    },
    /// Show an instance's history, oldest first.
    History {
        id: String,
        #[command(flatten)]
        pager: Pager,
    },
    /// End an instance as Terminated.
    Terminate(Manage),
    /// Stop an instance taking steps; what arrives meanwhile is kept for resume.
    Suspend(Manage),
    /// Let a suspended instance go on.
    Resume(Manage),
    /// Run a Failed instance again from the operation that failed.
    Rewind(Manage),
    /// Deliver an event (a CloudEvent of type EVENT) to an instance's `listen` tasks.
    Raise {
        id: String,
        event: String,
        /// The event's data: JSON, `@file`, or `-` for standard input [default: null].
        #[arg(long, value_name = "JSON|@FILE|-", value_parser = args::parse_data)]
        data: Option<Data>,
    },
    /// Delete one finished instance and its history, or every finished one that matches.
    #[command(group(
        ArgGroup::new("what").required(true).multiple(true).args(["id", "statuses", "name", "from", "to"])
    ))]
    Purge {
        /// The instance to delete.
        #[arg(conflicts_with_all = ["statuses", "name", "from", "to"])]
        id: Option<String>,
        #[command(flatten)]
        filter: Filter,
    },
}

#[derive(Debug, clap::Args)]
struct Manage {
    id: String,
    /// Why, recorded with the request.
    #[arg(long)]
    reason: Option<String>,
}

pub fn instances(args: &InstancesArgs) -> ExitCode {
    crate::remote::execute(
        "instances",
        || {
            Client::new(
                args.url.clone(),
                &args.prefix,
                args.key.clone(),
                args.timeout,
            )
        },
        |client| async move { commands::run(&client, args.json, &args.command).await },
    )
}
