//! [`QueueStore`] on PostgreSQL: the semantics of the SQLite store's queues (the conformance
//! suite checks both), made safe for many transactions at once on several nodes.
//!
//! * **Tables**: `queues` (settings and the next sequence number), `queue_messages` (the
//!   dead-letter sub-queue is a flag on the same rows), `queue_duplicates` (ids accepted
//!   within the duplicate-detection window) and `queue_sessions` (session locks).
//!   `visible_at` is when a message can next be received: its scheduled time while unlocked,
//!   its lock's expiry while locked, so an expired lock needs no sweep to become receivable.
//!   `lock_fence` grows at every delivery; a lock token is `"<sequence>.<fence>"`, a session
//!   lock token the session's fence.
//! * **One clock**: an operation reads `baton_now()` once, with the queue's settings, and
//!   decides everything by it ([`rules`] holds those decisions).
//! * **Who waits for whom**: a send holds its queue's row, so one queue's sends take sequence
//!   numbers and check duplicates one after the other; receivers lock messages with
//!   `SKIP LOCKED` and never get the same one; a session is taken by an upsert that only
//!   succeeds while its lock is free, so it has one holder; settlements lock the message's
//!   row before checking the token. [`receive`] and [`send`] say more.
//! * **Wake-ups**: a write that may make a message receivable (a send, an abandon, a redrive,
//!   a released session) sends `q:<queue>` on the schema's channel in its transaction, for
//!   the other nodes, and wakes this node's receivers of the queue after its commit.
//!
//! Each method runs on a pooled connection and is tried again, like the rest of the store,
//! when it failed without writing anything (or may safely run twice).

mod reads;
mod receive;
mod rows;
mod rules;
mod send;
mod settle;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_store::queues::{
    Message, NewMessage, QueueError, QueueSpec, QueueStats, QueueStore, Received, Sent,
    SessionChoice, Settle,
};
use baton_store::{CommitError, Millis, StoreError};
use deadpool_postgres::Object;

use crate::{PostgresStore, listen};
use rows::Outcome;

/// The `NOTIFY` payload that wakes `queue`'s receivers.
fn wake_payload(queue: &str) -> String {
    format!("{}{queue}", listen::QUEUE)
}

fn flatten<T>(r: Outcome<T>) -> Result<T, QueueError> {
    match r {
        Ok(inner) => inner,
        Err(CommitError::Store(e)) => Err(QueueError::Store(e)),
        Err(other) => Err(QueueError::Store(StoreError::Permanent(other.to_string()))),
    }
}

impl PostgresStore {
    /// Runs `op` on a pooled connection, and again on a fresh one while
    /// [`PostgresStore::again`] says so. (`op` gets the connection itself rather than a
    /// borrow, so that its future needs no lifetime tied to the call.)
    async fn queue_op<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T, QueueError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Outcome<T>>,
    {
        let mut attempt = 0;
        loop {
            let outcome = match self.client().await {
                Ok(c) => op(c).await,
                Err(e) => Err(CommitError::Store(e)),
            };
            if !Self::again(&outcome, idempotent, attempt) {
                return flatten(outcome);
            }
            attempt += 1;
            tracing::debug!(attempt, "retrying a queue operation");
            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
        }
    }

    /// Wakes this node's receivers of `queue` (other nodes hear the `NOTIFY` the write sent).
    fn wake_queue(&self, queue: &str) {
        self.queue_notify(queue).notify_waiters();
    }
}

/// The outcome of a read that refuses nothing: its only failures are the database's.
fn read<T>(r: Result<T, CommitError>) -> Outcome<T> {
    r.map(Ok)
}

impl QueueStore for PostgresStore {
    async fn put_queue(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        self.queue_op(true, |c| async move { send::put_queue(&c, spec).await })
            .await
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, QueueError> {
        self.queue_op(false, |mut c| async move {
            send::delete_queue(&mut c, name).await
        })
        .await
    }

    async fn queues(&self) -> Result<Vec<QueueSpec>, QueueError> {
        self.queue_op(true, |c| async move { read(reads::queues(&c).await) })
            .await
    }

    async fn queue(&self, name: &str) -> Result<Option<QueueSpec>, QueueError> {
        self.queue_op(true, |c| async move { read(reads::queue(&c, name).await) })
            .await
    }

    async fn enqueue(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Sent>, QueueError> {
        let (channel, messages) = (self.channel.as_str(), messages.as_slice());
        let sent = self
            .queue_op(false, |mut c| async move {
                send::enqueue(&mut c, channel, queue, messages).await
            })
            .await?;
        if sent.iter().any(|s| matches!(s, Sent::Accepted { .. })) {
            self.wake_queue(queue);
        }
        Ok(sent)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        session: Option<SessionChoice>,
    ) -> Result<Received, QueueError> {
        let session = &session;
        self.queue_op(false, |mut c| async move {
            receive::receive(&mut c, queue, max, session.clone()).await
        })
        .await
    }

    async fn settle(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
        how: Settle,
    ) -> Result<(), QueueError> {
        let (channel, how) = (self.channel.as_str(), &how);
        let receivable = self
            .queue_op(false, |mut c| async move {
                settle::settle(&mut c, channel, queue, sequence, lock_token, how.clone()).await
            })
            .await?;
        if receivable {
            self.wake_queue(queue);
        }
        Ok(())
    }

    async fn renew(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
    ) -> Result<Millis, QueueError> {
        self.queue_op(true, |mut c| async move {
            settle::renew(&mut c, queue, sequence, lock_token).await
        })
        .await
    }

    async fn renew_session(
        &self,
        queue: &str,
        session_id: &str,
        token: &str,
        release: bool,
    ) -> Result<Option<Millis>, QueueError> {
        let channel = self.channel.as_str();
        // Renewing twice is harmless; releasing twice would refuse the second time.
        let until = self
            .queue_op(!release, |mut c| async move {
                settle::renew_session(&mut c, channel, queue, session_id, token, release).await
            })
            .await?;
        if release {
            self.wake_queue(queue);
        }
        Ok(until)
    }

    async fn peek(
        &self,
        queue: &str,
        from: i64,
        max: usize,
        dead_letter: bool,
    ) -> Result<Vec<Message>, QueueError> {
        self.queue_op(true, |c| async move {
            reads::peek(&c, queue, from, max, dead_letter).await
        })
        .await
    }

    async fn redrive(&self, queue: &str, sequences: Option<&[i64]>) -> Result<u64, QueueError> {
        let channel = self.channel.as_str();
        let moved = self
            .queue_op(false, |mut c| async move {
                settle::redrive(&mut c, channel, queue, sequences).await
            })
            .await?;
        if moved > 0 {
            self.wake_queue(queue);
        }
        Ok(moved)
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        // Its sweep may safely run twice.
        self.queue_op(
            true,
            |mut c| async move { reads::stats(&mut c, queue).await },
        )
        .await
    }

    async fn next_visible(&self, queue: &str) -> Result<Option<Millis>, QueueError> {
        self.queue_op(true, |c| async move {
            read(reads::next_visible(&c, queue).await)
        })
        .await
    }

    fn queue_wakeups(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        self.queue_notify(queue)
    }
}
