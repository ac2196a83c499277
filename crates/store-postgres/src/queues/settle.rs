//! Settling and renewing locks, and redriving dead letters.
//!
//! A settlement or renewal locks its message's row (`FOR UPDATE`) before checking the token,
//! so that the check and the write see the same row: a receive that delivered the message
//! again in between has moved its fence on, and the stale token is refused.

use baton_store::Millis;
use baton_store::queues::{QueueError, Settle};
use deadpool_postgres::{Object, Transaction};

use super::rows::{Lock, Outcome, col, count, load};
use super::rules::{self, LockRow, Settlement};
use super::wake_payload;
use crate::{db, writes};

/// The message `sequence` under its row's lock, if `token` holds its lock at `now`.
async fn held(
    t: &Transaction<'_>,
    queue: &str,
    sequence: i64,
    token: &str,
    now: Millis,
) -> Outcome<LockRow> {
    let stmt = t
        .prepare_cached(
            "SELECT lock_fence, locked_until, dead_lettered, delivery_count FROM queue_messages
             WHERE queue = $1 AND seq = $2 FOR UPDATE",
        )
        .await
        .map_err(db)?;
    let Some(r) = t.query_opt(&stmt, &[&queue, &sequence]).await.map_err(db)? else {
        return Ok(Err(QueueError::LockLost(format!(
            "queue `{queue}` has no message {sequence}"
        ))));
    };
    let row = LockRow {
        fence: col(&r, 0)?,
        locked_until: col(&r, 1)?,
        dead_lettered: col(&r, 2)?,
        delivery_count: count(col(&r, 3)?),
    };
    Ok(if rules::holds(sequence, token, &row, now) {
        Ok(row)
    } else {
        Err(QueueError::LockLost(format!(
            "message {sequence} of queue `{queue}` is not locked with this token (it expired, \
             or the message was delivered again or settled)"
        )))
    })
}

/// Settles the lock; whether the message became receivable again.
pub(super) async fn settle(
    c: &mut Object,
    channel: &str,
    queue: &str,
    sequence: i64,
    token: &str,
    how: Settle,
) -> Outcome<bool> {
    if let Settle::DeadLetter {
        reason,
        description,
    } = &how
        && !(rules::storable(reason) && description.as_deref().is_none_or(rules::storable))
    {
        return Ok(Err(QueueError::Invalid(
            "a dead-letter reason and description cannot hold NUL".to_owned(),
        )));
    }
    let t = c.transaction().await.map_err(db)?;
    let q = match load(&t, queue, Lock::None).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let row = match held(&t, queue, sequence, token, q.now).await? {
        Ok(row) => row,
        Err(e) => return Ok(Err(e)),
    };
    let settlement = rules::settlement(how, row.delivery_count, &q.spec);
    let n = match &settlement {
        Settlement::Delete => {
            let stmt = t
                .prepare_cached("DELETE FROM queue_messages WHERE queue = $1 AND seq = $2")
                .await
                .map_err(db)?;
            t.execute(&stmt, &[&queue, &sequence]).await
        }
        Settlement::Activate => {
            let stmt = t
                .prepare_cached(
                    "UPDATE queue_messages SET locked_until = NULL, visible_at = $3
                     WHERE queue = $1 AND seq = $2",
                )
                .await
                .map_err(db)?;
            t.execute(&stmt, &[&queue, &sequence, &q.now]).await
        }
        Settlement::DeadLetter {
            reason,
            description,
        } => {
            let stmt = t
                .prepare_cached(
                    "UPDATE queue_messages SET dead_lettered = true, locked_until = NULL,
                         dl_reason = $3, dl_description = $4
                     WHERE queue = $1 AND seq = $2",
                )
                .await
                .map_err(db)?;
            t.execute(&stmt, &[&queue, &sequence, reason, description])
                .await
        }
    };
    n.map_err(db)?;
    let receivable = settlement == Settlement::Activate;
    if receivable {
        writes::notify(&t, channel, &wake_payload(queue)).await?;
    }
    t.commit().await.map_err(db)?;
    Ok(Ok(receivable))
}

