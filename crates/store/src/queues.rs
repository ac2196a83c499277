//! Queues with Service Bus semantics, kept in the same store as instances.
//!
//! * A **queue** ([`QueueSpec`]) has a lock duration, a max delivery count, an optional default
//!   time to live (with dead-lettering on expiry or not), an optional duplicate-detection window
//!   and, if it requires sessions, FIFO per session id.
//! * A **message** gets a sequence number (growing per queue) when it is accepted. It is
//!   *scheduled* until its `Scheduled-Enqueue-Time`, then *active*; a peek-lock receive
//!   *locks* it (delivery count + 1, a new lock token) until it is completed (deleted),
//!   abandoned (active again), dead-lettered, or its lock expires (active again).
//! * A message delivered `max_delivery` times that is abandoned or whose lock expires goes to
//!   the queue's **dead-letter sub-queue** with reason `MaxDeliveryCountExceeded`; an active
//!   message past its time to live is dropped, or dead-lettered with `TTLExpiredException` when
//!   the queue says so. Dead-lettered messages never expire; they can be peeked and redriven.
//! * A **session** queue delivers only to the holder of a session's lock, in sequence order:
//!   one receiver per session at a time.
//! * Lock tokens carry a fence: an operation with a token that no longer holds the lock (it
//!   expired and the message was delivered again) is refused with [`QueueError::LockLost`].
//!
//! Every time is the store's clock ([`crate::Store::now`]).

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Millis, StoreError};

/// The longest lock a queue may give (Service Bus' limit).
pub const MAX_LOCK_MS: i64 = 300_000;
/// Duplicate-detection windows allowed (20 s to 7 days).
pub const MIN_DUPLICATE_WINDOW_MS: i64 = 20_000;
pub const MAX_DUPLICATE_WINDOW_MS: i64 = 7 * 24 * 3_600_000;

/// A queue's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub name: String,
    /// How long a receive locks a message (1 ms to [`MAX_LOCK_MS`]).
    pub lock_ms: i64,
    /// Deliveries after which a message that is not completed is dead-lettered (at least 1).
    pub max_delivery: u32,
    /// Time to live of messages that set none; `None`: they live until consumed.
    pub default_ttl_ms: Option<i64>,
    /// Whether expired messages go to the dead-letter sub-queue instead of being dropped.
    pub dead_letter_on_expiry: bool,
    /// Messages whose `message_id` was accepted within this window are dropped as duplicates.
    pub duplicate_window_ms: Option<i64>,
    /// FIFO per session: every message needs a session id.
    pub sessions: bool,
}

