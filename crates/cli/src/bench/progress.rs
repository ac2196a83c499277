//! The progress bar on standard error: elapsed / total and the live request rate.
//!
//! A ticker task reads the run's shared counter five times a second; the connections only bump
//! that counter, so drawing costs them nothing.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use super::plan::Stop;
use super::worker::Run;

const TICK: Duration = Duration::from_millis(200);

/// What the bar counts: time for a duration (or any open-loop run), requests for a count.
#[derive(Debug, Clone, Copy)]
enum Measure {
    Time { total: Duration },
    Requests { total: u64 },
}

#[derive(Debug)]
pub(super) struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing, unless `quiet` or standard error is not a terminal. Call from inside the
    /// runtime the load runs on.
    pub(super) fn start(run: &Arc<Run>, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let measure = match (&run.schedule, run.plan.stop) {
            (Some(schedule), _) => Measure::Time {
                total: schedule.length(),
            },
            (None, Stop::After(d)) => Measure::Time {
                total: run.plan.warmup + d,
            },
            (None, Stop::Requests(n)) => Measure::Requests { total: n },
        };
        let len = match measure {
            Measure::Time { total } => total.as_millis() as u64,
            Measure::Requests { total } => total,
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let ticker = tokio::spawn(tick(Arc::clone(run), bar.clone(), measure));
        Progress {
            bar,
            ticker: Some(ticker),
        }
    }

    pub(super) fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

async fn tick(run: Arc<Run>, bar: ProgressBar, measure: Measure) {
    let mut interval = tokio::time::interval(TICK);
    let mut last = (Instant::now(), 0u64);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let finished = run.finished.load(Ordering::Relaxed);
        let rate = (finished - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
        last = (now, finished);
        let elapsed = run.start.elapsed();
        let phase = if elapsed < run.measure_start() {
            "warm-up  "
        } else {
            ""
        };
        match measure {
            Measure::Time { total } => {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(format!(
                    "{phase}{:.1}s / {:.1}s  {rate:.0} req/s",
                    elapsed.as_secs_f64(),
                    total.as_secs_f64()
                ));
            }
            Measure::Requests { total } => {
                let measured = run.tickets.load(Ordering::Relaxed).min(total);
                bar.set_position(measured);
                bar.set_message(format!("{phase}{measured} / {total}  {rate:.0} req/s"));
            }
        }
    }
}
