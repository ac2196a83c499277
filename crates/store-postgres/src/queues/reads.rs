//! Looking at queues: settings, peeks, statistics and the next time something becomes
//! receivable.

use baton_store::queues::{Message, QueueSpec, QueueStats};
use baton_store::{CommitError, Millis};
use deadpool_postgres::{GenericClient, Object};

use super::receive::sweep;
use super::rows::{COLUMNS, Lock, Outcome, col, limit, load, messages, parse_spec};
use super::rules;
use crate::db;

pub(super) async fn queues(c: &impl GenericClient) -> Result<Vec<QueueSpec>, CommitError> {
    // Byte order, as SQLite sorts, whatever the database's collation.
    let stmt = c
        .prepare_cached(r#"SELECT spec FROM queues ORDER BY name COLLATE "C""#)
        .await
        .map_err(db)?;
    c.query(&stmt, &[])
        .await
        .map_err(db)?
        .iter()
        .map(|r| parse_spec(col(r, 0)?))
        .collect()
}

pub(super) async fn queue(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<QueueSpec>, CommitError> {
    if !rules::storable(name) {
        return Ok(None);
    }
    let stmt = c
        .prepare_cached("SELECT spec FROM queues WHERE name = $1")
        .await
        .map_err(db)?;
    c.query_opt(&stmt, &[&name])
        .await
        .map_err(db)?
        .map(|r| parse_spec(col(&r, 0)?))
        .transpose()
}

pub(super) async fn peek(
    c: &impl GenericClient,
    queue: &str,
    from: i64,
    max: usize,
    dead_letter: bool,
) -> Outcome<Vec<Message>> {
    let q = match load(c, queue, Lock::None).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM queue_messages
             WHERE queue = $1 AND dead_lettered = $2 AND seq >= $3 ORDER BY seq LIMIT $4"
        ))
        .await
        .map_err(db)?;
    let rows = c
        .query(&stmt, &[&queue, &dead_letter, &from, &limit(max)])
        .await
        .map_err(db)?;
    let mut out = messages(&rows, q.now)?;
    // A peek never hands out a lock.
    for m in &mut out {
        m.lock_token = None;
    }
    Ok(Ok(out))
}

/// Counts by state, after the sweep a receive would make.
pub(super) async fn stats(c: &mut Object, queue: &str) -> Outcome<QueueStats> {
    let t = c.transaction().await.map_err(db)?;
    let q = match load(&t, queue, Lock::None).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    sweep(&t, &q.spec, q.now).await?;
    let stmt = t
        .prepare_cached(
            "SELECT
                 count(*) FILTER (WHERE NOT dead_lettered AND visible_at <= $2
                     AND (locked_until IS NULL OR locked_until <= $2)),
                 count(*) FILTER (WHERE NOT dead_lettered AND locked_until IS NULL
                     AND visible_at > $2),
                 count(*) FILTER (WHERE NOT dead_lettered AND locked_until > $2),
                 count(*) FILTER (WHERE dead_lettered)
             FROM queue_messages WHERE queue = $1",
        )
        .await
        .map_err(db)?;
    let r = t.query_one(&stmt, &[&queue, &q.now]).await.map_err(db)?;
    let n = |i| col::<i64>(&r, i).map(|n| u64::try_from(n).unwrap_or_default());
    let stats = QueueStats {
        active: n(0)?,
        scheduled: n(1)?,
        locked: n(2)?,
        dead_lettered: n(3)?,
    };
    t.commit().await.map_err(db)?;
    Ok(Ok(stats))
}

/// Only times still to come: a message visible now but not receivable (its session is held
/// by another receiver) waits for that session's lock instead.
pub(super) async fn next_visible(
    c: &impl GenericClient,
    queue: &str,
) -> Result<Option<Millis>, CommitError> {
    if !rules::storable(queue) {
        return Ok(None);
    }
    let stmt = c
        .prepare_cached(
            "SELECT LEAST(
                 (SELECT min(visible_at) FROM queue_messages
                  WHERE queue = $1 AND NOT dead_lettered AND visible_at > baton_now()),
                 (SELECT min(locked_until) FROM queue_sessions
                  WHERE queue = $1 AND locked_until > baton_now())
             )",
        )
        .await
        .map_err(db)?;
    col(&c.query_one(&stmt, &[&queue]).await.map_err(db)?, 0)
}
