//! Migrations on PostgreSQL: nodes starting together on a new schema migrate it once, under the
//! advisory lock, and all open; a schema written by a newer Baton is refused, not guessed at.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use baton_store::{Store, StoreError};
use baton_store_postgres::{Options, PostgresStore};

fn options(schema: &str) -> Options {
    Options {
        schema: schema.to_owned(),
        pool_size: 2,
        ..Options::new(&support::url())
    }
}

async fn sql(statement: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(&support::url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let rows = client.query(statement, &[]).await.unwrap();
    drop(client);
    let _ = driver.await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_all_open() {
    let schema = support::schema_name();
    let opens: Vec<_> = (0..6)
        .map(|_| tokio::spawn(PostgresStore::open(options(&schema))))
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("every node opens"));
    }
    for s in &stores {
        assert!(s.now().await.is_ok());
    }
    let rows = sql(&format!("SELECT version FROM \"{schema}\".schema_version")).await;
    assert_eq!(rows.len(), 1, "one version row");
    assert_eq!(
        rows[0].get::<_, i64>(0),
        PostgresStore::schema_version(),
        "migrated to this build's version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_baton_is_refused() {
    let schema = support::schema_name();
    drop(PostgresStore::open(options(&schema)).await.unwrap());
    sql(&format!(
        "UPDATE \"{schema}\".schema_version SET version = 999"
    ))
    .await;
    match PostgresStore::open(options(&schema)).await {
        Err(StoreError::Permanent(why)) => {
            assert!(why.contains("999") && why.contains("newer"), "{why}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a store")),
    }
}

#[tokio::test]
async fn a_bad_connection_string_or_schema_is_refused_at_once() {
    match PostgresStore::open(Options::new("postgres://db:notaport/x")).await {
        Err(StoreError::Permanent(why)) => assert!(why.contains("connection string"), "{why}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a store")),
    }
    let bad = Options {
        schema: "No-Such".to_owned(),
        ..Options::new(&support::url())
    };
    assert!(matches!(
        PostgresStore::open(bad).await,
        Err(StoreError::Permanent(_))
    ));
}
