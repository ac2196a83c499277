//! The database schema and its migrations, applied in order at start-up. `PRAGMA user_version`
//! records how many have been applied; a file from a newer Baton (a higher version than this
//! build knows) is refused rather than guessed at.

use baton_store::StoreError;
use rusqlite::Connection;

use crate::permanent;

/// Each entry migrates from version `i` to `i + 1`. Append only: never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // 1: instances, history, work items, idempotency keys, definitions.
    r"
    CREATE TABLE definitions (
        hash    TEXT PRIMARY KEY,
        name    TEXT NOT NULL,
        version TEXT NOT NULL,
        source  TEXT NOT NULL
    );
    CREATE TABLE instances (
        id            TEXT PRIMARY KEY,
        function      TEXT NOT NULL,
        definition    TEXT NOT NULL,
        status        TEXT NOT NULL,
        input         TEXT NOT NULL,
        output        TEXT,
        error         TEXT,
        custom_status TEXT,
        state         BLOB NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        revision      INTEGER NOT NULL,
        history_len   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX instances_by_created ON instances (created_at DESC, id DESC);
    CREATE INDEX instances_by_status ON instances (status, created_at DESC);
    CREATE TABLE history (
        instance TEXT NOT NULL,
        seq      INTEGER NOT NULL,
        at       INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        data     TEXT NOT NULL,
        PRIMARY KEY (instance, seq)
    ) WITHOUT ROWID;
    -- `available_at` is when the item can next be claimed: its due time while unleased, its
    -- lease expiry while leased. One index then answers both `claim` and `next_due`.
    CREATE TABLE work (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        instance     TEXT NOT NULL,
        kind         TEXT NOT NULL,
        token        INTEGER NOT NULL,
        due_at       INTEGER NOT NULL,
        payload      TEXT NOT NULL,
        attempt      INTEGER NOT NULL DEFAULT 0,
        owner        TEXT,
        fence        INTEGER NOT NULL DEFAULT 0,
        lease_until  INTEGER,
        available_at INTEGER NOT NULL
    );
    CREATE INDEX work_by_available ON work (available_at);
    CREATE INDEX work_by_instance ON work (instance, kind, token);
    CREATE TABLE idempotency (
        key          TEXT PRIMARY KEY,
        instance     TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        expires_at   INTEGER NOT NULL
    );
    CREATE INDEX idempotency_by_instance ON idempotency (instance);
    ",
    // 2: queues, their messages (dead-lettered ones flagged), duplicate-detection ids, session
    // locks.
    r"
    CREATE TABLE queues (
        name     TEXT PRIMARY KEY,
        spec     TEXT NOT NULL,
        next_seq INTEGER NOT NULL DEFAULT 1
    );
    -- `visible_at`: when the message can next be received (its scheduled time while unlocked,
    -- its lock's expiry while locked).
    CREATE TABLE queue_messages (
        queue          TEXT NOT NULL,
        seq            INTEGER NOT NULL,
        message_id     TEXT NOT NULL,
        body           BLOB NOT NULL,
        content_type   TEXT,
        session_id     TEXT,
        correlation_id TEXT,
        properties     TEXT NOT NULL,
        enqueued_at    INTEGER NOT NULL,
        visible_at     INTEGER NOT NULL,
        expires_at     INTEGER,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        lock_fence     INTEGER NOT NULL DEFAULT 0,
        locked_until   INTEGER,
        dead_lettered  INTEGER NOT NULL DEFAULT 0,
        dl_reason      TEXT,
        dl_description TEXT,
        PRIMARY KEY (queue, seq)
    ) WITHOUT ROWID;
    CREATE INDEX queue_messages_by_state ON queue_messages (queue, dead_lettered, seq);
    CREATE TABLE queue_duplicates (
        queue      TEXT NOT NULL,
        message_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (queue, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX queue_duplicates_by_expiry ON queue_duplicates (queue, expires_at);
    CREATE TABLE queue_sessions (
        queue        TEXT NOT NULL,
        session_id   TEXT NOT NULL,
        fence        INTEGER NOT NULL,
        locked_until INTEGER NOT NULL,
        PRIMARY KEY (queue, session_id)
    ) WITHOUT ROWID;
    ",
];

/// Brings the schema up to date in one transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(permanent)?;
    let at: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(permanent)?;
    let known = MIGRATIONS.len() as i64;
    if at > known {
        return Err(StoreError::Permanent(format!(
            "the database has schema version {at}, newer than this Baton knows ({known}); \
             run a newer Baton or use another file"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        tx.execute_batch(sql).map_err(permanent)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(permanent)?;
    }
    tx.commit().map_err(permanent)
}

/// The schema version this build writes.
pub(crate) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
