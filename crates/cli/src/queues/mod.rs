//! `baton queues`: send, receive, peek and settle the messages of a running `baton serve`'s
//! queues, and read and redrive their dead-letter queues, as a client of its HTTP API
//! (docs/queues.md).
//!
//! Tables and lines are for people; `--json` prints the server's JSON instead. As with `baton
//! instances`, an error answer is printed from its problem document on standard error and the
//! command exits 1; a server that cannot be reached exits 1 too, naming the URL; bad arguments
//! exit 2.

mod args;
mod commands;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ArgGroup;
use reqwest::Url;
use serde_json::Value;

use crate::instances::args::{parse_timeout, parse_url};
use crate::remote::{self, Remote};

/// The most messages one receive or peek carries (the server's limit).
const MAX_BATCH: u32 = 100;

/// Options shared by every `baton queues` command.
#[derive(Debug, clap::Args)]
pub struct QueuesArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "BATON_URL",
        default_value = "http://127.0.0.1:7071",
        value_parser = parse_url,
        global = true
    )]
    url: Url,
    /// A host (admin) key, sent as `x-functions-key`; not needed in local development mode.
    #[arg(long, env = "BATON_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    /// Print the server's JSON as is.
    #[arg(long, global = true)]
    json: bool,
    /// The server's route prefix (`[host] route_prefix`).
    #[arg(long, default_value = "api", global = true)]
    prefix: String,
    /// Give up on a request after this long (`30s`, `2m`, `PT1M`); a receive's `--wait` is
    /// added to it.
    #[arg(long, default_value = "30s", value_parser = parse_timeout, global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: QueuesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum QueuesCommand {
    /// List the queues with their message counts.
    List,
    /// Show one queue's settings and message counts.
    Show { queue: String },
    /// Send one message.
    Send(SendArgs),
    /// Receive messages with peek-lock: each is locked until completed, abandoned,
    /// dead-lettered or its lock expires.
    Receive(Receive),
    /// Show messages without locking them (scheduled, active and locked ones).
    Peek(Peek),
    /// Settle a received message as done: it is deleted.
    Complete(Lock),
    /// Give a received message back: it can be received again at once.
    Abandon(Lock),
    /// Move a received message to the dead-letter queue.
    Deadletter {
        #[command(flatten)]
        lock: Lock,
        /// Why [default: DeadLetteredByReceiver].
        #[arg(long)]
        reason: Option<String>,
        /// A longer explanation.
        #[arg(long)]
        description: Option<String>,
    },
    /// Show the dead-letter queue's messages, with the reasons they were dead-lettered.
    Dlq(Peek),
    /// Move dead-lettered messages back to the queue (delivery count 0).
    #[command(group(ArgGroup::new("which").required(true).args(["sequences", "all"])))]
    Redrive {
        queue: String,
        /// The sequence numbers of the messages to move.
        #[arg(value_name = "SEQ", conflicts_with = "all")]
        sequences: Vec<i64>,
        /// Every dead-lettered message.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("source").required(true).args(["body", "file", "stdin"])))]
struct SendArgs {
    queue: String,
    /// The body as JSON on the command line.
    #[arg(long, value_name = "JSON", value_parser = args::parse_json)]
    body: Option<String>,
    /// The body is this file's bytes.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// `-`: the body is standard input.
    #[arg(value_name = "-", value_parser = args::parse_stdin)]
    stdin: Option<args::Stdin>,
    /// The body's media type [default: application/json for --body and for a file or input
    /// that is JSON, else text/plain for UTF-8 text, else application/octet-stream].
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
    /// The id duplicate detection compares (made up by the server when absent).
    #[arg(long, value_name = "ID")]
    message_id: Option<String>,
    /// The session it belongs to (required by a session queue).
    #[arg(long, value_name = "ID")]
    session_id: Option<String>,
    #[arg(long, value_name = "ID")]
    correlation_id: Option<String>,
    /// How long it lives once visible (`90s`, `10m`, `PT1H`).
    #[arg(long, value_name = "DURATION", value_parser = args::parse_ttl)]
    ttl: Option<Duration>,
    /// Not receivable before this time: RFC 3339, or a duration from now (`10m`).
    #[arg(long, value_name = "TIME", value_parser = parse_scheduled_now)]
    scheduled: Option<String>,
    /// A user property `KEY=VALUE` (repeatable); VALUE is JSON when it parses as JSON
    /// (`n=2`, `ok=true`), else text.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = args::parse_property)]
    properties: Vec<(String, Value)>,
}

/// `--scheduled` from the wall clock when given as a duration from now.
fn parse_scheduled_now(text: &str) -> Result<String, String> {
    args::parse_scheduled(text, std::time::SystemTime::now())
}

#[derive(Debug, clap::Args)]
struct Receive {
    queue: String,
    /// At most this many messages (1 to 100).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH)))]
    max: u32,
    /// Wait up to this long for a message when none is there (at most 60s).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = args::parse_wait)]
    wait: Duration,
    /// Complete each message once it is printed.
    #[arg(long)]
    complete: bool,
    /// On a session queue: receive from this session (any free one when absent).
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// The session token an earlier receive printed, to go on with a session held.
    #[arg(long, value_name = "TOKEN", requires = "session")]
    session_token: Option<String>,
}

#[derive(Debug, clap::Args)]
struct Peek {
    queue: String,
    /// Start at this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    from: u64,
    /// At most this many messages (1 to 100).
    #[arg(long, value_name = "N", default_value_t = MAX_BATCH, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH)))]
    max: u32,
}

/// A received message's lock.
#[derive(Debug, clap::Args)]
struct Lock {
    queue: String,
    /// Its sequence number.
    #[arg(value_name = "SEQ")]
    sequence: i64,
    /// The lock token its receive printed.
    #[arg(value_name = "LOCKTOKEN")]
    lock_token: String,
}

pub fn queues(args: &QueuesArgs) -> ExitCode {
    remote::execute(
        "queues",
        || {
            Remote::new(
                args.url.clone(),
                &args.prefix,
                "queues",
                args.key.clone(),
                args.timeout,
            )
        },
        |client| async move { commands::run(&client, args.json, &args.command).await },
    )
}
