//! Writes. Each is one transaction; the ones that touch several rows lock them in one order —
//! the instance row first, then its work — so that two of them wait for each other rather than
//! deadlock (and PostgreSQL's deadlock detector, whose victims are retried, covers the rest).

use std::collections::HashMap;

use baton_store::{
    Commit, CommitError, Committed, Definition, Filter, Held, Lease, Millis, NewWork, StoreError,
    Work,
};
use deadpool_postgres::{GenericClient, Object};

use crate::db;
use crate::listen::WORK;
use crate::reads::{self, WORK_COLUMNS, filter_sql};

fn json(v: &serde_json::Value) -> String {
    v.to_string()
}

pub(crate) async fn put_definition(c: &Object, d: &Definition) -> Result<(), CommitError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO definitions (hash, name, version, source) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO NOTHING",
        )
        .await
        .map_err(db)?;
    c.execute(&stmt, &[&d.hash, &d.name, &d.version, &d.source])
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn commit(
    c: &mut Object,
    channel: &str,
    k: &Commit,
) -> Result<Committed, CommitError> {
    let t = c.transaction().await.map_err(db)?;
    let i = &k.instance;
    let stmt = t
        .prepare_cached("SELECT revision, history_len FROM instances WHERE id = $1 FOR UPDATE")
        .await
        .map_err(db)?;
    let found: Option<(i64, i64)> = t
        .query_opt(&stmt, &[&i.id])
        .await
        .map_err(db)?
        .map(|r| (r.get(0), r.get(1)));
    let conflict = |found: Option<i64>| CommitError::Conflict {
        instance: i.id.clone(),
        expected: k.expected_revision,
        found: found.map(|r| r as u64),
    };
    let (revision, history_len) = match (k.expected_revision, found) {
        (None, None) => (1, 0),
        (Some(want), Some((have, len))) if want == have as u64 => (want + 1, len),
        _ => return Err(conflict(found.map(|(r, _)| r))),
    };
    let history_after = history_len + k.history.len() as i64;
    let output = i.output.as_ref().map(json);
    let error = i.error.as_ref().map(json);
    let custom = i.custom_status.as_ref().map(json);
    let input = json(&i.input);
    let status = i.status.as_str();
    let revision_sql = revision as i64;
    if found.is_none() {
        // Two creates of one id both find no row to lock; the unique key lets one in.
        let stmt = t
            .prepare_cached(
                "INSERT INTO instances (id, function, definition, status, input, output, error,
                     custom_status, state, created_at, updated_at, revision, history_len)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, baton_now(), $11, $12)
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(db)?;
        let n = t
            .execute(
                &stmt,
                &[
                    &i.id,
                    &i.function,
                    &i.definition,
                    &status,
                    &input,
                    &output,
                    &error,
                    &custom,
                    &i.state,
                    &i.created_at,
                    &revision_sql,
                    &history_after,
                ],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            return Err(conflict(Some(1)));
        }
    } else {
        let stmt = t
            .prepare_cached(
                "UPDATE instances SET function = $2, definition = $3, status = $4, input = $5,
                     output = $6, error = $7, custom_status = $8, state = $9,
                     updated_at = baton_now(), revision = $10, history_len = $11
                 WHERE id = $1",
            )
            .await
            .map_err(db)?;
        t.execute(
            &stmt,
            &[
                &i.id,
                &i.function,
                &i.definition,
                &status,
                &input,
                &output,
                &error,
                &custom,
                &i.state,
                &revision_sql,
                &history_after,
            ],
        )
        .await
        .map_err(db)?;
    }
    if !k.done.is_empty() {
        let ids: Vec<i64> = k.done.iter().map(|h| h.id).collect();
        let fences: Vec<i64> = k.done.iter().map(|h| h.fence).collect();
        let stmt = t
            .prepare_cached(
                "DELETE FROM work w USING unnest($1::bigint[], $2::bigint[]) AS h(id, fence)
                 WHERE w.id = h.id AND w.fence = h.fence RETURNING w.id",
            )
            .await
            .map_err(db)?;
        let gone: Vec<i64> = t
            .query(&stmt, &[&ids, &fences])
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(h) = k.done.iter().find(|h| !gone.contains(&h.id)) {
            return Err(CommitError::Fenced {
                id: h.id,
                fence: h.fence,
            });
        }
    }
    if !k.cancel.is_empty() {
        let kinds: Vec<&str> = k.cancel.iter().map(|(kind, _)| kind.as_str()).collect();
        let tokens: Vec<i64> = k.cancel.iter().map(|(_, t)| *t as i64).collect();
        let stmt = t
            .prepare_cached(
                "DELETE FROM work WHERE instance = $1
                 AND (kind, token) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))",
            )
            .await
            .map_err(db)?;
        t.execute(&stmt, &[&i.id, &kinds, &tokens])
            .await
            .map_err(db)?;
    }
    let enqueued = insert_work(&t, &k.enqueue).await?;
    if !k.history.is_empty() {
        let kinds: Vec<&str> = k.history.iter().map(|e| e.kind.as_str()).collect();
        let data: Vec<String> = k.history.iter().map(|e| json(&e.data)).collect();
        let stmt = t
            .prepare_cached(
                "INSERT INTO history (instance, seq, at, kind, data)
                 SELECT $1, $2 + n.ord, baton_now(), n.kind, n.data
                 FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS n(kind, data, ord)",
            )
            .await
            .map_err(db)?;
        t.execute(&stmt, &[&i.id, &history_len, &kinds, &data])
            .await
            .map_err(db)?;
    }
    if let Some(key) = &k.idempotency {
        // Taken only if it is free or expired; a live binding is the caller's to judge.
        let stmt = t
            .prepare_cached(
                "INSERT INTO idempotency (key, instance, request_hash, expires_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET instance = excluded.instance,
                     request_hash = excluded.request_hash, expires_at = excluded.expires_at
                 WHERE idempotency.expires_at <= baton_now()",
            )
            .await
            .map_err(db)?;
        let n = t
            .execute(
                &stmt,
                &[&key.key, &i.id, &key.request_hash, &key.expires_at],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            let bound = reads::idempotency(&t, &key.key).await?;
            return Err(match bound {
                Some(b) => CommitError::KeyTaken(b),
                // Expired between the two statements: as good as taken by a racing commit.
                None => conflict(found.map(|(r, _)| r)),
            });
        }
    }
    if !k.enqueue.is_empty() {
        notify(&t, channel, WORK).await?;
    }
    t.commit().await.map_err(db)?;
    Ok(Committed { revision, enqueued })
}

