//! Baton's embedded storage: [`baton_store::Store`] on one SQLite file.
//!
//! * **WAL** journal, and `synchronous = FULL` by default (every commit reaches the disk before
//!   it is acknowledged) or `NORMAL` (a power loss may undo the last commits; a crash of Baton
//!   alone loses nothing). Both are set and then read back at start-up, so a file system or
//!   build that ignores them is refused instead of silently weaker.
//! * **One writer thread, group commit.** Every write (commits, claims, lease changes, purges)
//!   is queued to a single thread that takes everything waiting, runs each write in its own
//!   savepoint inside one transaction, commits once (one fsync for the batch), and only then
//!   answers each caller. A write that fails (a revision conflict, a stale fence) rolls back
//!   its own savepoint and leaves the rest of the batch alone.
//! * **Readers** use a small pool of their own connections; WAL lets them read while the writer
//!   writes, and they see only committed batches.
//! * The clock is this machine's (Unix milliseconds).

mod queues;
mod reads;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_store::{
    Commit, CommitError, Committed, Definition, Event, Filter, Held, InstanceRow, KeyBinding,
    Lease, Millis, NewWork, Page, RuntimeStatus, Store, StoreError, Work,
};
use rusqlite::{Connection, OpenFlags};

use writer::Writer;

/// How durable each commit is (SQLite's `PRAGMA synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// The WAL is synced at every commit: an acknowledged commit survives a power loss.
    #[default]
    Full,
    /// The WAL is synced at checkpoints only: survives a crash of the process, not of the
    /// machine.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> (&'static str, i64) {
        match self {
            Self::Full => ("FULL", 2),
            Self::Normal => ("NORMAL", 1),
        }
    }
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct Options {
    pub synchronous: Synchronous,
    /// At most this many writes go into one transaction.
    pub max_batch: usize,
    /// How long a connection waits on a lock held by another process before failing.
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_batch: 512,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Counts of the writer's work since the store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub transactions: u64,
    pub writes: u64,
}

