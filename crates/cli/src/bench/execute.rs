//! One run: a task per connection, then their tallies merged into a report.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

use super::pacer;
use super::plan::{Pace, Plan};
use super::progress::Progress;
use super::report::Report;
use super::schedule::Schedule;
use super::tally::{self, Tally};
use super::worker::{self, Run};

/// Loads the plan's target and reports. Must run inside a tokio runtime; the connections are
/// spawned on it. `Err` only when the run cannot happen (no thread for the pacer) or for a
/// broken invariant (a connection task panicked): a failing target is data in the report.
pub(super) async fn execute(plan: Plan, quiet: bool) -> anyhow::Result<Report> {
    let histogram = tally::histogram().context("cannot create the latency histogram")?;
    let schedule = match plan.pace {
        Pace::Open { per_second } => Some(Schedule::new(
            per_second,
            plan.connections,
            plan.warmup,
            plan.stop,
        )),
        Pace::Closed => None,
    };
    let connections = plan.connections;
    let run = Arc::new(Run::new(plan, schedule, Instant::now()));
    if let Some(schedule) = &run.schedule {
        pacer::start(schedule.clone(), run.start, Arc::clone(&run.gates))
            .context("cannot start the pacer thread")?;
    }
    let progress = Progress::start(&run, quiet);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            tokio::spawn(worker::connection(
                Arc::clone(&run),
                i,
                Tally::new(&histogram),
            ))
        })
        .collect();
    let mut total = Tally::new(&histogram);
    for task in tasks {
        let tally = task.await.context("a connection's task failed")?;
        total
            .merge(&tally)
            .context("cannot merge the latency histograms")?;
    }
    progress.finish();
    let plan = &run.plan;
    Ok(Report {
        method: plan.request.method().to_string(),
        url: plan.url.to_string(),
        pace: plan.pace,
        connections: plan.connections,
        stop: plan.stop,
        warmup: plan.warmup,
        checked_echo: plan.expect_echo.is_some(),
        elapsed: total.last_end.saturating_sub(run.measure_start()),
        tally: total,
    })
}