impl QueueSpec {
    /// A queue with Service Bus' defaults: 60 s locks, 10 deliveries, no expiry, duplicate
    /// detection over 10 minutes, no sessions.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            lock_ms: 60_000,
            max_delivery: 10,
            default_ttl_ms: None,
            dead_letter_on_expiry: false,
            duplicate_window_ms: Some(600_000),
            sessions: false,
        }
    }

    /// What is wrong with these settings, if anything.
    pub fn problem(&self) -> Option<String> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 260
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Some(format!(
                "`{n}` is not a queue name (1 to 260 letters, digits, `-`, `_` or `.`)"
            ));
        }
        if !(1..=MAX_LOCK_MS).contains(&self.lock_ms) {
            return Some(format!(
                "queue `{n}`: the lock duration must be at most 5 minutes"
            ));
        }
        if self.max_delivery == 0 {
            return Some(format!(
                "queue `{n}`: the max delivery count must be at least 1"
            ));
        }
        if self.default_ttl_ms.is_some_and(|t| t <= 0) {
            return Some(format!("queue `{n}`: the time to live must be positive"));
        }
        if self.duplicate_window_ms.is_some_and(|w| w <= 0) {
            return Some(format!(
                "queue `{n}`: the duplicate-detection window must be positive"
            ));
        }
        None
    }

    /// What is wrong with a batch of messages for this queue, if anything (the first problem,
    /// naming the message by its index): a session id where sessions are required and only
    /// there, a positive time to live, message ids of 1 to 128 characters. A store checks the
    /// whole batch before it writes any of it.
    pub fn batch_problem(&self, messages: &[NewMessage]) -> Option<String> {
        let queue = &self.name;
        messages.iter().enumerate().find_map(|(i, m)| {
            match (&m.session_id, self.sessions) {
                (None, true) => Some(format!(
                    "queue `{queue}` requires sessions: message {i} has no session id"
                )),
                (Some(_), false) => Some(format!(
                    "queue `{queue}` has no sessions: message {i} has a session id"
                )),
                _ => None,
            }
            .or_else(|| {
                m.ttl_ms
                    .filter(|t| *t <= 0)
                    .map(|_| format!("message {i}: the time to live must be positive"))
            })
            .or_else(|| {
                m.message_id
                    .as_ref()
                    .filter(|id| id.is_empty() || id.len() > 128)
                    .map(|_| format!("message {i}: a message id is 1 to 128 characters"))
            })
        })
    }

    /// [`QueueSpec::problem`], and the ranges a configured queue must keep to (Service Bus'):
    /// a duplicate-detection window of 20 seconds to 7 days. A store accepts any positive
    /// window, so that tests can use short ones.
    pub fn configuration_problem(&self) -> Option<String> {
        self.problem().or_else(|| {
            self.duplicate_window_ms
                .filter(|w| !(MIN_DUPLICATE_WINDOW_MS..=MAX_DUPLICATE_WINDOW_MS).contains(w))
                .map(|_| {
                    format!(
                        "queue `{}`: the duplicate-detection window must be between 20 seconds and 7 days",
                        self.name
                    )
                })
        })
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewMessage {
    /// For duplicate detection; the store makes one up when absent.
    pub message_id: Option<String>,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub session_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Overrides the queue's default time to live (capped by it, as Service Bus does).
    pub ttl_ms: Option<i64>,
    /// Not visible before this time.
    pub scheduled_at: Option<Millis>,
    /// User properties.
    pub properties: Map<String, Value>,
}

/// What became of one sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sent {
    Accepted {
        sequence: i64,
        message_id: String,
    },
    /// Its `message_id` was accepted within the duplicate-detection window: dropped.
    Duplicate {
        message_id: String,
    },
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageState {
    Scheduled,
    Active,
    Locked,
    DeadLettered,
}

/// A stored message, as a receive or a peek returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub queue: String,
    pub sequence: i64,
    pub message_id: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub session_id: Option<String>,
    pub correlation_id: Option<String>,
    pub properties: Map<String, Value>,
    pub enqueued_at: Millis,
    /// When it becomes (or became) visible.
    pub visible_at: Millis,
    pub expires_at: Option<Millis>,
    pub delivery_count: u32,
    pub state: MessageState,
    /// While locked: the token that completes, abandons, dead-letters or renews it.
    pub lock_token: Option<String>,
    pub locked_until: Option<Millis>,
    pub dead_letter_reason: Option<String>,
    pub dead_letter_description: Option<String>,
}

/// A session's lock, held by one receiver at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLock {
    pub session_id: String,
    pub token: String,
    pub locked_until: Millis,
}

/// Which session a receive on a session queue takes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChoice {
    /// The session of the oldest available message that nobody holds (locked for the caller).
    Next,
    /// This session: taken if free, continued if `token` is the caller's current lock.
    Id {
        session_id: String,
        token: Option<String>,
    },
}

/// What a receive got.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Received {
    pub messages: Vec<Message>,
    /// On a session queue: the session the messages come from and the caller's lock on it.
    pub session: Option<SessionLock>,
}

/// Counts of a queue's messages by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    pub active: u64,
    pub scheduled: u64,
    pub locked: u64,
    pub dead_lettered: u64,
}

