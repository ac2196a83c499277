//! Baton's shared storage: [`baton_store::Store`] and [`QueueStore`](baton_store::queues::QueueStore)
//! on PostgreSQL, for several `baton serve` nodes working on one database.
//!
//! * **One schema per deployment** ([`Options::schema`]): every table lives in it, and
//!   connections find them through their `search_path`. Migrations run at start-up in one
//!   transaction under an advisory lock on the schema's name, so nodes starting together
//!   migrate once.
//! * **The database's clock.** Due times, leases and lock expiries compare against the
//!   database's `now()` (`baton_now()` in SQL), never a node's clock: nodes whose clocks
//!   disagree still agree on what is due.
//! * **Claims** take due work with `FOR UPDATE SKIP LOCKED`: claimers never wait on each other
//!   and never take the same item. Every claim bumps the item's fence; finishing, extending or
//!   releasing names the fence, and a node that lost its lease (it paused, or was cut off, and
//!   another node took the item over) is refused, with its whole commit.
//! * **Commits** lock the instance row (`FOR UPDATE`) and check its revision: of two nodes
//!   stepping one instance, one wins and the other is told to reload.
//! * **Wake-ups** cross nodes with `LISTEN/NOTIFY`: a commit that makes work claimable notifies
//!   in its transaction, so the notification goes out exactly when the work becomes visible.
//!   Engines still poll (a bounded idle wait) in case the listening connection is down.
//! * **Connections** come from a bounded pool ([`Options::pool_size`]); waiting for one is
//!   bounded too. Failures that leave nothing written (no connection, a serialization failure
//!   or deadlock, which PostgreSQL rolls back) are retried a few times; the rest are reported,
//!   as [`StoreError::Transient`] when trying again later may help.

mod listen;
mod queues;
mod reads;
mod schema;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_store::{
    Commit, CommitError, Committed, Definition, Event, Filter, Held, InstanceRow, KeyBinding,
    Lease, Millis, NewWork, Page, RuntimeStatus, Store, StoreError, Work,
};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;

use listen::Listener;

/// How to reach the database and how to use it.
#[derive(Debug, Clone)]
pub struct Options {
    /// A libpq connection string: `postgres://user@host:port/database` or `host=… user=…`.
    pub url: String,
    /// The schema holding Baton's tables (created if missing). Nodes serving one app share
    /// it; 1 to 63 lowercase letters, digits or `_`, not starting with a digit.
    pub schema: String,
    /// Connections kept open at most (besides the one that listens for wake-ups).
    pub pool_size: usize,
    /// How long an operation waits for a free connection, or to connect, before failing.
    pub connect_timeout: Duration,
}

impl Options {
    /// `url` with the defaults: schema `baton`, 16 connections, 10 s to get one.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            schema: "baton".to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// What is wrong with these options, if anything.
    pub fn problem(&self) -> Option<String> {
        let s = &self.schema;
        let good = !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit());
        if !good {
            return Some(format!(
                "`{s}` is not a schema name Baton uses (1 to 63 lowercase letters, digits or `_`, \
                 not starting with a digit)"
            ));
        }
        if self.pool_size == 0 {
            return Some("the pool needs at least one connection".to_owned());
        }
        None
    }
}

/// A [`Store`] on a PostgreSQL schema.
#[derive(Debug)]
pub struct PostgresStore {
    pool: Pool,
    location: String,
    schema: String,
    /// The `NOTIFY` channel of this schema.
    channel: String,
    wakeups: Arc<tokio::sync::Notify>,
    /// Per queue: signalled when a message may have become receivable.
    queue_wakeups: Arc<Mutex<HashMap<String, Arc<tokio::sync::Notify>>>>,
    listener: Listener,
}

/// How many times a failure that wrote nothing is tried again.
const RETRIES: u32 = 4;

impl PostgresStore {
    /// Connects, creates the schema if needed, applies migrations and starts listening for
    /// wake-ups.
    pub async fn open(options: Options) -> Result<Self, StoreError> {
        if let Some(p) = options.problem() {
            return Err(StoreError::Permanent(p));
        }
        let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            StoreError::Permanent(format!(
                "`{}` is not a PostgreSQL connection string: {e}",
                redact(&options.url)
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("baton");
        }
        config.connect_timeout(options.connect_timeout);
        let schema = options.schema.clone();
        // Migrate on a connection of its own, before any pooled connection looks for tables.
        let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
            StoreError::Transient(format!("cannot connect to `{}`: {e}", redact(&options.url)))
        })?;
        let driver = tokio::spawn(connection);
        let migrated = schema::migrate(&mut client, &schema).await;
        drop(client);
        let _ = driver.await;
        migrated?;

