//! The host's queues: those `[queues]` declares are created (or brought up to date) at
//! start-up, others through the admin API; all live in the instance store. A receive may
//! long-poll: it waits, up to a bound, for a message to be sent, given back or come due.

use std::sync::Arc;
use std::time::Duration;

use baton_store::Store;
use baton_store::queues::{QueueError, QueueStore, Received, SessionChoice};

use crate::{AnyStore, App};

/// The longest a receive may wait for a message.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The queues of one host, on its store.
#[derive(Debug, Clone)]
pub struct Queues {
    store: Arc<AnyStore>,
}

impl Queues {
    /// Creates or updates every queue `[queues]` declares.
    pub async fn open(app: &App, store: Arc<AnyStore>) -> Result<Self, QueueError> {
        for (name, q) in &app.config.queues {
            store.put_queue(&q.spec(name)).await?;
        }
        Ok(Self { store })
    }

    /// The store's queue operations.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// Receives up to `max` messages, waiting up to `wait` (at most [`MAX_WAIT`]) for one when
    /// none is there: until a write may have made one receivable, or a scheduled message or a
    /// lock comes due.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        session: Option<SessionChoice>,
    ) -> Result<Received, QueueError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let wakeups = self.store.queue_wakeups();
        loop {
            // Registered before looking, so that a send between the look and the wait wakes us.
            let woken = wakeups.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let got = self.store.receive(queue, max, session.clone()).await?;
            let now = tokio::time::Instant::now();
            if !got.messages.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Release a session this call took with nothing in it, so another receiver may have
            // it (one the caller already held stays held).
            let took = !matches!(&session, Some(SessionChoice::Id { token: Some(_), .. }));
            if let Some(lock) = got.session.as_ref().filter(|_| took) {
                self.store
                    .renew_session(queue, &lock.session_id, &lock.token, true)
                    .await?;
            }
            let mut until = deadline;
            if let Some(due) = self.store.next_visible(queue).await? {
                let store_now = self.store.now().await?;
                let ms = u64::try_from(due.saturating_sub(store_now)).unwrap_or(0);
                until = until.min(now + Duration::from_millis(ms.max(1)));
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}
