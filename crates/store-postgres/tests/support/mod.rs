//! A fresh, empty store per test: a new schema in the test database.
//!
//! The server is `BATON_TEST_POSTGRES` (a libpq connection string), by default
//! `postgres://postgres@127.0.0.1:5432/test`. Schemas are named `test_<unix seconds>_<n>`;
//! each new store drops the test schemas more than 15 minutes old (no test runs that long), so
//! that the catalog does not fill up with the schemas of earlier runs.

#![allow(clippy::expect_used, dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use baton_store_postgres::{Options, PostgresStore};

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("BATON_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A schema name no other test (of this run or another) uses.
pub fn schema_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("test_{secs}_{}_{n}", std::process::id())
}

pub async fn fresh() -> PostgresStore {
    drop_stale_schemas().await;
    let options = Options {
        schema: schema_name(),
        pool_size: 4,
        ..Options::new(&url())
    };
    PostgresStore::open(options).await.unwrap_or_else(|e| {
        panic!(
            "cannot open a PostgreSQL store at {} (set BATON_TEST_POSTGRES to a server the tests may use): {e}",
            url()
        )
    })
}

/// Drops `test_<secs>_…` schemas older than 15 minutes: left over by earlier runs, they would
/// bloat the catalog and slow every later run down.
async fn drop_stale_schemas() {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {} (BATON_TEST_POSTGRES): {e}", url()));
    let driver = tokio::spawn(connection);
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(15 * 60);
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'",
            &[],
        )
        .await
        .expect("the schema list");
    for r in rows {
        let name: String = r.get(0);
        let secs = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        if secs.is_some_and(|s| s < cutoff) {
            // Another test run may be dropping it too.
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
    drop(client);
    let _ = driver.await;
}
