//! One clock for the whole shell, derived from tokio's so that paused time in tests moves
//! timestamps and timers together.

use baton_core::Timestamp;
use tokio::time::Instant;

/// Converts between tokio instants (for sleeping) and the core's epoch timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_instant: Instant,
    base_millis: i64,
}

impl Clock {
    /// Anchors the clock at the current wall-clock time.
    pub fn new() -> Self {
        let base_millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            base_instant: Instant::now(),
            base_millis,
        }
    }

    /// The current time as the core sees it.
    pub fn now(&self) -> Timestamp {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        Timestamp(
            self.base_millis
                .saturating_add(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The tokio instant at which `t` falls.
    pub fn instant_at(&self, t: Timestamp) -> Instant {
        let offset = t.millis().saturating_sub(self.base_millis).max(0);
        self.base_instant + std::time::Duration::from_millis(u64::try_from(offset).unwrap_or(0))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
