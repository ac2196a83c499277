//! Queue triggers: every message of a queue bound to a function (`queue = "…"` in
//! baton.toml) runs a durable instance of it, with the message's body as input.
//!
//! * A message is peek-locked, and its instance started with the idempotency key
//!   `queue/<queue>/<message id>`: a redelivery of the message (its lock expired because this
//!   node died, say) finds the instance it started instead of starting another.
//! * The lock is renewed while the instance runs (at half the queue's lock duration).
//! * When the instance has **completed**, the message is completed. When it has **failed**,
//!   the message is abandoned, so the queue's max delivery count and dead-letter queue apply;
//!   the next delivery rewinds the failed instance (it runs again from the operation that
//!   failed it, keeping what had succeeded). A **terminated** instance dead-letters its message
//!   (reason `InstanceTerminated`): someone decided it should not run.
//! * A body that is not JSON is given as a string; one that is not UTF-8 is dead-lettered
//!   (`UnreadableBody`). A message id reused with another body (after the duplicate-detection
//!   window, within the idempotency window) is dead-lettered too (`MessageIdReused`).
//! * One receiver per function takes as many messages as it has free handlers
//!   (`max_concurrent_calls`), long-polling when it has none.
//! * On a session queue a worker takes a session and handles its messages one after the
//!   other, in order, until it is empty; `max_concurrent_calls` sessions are handled at once.
//! * When the host stops, messages in hand are abandoned so that another node may take them
//!   at once; their instances carry on wherever the durable work is picked up.

use std::sync::Arc;
use std::time::Duration;

use baton_store::queues::{Message, QueueError, QueueStore, SessionChoice, Settle};
use baton_store::{InstanceRow, RuntimeStatus};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use crate::app::{App, Function};
use crate::durable::{BeginError, Control, ControlError, Instances};
use crate::queues::{MAX_WAIT, Queues};

/// The most messages one receive of a trigger takes.
const MAX_RECEIVE: usize = 100;

/// How long a worker waits after a failed receive before trying again.
const BACKOFF: Duration = Duration::from_secs(1);

/// The queue triggers of one host.
#[derive(Debug, Clone)]
pub struct QueueTriggers {
    instances: Arc<Instances>,
    queues: Queues,
    functions: Vec<Arc<Function>>,
}

/// How handling one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Handled {
    Completed,
    Abandoned,
    DeadLettered {
        reason: &'static str,
        description: String,
    },
    /// The lock was lost (or the host is stopping): the message is left to the queue.
    Left,
}

impl QueueTriggers {
    pub fn new(app: &App, instances: Arc<Instances>, queues: Queues) -> Self {
        let functions = app
            .functions
            .iter()
            .filter(|f| f.queue.is_some())
            .cloned()
            .map(Arc::new)
            .collect();
        Self {
            instances,
            queues,
            functions,
        }
    }

