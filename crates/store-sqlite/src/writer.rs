//! The one writer thread and the writes it runs.
//!
//! A write is a closure over the open transaction. The thread takes every write waiting (up to
//! the batch limit), runs each inside its own savepoint, commits the transaction once, and only
//! after that commit answers the callers: nobody hears "stored" before it is on disk. If the
//! commit itself fails, every caller in the batch gets that error and none of it is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use baton_store::{
    Commit, CommitError, Committed, Definition, Filter, Held, Lease, Millis, NewWork, StoreError,
    Work,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::{classify, exec, now_ms, reads, row};

/// A write waiting for the thread: runs in its savepoint and returns how to answer its caller
/// once the batch's fate is known, and whether it should wake dispatchers.
type Job = Box<dyn FnOnce(&Transaction<'_>, Millis) -> (Reply, bool) + Send>;
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

#[derive(Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Counters>,
}

/// What the writer has done since the store opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) transactions: AtomicU64,
    pub(crate) writes: AtomicU64,
}

impl Writer {
    pub(crate) fn start(
        conn: Connection,
        max_batch: usize,
        wakeups: Arc<tokio::sync::Notify>,
    ) -> Result<Self, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(Counters::default());
        let counters = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("baton-sqlite-writer".to_owned())
            .spawn(move || run(conn, &rx, max_batch.max(1), &wakeups, &counters))
            .map_err(|e| StoreError::Permanent(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs, stats })
    }

    /// (transactions committed, writes in them).
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.stats.transactions.load(Ordering::Relaxed),
            self.stats.writes.load(Ordering::Relaxed),
        )
    }

    /// Queues `f` and waits until its batch is committed. `wakes`: whether a success makes
    /// work claimable, so that waiting dispatchers should look again.
    pub(crate) async fn run<T, F>(&self, wakes: bool, f: F) -> Result<T, CommitError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, Millis) -> Result<T, CommitError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t, now| {
            let outcome = in_savepoint(t, |t| f(t, now));
            let wake = wakes && outcome.is_ok();
            let reply: Reply = Box::new(move |failed| {
                let answer = match (failed, outcome) {
                    (Some(e), _) => Err(CommitError::Store(e.clone())),
                    (None, outcome) => outcome,
                };
                // The caller may have given up waiting; then nobody needs the answer.
                let _ = tx.send(answer);
            });
            (reply, wake)
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Permanent("the writer thread has stopped".to_owned()))?;
        rx.await.map_err(|_| {
            CommitError::Store(StoreError::Permanent(
                "the write was not stored (see the log for the storage error)".to_owned(),
            ))
        })?
    }
}

fn in_savepoint<T>(
    t: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, CommitError>,
) -> Result<T, CommitError> {
    exec(t, "SAVEPOINT write", []).map_err(store)?;
    let outcome = f(t);
    if outcome.is_err() {
        exec(t, "ROLLBACK TO write", []).map_err(store)?;
    }
    exec(t, "RELEASE write", []).map_err(store)?;
    outcome
}

fn run(
    mut conn: Connection,
    rx: &mpsc::Receiver<Job>,
    max_batch: usize,
    wakeups: &tokio::sync::Notify,
    counters: &Counters,
) {
    // Ends when every sender (the store) is gone.
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut wake = false;
        // IMMEDIATE: take the write lock at the start, so another process on the file makes
        // this wait (busy timeout) rather than fail halfway.
        let failed = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Err(e) => Some(classify(e)),
            Ok(t) => {
                let now = now_ms();
                for job in batch.drain(..) {
                    let (reply, w) = job(&t, now);
                    wake |= w;
                    replies.push(reply);
                }
                t.commit().err().map(classify)
            }
        };
        if let Some(e) = &failed {
            tracing::error!(error = %e, writes = replies.len() + batch.len(), "a storage commit failed");
        }
        // Jobs never run (the transaction did not begin) are dropped, and their callers hear
        // that the write was not stored.
        drop(batch);
        // Counted before anyone hears back, so that a caller reading the counters after its
        // commit returned sees that commit in them.
        if failed.is_none() {
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            counters
                .writes
                .fetch_add(replies.len() as u64, Ordering::Relaxed);
        }
        for reply in replies {
            reply(failed.as_ref());
        }
        if failed.is_none() && wake {
            wakeups.notify_waiters();
        }
    }
}

