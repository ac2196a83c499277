//! Receiving: settling what time decided, taking a session, locking messages.
//!
//! Receivers on many connections and nodes run at once, so nothing here waits where it need
//! not: the sweeps and a plain queue's receive take their rows `FOR UPDATE SKIP LOCKED`, so
//! two receivers never lock the same message and never wait for each other. A row skipped
//! that way is in another transaction's hands; the next receive looks at it again, and the
//! receive query itself never hands out a message a sweep would have taken.
//!
//! A session's row is taken with an upsert that updates it only while its lock is free: of
//! two receivers taking one session, the second waits for the first's commit, finds the lock
//! held and takes nothing. A session's messages are then locked with a plain `FOR UPDATE`,
//! not `SKIP LOCKED`: skipping a row another transaction is abandoning would hand out the
//! session's next message before it, out of order. Waiting there does not deadlock: the
//! transactions that lock sessions lock them before any message; settlements wait for
//! nothing once they hold their message; and two session receivers' sweeps cannot each hold
//! a message the other's receive waits for, as each would need a clock ahead of the other's.
//! (Deleting a queue while receivers work its sessions may deadlock with one of them;
//! PostgreSQL rolls one back, and it is tried again.)

use baton_store::queues::{QueueError, QueueSpec, Received, SessionChoice, SessionLock};
use baton_store::{CommitError, Millis};
use deadpool_postgres::{GenericClient, Object, Transaction};

use super::rows::{COLUMNS, Lock, Outcome, col, limit, load, max_delivery, messages};
use super::rules::{self, EXPIRED, EXPIRED_DESCRIPTION, MAX_DELIVERY, MAX_DELIVERY_DESCRIPTION};
use crate::db;

/// How many sessions a receive of the next free one tries when others take them first.
const NEXT_TRIES: usize = 8;