        config.options(format!("-c search_path={schema}"));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Permanent(format!("cannot build the connection pool: {e}")))?;
        let channel = format!("baton.{schema}");
        let wakeups = Arc::new(tokio::sync::Notify::new());
        let queue_wakeups = Arc::new(Mutex::new(HashMap::new()));
        let listener = Listener::start(
            config,
            channel.clone(),
            Arc::clone(&wakeups),
            Arc::clone(&queue_wakeups),
        );
        Ok(Self {
            pool,
            location: redact(&options.url),
            schema,
            channel,
            wakeups,
            queue_wakeups,
            listener,
        })
    }

    /// The server and database, without the password: for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The schema this store uses.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema version after migrations (this build's).
    pub fn schema_version() -> i64 {
        schema::current_version()
    }

    /// Whether the wake-up listener is connected and listening now.
    pub fn listening(&self) -> bool {
        self.listener.is_listening()
    }

    /// A pooled connection, waiting at most the connect timeout.
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Whether a failed attempt is worth another: it wrote nothing (no connection to be had,
    /// or PostgreSQL rolled the transaction back: a serialization failure, a deadlock) or the
    /// operation may safely happen twice (`idempotent`: reads, lease extensions).
    fn again<T>(outcome: &Result<T, CommitError>, idempotent: bool, attempt: u32) -> bool {
        let worth = match outcome {
            Err(CommitError::Store(StoreError::Transient(why))) => {
                idempotent || why.starts_with(ROLLED_BACK) || why.starts_with(NO_CONNECTION)
            }
            _ => false,
        };
        worth && attempt < RETRIES
    }

    /// The wake-up of `queue`'s receivers.
    fn queue_notify(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        listen::queue_notify(&self.queue_wakeups, queue)
    }

    /// Wakes this node's waiters at once (other nodes hear the `NOTIFY` the write sent).
    fn wake_local(&self) {
        self.wakeups.notify_waiters();
    }
}

/// Runs `$body` (an expression over the pooled connection `$c`, a future of a
/// `Result<_, CommitError>`) and runs it again on a fresh connection, up to [`RETRIES`]
/// times, while [`PostgresStore::again`] says so.
macro_rules! attempt {
    ($store:expr, $idempotent:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            let outcome = match $store.client().await {
                Ok(mut conn) => {
                    let $c = &mut conn;
                    $body.await
                }
                Err(e) => Err(CommitError::Store(e)),
            };
            if !PostgresStore::again(&outcome, $idempotent, attempt) {
                break outcome;
            }
            attempt += 1;
            tracing::debug!(attempt, "retrying a storage operation");
            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
        }
    }};
}

/// How a transient message starts when PostgreSQL rolled the transaction back by itself.
const ROLLED_BACK: &str = "rolled back";
/// How a transient message starts when no connection could be had.
const NO_CONNECTION: &str = "no connection";

/// Quotes an identifier for SQL.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The connection string without its password, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => {
                let user = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_owned(),
        },
        None => url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Sorts PostgreSQL's failures: what trying again may cure, and what it will not.
pub(crate) fn classify(e: tokio_postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        let code = code.code();
        return match code {
            // serialization_failure, deadlock_detected: the transaction was rolled back.
            "40001" | "40P01" => StoreError::Transient(format!("{ROLLED_BACK}: {e}")),
            // too_many_connections, lock_not_available, admin/crash shutdown, cannot connect
            // now, and the whole connection-exception class.
            "53300" | "55P03" | "57P01" | "57P02" | "57P03" => StoreError::Transient(e.to_string()),
            c if c.starts_with("08") => StoreError::Transient(e.to_string()),
            _ => StoreError::Permanent(db_message(&e)),
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Transient(format!("the database connection failed: {e}"))
    } else {
        StoreError::Permanent(e.to_string())
    }
}

/// A database error with its detail, which `Display` leaves out.
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{}: {} ({detail})", d.severity(), d.message()),
            None => format!("{}: {}", d.severity(), d.message()),
        },
        None => e.to_string(),
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match classify(e) {
            StoreError::Transient(m) => StoreError::Transient(format!("{NO_CONNECTION}: {m}")),
            other => other,
        },
        other => StoreError::Transient(format!("{NO_CONNECTION}: {other}")),
    }
}

