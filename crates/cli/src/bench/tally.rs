//! What one connection counted: latencies (HDR histograms, microseconds), statuses, failures.
//!
//! Each connection keeps its own tally, so nothing is shared while the load runs; the tallies
//! are merged once at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::StatusCode;

/// Latencies are recorded in whole microseconds, from 1 µs up to an hour, with 3 significant
/// digits (a recorded value is within 0.1% of the true one).
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// A request that got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Transport {
    /// The TCP connection or the HTTP handshake failed.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The connection ended before the response was complete.
    Closed,
    /// The response was not valid HTTP, or another IO error.
    Protocol,
}

impl Transport {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Transport::Connect => "connect",
            Transport::Timeout => "timeout",
            Transport::Closed => "closed",
            Transport::Protocol => "protocol",
        }
    }

    pub(super) fn of(e: &hyper::Error) -> Transport {
        if e.is_timeout() {
            Transport::Timeout
        } else if e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
            Transport::Closed
        } else {
            Transport::Protocol
        }
    }
}

/// A histogram with the bounds every tally uses; creating it is the one fallible step, done once
/// per run and cloned for each connection.
pub(super) fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
}

pub(super) fn micros(d: Duration) -> u64 {
    // Nothing travels over TCP in under a microsecond; 0 would read as "not measured".
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[derive(Debug, Clone)]
pub(super) struct Tally {
    /// Every measured request: responses and transport errors.
    pub(super) requests: u64,
    /// Responses by status, 2xx included.
    pub(super) statuses: BTreeMap<u16, u64>,
    pub(super) transport: BTreeMap<Transport, u64>,
    /// Responses (of any status) whose body was not the echo of the request.
    pub(super) mismatched: u64,
    /// Open loop: from the intended send time to the end of the response. Closed loop: from the
    /// send to the end of the response.
    pub(super) latency: Histogram<u64>,
    /// Open loop only: from the actual send to the end of the response.
    pub(super) service: Histogram<u64>,
    /// Open loop only: how late each measured request was sent.
    pub(super) lag: Histogram<u64>,
    /// Open loop only: measured requests never sent because the run's time was up.
    pub(super) unsent: u64,
    /// When the last measured response ended, since the run's start.
    pub(super) last_end: Duration,
}

impl Tally {
    pub(super) fn new(histogram: &Histogram<u64>) -> Tally {
        Tally {
            requests: 0,
            statuses: BTreeMap::new(),
            transport: BTreeMap::new(),
            mismatched: 0,
            latency: histogram.clone(),
            service: histogram.clone(),
            lag: histogram.clone(),
            unsent: 0,
            last_end: Duration::ZERO,
        }
    }

    pub(super) fn response(&mut self, status: StatusCode, latency: Duration, matched: bool) {
        self.requests += 1;
        *self.statuses.entry(status.as_u16()).or_default() += 1;
        self.latency.saturating_record(micros(latency));
        if !matched {
            self.mismatched += 1;
        }
    }

    pub(super) fn failure(&mut self, kind: Transport) {
        self.requests += 1;
        *self.transport.entry(kind).or_default() += 1;
    }

    pub(super) fn ended_at(&mut self, since_start: Duration) {
        self.last_end = self.last_end.max(since_start);
    }

    /// Adds `other` into `self`.
    pub(super) fn merge(&mut self, other: &Tally) -> Result<(), hdrhistogram::AdditionError> {
        self.requests += other.requests;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (kind, n) in &other.transport {
            *self.transport.entry(*kind).or_default() += n;
        }
        self.mismatched += other.mismatched;
        self.latency.add(&other.latency)?;
        self.service.add(&other.service)?;
        self.lag.add(&other.lag)?;
        self.unsent += other.unsent;
        self.last_end = self.last_end.max(other.last_end);
        Ok(())
    }
}
