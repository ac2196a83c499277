//! The figures of a finished run, as text for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::plan::{Pace, Stop};
use super::tally::Tally;

/// A request sent this much later than due counts as late. The pacer thread itself wakes within
/// tens of microseconds; a millisecond is the client or the machine not keeping up.
const LATE_AFTER_US: u64 = 1_000;

/// More than this share of late requests is reported: the upper latency percentiles then
/// include the client's lateness.
const LATE_SHARE_WARNING: f64 = 0.01;

/// A throughput under this share of the requested rate is reported as the rate not met.
const RATE_MET: f64 = 0.95;

#[derive(Debug)]
pub(super) struct Report {
    pub(super) method: String,
    pub(super) url: String,
    pub(super) pace: Pace,
    pub(super) connections: usize,
    pub(super) stop: Stop,
    pub(super) warmup: Duration,
    pub(super) checked_echo: bool,
    pub(super) tally: Tally,
    /// From the start of the measured part to the end of its last response.
    pub(super) elapsed: Duration,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Percentiles {
    pub(super) p50: u64,
    pub(super) p90: u64,
    pub(super) p99: u64,
    pub(super) p99_9: u64,
    pub(super) max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    fn text(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p99_9),
            ms(self.max)
        )
    }

    fn summary(&self) -> PercentilesMs {
        let ms = |us: u64| us as f64 / 1000.0;
        PercentilesMs {
            p50: ms(self.p50),
            p90: ms(self.p90),
            p99: ms(self.p99),
            p99_9: ms(self.p99_9),
            max: ms(self.max),
        }
    }
}

/// `x` to the nearest `1 / per_unit`, so the JSON shows 5.001, not 5.0009969090000002.
fn round(x: f64, per_unit: f64) -> f64 {
    (x * per_unit).round() / per_unit
}

/// Microseconds as milliseconds with 3 decimals.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

impl Report {
    pub(super) fn requests(&self) -> u64 {
        self.tally.requests
    }