    /// True if some function is queue-triggered.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Handles messages until `stop` resolves, then abandons those in hand and returns.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let (tx, rx) = watch::channel(false);
        let mut triggers = tokio::task::JoinSet::new();
        for f in &self.functions {
            let me = self.clone();
            let f = Arc::clone(f);
            let rx = rx.clone();
            triggers.spawn(async move { me.serve(f, rx).await });
        }
        stop.await;
        let _ = tx.send(true);
        while triggers.join_next().await.is_some() {}
    }

    /// The trigger of `f`: on a session queue, `concurrency` workers each holding a session;
    /// on another, one receiver handing messages to up to `concurrency` handlers.
    async fn serve(&self, f: Arc<Function>, stop: watch::Receiver<bool>) {
        let Some(queue) = f.queue.clone() else {
            return;
        };
        let sessions = match self.queues.store().queue(&queue).await {
            Ok(Some(spec)) => spec.sessions,
            Ok(None) => {
                tracing::error!(function = %f.name, queue, "the trigger's queue does not exist");
                return;
            }
            Err(e) => {
                tracing::error!(function = %f.name, queue, error = %e, "cannot read the trigger's queue");
                return;
            }
        };
        if !sessions {
            return self.dispatch(f, &queue, stop).await;
        }
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..f.concurrency.max(1) {
            let (me, f, queue, stop) = (self.clone(), Arc::clone(&f), queue.clone(), stop.clone());
            workers.spawn(async move { me.sessions(&f, &queue, stop).await });
        }
        while workers.join_next().await.is_some() {}
    }

    /// Receives as many messages as there are free handlers (waiting for one to be free, then
    /// long-polling), and hands each to a handler of its own.
    async fn dispatch(&self, f: Arc<Function>, queue: &str, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(f.concurrency.max(1)));
        let mut handlers = tokio::task::JoinSet::new();
        while !*stop.borrow() {
            while handlers.try_join_next().is_some() {}
            let first = tokio::select! {
                _ = stop.changed() => break,
                p = Arc::clone(&slots).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while permits.len() < MAX_RECEIVE
                && let Ok(p) = Arc::clone(&slots).try_acquire_owned()
            {
                permits.push(p);
            }
            let got = tokio::select! {
                _ = stop.changed() => break,
                got = self.queues.receive(queue, permits.len(), MAX_WAIT, None) => got,
            };
            match got {
                Ok(got) => {
                    for m in got.messages {
                        let Some(permit) = permits.pop() else { break };
                        let (me, f, queue, mut stop) =
                            (self.clone(), Arc::clone(&f), queue.to_owned(), stop.clone());
                        handlers.spawn(async move {
                            me.handle(&f, &queue, m, &mut stop).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(function = %f.name, queue, error = %e, "receive failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => break,
                        () = tokio::time::sleep(BACKOFF) => {}
                    }
                }
            }
        }
        // Handlers abandon what they hold when they see the stop.
        while handlers.join_next().await.is_some() {}
    }

    /// One session worker of `f`: take a free session, handle it to its end, repeat.
    async fn sessions(&self, f: &Function, queue: &str, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let got = tokio::select! {
                _ = stop.changed() => return,
                got = self.queues.receive(queue, 1, MAX_WAIT, Some(SessionChoice::Next)) => got,
            };
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::warn!(function = %f.name, queue, error = %e, "receive failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        () = tokio::time::sleep(BACKOFF) => continue,
                    }
                }
            };
            for m in got.messages {
                self.handle(f, queue, m, &mut stop).await;
            }
            if let Some(lock) = got.session {
                self.drain_session(f, queue, lock.session_id, lock.token, &mut stop)
                    .await;
            }
        }
    }

    /// Handles the rest of a session this worker holds, in order, then releases it.
    async fn drain_session(
        &self,
        f: &Function,
        queue: &str,
        session_id: String,
        token: String,
        stop: &mut watch::Receiver<bool>,
    ) {
        while !*stop.borrow() {
            let choice = SessionChoice::Id {
                session_id: session_id.clone(),
                token: Some(token.clone()),
            };
            match self.queues.store().receive(queue, 1, Some(choice)).await {
                Ok(got) if !got.messages.is_empty() => {
                    for m in got.messages {
                        if self.handle(f, queue, m, stop).await == Handled::Left {
                            return;
                        }
                    }
                }
                Ok(_) => break,
                Err(QueueError::LockLost(_)) => return,
                Err(e) => {
                    tracing::warn!(function = %f.name, queue, session = %session_id, error = %e, "receive from a session failed");
                    break;
                }
            }
        }
        if let Err(e) = self
            .queues
            .store()
            .renew_session(queue, &session_id, &token, true)
            .await
        {
            tracing::debug!(queue, session = %session_id, error = %e, "the session's lock was already gone");
        }
    }

    /// Runs one message's instance to its end and settles the message accordingly.
    async fn handle(
        &self,
        f: &Function,
        queue: &str,
        m: Message,
        stop: &mut watch::Receiver<bool>,
    ) -> Handled {
        tracing::info!(
            function = %f.name,
            queue,
            "Trigger Details: MessageId: {}, SequenceNumber: {}, DeliveryCount: {}, SessionId: {}",
            m.message_id,
            m.sequence,
            m.delivery_count,
            m.session_id.as_deref().unwrap_or("(null)")
        );
        let handled = match self.run_instance(f, queue, &m, stop).await {
            Ok(h) => h,
            Err(e) => {
                // The store failed us: give the message back for another try.
                tracing::warn!(function = %f.name, queue, sequence = m.sequence, error = %e, "a queue-triggered start failed; the message is abandoned");
                Handled::Abandoned
            }
        };
        let Some(token) = m.lock_token.as_deref() else {
            return Handled::Left;
        };
        let how = match &handled {
            Handled::Completed => Settle::Complete,
            Handled::Abandoned => Settle::Abandon,
            Handled::DeadLettered {
                reason,
                description,
            } => Settle::DeadLetter {
                reason: (*reason).to_owned(),
                description: Some(description.clone()),
            },
            Handled::Left => return Handled::Left,
        };
        match self
            .queues
            .store()
            .settle(queue, m.sequence, token, how)
            .await
        {
            Ok(()) => handled,
            Err(e) => {
                tracing::info!(queue, sequence = m.sequence, error = %e, "the message could not be settled; it will be delivered again");
                Handled::Left
            }
        }
    }

    /// Starts (or finds, or rewinds) the message's instance and waits for its end, renewing
    /// the message's lock meanwhile.
    async fn run_instance(
        &self,
        f: &Function,
        queue: &str,
        m: &Message,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Handled, String> {
        let input = match std::str::from_utf8(&m.body) {
            Ok(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            }
            Err(_) => {
                return Ok(dead(
                    "UnreadableBody",
                    "the body is not UTF-8 text".to_owned(),
                ));
            }
        };
        let key = format!("queue/{queue}/{}", m.message_id);
        let reason = format!("New queue message detected on '{queue}'.");
        let row = match self
            .instances
            .begin_because(f, input, Some(&key), &reason)
            .await
        {
            Ok(begun) => begun.row().clone(),
            Err(BeginError::KeyReused { instance }) => {
                return Ok(dead(
                    "MessageIdReused",
                    format!(
                        "message id `{}` started instance `{instance}` with another body",
                        m.message_id
                    ),
                ));
            }
            Err(BeginError::Store(e)) => return Err(e.to_string()),
        };
        let id = row.id.clone();
        // An end at or before revision `after` belongs to an earlier delivery (every stored
        // revision is at least 1).
        let mut after = 0;
        if row.status == RuntimeStatus::Failed {
            match self
                .instances
                .control(
                    &id,
                    Control::Rewind {
                        reason: format!(
                            "delivery {} of message `{}`",
                            m.delivery_count, m.message_id
                        ),
                    },
                )
                .await
            {
                Ok(()) | Err(ControlError::Precondition(_)) => after = row.revision,
                Err(e) => return Err(e.to_string()),
            }
        }
        let spec = self
            .queues
            .store()
            .queue(queue)
            .await
            .map_err(|e| e.to_string())?;
        let lock_ms = spec.map_or(60_000, |s| s.lock_ms);
        let renew_every = Duration::from_millis(u64::try_from(lock_ms / 2).unwrap_or(1).max(1));
        loop {
            let waited = self.instances.wait_past(&id, after, renew_every);
            let row: Option<InstanceRow> = tokio::select! {
                _ = stop.changed() => return Ok(Handled::Abandoned),
                r = waited => r.map_err(|e| e.to_string())?,
            };
            let Some(row) = row else {
                // Purged while it ran: nothing will finish it.
                return Ok(dead(
                    "InstancePurged",
                    format!("instance `{id}` was purged before it finished"),
                ));
            };
            let ended = row.status.is_terminal() && row.revision > after;
            if ended {
                return Ok(match row.status {
                    RuntimeStatus::Completed => Handled::Completed,
                    RuntimeStatus::Terminated => dead(
                        "InstanceTerminated",
                        format!("instance `{id}` was terminated"),
                    ),
                    _ => Handled::Abandoned,
                });
            }
            let token = m.lock_token.as_deref().unwrap_or_default();
            match self.queues.store().renew(queue, m.sequence, token).await {
                Ok(_) => {}
                Err(QueueError::LockLost(_)) => {
                    tracing::info!(queue, sequence = m.sequence, instance = %id, "the message's lock was lost; its next delivery finds the instance");
                    return Ok(Handled::Left);
                }
                Err(e) => {
                    tracing::warn!(queue, sequence = m.sequence, error = %e, "renewing a message's lock failed")
                }
            }
        }
    }
}

fn dead(reason: &'static str, description: String) -> Handled {
    Handled::DeadLettered {
        reason,
        description,
    }
}
