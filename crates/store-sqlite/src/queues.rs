//! [`QueueStore`] on SQLite: queues, their messages (the dead-letter sub-queue is a flag on the
//! same rows), duplicate-detection ids and session locks. Writes go through the one writer
//! thread like every other write; peeks read on a reader connection.
//!
//! `visible_at` is when a message can next be received: its scheduled time while unlocked,
//! its lock's expiry while locked (so an expired lock needs no sweep to become receivable).
//! `lock_fence` grows at every delivery; a lock token is `"<sequence>.<fence>"`.

use std::sync::Arc;

use baton_store::queues::{
    Message, MessageState, NewMessage, QueueError, QueueSpec, QueueStats, QueueStore, Received,
    Sent, SessionChoice, SessionLock, Settle,
};
use baton_store::{CommitError, Millis, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value};

use crate::{SqliteStore, classify, exec, now_ms, row};

/// The reasons Service Bus gives.
const MAX_DELIVERY: &str = "MaxDeliveryCountExceeded";
const EXPIRED: &str = "TTLExpiredException";

type Outcome<T> = Result<Result<T, QueueError>, CommitError>;

fn db(e: rusqlite::Error) -> CommitError {
    CommitError::Store(classify(e))
}

fn flatten<T>(r: Result<Result<T, QueueError>, CommitError>) -> Result<T, QueueError> {
    match r {
        Ok(inner) => inner,
        Err(CommitError::Store(e)) => Err(QueueError::Store(e)),
        Err(other) => Err(QueueError::Store(StoreError::Permanent(other.to_string()))),
    }
}

fn spec_of(t: &Connection, queue: &str) -> Result<Option<QueueSpec>, rusqlite::Error> {
    let text: Option<String> = row(t, "SELECT spec FROM queues WHERE name = ?1", [queue], |r| {
        r.get(0)
    })
    .optional()?;
    Ok(text.and_then(|s| serde_json::from_str(&s).ok()))
}

/// The queue's settings, or `NoQueue`.
fn need(t: &Connection, queue: &str) -> Result<Result<QueueSpec, QueueError>, CommitError> {
    Ok(spec_of(t, queue)
        .map_err(db)?
        .ok_or_else(|| QueueError::NoQueue(queue.to_owned())))
}

const COLUMNS: &str = "queue, seq, message_id, body, content_type, session_id, correlation_id, \
     properties, enqueued_at, visible_at, expires_at, delivery_count, lock_fence, locked_until, \
     dead_lettered, dl_reason, dl_description";

fn message(r: &rusqlite::Row<'_>, now: Millis) -> rusqlite::Result<Message> {
    let seq: i64 = r.get(1)?;
    let fence: i64 = r.get(12)?;
    let locked_until: Option<i64> = r.get(13)?;
    let dead: bool = r.get(14)?;
    let visible_at: i64 = r.get(9)?;
    let locked = !dead && locked_until.is_some_and(|u| u > now);
    let properties: String = r.get(7)?;
    Ok(Message {
        queue: r.get(0)?,
        sequence: seq,
        message_id: r.get(2)?,
        body: r.get(3)?,
        content_type: r.get(4)?,
        session_id: r.get(5)?,
        correlation_id: r.get(6)?,
        properties: serde_json::from_str::<Map<String, Value>>(&properties).unwrap_or_default(),
        enqueued_at: r.get(8)?,
        visible_at,
        expires_at: r.get(10)?,
        delivery_count: r.get(11)?,
        state: if dead {
            MessageState::DeadLettered
        } else if locked {
            MessageState::Locked
        } else if visible_at > now {
            MessageState::Scheduled
        } else {
            MessageState::Active
        },
        lock_token: locked.then(|| format!("{seq}.{fence}")),
        locked_until: locked.then_some(locked_until).flatten(),
        dead_letter_reason: r.get(15)?,
        dead_letter_description: r.get(16)?,
    })
}