pub(crate) fn db(e: tokio_postgres::Error) -> CommitError {
    CommitError::Store(classify(e))
}

/// Writes that cannot conflict or be fenced fail only with the store's own errors.
fn into_store(e: CommitError) -> StoreError {
    match e {
        CommitError::Store(e) => e,
        other => StoreError::Permanent(other.to_string()),
    }
}

impl Store for PostgresStore {
    async fn now(&self) -> Result<Millis, StoreError> {
        attempt!(self, true, |c| reads::now(&*c)).map_err(into_store)
    }

    async fn put_definition(&self, d: &Definition) -> Result<(), StoreError> {
        attempt!(self, true, |c| writes::put_definition(c, d)).map_err(into_store)
    }

    async fn definition(&self, hash: &str) -> Result<Option<Definition>, StoreError> {
        attempt!(self, true, |c| reads::definition(&*c, hash)).map_err(into_store)
    }

    async fn commit(&self, commit: Commit) -> Result<Committed, CommitError> {
        let wakes = !commit.enqueue.is_empty();
        let done = attempt!(self, false, |c| writes::commit(c, &self.channel, &commit))?;
        if wakes {
            self.wake_local();
        }
        Ok(done)
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRow>, StoreError> {
        attempt!(self, true, |c| reads::instance(&*c, id)).map_err(into_store)
    }

    async fn list(
        &self,
        filter: &Filter,
        size: usize,
        continuation: Option<&str>,
    ) -> Result<Page, StoreError> {
        attempt!(self, true, |c| reads::list(&*c, filter, size, continuation)).map_err(into_store)
    }

    async fn history(&self, id: &str, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        attempt!(self, true, |c| reads::history(&*c, id, after, limit)).map_err(into_store)
    }

    async fn count(&self, status: RuntimeStatus) -> Result<u64, StoreError> {
        attempt!(self, true, |c| reads::count(&*c, status)).map_err(into_store)
    }

    async fn purge(&self, id: &str) -> Result<bool, StoreError> {
        attempt!(self, false, |c| writes::purge(c, id)).map_err(into_store)
    }

    async fn purge_where(&self, filter: &Filter) -> Result<u64, StoreError> {
        attempt!(self, false, |c| writes::purge_where(c, filter)).map_err(into_store)
    }

    async fn send(&self, work: NewWork) -> Result<i64, StoreError> {
        let id =
            attempt!(self, false, |c| writes::send(c, &self.channel, &work)).map_err(into_store)?;
        self.wake_local();
        Ok(id)
    }

    async fn claim(&self, owner: &str, lease_ms: i64, max: usize) -> Result<Vec<Work>, StoreError> {
        attempt!(self, false, |c| writes::claim(c, owner, lease_ms, max)).map_err(into_store)
    }

    async fn extend(&self, held: Held, lease_ms: i64) -> Result<Lease, CommitError> {
        attempt!(self, true, |c| writes::extend(c, held, lease_ms))
    }

    async fn release(&self, held: Held, due_at: Millis) -> Result<(), CommitError> {
        attempt!(self, false, |c| writes::release(
            c,
            &self.channel,
            held,
            due_at
        ))?;
        self.wake_local();
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        attempt!(self, true, |c| reads::next_due(&*c)).map_err(into_store)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<KeyBinding>, StoreError> {
        attempt!(self, true, |c| reads::idempotency(&*c, key)).map_err(into_store)
    }

    fn wakeups(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wakeups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://baton:s3cret@db:5432/app"),
            "postgres://baton@db:5432/app"
        );
        assert_eq!(
            redact("host=db user=baton password=s3cret dbname=app"),
            "host=db user=baton dbname=app"
        );
        assert_eq!(redact("postgres://db/app"), "postgres://db/app");
    }

    #[test]
    fn schema_names_are_checked() {
        let mut o = Options::new("postgres://db/app");
        assert_eq!(o.problem(), None);
        for bad in ["", "Baton", "1st", "a-b", "a\"b", &"x".repeat(64)] {
            o.schema = bad.to_owned();
            assert!(o.problem().is_some(), "`{bad}` was accepted");
        }
        o.schema = "baton_test_1".to_owned();
        assert_eq!(o.problem(), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("baton"), "\"baton\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
