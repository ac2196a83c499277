//! Reading queue rows: a queue's settings with the database's `now`, and messages.

use baton_store::queues::{Message, QueueError, QueueSpec};
use baton_store::{CommitError, Millis, StoreError};
use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use super::rules;
use crate::db;
use crate::reads::unreadable;

/// What a queue operation may fail with after reaching the database: the refusal is the
/// inner error, the database's failure the outer one (retried when it wrote nothing).
pub(super) type Outcome<T> = Result<Result<T, QueueError>, CommitError>;

/// The columns [`message`] reads, in its order.
pub(super) const COLUMNS: &str = "queue, seq, message_id, body, content_type, session_id, \
     correlation_id, properties, enqueued_at, visible_at, expires_at, delivery_count, \
     lock_fence, locked_until, dead_lettered, dl_reason, dl_description";

/// Column `i` of `r`, or an error naming it (a type mismatch is a bug, not a panic).
pub(super) fn col<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, CommitError> {
    r.try_get(i)
        .map_err(|e| unreadable(format!("queue column {i}: {e}")))
}

pub(super) fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or_default()
}

/// A message row of [`COLUMNS`], its state as of `now`.
pub(super) fn message(r: &Row, now: Millis) -> Result<Message, CommitError> {
    let seq: i64 = col(r, 1)?;
    let fence: i64 = col(r, 12)?;
    let locked_until: Option<i64> = col(r, 13)?;
    let dead: bool = col(r, 14)?;
    let visible_at: i64 = col(r, 9)?;
    let state = rules::state(dead, locked_until, visible_at, now);
    let locked = state == baton_store::queues::MessageState::Locked;
    let properties: &str = col(r, 7)?;
    Ok(Message {
        queue: col(r, 0)?,
        sequence: seq,
        message_id: col(r, 2)?,
        body: col(r, 3)?,
        content_type: col(r, 4)?,
        session_id: col(r, 5)?,
        correlation_id: col(r, 6)?,
        properties: serde_json::from_str::<Map<String, Value>>(properties)
            .map_err(|e| unreadable(format!("message properties: {e}")))?,
        enqueued_at: col(r, 8)?,
        visible_at,
        expires_at: col(r, 10)?,
        delivery_count: count(col(r, 11)?),
        state,
        lock_token: locked.then(|| format!("{seq}.{fence}")),
        locked_until: locked_until.filter(|_| locked),
        dead_letter_reason: col(r, 15)?,
        dead_letter_description: col(r, 16)?,
    })
}

/// Messages of [`COLUMNS`] rows (which `RETURNING` gives in no order), by sequence number.
pub(super) fn messages(rows: &[Row], now: Millis) -> Result<Vec<Message>, CommitError> {
    let mut out = rows
        .iter()
        .map(|r| message(r, now))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|m| m.sequence);
    Ok(out)
}

pub(super) fn parse_spec(text: &str) -> Result<QueueSpec, CommitError> {
    serde_json::from_str(text).map_err(|e| unreadable(format!("queue settings: {e}")))
}

pub(super) fn spec_text(spec: &QueueSpec) -> Result<String, CommitError> {
    serde_json::to_string(spec)
        .map_err(|e| CommitError::Store(StoreError::Permanent(e.to_string())))
}

/// A queue as an operation on it starts.
#[derive(Debug)]
pub(super) struct Loaded {
    pub spec: QueueSpec,
    pub next_seq: i64,
    /// `baton_now()`: the transaction's start by the database's clock, the one time every
    /// decision of the operation uses.
    pub now: Millis,
}

/// How [`load`] locks the queue's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    None,
    /// Held to the end of the transaction: one queue's sends (and changes of its settings
    /// and its deletion) go one at a time.
    ForSending,
}

/// The queue `name`, or `NoQueue`.
pub(super) async fn load(c: &impl GenericClient, name: &str, lock: Lock) -> Outcome<Loaded> {
    if !rules::storable(name) {
        return Ok(Err(QueueError::NoQueue(name.to_owned())));
    }
    let sql = match lock {
        Lock::None => "SELECT spec, next_seq, baton_now() FROM queues WHERE name = $1",
        Lock::ForSending => {
            "SELECT spec, next_seq, baton_now() FROM queues WHERE name = $1 FOR NO KEY UPDATE"
        }
    };
    let stmt = c.prepare_cached(sql).await.map_err(db)?;
    let Some(r) = c.query_opt(&stmt, &[&name]).await.map_err(db)? else {
        return Ok(Err(QueueError::NoQueue(name.to_owned())));
    };
    Ok(Ok(Loaded {
        spec: parse_spec(col(&r, 0)?)?,
        next_seq: col(&r, 1)?,
        now: col(&r, 2)?,
    }))
}

/// `max` as a SQL `LIMIT`.
pub(super) fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

/// A queue's max delivery count as its `integer` column compares.
pub(super) fn max_delivery(spec: &QueueSpec) -> i32 {
    i32::try_from(spec.max_delivery).unwrap_or(i32::MAX)
}