/// A [`Store`] on one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    options: Options,
    wakeups: Arc<tokio::sync::Notify>,
    /// Long-polling queue receivers wait on this.
    /// Per queue: signalled when a message may have become receivable.
    queue_wakeups: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl SqliteStore {
    /// Opens (creating if need be) the database at `path`, applies migrations and starts the
    /// writer thread.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)
            .map_err(|e| StoreError::Permanent(format!("cannot open `{}`: {e}", path.display())))?;
        configure(&conn, &options, &path)?;
        schema::migrate(&mut conn)?;
        let wakeups = Arc::new(tokio::sync::Notify::new());
        let writer = Writer::start(conn, options.max_batch, Arc::clone(&wakeups))?;
        Ok(Self {
            path,
            writer,
            readers: Mutex::new(Vec::new()),
            options,
            wakeups,
            queue_wakeups: std::sync::Mutex::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many transactions the writer has committed and how many writes they held: with
    /// many writers at once, far fewer transactions than writes (group commit).
    pub fn commit_stats(&self) -> CommitStats {
        let (transactions, writes) = self.writer.stats();
        CommitStats {
            transactions,
            writes,
        }
    }

    /// The schema version of the file (after migrations, this build's).
    pub fn schema_version() -> i64 {
        schema::current_version()
    }

    /// Runs `f` on a reader connection, off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.reader()?;
        let (result, conn) = tokio::task::spawn_blocking(move || (f(&conn), conn))
            .await
            .map_err(|e| StoreError::Transient(format!("a read did not finish: {e}")))?;
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        result
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(transient)?;
        conn.busy_timeout(self.options.busy_timeout)
            .map_err(transient)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

/// WAL, the synchronous level and the busy timeout, each read back to check it took.
fn configure(conn: &Connection, options: &Options, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(options.busy_timeout).map_err(permanent)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(permanent)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Permanent(format!(
            "`{}` cannot use the WAL journal (SQLite chose `{mode}`); put it on a local disk",
            path.display()
        )));
    }
    let (name, level) = options.synchronous.pragma();
    conn.pragma_update(None, "synchronous", name)
        .map_err(permanent)?;
    let got: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .map_err(permanent)?;
    if got != level {
        return Err(StoreError::Permanent(format!(
            "SQLite did not accept synchronous = {name} (it reports {got})"
        )));
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(permanent)?;
    // The statement journal of each write's savepoint stays in memory instead of a temporary
    // file: it only ever undoes one write of the open transaction.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(permanent)?;
    Ok(())
}

/// This machine's clock in Unix milliseconds.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Locking trouble is worth retrying; everything else SQLite reports is not.
/// `execute` through the connection's statement cache: each statement is parsed once per
/// connection, not once per call.
pub(crate) fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// `query_row` through the connection's statement cache.
pub(crate) fn row<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

/// Statements kept prepared per connection; more than the store has.
const STATEMENT_CACHE: usize = 64;

pub(crate) fn classify(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => StoreError::Transient(e.to_string()),
        _ => StoreError::Permanent(e.to_string()),
    }
}

pub(crate) fn permanent(e: rusqlite::Error) -> StoreError {
    StoreError::Permanent(e.to_string())
}

pub(crate) fn transient(e: rusqlite::Error) -> StoreError {
    StoreError::Transient(e.to_string())
}

impl Store for SqliteStore {
    async fn now(&self) -> Result<Millis, StoreError> {
        Ok(now_ms())
    }

    async fn put_definition(&self, d: &Definition) -> Result<(), StoreError> {
        let d = d.clone();
        self.writer
            .run(false, move |tx, _| writer::put_definition(tx, &d))
            .await
            .map_err(into_store)
    }

    async fn definition(&self, hash: &str) -> Result<Option<Definition>, StoreError> {
        let hash = hash.to_owned();
        self.read(move |c| reads::definition(c, &hash)).await
    }

    async fn commit(&self, c: Commit) -> Result<Committed, CommitError> {
        let wakes = !c.enqueue.is_empty();
        self.writer
            .run(wakes, move |tx, now| writer::commit(tx, now, c))
            .await
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| reads::instance(c, &id)).await
    }

    async fn list(
        &self,
        filter: &Filter,
        size: usize,
        continuation: Option<&str>,
    ) -> Result<Page, StoreError> {
        let (filter, continuation) = (filter.clone(), continuation.map(str::to_owned));
        self.read(move |c| reads::list(c, &filter, size, continuation.as_deref()))
            .await
    }

    async fn count(&self, status: RuntimeStatus) -> Result<u64, StoreError> {
        self.read(move |c| reads::count(c, status)).await
    }

    async fn history(&self, id: &str, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| reads::history(c, &id, after, limit))
            .await
    }

    async fn purge(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .run(false, move |tx, _| writer::purge(tx, &id))
            .await
            .map_err(into_store)
    }

    async fn purge_where(&self, filter: &Filter) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.writer
            .run(false, move |tx, _| writer::purge_where(tx, &filter))
            .await
            .map_err(into_store)
    }

    async fn send(&self, work: NewWork) -> Result<i64, StoreError> {
        self.writer
            .run(true, move |tx, _| writer::send(tx, &work))
            .await
            .map_err(into_store)
    }

    async fn claim(&self, owner: &str, lease_ms: i64, max: usize) -> Result<Vec<Work>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(false, move |tx, now| {
                writer::claim(tx, now, &owner, lease_ms, max)
            })
            .await
            .map_err(into_store)
    }

    async fn extend(&self, held: Held, lease_ms: i64) -> Result<Lease, CommitError> {
        self.writer
            .run(false, move |tx, now| {
                writer::extend(tx, now, held, lease_ms)
            })
            .await
    }

    async fn release(&self, held: Held, due_at: Millis) -> Result<(), CommitError> {
        self.writer
            .run(true, move |tx, _| writer::release(tx, held, due_at))
            .await
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.read(reads::next_due).await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<KeyBinding>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| reads::idempotency(c, &key, now_ms()))
            .await
    }

    fn wakeups(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wakeups)
    }
}

/// Writes that cannot conflict or be fenced fail only with the store's own errors.
fn into_store(e: CommitError) -> StoreError {
    match e {
        CommitError::Store(e) => e,
        other => StoreError::Permanent(other.to_string()),
    }
}
