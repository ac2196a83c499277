//! The database schema and its migrations, applied at start-up under an advisory lock so that
//! nodes starting together migrate once, one after the other. `schema_version` records how
//! many migrations have been applied; a schema from a newer Baton is refused rather than
//! guessed at.
//!
//! JSON is stored as `text`, not `jsonb`: `jsonb` reorders object keys, and an instance's
//! input, output and history must come back exactly as they were written.

use baton_store::StoreError;
use tokio_postgres::Client;

use crate::{classify, quote_ident};

/// Each entry migrates from version `i` to `i + 1`. Append only: never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // 1: the database's clock, instances, history, work items, idempotency keys, definitions,
    // queues and their messages, duplicate-detection ids and session locks.
    r"
    -- The store's clock in Unix milliseconds: the transaction's start time, by the database.
    CREATE FUNCTION baton_now() RETURNS bigint LANGUAGE sql STABLE
        AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;
    CREATE TABLE definitions (
        hash    text PRIMARY KEY,
        name    text NOT NULL,
        version text NOT NULL,
        source  text NOT NULL
    );
    CREATE TABLE instances (
        id            text PRIMARY KEY,
        function      text NOT NULL,
        definition    text NOT NULL,
        status        text NOT NULL,
        input         text NOT NULL,
        output        text,
        error         text,
        custom_status text,
        state         bytea NOT NULL,
        created_at    bigint NOT NULL,
        updated_at    bigint NOT NULL,
        revision      bigint NOT NULL,
        history_len   bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX instances_by_created ON instances (created_at DESC, id DESC);
    CREATE INDEX instances_by_status ON instances (status, created_at DESC);
    CREATE TABLE history (
        instance text NOT NULL,
        seq      bigint NOT NULL,
        at       bigint NOT NULL,
        kind     text NOT NULL,
        data     text NOT NULL,
        PRIMARY KEY (instance, seq)
    );
    -- `available_at` is when the item can next be claimed: its due time while unleased, its
    -- lease expiry while leased. One index then answers both `claim` and `next_due`.
    CREATE TABLE work (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        instance     text NOT NULL,
        kind         text NOT NULL,
        token        bigint NOT NULL,
        due_at       bigint NOT NULL,
        payload      text NOT NULL,
        attempt      integer NOT NULL DEFAULT 0,
        owner        text,
        fence        bigint NOT NULL DEFAULT 0,
        lease_until  bigint,
        available_at bigint NOT NULL
    );
    CREATE INDEX work_by_available ON work (available_at, id);
    CREATE INDEX work_by_instance ON work (instance, kind, token);
    CREATE TABLE idempotency (
        key          text PRIMARY KEY,
        instance     text NOT NULL,
        request_hash text NOT NULL,
        expires_at   bigint NOT NULL
    );
    CREATE INDEX idempotency_by_instance ON idempotency (instance);
    -- `next_seq` is taken under this row's lock, which also serialises one queue's
    -- duplicate-detection checks.
    CREATE TABLE queues (
        name     text PRIMARY KEY,
        spec     text NOT NULL,
        next_seq bigint NOT NULL DEFAULT 1
    );
    -- `visible_at`: when the message can next be received (its scheduled time while unlocked,
    -- its lock's expiry while locked). The dead-letter sub-queue is `dead_lettered`.
    CREATE TABLE queue_messages (
        queue          text NOT NULL,
        seq            bigint NOT NULL,
        message_id     text NOT NULL,
        body           bytea NOT NULL,
        content_type   text,
        session_id     text,
        correlation_id text,
        properties     text NOT NULL,
        enqueued_at    bigint NOT NULL,
        visible_at     bigint NOT NULL,
        expires_at     bigint,
        delivery_count integer NOT NULL DEFAULT 0,
        lock_fence     bigint NOT NULL DEFAULT 0,
        locked_until   bigint,
        dead_lettered  boolean NOT NULL DEFAULT false,
        dl_reason      text,
        dl_description text,
        PRIMARY KEY (queue, seq)
    );
    -- Receives and peeks, in sequence order.
    CREATE INDEX queue_messages_by_state ON queue_messages (queue, dead_lettered, seq);
    -- `next_visible`.
    CREATE INDEX queue_messages_by_visible ON queue_messages (queue, visible_at)
        WHERE NOT dead_lettered;
    -- The sweeps a receive starts with: expired messages, and expired locks.
    CREATE INDEX queue_messages_by_expiry ON queue_messages (queue, expires_at)
        WHERE NOT dead_lettered AND expires_at IS NOT NULL;
    CREATE INDEX queue_messages_by_lock ON queue_messages (queue, locked_until)
        WHERE NOT dead_lettered AND locked_until IS NOT NULL;
    CREATE TABLE queue_duplicates (
        queue      text NOT NULL,
        message_id text NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (queue, message_id)
    );
    CREATE INDEX queue_duplicates_by_expiry ON queue_duplicates (queue, expires_at);
    -- A session's row outlives its lock, so that its fence only grows: a released session
    -- has `locked_until` 0, free by any transaction's clock.
    CREATE TABLE queue_sessions (
        queue        text NOT NULL,
        session_id   text NOT NULL,
        fence        bigint NOT NULL,
        locked_until bigint NOT NULL,
        PRIMARY KEY (queue, session_id)
    );
    CREATE INDEX queue_sessions_by_lock ON queue_sessions (queue, locked_until);
    ",
];

/// The schema version this build writes.
pub(crate) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Creates `schema` if need be and brings it up to date, in one transaction holding an
/// advisory lock on the schema's name: a node that starts while another migrates waits for it,
/// then finds nothing left to do.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    let q = quote_ident(schema);
    let tx = client.transaction().await.map_err(classify)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('baton-migrate:' || $1, 0))",
        &[&schema],
    )
    .await
    .map_err(classify)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         SET LOCAL search_path TO {q};
         CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL);"
    ))
    .await
    .map_err(classify)?;
    let at: Option<i64> = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(classify)?
        .map(|r| r.get(0));
    let known = current_version();
    let at = match at {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await
                .map_err(classify)?;
            0
        }
    };
    if at > known {
        return Err(StoreError::Permanent(format!(
            "schema `{schema}` has version {at}, newer than this Baton knows ({known}); \
             run a newer Baton or use another schema"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Permanent(format!("migration {} of `{schema}` failed: {e}", i + 1))
        })?;
        tx.execute("UPDATE schema_version SET version = $1", &[&(i as i64 + 1)])
            .await
            .map_err(classify)?;
    }
    tx.commit().await.map_err(classify)
}
