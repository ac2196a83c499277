//! Queues on two nodes: two stores opened on one schema, as two `baton serve` processes on
//! one database would, sending and receiving at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_store::queues::{NewMessage, QueueSpec, QueueStore, Sent, SessionChoice, Settle};
use baton_store_postgres::{Options, PostgresStore};

/// How long a case may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(30);

/// Two nodes on one fresh schema.
async fn two_nodes() -> (Arc<PostgresStore>, Arc<PostgresStore>) {
    // The first one migrates; `fresh` also clears out schemas of old runs.
    let a = support::fresh().await;
    let options = Options {
        schema: a.schema().to_owned(),
        pool_size: 4,
        ..Options::new(&support::url())
    };
    let b = PostgresStore::open(options).await.expect("the second node");
    (Arc::new(a), Arc::new(b))
}

async fn queue(s: &PostgresStore, name: &str, change: impl FnOnce(&mut QueueSpec)) {
    let mut spec = QueueSpec::new(name);
    spec.lock_ms = 60_000;
    change(&mut spec);
    s.put_queue(&spec).await.expect("put_queue");
}

fn msg(body: String) -> NewMessage {
    NewMessage {
        body: body.into_bytes(),
        ..NewMessage::default()
    }
}

fn body(m: &baton_store::queues::Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receivers_on_two_nodes_get_every_message_once() {
    let (a, b) = two_nodes().await;
    queue(&a, "jobs", |_| {}).await;
    // Both nodes send at once: one sequence, no number given twice.
    let mut senders = Vec::new();
    for (node, s) in [("a", &a), ("b", &b)] {
        let s = Arc::clone(s);
        senders.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for batch in 0..10 {
                let messages = (0..10)
                    .map(|i| msg(format!("{node}-{batch}-{i}")))
                    .collect();
                for sent in s.enqueue("jobs", messages).await.unwrap() {
                    match sent {
                        Sent::Accepted { sequence, .. } => seqs.push(sequence),
                        Sent::Duplicate { .. } => panic!("no duplicates were sent"),
                    }
                }
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for s in senders {
        seqs.extend(s.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<i64>>(),
        "one sequence, no gaps"
    );

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut receivers = Vec::new();
    for s in [&a, &b, &a, &b, &a, &b] {
        let (s, seen) = (Arc::clone(s), Arc::clone(&seen));
        receivers.push(tokio::spawn(async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                assert!(Instant::now() < deadline, "the receivers did not finish");
                let got = s.receive("jobs", 5, None).await.unwrap().messages;
                if got.is_empty() {
                    // Empty: the rest is locked by the other receivers, or all is done.
                    if s.queue_stats("jobs").await.unwrap().active == 0 {
                        return;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for m in got {
                    seen.lock().unwrap().push(body(&m));
                    s.settle(
                        "jobs",
                        m.sequence,
                        m.lock_token.as_deref().unwrap(),
                        Settle::Complete,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("completing {}: {e}", m.sequence));
                }
            }
        }));
    }
    for r in receivers {
        r.await.expect("a receiver panicked");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 200, "delivered: {}", seen.len());
    assert_eq!(distinct.len(), 200, "each message once");
    assert_eq!(a.queue_stats("jobs").await.unwrap(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_nodes_share_one_duplicate_window() {
    let (a, b) = two_nodes().await;
    queue(&a, "orders", |_| {}).await;
    // Each node sends every id, in its own order, at the same time.
    let ids: Vec<String> = (0..50).map(|i| format!("order-{i}")).collect();
    let mut senders = Vec::new();
    for (s, reversed) in [(&a, false), (&b, true)] {
        let (s, mut ids) = (Arc::clone(s), ids.clone());
        if reversed {
            ids.reverse();
        }
        senders.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for chunk in ids.chunks(5) {
                let batch = chunk
                    .iter()
                    .map(|id| NewMessage {
                        message_id: Some(id.clone()),
                        ..msg(id.clone())
                    })
                    .collect();
                for sent in s.enqueue("orders", batch).await.unwrap() {
                    if let Sent::Accepted {
                        sequence,
                        message_id,
                    } = sent
                    {
                        accepted.push((message_id, sequence));
                    }
                }
            }
            accepted
        }));
    }
    let mut accepted = Vec::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    let ids_accepted: BTreeSet<&String> = accepted.iter().map(|(id, _)| id).collect();
    assert_eq!(accepted.len(), 50, "each id accepted once: {accepted:?}");
    assert_eq!(ids_accepted.len(), 50);
    let mut seqs: Vec<i64> = accepted.iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());
    assert_eq!(b.queue_stats("orders").await.unwrap().active, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_has_one_holder_across_nodes() {
    let (a, b) = two_nodes().await;
    queue(&a, "s", |q| q.sessions = true).await;
    let sessions: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let mut batch = Vec::new();
    for i in 0..6 {
        for sid in &sessions {
            batch.push(NewMessage {
                session_id: Some(sid.clone()),
                ..msg(format!("{sid}-{i}"))
            });
        }
    }
    a.enqueue("s", batch).await.unwrap();
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let mut receivers = Vec::new();
    for s in [&a, &b, &a, &b] {
        let (s, held, seen) = (Arc::clone(s), Arc::clone(&held), Arc::clone(&seen));
        receivers.push(tokio::spawn(async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                assert!(Instant::now() < deadline, "the receivers did not finish");
                let got = s.receive("s", 2, Some(SessionChoice::Next)).await.unwrap();
                let Some(lock) = got.session else {
                    return;
                };
                assert!(
                    held.lock().unwrap().insert(lock.session_id.clone()),
                    "session {} had two holders",
                    lock.session_id
                );
                let mut messages = got.messages;
                while !messages.is_empty() {
                    for m in &messages {
                        seen.lock()
                            .unwrap()
                            .entry(lock.session_id.clone())
                            .or_default()
                            .push(body(m));
                        s.settle(
                            "s",
                            m.sequence,
                            m.lock_token.as_deref().unwrap(),
                            Settle::Complete,
                        )
                        .await
                        .unwrap();
                    }
                    let choice = SessionChoice::Id {
                        session_id: lock.session_id.clone(),
                        token: Some(lock.token.clone()),
                    };
                    messages = s.receive("s", 2, Some(choice)).await.unwrap().messages;
                }
                // Off the books before the lock goes, so that the next holder finds it free.
                held.lock().unwrap().remove(&lock.session_id);
                s.renew_session("s", &lock.session_id, &lock.token, true)
                    .await
                    .unwrap();
            }
        }));
    }
    for r in receivers {
        r.await.expect("a receiver panicked");
    }
    let seen = seen.lock().unwrap();
    for sid in &sessions {
        let want: Vec<String> = (0..6).map(|i| format!("{sid}-{i}")).collect();
        assert_eq!(
            seen.get(sid),
            Some(&want),
            "session {sid}, once each, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_on_one_node_wakes_receivers_on_the_other() {
    let (a, b) = two_nodes().await;
    queue(&a, "q", |_| {}).await;
    queue(&a, "probe", |_| {}).await;
    hears(&b, &a).await;
    hears(&a, &b).await;
    let wake = b.queue_wakeups("q");
    let woken = wake.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    a.enqueue("q", vec![msg("m".to_owned())]).await.unwrap();
    tokio::time::timeout(PATIENCE, woken)
        .await
        .expect("a send on a wakes b's receivers");
    let got = b.receive("q", 10, None).await.unwrap().messages;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["m"]);
    // Abandoning on b wakes a's receivers too.
    let wake = a.queue_wakeups("q");
    let woken = wake.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    b.settle(
        "q",
        got[0].sequence,
        got[0].lock_token.as_deref().unwrap(),
        Settle::Abandon,
    )
    .await
    .unwrap();
    tokio::time::timeout(PATIENCE, woken)
        .await
        .expect("an abandon on b wakes a's receivers");
}

/// Returns once `listener` has heard a send of `sender`'s (to queue `probe`). Until then its
/// listening connection may not be subscribed yet, and when it subscribes it wakes everybody
/// once: a wake-up seen before this proves nothing.
async fn hears(listener: &PostgresStore, sender: &PostgresStore) {
    let probe = listener.queue_wakeups("probe");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let woken = probe.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        sender
            .enqueue("probe", vec![msg("ping".to_owned())])
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_millis(500), woken)
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the listener never heard the sender"
        );
    }
}