/// Extends a held lock by the lock duration from now (never shortening it); the new expiry.
pub(super) async fn renew(
    c: &mut Object,
    queue: &str,
    sequence: i64,
    token: &str,
) -> Outcome<Millis> {
    let t = c.transaction().await.map_err(db)?;
    let q = match load(&t, queue, Lock::None).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    if let Err(e) = held(&t, queue, sequence, token, q.now).await? {
        return Ok(Err(e));
    }
    let stmt = t
        .prepare_cached(
            "UPDATE queue_messages SET locked_until = GREATEST(locked_until, $3),
                 visible_at = GREATEST(locked_until, $3)
             WHERE queue = $1 AND seq = $2
             RETURNING locked_until",
        )
        .await
        .map_err(db)?;
    let r = t
        .query_one(&stmt, &[&queue, &sequence, &(q.now + q.spec.lock_ms)])
        .await
        .map_err(db)?;
    let until = col(&r, 0)?;
    t.commit().await.map_err(db)?;
    Ok(Ok(until))
}

/// Extends a held session lock, or releases it (to `locked_until` 0, free by every clock);
/// the new expiry, `None` when released.
pub(super) async fn renew_session(
    c: &mut Object,
    channel: &str,
    queue: &str,
    session_id: &str,
    token: &str,
    release: bool,
) -> Outcome<Option<Millis>> {
    let t = c.transaction().await.map_err(db)?;
    let q = match load(&t, queue, Lock::None).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let lost = || {
        Ok(Err(QueueError::LockLost(format!(
            "session `{session_id}` of queue `{queue}` is not held with this token"
        ))))
    };
    let Some(fence) = rules::session_fence(token).filter(|_| rules::storable(session_id)) else {
        return lost();
    };
    let set = if release {
        "0"
    } else {
        "GREATEST(locked_until, $5)"
    };
    let stmt = t
        .prepare_cached(&format!(
            "UPDATE queue_sessions SET locked_until = {set}
             WHERE queue = $1 AND session_id = $2 AND fence = $3 AND locked_until > $4
             RETURNING locked_until"
        ))
        .await
        .map_err(db)?;
    let until = q.now + q.spec.lock_ms;
    let found = if release {
        t.query_opt(&stmt, &[&queue, &session_id, &fence, &q.now])
            .await
    } else {
        t.query_opt(&stmt, &[&queue, &session_id, &fence, &q.now, &until])
            .await
    }
    .map_err(db)?;
    let Some(r) = found else {
        return lost();
    };
    if release {
        writes::notify(&t, channel, &wake_payload(queue)).await?;
    }
    let until: Millis = col(&r, 0)?;
    t.commit().await.map_err(db)?;
    Ok(Ok((!release).then_some(until)))
}

/// Moves dead letters (these sequence numbers, or all) back to the queue; how many moved.
pub(super) async fn redrive(
    c: &mut Object,
    channel: &str,
    queue: &str,
    sequences: Option<&[i64]>,
) -> Outcome<u64> {
    let t = c.transaction().await.map_err(db)?;
    let q = match load(&t, queue, Lock::None).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let chosen = if sequences.is_some() {
        "AND seq = ANY($3)"
    } else {
        ""
    };
    // In sequence order, so that two redrives lock the same rows in the same order; and
    // materialized, as `receive::picked` explains.
    let stmt = t
        .prepare_cached(&format!(
            "WITH p AS MATERIALIZED (
                 SELECT seq AS pick FROM queue_messages
                 WHERE queue = $1 AND dead_lettered {chosen}
                 ORDER BY seq FOR UPDATE
             )
             UPDATE queue_messages SET dead_lettered = false, delivery_count = 0,
                 locked_until = NULL, visible_at = $2, dl_reason = NULL, dl_description = NULL,
                 expires_at = NULL
             FROM p WHERE queue = $1 AND seq = p.pick"
        ))
        .await
        .map_err(db)?;
    let moved = match sequences {
        Some(seqs) => t.execute(&stmt, &[&queue, &q.now, &seqs]).await,
        None => t.execute(&stmt, &[&queue, &q.now]).await,
    }
    .map_err(db)?;
    if moved > 0 {
        writes::notify(&t, channel, &wake_payload(queue)).await?;
    }
    t.commit().await.map_err(db)?;
    Ok(Ok(moved))
}
