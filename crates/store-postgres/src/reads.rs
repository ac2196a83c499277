//! Reads, on any pooled connection or open transaction.

use baton_store::{
    CommitError, Definition, Event, Filter, InstanceRow, KeyBinding, Lease, Millis, Page,
    RuntimeStatus, StoreError, Work, WorkKind,
};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::db;

pub(crate) const INSTANCE_COLUMNS: &str = "id, function, definition, status, input, output, \
     error, custom_status, state, created_at, updated_at, revision";

pub(crate) const WORK_COLUMNS: &str =
    "id, instance, kind, token, due_at, payload, attempt, owner, fence, lease_until";

pub(crate) async fn now(c: &impl GenericClient) -> Result<Millis, CommitError> {
    let r = c
        .query_one(
            &c.prepare_cached("SELECT baton_now()").await.map_err(db)?,
            &[],
        )
        .await
        .map_err(db)?;
    Ok(r.get(0))
}

pub(crate) async fn definition(
    c: &impl GenericClient,
    hash: &str,
) -> Result<Option<Definition>, CommitError> {
    let stmt = c
        .prepare_cached("SELECT hash, name, version, source FROM definitions WHERE hash = $1")
        .await
        .map_err(db)?;
    Ok(c.query_opt(&stmt, &[&hash])
        .await
        .map_err(db)?
        .map(|r| Definition {
            hash: r.get(0),
            name: r.get(1),
            version: r.get(2),
            source: r.get(3),
        }))
}

pub(crate) async fn instance(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<InstanceRow>, CommitError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1"
        ))
        .await
        .map_err(db)?;
    c.query_opt(&stmt, &[&id])
        .await
        .map_err(db)?
        .map(|r| instance_row(&r))
        .transpose()
}

pub(crate) fn instance_row(r: &Row) -> Result<InstanceRow, CommitError> {
    let status: String = r.get(3);
    Ok(InstanceRow {
        id: r.get(0),
        function: r.get(1),
        definition: r.get(2),
        status: RuntimeStatus::parse(&status)
            .ok_or_else(|| unreadable(format!("status `{status}`")))?,
        input: parse(r.get(4))?,
        output: r.get::<_, Option<&str>>(5).map(parse).transpose()?,
        error: r.get::<_, Option<&str>>(6).map(parse).transpose()?,
        custom_status: r.get::<_, Option<&str>>(7).map(parse).transpose()?,
        state: r.get(8),
        created_at: r.get(9),
        updated_at: r.get(10),
        revision: r.get::<_, i64>(11) as u64,
    })
}

pub(crate) fn work_row(r: &Row) -> Result<Work, CommitError> {
    let kind: &str = r.get(2);
    Ok(Work {
        id: r.get(0),
        instance: r.get(1),
        kind: WorkKind::parse(kind).ok_or_else(|| unreadable(format!("work kind `{kind}`")))?,
        token: r.get::<_, i64>(3) as u64,
        due_at: r.get(4),
        payload: parse(r.get(5))?,
        attempt: r.get::<_, i32>(6) as u32,
        lease: Lease {
            owner: r.get::<_, Option<String>>(7).unwrap_or_default(),
            fence: r.get(8),
            until: r.get::<_, Option<i64>>(9).unwrap_or_default(),
        },
    })
}

pub(crate) fn parse(s: &str) -> Result<Value, CommitError> {
    serde_json::from_str(s).map_err(|e| unreadable(format!("JSON: {e}")))
}

pub(crate) fn unreadable(what: String) -> CommitError {
    CommitError::Store(StoreError::Permanent(format!("unreadable {what}")))
}