/// Settles what time decided for `spec`'s queue: unlocked messages past their time to live
/// are dropped or dead-lettered, and messages whose last allowed delivery's lock expired are
/// dead-lettered.
pub(super) async fn sweep(
    t: &impl GenericClient,
    spec: &QueueSpec,
    now: Millis,
) -> Result<(), CommitError> {
    let expired = "NOT dead_lettered AND expires_at <= $2 \
         AND (locked_until IS NULL OR locked_until <= $2)";
    let dead_letter = "UPDATE queue_messages SET dead_lettered = true, locked_until = NULL, \
         dl_reason = $3, dl_description = $4";
    if spec.dead_letter_on_expiry {
        let stmt = t
            .prepare_cached(&format!(
                "{} {dead_letter} FROM p WHERE queue = $1 AND seq = p.pick",
                picked(expired)
            ))
            .await
            .map_err(db)?;
        t.execute(&stmt, &[&spec.name, &now, &EXPIRED, &EXPIRED_DESCRIPTION])
            .await
            .map_err(db)?;
    } else {
        let stmt = t
            .prepare_cached(&format!(
                "{} DELETE FROM queue_messages USING p WHERE queue = $1 AND seq = p.pick",
                picked(expired)
            ))
            .await
            .map_err(db)?;
        t.execute(&stmt, &[&spec.name, &now]).await.map_err(db)?;
    }
    let stmt = t
        .prepare_cached(&format!(
            "{} {dead_letter} FROM p WHERE queue = $1 AND seq = p.pick",
            picked("NOT dead_lettered AND locked_until <= $2 AND delivery_count >= $5")
        ))
        .await
        .map_err(db)?;
    t.execute(
        &stmt,
        &[
            &spec.name,
            &now,
            &MAX_DELIVERY,
            &MAX_DELIVERY_DESCRIPTION,
            &max_delivery(spec),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// `WITH p AS (…)`: the messages of queue `$1` matching `filter`, locked `FOR UPDATE SKIP
/// LOCKED`, as `p.pick`.
///
/// Materialized, so that it runs once: inlined as a subquery the planner may rescan it (on
/// the inner side of a nested loop), and each rescan skips the rows the statement itself
/// has just updated and locks the next ones, so that `LIMIT 2` updated three.
fn picked(filter: &str) -> String {
    format!(
        "WITH p AS MATERIALIZED (
             SELECT seq AS pick FROM queue_messages WHERE queue = $1 AND {filter}
             FOR UPDATE SKIP LOCKED
         )"
    )
}

/// What a receivable message is, at `$2` for a queue of max delivery count `$3`: neither
/// expired nor waiting for a sweep to dead-letter it.
const RECEIVABLE: &str = "NOT dead_lettered AND visible_at <= $2
     AND (expires_at IS NULL OR expires_at > $2)
     AND (locked_until IS NULL OR delivery_count < $3)";

pub(super) async fn receive(
    c: &mut Object,
    queue: &str,
    max: usize,
    choice: Option<SessionChoice>,
) -> Outcome<Received> {
    let t = c.transaction().await.map_err(db)?;
    let q = match load(&t, queue, Lock::None).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let (spec, now) = (&q.spec, q.now);
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
        // The session first, then messages (see the module's comment).
        (true, Some(choice)) => match take(&t, spec, choice, now).await? {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                sweep(&t, spec, now).await?;
                t.commit().await.map_err(db)?;
                return Ok(Ok(Received::default()));
            }
            Err(e) => return Ok(Err(e)),
        },
    };
    sweep(&t, spec, now).await?;
    let until = lock.as_ref().map_or(now + spec.lock_ms, |l| l.locked_until);
    let (only_session, skip) = match &lock {
        Some(_) => ("AND session_id = $6", ""),
        None => ("", "SKIP LOCKED"),
    };
    // Materialized for the reason [`picked`] gives; not `picked` itself, as a session's
    // messages are not skipped.
    let stmt = t
        .prepare_cached(&format!(
            "WITH p AS MATERIALIZED (
                 SELECT seq AS pick FROM queue_messages
                 WHERE queue = $1 AND {RECEIVABLE} {only_session}
                 ORDER BY seq LIMIT $5 FOR UPDATE {skip}
             )
             UPDATE queue_messages SET delivery_count = delivery_count + 1,
                 lock_fence = lock_fence + 1, locked_until = $4, visible_at = $4
             FROM p WHERE queue = $1 AND seq = p.pick
             RETURNING {COLUMNS}"
        ))
        .await
        .map_err(db)?;
    let (cap, n) = (max_delivery(spec), limit(max.max(1)));
    let rows = match &lock {
        Some(l) => {
            t.query(&stmt, &[&queue, &now, &cap, &until, &n, &l.session_id])
                .await
        }
        None => t.query(&stmt, &[&queue, &now, &cap, &until, &n]).await,
    }
    .map_err(db)?;
    let messages = messages(&rows, now)?;
    t.commit().await.map_err(db)?;
    Ok(Ok(Received {
        messages,
        session: lock,
    }))
}

