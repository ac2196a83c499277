//! The store conformance suite, on a fresh SQLite file per test.

#![allow(clippy::expect_used)]

async fn fresh() -> baton_store_sqlite::SqliteStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The directory must outlive the store: keep it (under the system's temporary directory).
    let path = dir.keep().join("baton.db");
    baton_store_sqlite::SqliteStore::open(path, baton_store_sqlite::Options::default())
        .expect("a fresh store")
}

baton_store::conformance_tests!(fresh());

mod queues {
    use super::fresh;

    baton_store::queue_conformance_tests!(fresh());
}