/// Settles what time decided for `queue`: expired messages (not locked) are dropped or
/// dead-lettered; messages whose last allowed delivery's lock expired are dead-lettered.
fn sweep(t: &Transaction<'_>, spec: &QueueSpec, now: Millis) -> rusqlite::Result<()> {
    let free = "(locked_until IS NULL OR locked_until <= ?2)";
    if spec.dead_letter_on_expiry {
        exec(
            t,
            &format!(
                "UPDATE queue_messages SET dead_lettered = 1, locked_until = NULL, dl_reason = ?3, \
                 dl_description = 'The message expired and was dead-lettered.' \
                 WHERE queue = ?1 AND dead_lettered = 0 AND expires_at <= ?2 AND {free}"
            ),
            params![spec.name, now, EXPIRED],
        )?;
    } else {
        exec(
            t,
            &format!(
                "DELETE FROM queue_messages WHERE queue = ?1 AND dead_lettered = 0 \
                 AND expires_at <= ?2 AND {free}"
            ),
            params![spec.name, now],
        )?;
    }
    exec(
        t,
        "UPDATE queue_messages SET dead_lettered = 1, locked_until = NULL, dl_reason = ?3, \
         dl_description = 'The message was delivered the maximum number of times without being completed.' \
         WHERE queue = ?1 AND dead_lettered = 0 AND locked_until <= ?2 AND delivery_count >= ?4",
        params![spec.name, now, MAX_DELIVERY, spec.max_delivery],
    )?;
    Ok(())
}

fn put_queue(t: &Transaction<'_>, spec: &QueueSpec) -> Outcome<()> {
    if let Some(p) = spec.problem() {
        return Ok(Err(QueueError::Invalid(p)));
    }
    let text = serde_json::to_string(spec)
        .map_err(|e| CommitError::Store(StoreError::Permanent(e.to_string())))?;
    exec(
        t,
        "INSERT INTO queues (name, spec) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
        params![spec.name, text],
    )
    .map_err(db)?;
    Ok(Ok(()))
}

fn delete_queue(t: &Transaction<'_>, name: &str) -> Outcome<bool> {
    let n = exec(t, "DELETE FROM queues WHERE name = ?1", [name]).map_err(db)?;
    for table in ["queue_messages", "queue_duplicates", "queue_sessions"] {
        exec(t, &format!("DELETE FROM {table} WHERE queue = ?1"), [name]).map_err(db)?;
    }
    Ok(Ok(n > 0))
}