/// How a settled lock ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Done: the message is deleted.
    Complete,
    /// Given back: active again at once (its delivery count stands).
    Abandon,
    /// To the dead-letter sub-queue, with the caller's reason.
    DeadLetter {
        reason: String,
        description: Option<String>,
    },
}

/// Why a queue operation was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("there is no queue `{0}`")]
    NoQueue(String),
    /// The lock token does not hold the lock any more (it expired and the message or session
    /// went to someone else, or the message is gone).
    #[error("the lock is lost: {0}")]
    LockLost(String),
    /// The request does not fit the queue (a session id on a queue without sessions, none on
    /// one with them, a bad setting).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The queue side of a store. All methods are safe to call concurrently; each is atomic.
pub trait QueueStore: Send + Sync + 'static {
    /// Creates the queue, or changes its settings (messages already stored keep their expiry
    /// and delivery counts).
    fn put_queue(&self, spec: &QueueSpec) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Deletes a queue with all its messages. False if there was none.
    fn delete_queue(&self, name: &str) -> impl Future<Output = Result<bool, QueueError>> + Send;

    /// Every queue, by name.
    fn queues(&self) -> impl Future<Output = Result<Vec<QueueSpec>, QueueError>> + Send;

    fn queue(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<QueueSpec>, QueueError>> + Send;

    /// Sends a batch atomically: every message is accepted (or dropped as a duplicate), or none
    /// is and the call fails.
    fn enqueue(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> impl Future<Output = Result<Vec<Sent>, QueueError>> + Send;

    /// Locks up to `max` visible messages, oldest first, for the queue's lock duration. First
    /// settles what time decided: expired messages are dropped or dead-lettered, and expired
    /// locks of messages delivered `max_delivery` times dead-letter them. On a session queue
    /// `session` says which session (it is required there and refused elsewhere).
    fn receive(
        &self,
        queue: &str,
        max: usize,
        session: Option<SessionChoice>,
    ) -> impl Future<Output = Result<Received, QueueError>> + Send;

    /// Ends the lock `lock_token` holds on message `sequence`.
    fn settle(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
        how: Settle,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Extends a message's lock by the queue's lock duration from now; the new expiry.
    fn renew(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
    ) -> impl Future<Output = Result<Millis, QueueError>> + Send;

    /// Extends a session's lock (held with `token`) by the lock duration; `release` gives it
    /// up instead, so another receiver may take the session at once.
    fn renew_session(
        &self,
        queue: &str,
        session_id: &str,
        token: &str,
        release: bool,
    ) -> impl Future<Output = Result<Option<Millis>, QueueError>> + Send;

    /// Up to `max` messages from sequence `from` on, without locking them: the queue's
    /// (scheduled, active and locked) or, with `dead_letter`, its dead-letter sub-queue's.
    fn peek(
        &self,
        queue: &str,
        from: i64,
        max: usize,
        dead_letter: bool,
    ) -> impl Future<Output = Result<Vec<Message>, QueueError>> + Send;

    /// Moves dead-lettered messages (these sequences, or all) back to the queue, active, with
    /// delivery count 0 and their dead-letter reason cleared; how many moved.
    fn redrive(
        &self,
        queue: &str,
        sequences: Option<&[i64]>,
    ) -> impl Future<Output = Result<u64, QueueError>> + Send;

    fn queue_stats(
        &self,
        queue: &str,
    ) -> impl Future<Output = Result<QueueStats, QueueError>> + Send;

    /// The next time after now at which a message of `queue` may become receivable on its
    /// own (a scheduled one's time, a message's or a session's lock expiry), if any: how long
    /// a long-polling receive may sleep. Times already past are not reported.
    fn next_visible(
        &self,
        queue: &str,
    ) -> impl Future<Output = Result<Option<Millis>, QueueError>> + Send;

    /// Signalled after every write that may have made a message of `queue` receivable (an
    /// enqueue, an abandon, a redrive, a released session), so that its long-polling
    /// receivers wake; receivers of other queues sleep on.
    fn queue_wakeups(&self, queue: &str) -> Arc<tokio::sync::Notify>;
}