/// `pg_notify` in the open transaction: sent when (and only if) it commits.
pub(crate) async fn notify(
    t: &impl GenericClient,
    channel: &str,
    payload: &str,
) -> Result<(), CommitError> {
    let stmt = t
        .prepare_cached("SELECT pg_notify($1, $2)::text")
        .await
        .map_err(db)?;
    t.query(&stmt, &[&channel, &payload]).await.map_err(db)?;
    Ok(())
}

/// Inserts work items (each under its own instance: a step may address an event to another);
/// their ids, in the order given.
async fn insert_work(t: &impl GenericClient, work: &[NewWork]) -> Result<Vec<i64>, CommitError> {
    if work.is_empty() {
        return Ok(Vec::new());
    }
    let instances: Vec<&str> = work.iter().map(|w| w.instance.as_str()).collect();
    let kinds: Vec<&str> = work.iter().map(|w| w.kind.as_str()).collect();
    let tokens: Vec<i64> = work.iter().map(|w| w.token as i64).collect();
    let due: Vec<i64> = work.iter().map(|w| w.due_at).collect();
    let payloads: Vec<String> = work.iter().map(|w| json(&w.payload)).collect();
    let stmt = t
        .prepare_cached(
            "INSERT INTO work (instance, kind, token, due_at, payload, available_at)
             SELECT n.instance, n.kind, n.token, n.due, n.payload, n.due
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
                 WITH ORDINALITY AS n(instance, kind, token, due, payload, ord)
             ORDER BY n.ord
             RETURNING id, instance, kind, token",
        )
        .await
        .map_err(db)?;
    let rows = t
        .query(&stmt, &[&instances, &kinds, &tokens, &due, &payloads])
        .await
        .map_err(db)?;
    // RETURNING promises no order: match each id back to its item by (instance, kind, token),
    // which a step never repeats; ids among items sharing all three (none should) go in
    // insertion order.
    let mut by_key: HashMap<(String, String, i64), Vec<i64>> = HashMap::new();
    for r in &rows {
        by_key
            .entry((r.get(1), r.get(2), r.get(3)))
            .or_default()
            .push(r.get(0));
    }
    for ids in by_key.values_mut() {
        ids.sort_unstable_by(|a, b| b.cmp(a));
    }
    work.iter()
        .map(|w| {
            by_key
                .get_mut(&(
                    w.instance.clone(),
                    w.kind.as_str().to_owned(),
                    w.token as i64,
                ))
                .and_then(Vec::pop)
                .ok_or_else(|| {
                    CommitError::Store(StoreError::Permanent(
                        "an inserted work item was not returned".to_owned(),
                    ))
                })
        })
        .collect()
}

pub(crate) async fn send(c: &Object, channel: &str, w: &NewWork) -> Result<i64, CommitError> {
    let stmt = c
        .prepare_cached(
            "WITH n AS (
                 INSERT INTO work (instance, kind, token, due_at, payload, available_at)
                 SELECT $1, $2, $3, $4, $5, $4 WHERE EXISTS (SELECT 1 FROM instances WHERE id = $1)
                 RETURNING id
             )
             SELECT id, pg_notify($6, $7)::text FROM n",
        )
        .await
        .map_err(db)?;
    let row = c
        .query_opt(
            &stmt,
            &[
                &w.instance,
                &w.kind.as_str(),
                &(w.token as i64),
                &w.due_at,
                &json(&w.payload),
                &channel,
                &WORK,
            ],
        )
        .await
        .map_err(db)?;
    match row {
        Some(r) => Ok(r.get(0)),
        None => Err(CommitError::Store(StoreError::Permanent(format!(
            "no instance `{}` to send work to",
            w.instance
        )))),
    }
}