fn store(e: rusqlite::Error) -> CommitError {
    CommitError::Store(classify(e))
}

fn json(v: &serde_json::Value) -> String {
    v.to_string()
}

pub(crate) fn put_definition(t: &Transaction<'_>, d: &Definition) -> Result<(), CommitError> {
    exec(
        t,
        "INSERT INTO definitions (hash, name, version, source) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (hash) DO NOTHING",
        params![d.hash, d.name, d.version, d.source],
    )
    .map_err(store)?;
    Ok(())
}

pub(crate) fn commit(
    t: &Transaction<'_>,
    now: Millis,
    c: Commit,
) -> Result<Committed, CommitError> {
    let i = &c.instance;
    let found: Option<(i64, i64)> = row(
        t,
        "SELECT revision, history_len FROM instances WHERE id = ?1",
        [&i.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(store)?;
    let conflict = || CommitError::Conflict {
        instance: i.id.clone(),
        expected: c.expected_revision,
        found: found.map(|(r, _)| r as u64),
    };
    let (revision, history_len) = match (c.expected_revision, found) {
        (None, None) => (1, 0),
        (Some(want), Some((have, len))) if want == have as u64 => (want + 1, len),
        _ => return Err(conflict()),
    };
    let history_after = history_len + c.history.len() as i64;
    let output = i.output.as_ref().map(json);
    let error = i.error.as_ref().map(json);
    let custom = i.custom_status.as_ref().map(json);
    exec(
        t,
        "INSERT INTO instances (id, function, definition, status, input, output, error,
             custom_status, state, created_at, updated_at, revision, history_len)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (id) DO UPDATE SET function = excluded.function,
             definition = excluded.definition, status = excluded.status, input = excluded.input,
             output = excluded.output, error = excluded.error,
             custom_status = excluded.custom_status, state = excluded.state,
             updated_at = excluded.updated_at, revision = excluded.revision,
             history_len = excluded.history_len",
        params![
            i.id,
            i.function,
            i.definition,
            i.status.as_str(),
            json(&i.input),
            output,
            error,
            custom,
            i.state,
            i.created_at,
            now,
            revision as i64,
            history_after,
        ],
    )
    .map_err(store)?;
    for h in &c.done {
        let n = exec(
            t,
            "DELETE FROM work WHERE id = ?1 AND fence = ?2",
            params![h.id, h.fence],
        )
        .map_err(store)?;
        if n == 0 {
            return Err(CommitError::Fenced {
                id: h.id,
                fence: h.fence,
            });
        }
    }
    for (kind, token) in &c.cancel {
        exec(
            t,
            "DELETE FROM work WHERE instance = ?1 AND kind = ?2 AND token = ?3",
            params![i.id, kind.as_str(), *token as i64],
        )
        .map_err(store)?;
    }
    let mut enqueued = Vec::with_capacity(c.enqueue.len());
    for w in &c.enqueue {
        enqueued.push(insert_work(t, w)?);
    }
    for (n, e) in c.history.iter().enumerate() {
        exec(
            t,
            "INSERT INTO history (instance, seq, at, kind, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![i.id, history_len + 1 + n as i64, now, e.kind, json(&e.data)],
        )
        .map_err(store)?;
    }
    if let Some(k) = &c.idempotency {
        if let Some(bound) = reads::idempotency(t, &k.key, now).map_err(CommitError::Store)? {
            return Err(CommitError::KeyTaken(bound));
        }
        exec(
            t,
            "INSERT INTO idempotency (key, instance, request_hash, expires_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET instance = excluded.instance,
                 request_hash = excluded.request_hash, expires_at = excluded.expires_at",
            params![k.key, i.id, k.request_hash, k.expires_at],
        )
        .map_err(store)?;
    }
    Ok(Committed { revision, enqueued })
}

pub(crate) fn send(t: &Transaction<'_>, w: &NewWork) -> Result<i64, CommitError> {
    let exists = row(
        t,
        "SELECT 1 FROM instances WHERE id = ?1",
        [&w.instance],
        |_| Ok(()),
    )
    .optional()
    .map_err(store)?;
    if exists.is_none() {
        return Err(CommitError::Store(StoreError::Permanent(format!(
            "no instance `{}` to send work to",
            w.instance
        ))));
    }
    insert_work(t, w)
}

fn insert_work(t: &Transaction<'_>, w: &NewWork) -> Result<i64, CommitError> {
    exec(
        t,
        "INSERT INTO work (instance, kind, token, due_at, payload, available_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
        params![
            w.instance,
            w.kind.as_str(),
            w.token as i64,
            w.due_at,
            json(&w.payload)
        ],
    )
    .map_err(store)?;
    Ok(t.last_insert_rowid())
}

pub(crate) fn claim(
    t: &Transaction<'_>,
    now: Millis,
    owner: &str,
    lease_ms: i64,
    max: usize,
) -> Result<Vec<Work>, CommitError> {
    let until = now + lease_ms.max(1);
    let mut stmt = t
        .prepare_cached(
            "UPDATE work SET owner = ?1, fence = fence + 1, attempt = attempt + 1,
                 lease_until = ?2, available_at = ?2
             WHERE id IN (SELECT id FROM work WHERE available_at <= ?3
                          ORDER BY available_at, id LIMIT ?4)
             RETURNING id, instance, kind, token, due_at, payload, attempt, owner, fence,
                 lease_until",
        )
        .map_err(store)?;
    let mut got = stmt
        .query_map(params![owner, until, now, max as i64], reads::work_row)
        .map_err(store)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(store)?;
    // RETURNING gives no order; claims come out earliest due first.
    got.sort_by_key(|w| (w.due_at, w.id));
    Ok(got)
}

pub(crate) fn extend(
    t: &Transaction<'_>,
    now: Millis,
    held: Held,
    lease_ms: i64,
) -> Result<Lease, CommitError> {
    let until = now + lease_ms.max(1);
    row(
        t,
        "UPDATE work SET lease_until = ?1, available_at = ?1
         WHERE id = ?2 AND fence = ?3 AND owner IS NOT NULL
         RETURNING owner, fence, lease_until",
        params![until, held.id, held.fence],
        |r| {
            Ok(Lease {
                owner: r.get(0)?,
                fence: r.get(1)?,
                until: r.get(2)?,
            })
        },
    )
    .optional()
    .map_err(store)?
    .ok_or(CommitError::Fenced {
        id: held.id,
        fence: held.fence,
    })
}

/// Gives the item back; its fence moves on, so the releaser can no longer finish it.
pub(crate) fn release(t: &Transaction<'_>, held: Held, due_at: Millis) -> Result<(), CommitError> {
    let n = exec(
        t,
        "UPDATE work SET owner = NULL, lease_until = NULL, fence = fence + 1,
                 due_at = ?1, available_at = ?1
             WHERE id = ?2 AND fence = ?3 AND owner IS NOT NULL",
        params![due_at, held.id, held.fence],
    )
    .map_err(store)?;
    if n == 0 {
        return Err(CommitError::Fenced {
            id: held.id,
            fence: held.fence,
        });
    }
    Ok(())
}

pub(crate) fn purge(t: &Transaction<'_>, id: &str) -> Result<bool, CommitError> {
    for sql in [
        "DELETE FROM history WHERE instance = ?1",
        "DELETE FROM work WHERE instance = ?1",
        "DELETE FROM idempotency WHERE instance = ?1",
    ] {
        exec(t, sql, [id]).map_err(store)?;
    }
    let n = exec(t, "DELETE FROM instances WHERE id = ?1", [id]).map_err(store)?;
    Ok(n > 0)
}

pub(crate) fn purge_where(t: &Transaction<'_>, filter: &Filter) -> Result<u64, CommitError> {
    let ids = reads::matching_ids(t, filter, true).map_err(CommitError::Store)?;
    let mut n = 0;
    for id in ids {
        if purge(t, &id)? {
            n += 1;
        }
    }
    Ok(n)
}