fn enqueue(
    t: &Transaction<'_>,
    queue: &str,
    messages: Vec<NewMessage>,
    now: Millis,
) -> Outcome<Vec<Sent>> {
    let spec = match need(t, queue)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    // Everything is checked before anything is written.
    if let Some(p) = spec.batch_problem(&messages) {
        return Ok(Err(QueueError::Invalid(p)));
    }
    if spec.duplicate_window_ms.is_some() {
        exec(
            t,
            "DELETE FROM queue_duplicates WHERE queue = ?1 AND expires_at <= ?2",
            params![queue, now],
        )
        .map_err(db)?;
    }
    let mut next: i64 = row(
        t,
        "SELECT next_seq FROM queues WHERE name = ?1",
        [queue],
        |r| r.get(0),
    )
    .map_err(db)?;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let message_id = m
            .message_id
            .clone()
            .unwrap_or_else(|| format!("{now:012x}{next:012x}"));
        if let Some(window) = spec.duplicate_window_ms {
            let seen: Option<i64> = row(
                t,
                "SELECT expires_at FROM queue_duplicates WHERE queue = ?1 AND message_id = ?2",
                params![queue, message_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
            if seen.is_some_and(|until| until > now) {
                out.push(Sent::Duplicate { message_id });
                continue;
            }
            exec(
                t,
                "INSERT INTO queue_duplicates (queue, message_id, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (queue, message_id) DO UPDATE SET expires_at = excluded.expires_at",
                params![queue, message_id, now + window],
            )
            .map_err(db)?;
        }
        let visible_at = m.scheduled_at.unwrap_or(now).max(now);
        let ttl = match (m.ttl_ms, spec.default_ttl_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let properties = Value::Object(m.properties).to_string();
        exec(
            t,
            "INSERT INTO queue_messages (queue, seq, message_id, body, content_type, session_id, \
             correlation_id, properties, enqueued_at, visible_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                queue,
                next,
                message_id,
                m.body,
                m.content_type,
                m.session_id,
                m.correlation_id,
                properties,
                now,
                visible_at,
                ttl.map(|t| visible_at.saturating_add(t)),
            ],
        )
        .map_err(db)?;
        out.push(Sent::Accepted {
            sequence: next,
            message_id,
        });
        next += 1;
    }
    exec(
        t,
        "UPDATE queues SET next_seq = ?2 WHERE name = ?1",
        params![queue, next],
    )
    .map_err(db)?;
    Ok(Ok(out))
}

/// `(fence, locked_until)` of a session's lock row, if it has one.
fn session_lock(
    t: &Transaction<'_>,
    queue: &str,
    session_id: &str,
) -> Result<Option<(i64, i64)>, CommitError> {
    row(
        t,
        "SELECT fence, locked_until FROM queue_sessions WHERE queue = ?1 AND session_id = ?2",
        params![queue, session_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(db)
}

/// Takes or continues the session `choice` names; `None` when there is nothing to take.
fn session(
    t: &Transaction<'_>,
    spec: &QueueSpec,
    choice: SessionChoice,
    now: Millis,
) -> Outcome<Option<SessionLock>> {
    let queue = &spec.name;
    let (session_id, token) = match choice {
        SessionChoice::Id { session_id, token } => (session_id, token),
        SessionChoice::Next => {
            let next: Option<String> = row(
                t,
                "SELECT m.session_id FROM queue_messages m LEFT JOIN queue_sessions s \
                 ON s.queue = m.queue AND s.session_id = m.session_id \
                 WHERE m.queue = ?1 AND m.dead_lettered = 0 AND m.visible_at <= ?2 \
                 AND (m.expires_at IS NULL OR m.expires_at > ?2) \
                 AND (s.locked_until IS NULL OR s.locked_until <= ?2) \
                 ORDER BY m.seq LIMIT 1",
                params![queue, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
            match next {
                Some(id) => (id, None),
                None => return Ok(Ok(None)),
            }
        }
    };
    let held = session_lock(t, queue, &session_id)?;
    let until = now + spec.lock_ms;
    let fence = match (held, &token) {
        // Continued by its holder.
        (Some((fence, locked_until)), Some(tok))
            if locked_until > now && tok == &fence.to_string() =>
        {
            fence
        }
        (Some((_, locked_until)), _) if locked_until > now => {
            return Ok(Err(QueueError::LockLost(format!(
                "session `{session_id}` of queue `{queue}` is held by another receiver"
            ))));
        }
        (_, Some(_)) => {
            return Ok(Err(QueueError::LockLost(format!(
                "the lock on session `{session_id}` of queue `{queue}` expired"
            ))));
        }
        (held, None) => held.map_or(1, |(f, _)| f + 1),
    };
    exec(
        t,
        "INSERT INTO queue_sessions (queue, session_id, fence, locked_until) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (queue, session_id) DO UPDATE SET fence = excluded.fence, locked_until = excluded.locked_until",
        params![queue, session_id, fence, until],
    )
    .map_err(db)?;
    Ok(Ok(Some(SessionLock {
        session_id,
        token: fence.to_string(),
        locked_until: until,
    })))
}

fn receive(
    t: &Transaction<'_>,
    queue: &str,
    max: usize,
    choice: Option<SessionChoice>,
    now: Millis,
) -> Outcome<Received> {
    let spec = match need(t, queue)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let lock = match (spec.sessions, choice) {
        (true, None) => {
            return Ok(Err(QueueError::Invalid(format!(
                "queue `{queue}` requires sessions: receive from a session"
            ))));
        }
        (false, Some(_)) => {
            return Ok(Err(QueueError::Invalid(format!(
                "queue `{queue}` has no sessions"
            ))));
        }
        (false, None) => None,
        (true, Some(choice)) => {
            sweep(t, &spec, now).map_err(db)?;
            match session(t, &spec, choice, now)? {
                Ok(Some(l)) => Some(l),
                Ok(None) => return Ok(Ok(Received::default())),
                Err(e) => return Ok(Err(e)),
            }
        }
    };
    if lock.is_none() {
        sweep(t, &spec, now).map_err(db)?;
    }
    let until = lock.as_ref().map_or(now + spec.lock_ms, |l| l.locked_until);
    let picked: Vec<i64> = {
        let mut stmt = t
            .prepare_cached(
                "SELECT seq FROM queue_messages WHERE queue = ?1 AND dead_lettered = 0 \
                 AND visible_at <= ?2 AND (expires_at IS NULL OR expires_at > ?2) \
                 AND (?3 IS NULL OR session_id = ?3) ORDER BY seq LIMIT ?4",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(
                params![queue, now, lock.as_ref().map(|l| &l.session_id), max as i64],
                |r| r.get(0),
            )
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    let mut messages = Vec::with_capacity(picked.len());
    for seq in picked {
        exec(
            t,
            "UPDATE queue_messages SET delivery_count = delivery_count + 1, \
             lock_fence = lock_fence + 1, locked_until = ?3, visible_at = ?3 \
             WHERE queue = ?1 AND seq = ?2",
            params![queue, seq, until],
        )
        .map_err(db)?;
        messages.push(
            row(
                t,
                &format!("SELECT {COLUMNS} FROM queue_messages WHERE queue = ?1 AND seq = ?2"),
                params![queue, seq],
                |r| message(r, now),
            )
            .map_err(db)?,
        );
    }
    Ok(Ok(Received {
        messages,
        session: lock,
    }))
}

/// The message `sequence` if `token` holds its lock now: `(delivery count)`.
fn held(t: &Transaction<'_>, queue: &str, sequence: i64, token: &str, now: Millis) -> Outcome<u32> {
    let found: Option<(i64, Option<i64>, bool, u32)> = row(
        t,
        "SELECT lock_fence, locked_until, dead_lettered, delivery_count FROM queue_messages \
         WHERE queue = ?1 AND seq = ?2",
        params![queue, sequence],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .optional()
    .map_err(db)?;
    Ok(match found {
        Some((fence, Some(until), false, count))
            if until > now && token == format!("{sequence}.{fence}") =>
        {
            Ok(count)
        }
        Some(_) => Err(QueueError::LockLost(format!(
            "message {sequence} of queue `{queue}` is not locked with this token (it expired, or the message was delivered again or settled)"
        ))),
        None => Err(QueueError::LockLost(format!(
            "queue `{queue}` has no message {sequence}"
        ))),
    })
}

fn settle(
    t: &Transaction<'_>,
    queue: &str,
    sequence: i64,
    token: &str,
    how: Settle,
    now: Millis,
) -> Outcome<()> {
    let spec = match need(t, queue)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let count = match held(t, queue, sequence, token, now)? {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let key = params![queue, sequence];
    match how {
        Settle::Complete => {
            exec(
                t,
                "DELETE FROM queue_messages WHERE queue = ?1 AND seq = ?2",
                key,
            )
            .map_err(db)?;
        }
        Settle::Abandon if count >= spec.max_delivery => {
            exec(
                t,
                "UPDATE queue_messages SET dead_lettered = 1, locked_until = NULL, dl_reason = ?3, \
                 dl_description = 'The message was delivered the maximum number of times without being completed.' \
                 WHERE queue = ?1 AND seq = ?2",
                params![queue, sequence, MAX_DELIVERY],
            )
            .map_err(db)?;
        }
        Settle::Abandon => {
            exec(
                t,
                "UPDATE queue_messages SET locked_until = NULL, visible_at = ?3 WHERE queue = ?1 AND seq = ?2",
                params![queue, sequence, now],
            )
            .map_err(db)?;
        }
        Settle::DeadLetter {
            reason,
            description,
        } => {
            exec(
                t,
                "UPDATE queue_messages SET dead_lettered = 1, locked_until = NULL, dl_reason = ?3, \
                 dl_description = ?4 WHERE queue = ?1 AND seq = ?2",
                params![queue, sequence, reason, description],
            )
            .map_err(db)?;
        }
    }
    Ok(Ok(()))
}

fn renew(
    t: &Transaction<'_>,
    queue: &str,
    sequence: i64,
    token: &str,
    now: Millis,
) -> Outcome<Millis> {
    let spec = match need(t, queue)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    if let Err(e) = held(t, queue, sequence, token, now)? {
        return Ok(Err(e));
    }
    let until = now + spec.lock_ms;
    exec(
        t,
        "UPDATE queue_messages SET locked_until = ?3, visible_at = ?3 WHERE queue = ?1 AND seq = ?2",
        params![queue, sequence, until],
    )
    .map_err(db)?;
    Ok(Ok(until))
}

fn renew_session(
    t: &Transaction<'_>,
    queue: &str,
    session_id: &str,
    token: &str,
    release: bool,
    now: Millis,
) -> Outcome<Option<Millis>> {
    let spec = match need(t, queue)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let held = session_lock(t, queue, session_id)?;
    match held {
        Some((fence, until)) if until > now && token == fence.to_string() => {}
        _ => {
            return Ok(Err(QueueError::LockLost(format!(
                "session `{session_id}` of queue `{queue}` is not held with this token"
            ))));
        }
    }
    let until = (!release).then_some(now + spec.lock_ms);
    exec(
        t,
        "UPDATE queue_sessions SET locked_until = ?3 WHERE queue = ?1 AND session_id = ?2",
        params![queue, session_id, until.unwrap_or(now)],
    )
    .map_err(db)?;
    Ok(Ok(until))
}

fn redrive(
    t: &Transaction<'_>,
    queue: &str,
    sequences: Option<Vec<i64>>,
    now: Millis,
) -> Outcome<u64> {
    if let Err(e) = need(t, queue)? {
        return Ok(Err(e));
    }
    let sql = "UPDATE queue_messages SET dead_lettered = 0, delivery_count = 0, locked_until = NULL, \
               visible_at = ?2, dl_reason = NULL, dl_description = NULL, expires_at = NULL \
               WHERE queue = ?1 AND dead_lettered = 1";
    let moved = match sequences {
        None => exec(t, sql, params![queue, now]).map_err(db)?,
        Some(seqs) => {
            let mut n = 0;
            for s in seqs {
                n += exec(t, &format!("{sql} AND seq = ?3"), params![queue, now, s]).map_err(db)?;
            }
            n
        }
    };
    Ok(Ok(moved as u64))
}

fn stats(t: &Transaction<'_>, queue: &str, now: Millis) -> Outcome<QueueStats> {
    let spec = match need(t, queue)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    sweep(t, &spec, now).map_err(db)?;
    let s = row(
        t,
        "SELECT \
           COALESCE(SUM(dead_lettered = 0 AND visible_at <= ?2 AND (locked_until IS NULL OR locked_until <= ?2)), 0), \
           COALESCE(SUM(dead_lettered = 0 AND locked_until IS NULL AND visible_at > ?2), 0), \
           COALESCE(SUM(dead_lettered = 0 AND locked_until > ?2), 0), \
           COALESCE(SUM(dead_lettered = 1), 0) \
         FROM queue_messages WHERE queue = ?1",
        params![queue, now],
        |r| {
            Ok(QueueStats {
                active: r.get::<_, i64>(0)? as u64,
                scheduled: r.get::<_, i64>(1)? as u64,
                locked: r.get::<_, i64>(2)? as u64,
                dead_lettered: r.get::<_, i64>(3)? as u64,
            })
        },
    )
    .map_err(db)?;
    Ok(Ok(s))
}

fn peek(
    c: &Connection,
    queue: &str,
    from: i64,
    max: usize,
    dead: bool,
    now: Millis,
) -> Result<Result<Vec<Message>, QueueError>, StoreError> {
    if spec_of(c, queue).map_err(classify)?.is_none() {
        return Ok(Err(QueueError::NoQueue(queue.to_owned())));
    }
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM queue_messages WHERE queue = ?1 AND dead_lettered = ?2 \
             AND seq >= ?3 ORDER BY seq LIMIT ?4"
        ))
        .map_err(classify)?;
    let rows = stmt
        .query_map(params![queue, dead, from, max as i64], |r| message(r, now))
        .map_err(classify)?;
    let mut out: Vec<Message> = rows.collect::<Result<_, _>>().map_err(classify)?;
    // A peek never hands out a lock.
    for m in &mut out {
        m.lock_token = None;
    }
    Ok(Ok(out))
}

mod store;
