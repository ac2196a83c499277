//! When requests are due and which ones count: pure functions of the plan and the time elapsed
//! since the run started, so they are tested without a clock.

use std::time::Duration;

use super::plan::Stop;

/// Where a closed-loop connection is at `elapsed` into the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Send, but leave the request out of the figures.
    Warmup,
    /// Send and count (with `Stop::Requests`, only if a request is still left to take).
    Measured,
    /// Send nothing more.
    Done,
}

/// The phase of a closed-loop request about to be sent `elapsed` after the start.
pub(super) fn closed_phase(warmup: Duration, stop: Stop, elapsed: Duration) -> Phase {
    if elapsed < warmup {
        return Phase::Warmup;
    }
    match stop {
        Stop::After(duration) if elapsed >= warmup + duration => Phase::Done,
        _ => Phase::Measured,
    }
}

/// The open loop's timetable. Request `i` (numbered over all connections from 0) is due `i /
/// rate` after the start, and goes on connection `i % connections`: consecutive requests
/// alternate between connections, so each connection sends at `rate / connections` and the total
/// is evenly spread. Requests due during the warm-up come first and are not counted.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Schedule {
    per_second: f64,
    connections: u64,
    /// Requests `0..first_measured` are the warm-up.
    first_measured: u64,
    /// Requests `first_measured..end` are measured.
    end: u64,
}

impl Schedule {
    pub(super) fn new(per_second: f64, connections: usize, warmup: Duration, stop: Stop) -> Self {
        let first_measured = due_before(warmup, per_second);
        let end = match stop {
            Stop::After(duration) => due_before(warmup + duration, per_second),
            Stop::Requests(n) => first_measured.saturating_add(n),
        };
        Schedule {
            per_second,
            connections: connections.max(1) as u64,
            first_measured,
            end,
        }
    }

    /// How long after the start request `i` is due.
    pub(super) fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.per_second)
    }

    pub(super) fn is_measured(&self, i: u64) -> bool {
        (self.first_measured..self.end).contains(&i)
    }

    /// How many requests there are, warm-up included.
    pub(super) fn total(&self) -> u64 {
        self.end
    }

    /// The connection that sends request `i`.
    pub(super) fn connection_of(&self, i: u64) -> usize {
        (i % self.connections) as usize
    }

    /// The requests connection `connection` sends, in order.
    pub(super) fn requests_of(&self, connection: usize) -> impl Iterator<Item = u64> + use<> {
        let step = self.connections as usize;
        (connection as u64..self.end).step_by(step)
    }

    /// When the last request is due (the schedule's length).
    pub(super) fn length(&self) -> Duration {
        self.due(self.end)
    }

    /// When the measured requests begin.
    pub(super) fn measure_start(&self) -> Duration {
        self.due(self.first_measured)
    }
}

/// How many requests are due strictly before `elapsed`: the `i` with `i / rate < elapsed`.
fn due_before(elapsed: Duration, per_second: f64) -> u64 {
    // The tolerance keeps `1s × 200/s` at 200 when the product lands a hair above 200.
    let exact = elapsed.as_secs_f64() * per_second;
    (exact - 1e-9).ceil().max(0.0) as u64
}
