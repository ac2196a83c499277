//! The store a host runs on, chosen by configuration: one type over every backend, so that the
//! engine and the HTTP layer are not generic over it.

use std::path::Path;
use std::sync::Arc;

use baton_store::queues::{
    Message, NewMessage, QueueError, QueueSpec, QueueStats, QueueStore, Received, Sent,
    SessionChoice, Settle,
};
use baton_store::{
    Commit, CommitError, Committed, Definition, Event, Filter, Held, InstanceRow, KeyBinding,
    Lease, Millis, NewWork, Page, RuntimeStatus, Store, StoreError, Work,
};
use baton_store_postgres::PostgresStore;
use baton_store_sqlite::{Options, SqliteStore, Synchronous};

use crate::config::{StoreConfig, SyncMode};

/// Every backend a host can run on.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Opens the store `config` names: the PostgreSQL database of `url` (migrated if need
    /// be), or the SQLite file of `path`, creating its folder if needed.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        if let Some(url) = &config.url {
            let options = baton_store_postgres::Options {
                schema: config.schema.clone(),
                pool_size: config.pool_size,
                ..baton_store_postgres::Options::new(url)
            };
            return Ok(Self::Postgres(PostgresStore::open(options).await?));
        }
        let path = Path::new(&config.path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Permanent(format!("cannot create `{}`: {e}", dir.display()))
            })?;
        }
        let options = Options {
            synchronous: match config.synchronous {
                SyncMode::Full => Synchronous::Full,
                SyncMode::Normal => Synchronous::Normal,
            },
            ..Options::default()
        };
        Ok(Self::Sqlite(SqliteStore::open(path, options)?))
    }

    /// Where it is, for messages (never a password).
    pub fn describe(&self, config: &StoreConfig) -> String {
        match self {
            Self::Sqlite(_) => format!(
                "SQLite {} (synchronous={})",
                config.path,
                match config.synchronous {
                    SyncMode::Full => "FULL",
                    SyncMode::Normal => "NORMAL",
                }
            ),
            Self::Postgres(s) => format!(
                "PostgreSQL {} (schema {}, up to {} connections)",
                s.location(),
                s.schema(),
                config.pool_size
            ),
        }
    }
}

/// Forwards a call to whichever backend this is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    async fn now(&self) -> Result<Millis, StoreError> {
        each!(self, s => s.now().await)
    }

    async fn put_definition(&self, d: &Definition) -> Result<(), StoreError> {
        each!(self, s => s.put_definition(d).await)
    }

    async fn definition(&self, hash: &str) -> Result<Option<Definition>, StoreError> {
        each!(self, s => s.definition(hash).await)
    }

    async fn commit(&self, c: Commit) -> Result<Committed, CommitError> {
        each!(self, s => s.commit(c).await)
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRow>, StoreError> {
        each!(self, s => s.instance(id).await)
    }

    async fn list(
        &self,
        filter: &Filter,
        size: usize,
        continuation: Option<&str>,
    ) -> Result<Page, StoreError> {
        each!(self, s => s.list(filter, size, continuation).await)
    }

    async fn history(&self, id: &str, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        each!(self, s => s.history(id, after, limit).await)
    }

    async fn purge(&self, id: &str) -> Result<bool, StoreError> {
        each!(self, s => s.purge(id).await)
    }

    async fn count(&self, status: RuntimeStatus) -> Result<u64, StoreError> {
        each!(self, s => s.count(status).await)
    }

    async fn purge_where(&self, filter: &Filter) -> Result<u64, StoreError> {
        each!(self, s => s.purge_where(filter).await)
    }

    async fn send(&self, work: NewWork) -> Result<i64, StoreError> {
        each!(self, s => s.send(work).await)
    }

    async fn claim(&self, owner: &str, lease_ms: i64, max: usize) -> Result<Vec<Work>, StoreError> {
        each!(self, s => s.claim(owner, lease_ms, max).await)
    }

    async fn extend(&self, held: Held, lease_ms: i64) -> Result<Lease, CommitError> {
        each!(self, s => s.extend(held, lease_ms).await)
    }

    async fn release(&self, held: Held, due_at: Millis) -> Result<(), CommitError> {
        each!(self, s => s.release(held, due_at).await)
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        each!(self, s => s.next_due().await)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<KeyBinding>, StoreError> {
        each!(self, s => s.idempotency(key).await)
    }

    fn wakeups(&self) -> Arc<tokio::sync::Notify> {
        each!(self, s => s.wakeups())
    }
}

impl QueueStore for AnyStore {
    async fn put_queue(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        each!(self, s => s.put_queue(spec).await)
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, QueueError> {
        each!(self, s => s.delete_queue(name).await)
    }

    async fn queues(&self) -> Result<Vec<QueueSpec>, QueueError> {
        each!(self, s => s.queues().await)
    }

    async fn queue(&self, name: &str) -> Result<Option<QueueSpec>, QueueError> {
        each!(self, s => s.queue(name).await)
    }

    async fn enqueue(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Sent>, QueueError> {
        each!(self, s => s.enqueue(queue, messages).await)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        session: Option<SessionChoice>,
    ) -> Result<Received, QueueError> {
        each!(self, s => s.receive(queue, max, session).await)
    }

    async fn settle(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
        how: Settle,
    ) -> Result<(), QueueError> {
        each!(self, s => s.settle(queue, sequence, lock_token, how).await)
    }

    async fn renew(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
    ) -> Result<Millis, QueueError> {
        each!(self, s => s.renew(queue, sequence, lock_token).await)
    }

    async fn renew_session(
        &self,
        queue: &str,
        session_id: &str,
        token: &str,
        release: bool,
    ) -> Result<Option<Millis>, QueueError> {
        each!(self, s => s.renew_session(queue, session_id, token, release).await)
    }

    async fn peek(
        &self,
        queue: &str,
        from: i64,
        max: usize,
        dead_letter: bool,
    ) -> Result<Vec<Message>, QueueError> {
        each!(self, s => s.peek(queue, from, max, dead_letter).await)
    }

    async fn redrive(&self, queue: &str, sequences: Option<&[i64]>) -> Result<u64, QueueError> {
        each!(self, s => s.redrive(queue, sequences).await)
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        each!(self, s => s.queue_stats(queue).await)
    }

    async fn next_visible(&self, queue: &str) -> Result<Option<Millis>, QueueError> {
        each!(self, s => s.next_visible(queue).await)
    }

    fn queue_wakeups(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        each!(self, s => s.queue_wakeups(queue))
    }
}
