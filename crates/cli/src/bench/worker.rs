//! The loop of one connection: one task, one request in flight at a time, until the plan says
//! stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::connection::{Answer, Connection};
use super::pacer::Gates;
use super::plan::{Plan, Stop};
use super::schedule::{Phase, Schedule, closed_phase};
use super::tally::{Tally, Transport, micros};

/// After a failed connect, a closed-loop connection waits this long before trying again, so an
/// absent server is not hammered in a tight loop (each attempt still counts as a failure).
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What all connections of one run share.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) plan: Plan,
    pub(super) start: Instant,
    /// Open loop only.
    pub(super) schedule: Option<Schedule>,
    /// Open loop only: where each connection waits for its next request to be due.
    pub(super) gates: Arc<Gates>,
    /// Closed loop with `Stop::Requests`: measured requests taken so far (some past the
    /// count, by connections finding there is none left).
    pub(super) tickets: AtomicU64,
    /// Requests finished so far, warm-up included, for the progress bar's rate.
    pub(super) finished: AtomicU64,
}

impl Run {
    pub(super) fn new(plan: Plan, schedule: Option<Schedule>, start: Instant) -> Run {
        let gates = match schedule {
            Some(_) => Gates::new(plan.connections),
            None => Gates::new(0),
        };
        Run {
            plan,
            start,
            gates: Arc::new(gates),
            schedule,
            tickets: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        }
    }

    /// When the measured part begins, since the start.
    pub(super) fn measure_start(&self) -> Duration {
        match &self.schedule {
            Some(schedule) => schedule.measure_start(),
            None => self.plan.warmup,
        }
    }
}

/// Runs connection number `index` of `run` to the end and returns what it counted.
pub(super) async fn connection(run: Arc<Run>, index: usize, tally: Tally) -> Tally {
    match &run.schedule {
        Some(schedule) => open_loop(&run, schedule, index, tally).await,
        None => closed_loop(&run, tally).await,
    }
}

async fn closed_loop(run: &Run, mut tally: Tally) -> Tally {
    let plan = &run.plan;
    let mut conn = None;
    loop {
        let measured = match closed_phase(plan.warmup, plan.stop, run.start.elapsed()) {
            Phase::Done => break,
            Phase::Warmup => false,
            Phase::Measured => match plan.stop {
                Stop::Requests(n) if run.tickets.fetch_add(1, Ordering::Relaxed) >= n => break,
                _ => true,
            },
        };
        let sent = Instant::now();
        let outcome = attempt(plan, &mut conn).await;
        let ended = Instant::now();
        run.finished.fetch_add(1, Ordering::Relaxed);
        let refused = matches!(outcome, Err(Transport::Connect));
        if measured {
            record(run, &mut tally, outcome, ended - sent);
            tally.ended_at(ended - run.start);
        }
        if refused {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
    }
    tally
}

async fn open_loop(run: &Run, schedule: &Schedule, index: usize, mut tally: Tally) -> Tally {
    let plan = &run.plan;
    // A connection that has fallen behind keeps sending late (its latency counts the wait) until
    // the schedule's end plus one request timeout; what is still unsent then is counted as such.
    let cutoff = run.start + schedule.length() + plan.timeout;
    let mut conn = None;
    let mut requests = schedule.requests_of(index);
    while let Some(i) = requests.next() {
        if !run.gates.pass(index).await {
            break;
        }
        let due = run.start + schedule.due(i);
        let sent = Instant::now();
        if sent > cutoff {
            let left = std::iter::once(i).chain(requests.by_ref());
            tally.unsent += left.filter(|&i| schedule.is_measured(i)).count() as u64;
            break;
        }
        let outcome = attempt(plan, &mut conn).await;
        let ended = Instant::now();
        run.finished.fetch_add(1, Ordering::Relaxed);
        if schedule.is_measured(i) {
            if outcome.is_ok() {
                tally.service.saturating_record(micros(ended - sent));
            }
            tally
                .lag
                .saturating_record(micros(sent.saturating_duration_since(due)));
            record(
                run,
                &mut tally,
                outcome,
                ended.saturating_duration_since(due),
            );
            tally.ended_at(ended - run.start);
        }
    }
    tally
}

/// One request on `conn`, replacing the connection first if it has closed. Bounded by the
/// plan's timeout, connecting included; after any failure `conn` is left empty.
async fn attempt(plan: &Plan, conn: &mut Option<Connection>) -> Result<Answer, Transport> {
    let exchange = async {
        let reusable = match conn.take() {
            Some(mut c) => c.is_usable().await.then_some(c),
            None => None,
        };
        let mut c = match reusable {
            Some(c) => c,
            None => Connection::open(plan.addr)
                .await
                .map_err(|_| Transport::Connect)?,
        };
        let answer = c
            .exchange(plan.request.request(), plan.expect_echo.is_some())
            .await?;
        *conn = Some(c);
        Ok(answer)
    };
    tokio::time::timeout(plan.timeout, exchange)
        .await
        .unwrap_or(Err(Transport::Timeout))
}

fn record(run: &Run, tally: &mut Tally, outcome: Result<Answer, Transport>, latency: Duration) {
    match outcome {
        Ok(answer) => {
            let matched = match (&run.plan.expect_echo, &answer.body) {
                (Some(expected), Some(body)) => expected.matches(body),
                _ => true,
            };
            tally.response(answer.status, latency, matched);
        }
        Err(kind) => tally.failure(kind),
    }
}