/// `WHERE …` for a filter (always at least `true`), with its parameters numbered from
/// `$first`.
pub(crate) fn filter_sql(
    f: &Filter,
    terminal_only: bool,
    first: usize,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut clauses = vec!["true".to_owned()];
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let next = |args: &mut Vec<Box<dyn ToSql + Sync + Send>>, v: Box<dyn ToSql + Sync + Send>| {
        args.push(v);
        format!("${}", first + args.len() - 1)
    };
    match f.statuses_to_match(terminal_only) {
        None => clauses.push("false".to_owned()),
        Some(statuses) if statuses.is_empty() => {}
        Some(statuses) => {
            let names: Vec<String> = statuses.iter().map(|s| s.as_str().to_owned()).collect();
            let p = next(&mut args, Box::new(names));
            clauses.push(format!("status = ANY({p}::text[])"));
        }
    }
    if let Some(func) = &f.function {
        let p = next(&mut args, Box::new(func.clone()));
        clauses.push(format!("function = {p}"));
    }
    if let Some(from) = f.created_from {
        let p = next(&mut args, Box::new(from));
        clauses.push(format!("created_at >= {p}"));
    }
    if let Some(to) = f.created_to {
        let p = next(&mut args, Box::new(to));
        clauses.push(format!("created_at < {p}"));
    }
    if let Some(prefix) = &f.id_prefix {
        // Not LIKE: ids may hold `%` or `_`.
        let p = next(&mut args, Box::new(prefix.clone()));
        clauses.push(format!("starts_with(id, {p})"));
    }
    (clauses.join(" AND "), args)
}

fn params(args: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// A continuation token: the creation time and id of the last instance given out.
fn token(row: &InstanceRow) -> String {
    format!("{}.{}", row.created_at, row.id)
}

fn untoken(t: &str) -> Result<(i64, String), CommitError> {
    let bad = || {
        CommitError::Store(StoreError::Permanent(format!(
            "`{t}` is not a continuation token of this store"
        )))
    };
    let (at, id) = t.split_once('.').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

pub(crate) async fn list(
    c: &impl GenericClient,
    f: &Filter,
    size: usize,
    continuation: Option<&str>,
) -> Result<Page, CommitError> {
    let (mut sql, mut args) = filter_sql(f, false, 1);
    if let Some(t) = continuation {
        let (at, id) = untoken(t)?;
        let n = args.len();
        sql.push_str(&format!(" AND (created_at, id) < (${}, ${})", n + 1, n + 2));
        args.push(Box::new(at));
        args.push(Box::new(id));
    }
    let size = size.max(1);
    // One more than asked shows whether another page follows.
    args.push(Box::new(size as i64 + 1));
    let query = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE {sql}
         ORDER BY created_at DESC, id DESC LIMIT ${}",
        args.len()
    );
    let rows = c.query(&query, &params(&args)).await.map_err(db)?;
    let mut items = rows
        .iter()
        .map(instance_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > size;
    items.truncate(size);
    let continuation = if more { items.last().map(token) } else { None };
    Ok(Page {
        items,
        continuation,
    })
}

pub(crate) async fn history(
    c: &impl GenericClient,
    id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>, CommitError> {
    let stmt = c
        .prepare_cached(
            "SELECT seq, at, kind, data FROM history WHERE instance = $1 AND seq > $2
             ORDER BY seq LIMIT $3",
        )
        .await
        .map_err(db)?;
    let rows = c
        .query(&stmt, &[&id, &(after as i64), &(limit as i64)])
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                seq: r.get::<_, i64>(0) as u64,
                at: r.get(1),
                kind: r.get(2),
                data: parse(r.get(3))?,
            })
        })
        .collect()
}

pub(crate) async fn next_due(c: &impl GenericClient) -> Result<Option<Millis>, CommitError> {
    let stmt = c
        .prepare_cached("SELECT MIN(available_at) FROM work")
        .await
        .map_err(db)?;
    Ok(c.query_one(&stmt, &[]).await.map_err(db)?.get(0))
}

pub(crate) async fn count(
    c: &impl GenericClient,
    status: RuntimeStatus,
) -> Result<u64, CommitError> {
    let stmt = c
        .prepare_cached("SELECT COUNT(*) FROM instances WHERE status = $1")
        .await
        .map_err(db)?;
    let n: i64 = c
        .query_one(&stmt, &[&status.as_str()])
        .await
        .map_err(db)?
        .get(0);
    Ok(n as u64)
}

/// The binding of `key` if it has not expired by the database's clock.
pub(crate) async fn idempotency(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<KeyBinding>, CommitError> {
    let stmt = c
        .prepare_cached(
            "SELECT instance, request_hash FROM idempotency
             WHERE key = $1 AND expires_at > baton_now()",
        )
        .await
        .map_err(db)?;
    Ok(c.query_opt(&stmt, &[&key])
        .await
        .map_err(db)?
        .map(|r| KeyBinding {
            instance: r.get(0),
            request_hash: r.get(1),
        }))
}
