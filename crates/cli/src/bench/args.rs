//! The command line of `baton bench`, and the parsers of its values.
//!
//! Every value is checked here, so a bad argument is a clap error (exit status 2) before anything
//! connects anywhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgGroup;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};

const GUIDE: &str = "\
Closed loop (the default): --connections keep-alive HTTP/1.1 connections each send requests back to
back. Open loop (--rate): requests are due at a fixed total rate, spread evenly over the
connections, and latency is measured from each request's due time, so a server that makes the
client wait is not hidden by the waiting (coordinated omission). Responses other than 2xx and
requests with no response are counted and reported as failures; the exit status is still 0.

The baseline to compare Baton's HTTP functions with is a bare axum JSON echo: POST /echo parses
the body into a serde_json::Value and answers it as JSON, served by axum 0.8 on a multi-thread
tokio runtime with 2 worker threads. The fairer comparison runs it as its own process, as Baton
runs apart from its client:

  baton bench --echo-only --listen 127.0.0.1:7099 &
  baton bench --url http://127.0.0.1:7099/echo --body-json '{\"Name\":{\"First\":\"John\"}}'
  baton bench --url http://127.0.0.1:7099/echo --body-json '{\"Name\":{\"First\":\"John\"}}' --rate 10000

--echo instead serves the same echo inside the load generator's process: handy, but client and
server then share a process.";

/// The arguments of `baton bench`; `GUIDE` below is what `--help` says about them as a whole.
#[derive(Debug, clap::Args)]
#[command(
    group(ArgGroup::new("target").required(true).args(["url", "echo", "echo_only"])),
    after_help = GUIDE
)]
pub struct BenchArgs {
    /// The URL to load (http:// only; usually a loopback address). Nothing else is contacted.
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub(super) url: Option<Uri>,

    /// Start the bare axum JSON echo server in this process (127.0.0.1, a free port) and load
    /// its `/echo`. Checks every response body against the request body (`--check-echo`).
    #[arg(long)]
    pub(super) echo: bool,

    /// Only run the bare axum JSON echo server (`POST /echo`), until the process is killed, so
    /// that it can be loaded from another process. Prints its URL on standard output.
    #[arg(long)]
    pub(super) echo_only: bool,

    /// The address the `--echo-only` server listens on [default: 127.0.0.1:0, a free port].
    // `requires = "echo_only"` would not do: clap counts a flag's implicit `false` as present.
    // Conflicting with the other two targets comes to the same, as one target is required.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["url", "echo"])]
    pub(super) listen: Option<SocketAddr>,

    /// The request method.
    #[arg(long, short = 'X', default_value = "POST", value_parser = parse_method)]
    pub(super) method: Method,

    /// A file whose bytes are the request body.
    #[arg(long, value_name = "FILE", conflicts_with = "body_json")]
    pub(super) body: Option<PathBuf>,

    /// The request body, a JSON document given inline. With `--echo` and no body,
    /// `{"Name":{"First":"John"}}` is sent.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(super) body_json: Option<String>,

    /// A request header, `Name: value`; repeatable. With a body, `content-type:
    /// application/json` is sent unless a content-type is given here.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,

    /// Keep-alive connections, each with one request in flight at a time.
    #[arg(long, short = 'c', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(super) connections: u32,

    /// How long to measure, after the warm-up (`10s`, `500ms`, `1m`).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_positive_duration, conflicts_with = "requests")]
    pub(super) duration: Duration,

    /// Measure this many requests instead of a duration.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) requests: Option<u64>,

    /// Open loop: send this many requests per second in all, spread evenly over the
    /// connections. A connection whose previous response has not arrived sends late, and the
    /// report says how late.
    #[arg(long, short = 'r', value_name = "PER_SECOND", value_parser = parse_rate)]
    pub(super) rate: Option<f64>,

    /// Load sent first and left out of the figures (`0s` for none).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(super) warmup: Duration,

    /// A request not answered within this time counts as a transport error (`timeout`) and its
    /// connection is replaced.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub(super) timeout: Duration,

    /// Worker threads of the load generator's runtime [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) threads: Option<u16>,

    /// Count responses whose body differs from the request body (compared as JSON when the
    /// bytes differ) as mismatches. Implied by `--echo`.
    #[arg(long)]
    pub(super) check_echo: bool,

    /// Print the report as one JSON document.
    #[arg(long)]
    pub(super) json: bool,

    /// No progress bar (it is also hidden when standard error is not a terminal).
    #[arg(long, short)]
    pub(super) quiet: bool,
}

fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("only http:// URLs are supported, not {other}://")),
        None => {
            return Err("the URL needs a scheme and a host, like http://127.0.0.1:8080/".into());
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(uri)
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())
}

fn parse_json(s: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not JSON: {e}"))
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got `{s}`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("bad header name `{}`: {e}", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|e| format!("bad value for header `{name}`: {e}"))?;
    Ok((name, value))
}

/// `10s`, `500ms`, `1m`, `0s`.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration like 10s, 500ms, 1m)"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        // Below one request a day the schedule's arithmetic would overflow a Duration.
        Ok(r) if r.is_finite() && r >= 1e-5 => Ok(r),
        Ok(_) => Err("must be a positive number of requests per second".into()),
        Err(e) => Err(e.to_string()),
    }
}
