//! What only the SQLite backend does: its file settings, migrations, reopening, group commit.
//! The behaviour every backend shares is the conformance suite (`tests/conformance.rs`).

use std::sync::Arc;

use baton_store::{Commit, InstanceRow, NewEvent, NewWork, RuntimeStatus, Store, WorkKind};
use baton_store_sqlite::{Options, SqliteStore, Synchronous};
use serde_json::json;

fn row(id: &str) -> InstanceRow {
    InstanceRow {
        id: id.to_owned(),
        function: "Validate".to_owned(),
        definition: "abc".to_owned(),
        status: RuntimeStatus::Running,
        input: json!({"Name": {"First": "Ada"}}),
        output: None,
        error: None,
        custom_status: None,
        state: vec![1, 2, 3],
        created_at: 1,
        updated_at: 0,
        revision: 0,
    }
}

#[tokio::test]
async fn the_file_is_in_wal_mode_with_either_synchronous_level() {
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.db");
        let store = SqliteStore::open(
            &path,
            Options {
                synchronous: sync,
                ..Options::default()
            },
        )
        .unwrap();
        store.commit(Commit::create(row("a"))).await.unwrap();
        // The journal mode is a property of the file, visible to any connection.
        let other = rusqlite::Connection::open(&path).unwrap();
        let mode: String = other
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal", "{sync:?}");
        let version: i64 = other
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SqliteStore::schema_version());
    }
}

#[tokio::test]
async fn everything_committed_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    {
        let store = SqliteStore::open(&path, Options::default()).unwrap();
        let mut c = Commit::create(row("kept"));
        c.history.push(NewEvent {
            kind: "ExecutionStarted".to_owned(),
            data: json!({"input": 1}),
        });
        c.enqueue.push(NewWork {
            instance: "kept".to_owned(),
            kind: WorkKind::Activity,
            token: 7,
            due_at: 0,
            payload: json!({"call": "check"}),
        });
        store.commit(c).await.unwrap();
    }
    let store = SqliteStore::open(&path, Options::default()).unwrap();
    let got = store.instance("kept").await.unwrap().unwrap();
    assert_eq!(got.input, json!({"Name": {"First": "Ada"}}));
    assert_eq!(got.state, vec![1, 2, 3]);
    assert_eq!(got.revision, 1);
    let history = store.history("kept", 0, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].kind, "ExecutionStarted");
    let work = store.claim("node-a", 60_000, 10).await.unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].token, 7);
    assert_eq!(work[0].payload, json!({"call": "check"}));
}

#[tokio::test]
async fn a_file_from_a_newer_baton_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    drop(SqliteStore::open(&path, Options::default()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, Options::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("schema version 99"), "{msg}");
    assert!(msg.contains("newer"), "{msg}");
}

#[tokio::test]
async fn a_path_that_cannot_be_opened_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("baton.db");
    let msg = SqliteStore::open(&path, Options::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("cannot open"), "{msg}");
    assert!(msg.contains("no-such-dir"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(dir.path().join("baton.db"), Options::default()).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400 {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.commit(Commit::create(row(&format!("i{i:03}")))).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let stats = store.commit_stats();
    assert_eq!(stats.writes, 400);
    assert!(
        stats.transactions < stats.writes,
        "400 concurrent commits took {} transactions: no batching",
        stats.transactions
    );
    let page = store.list(&Default::default(), 1000, None).await.unwrap();
    assert_eq!(page.items.len(), 400);
}
