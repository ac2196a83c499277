//! The open loop's clock: one thread that releases each request to its connection when due.
//!
//! Each connection could sleep on a tokio timer until its next request is due, but tokio's
//! timers tick once a millisecond, so every request would go out up to a millisecond late and,
//! since latency is measured from the due time, a loopback server answering in 100 µs would
//! look ten times slower than it is. A thread sleeping with `std::thread::sleep` wakes within
//! tens of microseconds; it hands each due request to its connection as a semaphore permit.
//! Permits pile up when a connection is still waiting for an earlier response, and the
//! connection then sends at once, late, the lateness counted in its latency.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::schedule::Schedule;

/// One gate per connection; connection `c` takes a permit before each of its requests.
#[derive(Debug)]
pub(super) struct Gates(Vec<Semaphore>);

impl Gates {
    pub(super) fn new(connections: usize) -> Gates {
        Gates((0..connections).map(|_| Semaphore::new(0)).collect())
    }

    /// Waits until connection `c`'s next request is due. `false` if it never will be.
    pub(super) async fn pass(&self, c: usize) -> bool {
        match self.0.get(c) {
            Some(gate) => gate.acquire().await.map(|p| p.forget()).is_ok(),
            None => false,
        }
    }

    fn open(&self, c: usize) {
        if let Some(gate) = self.0.get(c) {
            gate.add_permits(1);
        }
    }

    /// No more requests: every `pass` still waiting or to come returns `false`.
    fn close(&self) {
        self.0.iter().for_each(Semaphore::close);
    }
}

/// Starts the thread that opens the gates on `schedule`'s times from `start`. It ends by itself
/// once the last request is due, so it is not joined.
pub(super) fn start(schedule: Schedule, start: Instant, gates: Arc<Gates>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("baton-bench-pacer".into())
        .spawn(move || {
            // Should the thread die, the connections must not wait forever.
            let _close_on_panic = CloseOnPanic(&gates);
            for i in 0..schedule.total() {
                let due = start + schedule.due(i);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                gates.open(schedule.connection_of(i));
            }
        })?;
    Ok(())
}

struct CloseOnPanic<'a>(&'a Gates);

impl Drop for CloseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
        }
    }
}