pub(crate) async fn claim(
    c: &Object,
    owner: &str,
    lease_ms: i64,
    max: usize,
) -> Result<Vec<Work>, CommitError> {
    let stmt = c
        .prepare_cached(&format!(
            "WITH p AS MATERIALIZED (
                 SELECT id FROM work WHERE available_at <= baton_now()
                 ORDER BY available_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
             )
             UPDATE work w SET owner = $1, fence = w.fence + 1, attempt = w.attempt + 1,
                 lease_until = baton_now() + $2, available_at = baton_now() + $2
             FROM p
             WHERE w.id = p.id
             RETURNING {}",
            WORK_COLUMNS
                .split(", ")
                .map(|col| format!("w.{col}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
        .map_err(db)?;
    let rows = c
        .query(&stmt, &[&owner, &lease_ms.max(1), &(max as i64)])
        .await
        .map_err(db)?;
    let mut got = rows
        .iter()
        .map(reads::work_row)
        .collect::<Result<Vec<_>, _>>()?;
    // The pick is MATERIALIZED: run once. Inlined, the planner may run the locking subquery
    // again inside a join, and each run skips the rows this statement has just locked — taking
    // more than `max`. RETURNING gives no order; claims come out earliest due first.
    got.sort_by_key(|w| (w.due_at, w.id));
    Ok(got)
}

pub(crate) async fn extend(c: &Object, held: Held, lease_ms: i64) -> Result<Lease, CommitError> {
    let stmt = c
        .prepare_cached(
            "UPDATE work SET lease_until = baton_now() + $1, available_at = baton_now() + $1
             WHERE id = $2 AND fence = $3 AND owner IS NOT NULL
             RETURNING owner, fence, lease_until",
        )
        .await
        .map_err(db)?;
    c.query_opt(&stmt, &[&lease_ms.max(1), &held.id, &held.fence])
        .await
        .map_err(db)?
        .map(|r| Lease {
            owner: r.get(0),
            fence: r.get(1),
            until: r.get(2),
        })
        .ok_or(CommitError::Fenced {
            id: held.id,
            fence: held.fence,
        })
}

/// Gives the item back; its fence moves on, so the releaser can no longer finish it.
pub(crate) async fn release(
    c: &Object,
    channel: &str,
    held: Held,
    due_at: Millis,
) -> Result<(), CommitError> {
    let stmt = c
        .prepare_cached(
            "WITH r AS (
                 UPDATE work SET owner = NULL, lease_until = NULL, fence = fence + 1,
                     due_at = $1, available_at = $1
                 WHERE id = $2 AND fence = $3 AND owner IS NOT NULL
                 RETURNING id
             )
             SELECT id, pg_notify($4, $5)::text FROM r",
        )
        .await
        .map_err(db)?;
    let n = c
        .query(&stmt, &[&due_at, &held.id, &held.fence, &channel, &WORK])
        .await
        .map_err(db)?
        .len();
    if n == 0 {
        return Err(CommitError::Fenced {
            id: held.id,
            fence: held.fence,
        });
    }
    Ok(())
}

pub(crate) async fn purge(c: &Object, id: &str) -> Result<bool, CommitError> {
    let stmt = c
        .prepare_cached(
            "WITH h AS (DELETE FROM history WHERE instance = $1),
                  w AS (DELETE FROM work WHERE instance = $1),
                  k AS (DELETE FROM idempotency WHERE instance = $1),
                  i AS (DELETE FROM instances WHERE id = $1 RETURNING 1)
             SELECT count(*) FROM i",
        )
        .await
        .map_err(db)?;
    let n: i64 = c.query_one(&stmt, &[&id]).await.map_err(db)?.get(0);
    Ok(n > 0)
}

pub(crate) async fn purge_where(c: &Object, filter: &Filter) -> Result<u64, CommitError> {
    let (sql, args) = filter_sql(filter, true, 1);
    let query = format!(
        "WITH gone AS (DELETE FROM instances WHERE {sql} RETURNING id),
              h AS (DELETE FROM history WHERE instance IN (SELECT id FROM gone)),
              w AS (DELETE FROM work WHERE instance IN (SELECT id FROM gone)),
              k AS (DELETE FROM idempotency WHERE instance IN (SELECT id FROM gone))
         SELECT count(*) FROM gone"
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let n: i64 = c.query_one(&query, &params).await.map_err(db)?.get(0);
    Ok(n as u64)
}
