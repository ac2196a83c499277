//! `baton bench`: a load generator, and the bare axum JSON echo it is compared against.
//!
//! The shell (`run`) turns arguments into a [`plan::Plan`], starts the runtimes, calls
//! [`execute::execute`] and prints the [`report::Report`]. The load itself is one task per
//! keep-alive HTTP/1.1 connection, sending with hyper's client connection directly so that the
//! client adds as little as possible per request; each connection tallies into its own HDR
//! histograms, merged at the end.
//!
//! Exit status: 0 when the run completed, even if requests failed (the report shows them);
//! 1 when it could not run (the target cannot be reached at all, a runtime cannot start);
//! 2 for bad arguments.

mod args;
mod connection;
mod echo;
mod execute;
mod pacer;
mod plan;
mod progress;
mod report;
mod schedule;
mod tally;
mod worker;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use hyper::Uri;

pub use args::BenchArgs;

use crate::problem;

pub fn run(args: BenchArgs) -> ExitCode {
    if args.echo_only {
        let any_free_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        return echo::run_alone(args.listen.unwrap_or(any_free_port));
    }
    // The in-process echo lives, on its own runtime, until this function returns.
    let (_echo, url) = match &args.url {
        Some(url) => (None, url.clone()),
        None => match start_echo() {
            Ok((rt, url)) => (Some(rt), url),
            Err(e) => return fail(1, "Cannot start the echo server", e),
        },
    };
    let plan = match plan::Plan::new(&args, url) {
        Ok(plan) => plan,
        Err(e) => return fail(2, "Invalid arguments", e),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(usize::from(threads));
    }
    let rt = match builder.thread_name("baton-bench").enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(1, "Cannot start the runtime", e),
    };
    // Fail fast, with the reason, when nothing listens there, rather than report a run made
    // only of connect errors.
    if let Err(e) = rt.block_on(tokio::net::TcpStream::connect(plan.addr)) {
        return fail(
            1,
            &format!("Cannot connect to {} ({})", plan.url, plan.addr),
            e,
        );
    }
    let report = match rt.block_on(execute::execute(plan, args.quiet)) {
        Ok(report) => report,
        Err(e) => return fail(1, "The load run failed", format!("{e:#}")),
    };
    if args.json {
        match serde_json::to_string_pretty(&report.summary()) {
            Ok(json) => println!("{json}"),
            Err(e) => return fail(1, "Cannot write the report", e),
        }
    } else {
        print!("{}", report.text());
    }
    if let Some(warning) = report.warning() {
        eprintln!("{warning}");
    }
    ExitCode::SUCCESS
}

fn start_echo() -> std::io::Result<(tokio::runtime::Runtime, Uri)> {
    let (rt, addr) = echo::start_in_process()?;
    let url = format!("http://{addr}{}", echo::PATH)
        .parse()
        .map_err(std::io::Error::other)?;
    Ok((rt, url))
}

fn fail(code: u8, title: &str, detail: impl std::fmt::Display) -> ExitCode {
    problem::print(&problem::usage(title, detail));
    ExitCode::from(code)
}