    /// Responses with a 2xx status.
    pub(super) fn ok(&self) -> u64 {
        self.tally
            .statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, n)| n)
            .sum()
    }

    /// Non-2xx responses by status.
    pub(super) fn status_errors(&self) -> BTreeMap<u16, u64> {
        self.tally
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(status, n)| (*status, *n))
            .collect()
    }

    pub(super) fn transport_errors(&self) -> u64 {
        self.tally.transport.values().sum()
    }

    /// Non-2xx responses and transport errors.
    pub(super) fn errors(&self) -> u64 {
        self.status_errors().values().sum::<u64>() + self.transport_errors()
    }

    pub(super) fn throughput(&self) -> f64 {
        match self.elapsed.as_secs_f64() {
            s if s > 0.0 => self.requests() as f64 / s,
            _ => 0.0,
        }
    }

    /// Latency of every measured response (from the intended send time in the open loop).
    pub(super) fn latency(&self) -> Percentiles {
        Percentiles::of(&self.tally.latency)
    }

    fn is_open(&self) -> bool {
        matches!(self.pace, Pace::Open { .. })
    }

    /// Open loop: measured requests sent late (see `LATE_AFTER_US`).
    fn late(&self) -> u64 {
        self.tally.lag.count_between(LATE_AFTER_US + 1, u64::MAX)
    }

    fn late_share(&self) -> f64 {
        self.late() as f64 / self.tally.lag.len().max(1) as f64
    }

    /// Open loop: whether enough requests went out late to show in the percentiles. Lateness
    /// comes from the client's side (its threads not getting a CPU in time, or connections
    /// still waiting for earlier responses), and is counted in the latency on purpose.
    fn sent_late(&self) -> bool {
        self.is_open() && self.late_share() > LATE_SHARE_WARNING
    }

    /// Open loop: whether the client fell behind the requested rate for good.
    pub(super) fn fell_behind(&self) -> bool {
        match self.pace {
            Pace::Open { per_second } => {
                self.tally.unsent > 0 || self.throughput() < per_second * RATE_MET
            }
            Pace::Closed => false,
        }
    }

    /// One line for standard error when something went wrong, so it is seen even with `--json`.
    pub(super) fn warning(&self) -> Option<String> {
        let mut problems = Vec::new();
        if self.errors() > 0 {
            problems.push(format!(
                "{} of {} requests failed",
                self.errors(),
                self.requests()
            ));
        }
        if self.tally.mismatched > 0 {
            problems.push(format!(
                "{} response bodies differ from the request body",
                self.tally.mismatched
            ));
        }
        if self.fell_behind() {
            problems.push("the client fell behind the requested rate".to_owned());
        } else if self.sent_late() {
            problems.push(format!(
                "{:.1}% of the requests were sent late, which shows in the upper latency percentiles",
                self.late_share() * 100.0
            ));
        }
        (!problems.is_empty()).then(|| format!("warning: {}", problems.join("; ")))
    }

    fn load_text(&self) -> String {
        let pace = match self.pace {
            Pace::Closed => format!("closed loop, {} connections", self.connections),
            Pace::Open { per_second } => format!(
                "open loop, {per_second} req/s over {} connections",
                self.connections
            ),
        };
        let stop = match self.stop {
            Stop::After(d) => humantime::format_duration(d).to_string(),
            Stop::Requests(n) => format!("{n} requests"),
        };
        let warmup = humantime::format_duration(self.warmup);
        format!("{pace}, {stop} after a {warmup} warm-up")
    }

    /// The report for people.
    pub(super) fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "{label:<13}{value}");
        };
        line("target", format!("{} {}", self.method, self.url));
        line("load", self.load_text());
        line(
            "requests",
            format!(
                "{} in {:.3} s, {} ok, {} errors",
                self.requests(),
                self.elapsed.as_secs_f64(),
                self.ok(),
                self.errors()
            ),
        );
        line("throughput", format!("{:.1} req/s", self.throughput()));
        if self.is_open() {
            line(
                "latency ms",
                format!("{}   (from the intended send time)", self.latency().text()),
            );
            line(
                "service ms",
                format!(
                    "{}   (from the actual send)",
                    Percentiles::of(&self.tally.service).text()
                ),
            );
            line(
                "send lag ms",
                format!(
                    "p50 {}  p99 {}  max {}",
                    ms(self.tally.lag.value_at_quantile(0.5)),
                    ms(self.tally.lag.value_at_quantile(0.99)),
                    ms(self.tally.lag.max())
                ),
            );
        } else {
            line("latency ms", self.latency().text());
        }
        if self.errors() > 0 {
            let share = self.errors() as f64 * 100.0 / self.requests().max(1) as f64;
            line(
                "FAILED",
                format!(
                    "{} of {} requests ({share:.1}%)",
                    self.errors(),
                    self.requests()
                ),
            );
            for (status, n) in self.status_errors() {
                line("", format!("status {status}: {n}"));
            }
            for (kind, n) in &self.tally.transport {
                line("", format!("transport {}: {n}", kind.as_str()));
            }
        }
        if self.tally.mismatched > 0 {
            line(
                "MISMATCHED",
                format!(
                    "{} response bodies differ from the request body",
                    self.tally.mismatched
                ),
            );
        }
        if let Pace::Open { per_second } = self.pace
            && self.fell_behind()
        {
            line(
                "BEHIND",
                format!(
                    "the rate was not met: {:.1} of {per_second} req/s, {} requests never sent",
                    self.throughput(),
                    self.tally.unsent
                ),
            );
        }
        if self.sent_late() {
            line(
                "LATE",
                format!(
                    "{} requests ({:.1}%) sent over {} ms after due: the client's side was late \
                     (a thread waiting for a CPU, or a connection for an earlier response); \
                     latency counts the wait, service time does not",
                    self.late(),
                    self.late_share() * 100.0,
                    ms(LATE_AFTER_US)
                ),
            );
        }
        out
    }

    /// The report for scripts.
    pub(super) fn summary(&self) -> Summary {
        let open = self.is_open();
        Summary {
            method: self.method.clone(),
            url: self.url.clone(),
            mode: if open { "open" } else { "closed" },
            connections: self.connections,
            rate: match self.pace {
                Pace::Open { per_second } => Some(per_second),
                Pace::Closed => None,
            },
            warmup_s: self.warmup.as_secs_f64(),
            duration_s: match self.stop {
                Stop::After(d) => Some(d.as_secs_f64()),
                Stop::Requests(_) => None,
            },
            planned_requests: match self.stop {
                Stop::Requests(n) => Some(n),
                Stop::After(_) => None,
            },
            requests: self.requests(),
            ok: self.ok(),
            errors: Errors {
                total: self.errors(),
                by_status: self
                    .status_errors()
                    .into_iter()
                    .map(|(status, n)| (status.to_string(), n))
                    .collect(),
                transport: self
                    .tally
                    .transport
                    .iter()
                    .map(|(kind, n)| (kind.as_str(), *n))
                    .collect(),
            },
            mismatched_bodies: self.checked_echo.then_some(self.tally.mismatched),
            elapsed_s: round(self.elapsed.as_secs_f64(), 1e3),
            throughput_rps: round(self.throughput(), 10.0),
            latency_ms: self.latency().summary(),
            service_time_ms: open.then(|| Percentiles::of(&self.tally.service).summary()),
            lag_ms: open.then(|| Percentiles::of(&self.tally.lag).summary()),
            late: open.then(|| self.late()),
            unsent: open.then_some(self.tally.unsent),
            fell_behind: open.then(|| self.fell_behind()),
        }
    }
}

/// The JSON form of a report (`--json`).
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    method: String,
    url: String,
    /// `closed` or `open`.
    mode: &'static str,
    connections: usize,
    /// Open loop: the requested rate, per second.
    rate: Option<f64>,
    warmup_s: f64,
    /// The measured duration asked for (`--duration`), or
    duration_s: Option<f64>,
    /// the number of measured requests asked for (`--requests`).
    planned_requests: Option<u64>,
    /// Measured requests done: responses of any status and transport errors.
    requests: u64,
    ok: u64,
    errors: Errors,
    /// With `--check-echo` or `--echo`.
    mismatched_bodies: Option<u64>,
    elapsed_s: f64,
    throughput_rps: f64,
    latency_ms: PercentilesMs,
    service_time_ms: Option<PercentilesMs>,
    lag_ms: Option<PercentilesMs>,
    late: Option<u64>,
    unsent: Option<u64>,
    fell_behind: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Errors {
    total: u64,
    by_status: BTreeMap<String, u64>,
    transport: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
struct PercentilesMs {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}
