//! The database goes away and comes back: a store reaching PostgreSQL through a TCP relay that
//! the test cuts (every connection dropped, new ones refused) and restores. While it is cut,
//! operations fail as transient (what the HTTP layer answers with 503) within the connect
//! timeout; nothing committed before is lost; once it is back, the pool serves again and the
//! wake-up listener reconnects and hears other nodes' commits.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_store::{Commit, InstanceRow, NewWork, RuntimeStatus, Store, StoreError, WorkKind};
use baton_store_postgres::{Options, PostgresStore};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay from a local port to the PostgreSQL server, which can be cut and restored.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    /// Bumped at every cut: relayed connections end when it changes.
    cuts: watch::Sender<u64>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (flag, cut) = (Arc::clone(&up), cuts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cuts }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn row(id: &str) -> InstanceRow {
    InstanceRow {
        id: id.to_owned(),
        function: "F".to_owned(),
        definition: "d".to_owned(),
        status: RuntimeStatus::Running,
        input: json!({"id": id}),
        output: None,
        error: None,
        custom_status: None,
        state: vec![1, 2, 3],
        created_at: 1,
        updated_at: 1,
        revision: 0,
    }
}

/// Polls `ready` every 20 ms until it holds, for at most 20 s.
async fn eventually(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_fails_as_transient_and_the_store_recovers() {
    // The relay forwards to the configured server's host and port.
    let direct_url = support::url();
    let config: tokio_postgres::Config = direct_url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the relay needs a TCP server, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let relay = Relay::start(format!("{host}:{port}")).await;
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("postgres");
    let relayed_url = format!("postgres://{user}@127.0.0.1:{}/{dbname}", relay.port);

    let schema = support::schema_name();
    let via_relay = PostgresStore::open(Options {
        schema: schema.clone(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
        ..Options::new(&relayed_url)
    })
    .await
    .expect("the store opens through the relay");
    let direct = PostgresStore::open(Options {
        schema: schema.clone(),
        pool_size: 2,
        ..Options::new(&direct_url)
    })
    .await
    .expect("a second node, straight to the server");
    eventually("the first listener", async || via_relay.listening()).await;

    via_relay
        .commit(Commit::create(row("before")))
        .await
        .expect("a commit before the outage");

    relay.cut();
    let t = Instant::now();
    match via_relay.now().await {
        Err(StoreError::Transient(why)) => eprintln!("while cut: {why}"),
        other => panic!("expected a transient failure while the database is away, got {other:?}"),
    }
    match via_relay.commit(Commit::create(row("during"))).await {
        Err(baton_store::CommitError::Store(StoreError::Transient(_))) => {}
        other => panic!("a commit while cut must fail as transient, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the failures came within the connect timeout and its retries ({:?})",
        t.elapsed()
    );
    eventually("the listener noticing the cut", async || {
        !via_relay.listening()
    })
    .await;

    relay.restore();
    eventually("the pool serving again", async || {
        via_relay.now().await.is_ok()
    })
    .await;
    assert!(
        via_relay.instance("before").await.unwrap().is_some(),
        "what was committed before the outage is there"
    );
    assert!(
        direct.instance("during").await.unwrap().is_none(),
        "the commit that failed wrote nothing"
    );
    via_relay
        .commit(Commit::create(row("after")))
        .await
        .expect("a commit after the outage");
    eventually("the listener reconnecting", async || via_relay.listening()).await;

    // A commit on the other node wakes this one's dispatchers through the database.
    let woken = via_relay.wakeups();
    let notified = woken.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let now = direct.now().await.unwrap();
    direct
        .send(NewWork {
            instance: "after".to_owned(),
            kind: WorkKind::Message,
            token: 1,
            due_at: now,
            payload: json!({}),
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), notified)
        .await
        .expect("the other node's send woke this node");
}
