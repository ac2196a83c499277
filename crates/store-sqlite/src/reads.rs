//! Reads, on any connection (a reader's, or the writer's open transaction).

use baton_store::{
    Definition, Event, Filter, InstanceRow, KeyBinding, Lease, Millis, Page, RuntimeStatus,
    StoreError, Work, WorkKind,
};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use crate::{classify, row};

const INSTANCE_COLUMNS: &str = "id, function, definition, status, input, output, error, \
     custom_status, state, created_at, updated_at, revision";

pub(crate) fn definition(c: &Connection, hash: &str) -> Result<Option<Definition>, StoreError> {
    row(
        c,
        "SELECT hash, name, version, source FROM definitions WHERE hash = ?1",
        [hash],
        |r| {
            Ok(Definition {
                hash: r.get(0)?,
                name: r.get(1)?,
                version: r.get(2)?,
                source: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(classify)
}

pub(crate) fn instance(c: &Connection, id: &str) -> Result<Option<InstanceRow>, StoreError> {
    row(
        c,
        &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"),
        [id],
        instance_row,
    )
    .optional()
    .map_err(classify)
}

fn instance_row(r: &Row<'_>) -> rusqlite::Result<InstanceRow> {
    let status: String = r.get(3)?;
    Ok(InstanceRow {
        id: r.get(0)?,
        function: r.get(1)?,
        definition: r.get(2)?,
        status: RuntimeStatus::parse(&status)
            .ok_or_else(|| bad(3, format!("status `{status}`")))?,
        input: parse(r, 4)?,
        output: parse_opt(r, 5)?,
        error: parse_opt(r, 6)?,
        custom_status: parse_opt(r, 7)?,
        state: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        revision: r.get::<_, i64>(11)? as u64,
    })
}

pub(crate) fn work_row(r: &Row<'_>) -> rusqlite::Result<Work> {
    let kind: String = r.get(2)?;
    Ok(Work {
        id: r.get(0)?,
        instance: r.get(1)?,
        kind: WorkKind::parse(&kind).ok_or_else(|| bad(2, format!("work kind `{kind}`")))?,
        token: r.get::<_, i64>(3)? as u64,
        due_at: r.get(4)?,
        payload: parse(r, 5)?,
        attempt: r.get::<_, i64>(6)? as u32,
        lease: Lease {
            owner: r.get(7)?,
            fence: r.get(8)?,
            until: r.get(9)?,
        },
    })
}

fn parse(r: &Row<'_>, i: usize) -> rusqlite::Result<Value> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| bad(i, format!("JSON: {e}")))
}

fn parse_opt(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Value>> {
    let s: Option<String> = r.get(i)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| bad(i, format!("JSON: {e}"))))
        .transpose()
}

fn bad(i: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("unreadable {what}").into(),
    )
}

/// `WHERE …` for a filter (always at least `1`), and its parameters.
fn filter_sql(f: &Filter, terminal_only: bool) -> (String, Vec<Sql>) {
    let mut clauses = vec!["1".to_owned()];
    let mut args: Vec<Sql> = Vec::new();
    match f.statuses_to_match(terminal_only) {
        None => clauses.push("0".to_owned()),
        Some(statuses) if statuses.is_empty() => {}
        Some(statuses) => {
            let marks = vec!["?"; statuses.len()].join(", ");
            clauses.push(format!("status IN ({marks})"));
            args.extend(statuses.iter().map(|s| Sql::Text(s.as_str().to_owned())));
        }
    }
    if let Some(func) = &f.function {
        clauses.push("function = ?".to_owned());
        args.push(Sql::Text(func.clone()));
    }
    if let Some(from) = f.created_from {
        clauses.push("created_at >= ?".to_owned());
        args.push(Sql::Integer(from));
    }
    if let Some(to) = f.created_to {
        clauses.push("created_at < ?".to_owned());
        args.push(Sql::Integer(to));
    }
    if let Some(prefix) = &f.id_prefix {
        // `substr` rather than LIKE: ids may hold `%` or `_`.
        clauses.push("substr(id, 1, ?) = ?".to_owned());
        args.push(Sql::Integer(prefix.chars().count() as i64));
        args.push(Sql::Text(prefix.clone()));
    }
    (clauses.join(" AND "), args)
}

/// A continuation token: the creation time and id of the last instance given out.
fn token(row: &InstanceRow) -> String {
    format!("{}.{}", row.created_at, row.id)
}

fn untoken(t: &str) -> Result<(i64, String), StoreError> {
    let bad = || StoreError::Permanent(format!("`{t}` is not a continuation token of this store"));
    let (at, id) = t.split_once('.').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

pub(crate) fn list(
    c: &Connection,
    f: &Filter,
    size: usize,
    continuation: Option<&str>,
) -> Result<Page, StoreError> {
    let (mut sql, mut args) = filter_sql(f, false);
    if let Some(t) = continuation {
        let (at, id) = untoken(t)?;
        sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
        args.extend([Sql::Integer(at), Sql::Integer(at), Sql::Text(id)]);
    }
    let size = size.max(1);
    // One more than asked shows whether another page follows.
    args.push(Sql::Integer(size as i64 + 1));
    let mut stmt = c
        .prepare(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE {sql}
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .map_err(classify)?;
    let mut items = stmt
        .query_map(params_from_iter(args), instance_row)
        .map_err(classify)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(classify)?;
    let more = items.len() > size;
    items.truncate(size);
    let continuation = if more { items.last().map(token) } else { None };
    Ok(Page {
        items,
        continuation,
    })
}

/// The ids of the instances matching `f` (only terminal ones if `terminal_only`).
pub(crate) fn matching_ids(
    c: &Connection,
    f: &Filter,
    terminal_only: bool,
) -> Result<Vec<String>, StoreError> {
    let (sql, args) = filter_sql(f, terminal_only);
    let mut stmt = c
        .prepare(&format!("SELECT id FROM instances WHERE {sql}"))
        .map_err(classify)?;
    stmt.query_map(params_from_iter(args), |r| r.get(0))
        .map_err(classify)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(classify)
}

pub(crate) fn history(
    c: &Connection,
    id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT seq, at, kind, data FROM history WHERE instance = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3",
        )
        .map_err(classify)?;
    stmt.query_map(params![id, after as i64, limit as i64], |r| {
        Ok(Event {
            seq: r.get::<_, i64>(0)? as u64,
            at: r.get(1)?,
            kind: r.get(2)?,
            data: parse(r, 3)?,
        })
    })
    .map_err(classify)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(classify)
}

pub(crate) fn next_due(c: &Connection) -> Result<Option<Millis>, StoreError> {
    row(c, "SELECT MIN(available_at) FROM work", [], |r| r.get(0)).map_err(classify)
}

/// How many instances have `status` (`instances_by_status` answers it).
pub(crate) fn count(c: &Connection, status: RuntimeStatus) -> Result<u64, StoreError> {
    row(
        c,
        "SELECT COUNT(*) FROM instances WHERE status = ?1",
        [status.as_str()],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(classify)
}

/// The binding of `key` if it has not expired by `now`.
pub(crate) fn idempotency(
    c: &Connection,
    key: &str,
    now: Millis,
) -> Result<Option<KeyBinding>, StoreError> {
    row(
        c,
        "SELECT instance, request_hash FROM idempotency WHERE key = ?1 AND expires_at > ?2",
        params![key, now],
        |r| {
            Ok(KeyBinding {
                instance: r.get(0)?,
                request_hash: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(classify)
}