/// Takes or continues the session `choice` names; `None` when there is none to take.
async fn take(
    t: &Transaction<'_>,
    spec: &QueueSpec,
    choice: SessionChoice,
    now: Millis,
) -> Outcome<Option<SessionLock>> {
    let (queue, until) = (&spec.name, now + spec.lock_ms);
    match choice {
        SessionChoice::Id { session_id, token } => {
            if !rules::storable(&session_id) {
                return Ok(Err(QueueError::Invalid(
                    "a session id cannot hold NUL".to_owned(),
                )));
            }
            let lock = match &token {
                Some(token) => match rules::session_fence(token) {
                    Some(fence) => extend(t, queue, &session_id, fence, until, now).await?,
                    None => None,
                },
                None => claim(t, queue, &session_id, until, now).await?,
            };
            Ok(lock.ok_or_else(|| {
                QueueError::LockLost(match token {
                    Some(_) => format!(
                        "session `{session_id}` of queue `{queue}` is not held with this token \
                         (its lock expired, or another receiver holds it)"
                    ),
                    None => format!(
                        "session `{session_id}` of queue `{queue}` is held by another receiver"
                    ),
                })
            }))
            .map(|r| r.map(Some))
        }
        SessionChoice::Next => {
            // Another receiver may take the session found between the two statements: the
            // claim then takes nothing, and the next one is tried.
            let mut passed: Vec<String> = Vec::new();
            for _ in 0..NEXT_TRIES {
                let Some(session_id) = next_free(t, spec, now, &passed).await? else {
                    return Ok(Ok(None));
                };
                if let Some(lock) = claim(t, queue, &session_id, until, now).await? {
                    return Ok(Ok(Some(lock)));
                }
                passed.push(session_id);
            }
            Ok(Ok(None))
        }
    }
}

/// The session of the oldest receivable message whose session nobody holds, but for those
/// `passed`.
async fn next_free(
    t: &Transaction<'_>,
    spec: &QueueSpec,
    now: Millis,
    passed: &[String],
) -> Result<Option<String>, CommitError> {
    let stmt = t
        .prepare_cached(&format!(
            "SELECT m.session_id FROM queue_messages m
             WHERE m.queue = $1 AND {RECEIVABLE} AND m.session_id <> ALL($4::text[])
               AND NOT EXISTS (
                   SELECT 1 FROM queue_sessions s
                   WHERE s.queue = m.queue AND s.session_id = m.session_id
                     AND s.locked_until > $2
               )
             ORDER BY m.seq LIMIT 1"
        ))
        .await
        .map_err(db)?;
    let cap = max_delivery(spec);
    t.query_opt(&stmt, &[&spec.name, &now, &cap, &passed])
        .await
        .map_err(db)?
        .map(|r| col(&r, 0))
        .transpose()
}

/// Locks the session if its lock is free, with a new fence.
async fn claim(
    t: &Transaction<'_>,
    queue: &str,
    session_id: &str,
    until: Millis,
    now: Millis,
) -> Result<Option<SessionLock>, CommitError> {
    let stmt = t
        .prepare_cached(
            "INSERT INTO queue_sessions AS s (queue, session_id, fence, locked_until)
             VALUES ($1, $2, 1, $3)
             ON CONFLICT (queue, session_id) DO UPDATE
                 SET fence = s.fence + 1, locked_until = excluded.locked_until
                 WHERE s.locked_until <= $4
             RETURNING fence, locked_until",
        )
        .await
        .map_err(db)?;
    t.query_opt(&stmt, &[&queue, &session_id, &until, &now])
        .await
        .map_err(db)?
        .map(|r| session_lock(&r, session_id))
        .transpose()
}

/// Extends the session's lock if `fence` holds it now (never shortening it).
async fn extend(
    t: &Transaction<'_>,
    queue: &str,
    session_id: &str,
    fence: i64,
    until: Millis,
    now: Millis,
) -> Result<Option<SessionLock>, CommitError> {
    let stmt = t
        .prepare_cached(
            "UPDATE queue_sessions SET locked_until = GREATEST(locked_until, $4)
             WHERE queue = $1 AND session_id = $2 AND fence = $3 AND locked_until > $5
             RETURNING fence, locked_until",
        )
        .await
        .map_err(db)?;
    t.query_opt(&stmt, &[&queue, &session_id, &fence, &until, &now])
        .await
        .map_err(db)?
        .map(|r| session_lock(&r, session_id))
        .transpose()
}

fn session_lock(r: &tokio_postgres::Row, session_id: &str) -> Result<SessionLock, CommitError> {
    Ok(SessionLock {
        session_id: session_id.to_owned(),
        token: col::<i64>(r, 0)?.to_string(),
        locked_until: col(r, 1)?,
    })
}
