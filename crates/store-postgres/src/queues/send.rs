//! Managing queues and sending to them.
//!
//! A send holds its queue's row (`FOR NO KEY UPDATE`) from the first statement to the
//! commit: sequence numbers come out of `next_seq` without gaps or repeats, and the duplicate
//! check of one send sees every id an earlier send of the same queue accepted, whichever node
//! sent it. Deleting a queue takes the same row first, then its messages, each in a statement
//! of its own: a statement sees what committed before it began, so the messages of a send
//! that deletion waited for are deleted too.

use std::collections::HashSet;

use baton_store::queues::{NewMessage, QueueError, QueueSpec, Sent};
use baton_store::{CommitError, Millis};
use deadpool_postgres::{Object, Transaction};
use serde_json::Value;

use super::rows::{Lock, Outcome, col, load, spec_text};
use super::rules::{self, Plan};
use super::wake_payload;
use crate::db;

/// New settings make no message receivable: nobody is woken.
pub(super) async fn put_queue(c: &Object, spec: &QueueSpec) -> Outcome<()> {
    if let Some(p) = spec.problem() {
        return Ok(Err(QueueError::Invalid(p)));
    }
    let stmt = c
        .prepare_cached(
            "INSERT INTO queues (name, spec) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
        )
        .await
        .map_err(db)?;
    c.execute(&stmt, &[&spec.name, &spec_text(spec)?])
        .await
        .map_err(db)?;
    Ok(Ok(()))
}

pub(super) async fn delete_queue(c: &mut Object, name: &str) -> Outcome<bool> {
    if !rules::storable(name) {
        return Ok(Ok(false));
    }
    let t = c.transaction().await.map_err(db)?;
    let stmt = t
        .prepare_cached("DELETE FROM queues WHERE name = $1")
        .await
        .map_err(db)?;
    let deleted = t.execute(&stmt, &[&name]).await.map_err(db)?;
    for table in ["queue_sessions", "queue_messages", "queue_duplicates"] {
        let stmt = t
            .prepare_cached(&format!("DELETE FROM {table} WHERE queue = $1"))
            .await
            .map_err(db)?;
        t.execute(&stmt, &[&name]).await.map_err(db)?;
    }
    t.commit().await.map_err(db)?;
    Ok(Ok(deleted > 0))
}

pub(super) async fn enqueue(
    c: &mut Object,
    channel: &str,
    queue: &str,
    messages: &[NewMessage],
) -> Outcome<Vec<Sent>> {
    let t = c.transaction().await.map_err(db)?;
    let q = match load(&t, queue, Lock::ForSending).await? {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(p) = rules::problem(&q.spec, messages) {
        return Ok(Err(QueueError::Invalid(p)));
    }
    // Ids the store makes up are never duplicates: with none given, nothing to look up.
    let seen = if q.spec.duplicate_window_ms.is_some()
        && messages.iter().any(|m| m.message_id.is_some())
    {
        seen(&t, queue, messages, q.now).await?
    } else {
        HashSet::new()
    };
    let plan = rules::plan(&q.spec, messages, &seen, q.next_seq, q.now);
    // Only accepted messages are remembered: with none, there is nothing to write.
    if !plan.rows.is_empty() {
        write(&t, channel, queue, q.now, &plan).await?;
    }
    t.commit().await.map_err(db)?;
    Ok(Ok(plan.sent))
}

/// Writes what `plan` says in one statement: the ids to remember (forgetting those whose
/// window has passed), the messages, the next sequence number and the wake-up. No two parts
/// touch one row (the forgotten ids are not the remembered ones), so that none steps on
/// another: they all see the rows as the statement began.
async fn write(
    t: &Transaction<'_>,
    channel: &str,
    queue: &str,
    now: Millis,
    plan: &Plan<'_>,
) -> Result<(), CommitError> {
    let rows = &plan.rows;
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
    let bodies: Vec<&[u8]> = rows.iter().map(|r| r.message.body.as_slice()).collect();
    let texts = |f: fn(&NewMessage) -> Option<&str>| -> Vec<Option<&str>> {
        rows.iter().map(|r| f(r.message)).collect()
    };
    let types = texts(|m| m.content_type.as_deref());
    let sessions = texts(|m| m.session_id.as_deref());
    let correlations = texts(|m| m.correlation_id.as_deref());
    let properties: Vec<String> = rows
        .iter()
        .map(|r| Value::Object(r.message.properties.clone()).to_string())
        .collect();
    let visible: Vec<i64> = rows.iter().map(|r| r.visible_at).collect();
    let expires: Vec<Option<i64>> = rows.iter().map(|r| r.expires_at).collect();
    let remember: Vec<&str> = plan.remember.iter().map(|(id, _)| id.as_str()).collect();
    let forget_at: Vec<i64> = plan.remember.iter().map(|(_, at)| *at).collect();
    let stmt = t
        .prepare_cached(
            "WITH forgotten AS (
                 DELETE FROM queue_duplicates
                 WHERE queue = $1 AND expires_at <= $2 AND message_id <> ALL($12::text[])
             ), remembered AS (
                 INSERT INTO queue_duplicates (queue, message_id, expires_at)
                 SELECT $1, d.id, d.until FROM unnest($12::text[], $13::bigint[]) AS d(id, until)
                 ON CONFLICT (queue, message_id) DO UPDATE SET expires_at = excluded.expires_at
             ), inserted AS (
                 INSERT INTO queue_messages (queue, seq, message_id, body, content_type,
                     session_id, correlation_id, properties, enqueued_at, visible_at, expires_at)
                 SELECT $1, n.seq, n.id, n.body, n.content_type, n.session_id, n.correlation_id,
                     n.properties, $2, n.visible_at, n.expires_at
                 FROM unnest($3::bigint[], $4::text[], $5::bytea[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::bigint[], $11::bigint[])
                     AS n(seq, id, body, content_type, session_id, correlation_id, properties,
                          visible_at, expires_at)
             ), numbered AS (
                 UPDATE queues SET next_seq = $14 WHERE name = $1
             )
             SELECT pg_notify($15, $16)::text",
        )
        .await
        .map_err(db)?;
    t.query(
        &stmt,
        &[
            &queue,
            &now,
            &seqs,
            &ids,
            &bodies,
            &types,
            &sessions,
            &correlations,
            &properties,
            &visible,
            &expires,
            &remember,
            &forget_at,
            &plan.next_seq,
            &channel,
            &wake_payload(queue),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// The ids of `messages` accepted within the duplicate-detection window.
async fn seen(
    t: &Transaction<'_>,
    queue: &str,
    messages: &[NewMessage],
    now: Millis,
) -> Result<HashSet<String>, CommitError> {
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.message_id.as_deref())
        .collect();
    let stmt = t
        .prepare_cached(
            "SELECT message_id FROM queue_duplicates
             WHERE queue = $1 AND message_id = ANY($2) AND expires_at > $3",
        )
        .await
        .map_err(db)?;
    t.query(&stmt, &[&queue, &ids, &now])
        .await
        .map_err(db)?
        .iter()
        .map(|r| col::<String>(r, 0))
        .collect()
}
