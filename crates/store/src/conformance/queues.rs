//! Queue cases: what every [`QueueStore`] must do, Service Bus' semantics on the store's clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{LONG, PATIENCE, POLL, SHORT, now};
use crate::Store;
use crate::queues::{
    Message, MessageState, NewMessage, QueueError, QueueSpec, QueueStore, Sent, SessionChoice,
    Settle,
};

/// A queue with `change` applied to the defaults, created in `s`.
async fn queue<S: QueueStore>(s: &S, name: &str, change: impl FnOnce(&mut QueueSpec)) -> QueueSpec {
    let mut spec = QueueSpec::new(name);
    change(&mut spec);
    s.put_queue(&spec)
        .await
        .unwrap_or_else(|e| panic!("put_queue({name}): {e}"));
    spec
}

fn msg(body: &str) -> NewMessage {
    NewMessage {
        body: body.as_bytes().to_vec(),
        content_type: Some("text/plain".to_owned()),
        ..NewMessage::default()
    }
}

fn with_id(body: &str, id: &str) -> NewMessage {
    NewMessage {
        message_id: Some(id.to_owned()),
        ..msg(body)
    }
}

async fn send<S: QueueStore>(s: &S, q: &str, messages: Vec<NewMessage>) -> Vec<Sent> {
    s.enqueue(q, messages)
        .await
        .unwrap_or_else(|e| panic!("enqueue({q}): {e}"))
}

async fn receive<S: QueueStore>(s: &S, q: &str, max: usize) -> Vec<Message> {
    s.receive(q, max, None)
        .await
        .unwrap_or_else(|e| panic!("receive({q}): {e}"))
        .messages
}

async fn settle<S: QueueStore>(s: &S, m: &Message, how: Settle) {
    let token = m
        .lock_token
        .as_deref()
        .expect("a received message has a lock token");
    s.settle(&m.queue, m.sequence, token, how)
        .await
        .unwrap_or_else(|e| panic!("settle({}): {e}", m.sequence));
}

fn bodies(ms: &[Message]) -> Vec<String> {
    ms.iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

async fn dead<S: QueueStore>(s: &S, q: &str) -> Vec<Message> {
    s.peek(q, 0, 100, true)
        .await
        .expect("peek the dead-letter queue")
}

/// Receives from `q` until something comes (the store's clock must pass a lock's or a
/// schedule's time first), within [`PATIENCE`].
async fn receive_eventually<S: QueueStore>(s: &S, q: &str, what: &str) -> Vec<Message> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let got = receive(s, q, 10).await;
        if !got.is_empty() {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: nothing was received within {PATIENCE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the store's clock is past `t`.
async fn until_past<S: Store>(s: &S, t: crate::Millis) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while now(s).await <= t {
        assert!(
            std::time::Instant::now() < deadline,
            "the store's clock did not pass {t}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Sent messages get growing sequence numbers; a receive locks the oldest, counting the
/// delivery; completed messages are gone; stats follow.
pub async fn queue_send_receive_complete<S: Store + QueueStore>(s: &S) {
    queue(s, "orders", |_| {}).await;
    let sent = send(s, "orders", vec![msg("a"), msg("b"), msg("c")]).await;
    let seqs: Vec<i64> = sent
        .iter()
        .map(|x| match x {
            Sent::Accepted { sequence, .. } => *sequence,
            Sent::Duplicate { .. } => panic!("nothing is a duplicate: {sent:?}"),
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "growing sequence numbers: {seqs:?}"
    );
    let got = receive(s, "orders", 2).await;
    assert_eq!(bodies(&got), ["a", "b"]);
    for m in &got {
        assert_eq!((m.state, m.delivery_count), (MessageState::Locked, 1));
        assert!(m.locked_until.is_some() && m.lock_token.is_some());
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    }
    let stats = s.queue_stats("orders").await.unwrap();
    assert_eq!((stats.active, stats.locked, stats.dead_lettered), (1, 2, 0));
    for m in &got {
        settle(s, m, Settle::Complete).await;
    }
    assert_eq!(bodies(&receive(s, "orders", 10).await), ["c"]);
    assert!(
        receive(s, "orders", 10).await.is_empty(),
        "the last one is locked"
    );
    let stats = s.queue_stats("orders").await.unwrap();
    assert_eq!((stats.active, stats.locked), (0, 1));
    // A completed message is gone for good: its token is refused.
    let e = s
        .settle(
            "orders",
            got[0].sequence,
            got[0].lock_token.as_deref().unwrap(),
            Settle::Complete,
        )
        .await
        .expect_err("completed twice");
    assert!(matches!(e, QueueError::LockLost(_)), "{e}");
}

/// Fails exactly `max_delivery - 1` times, then completes: never dead-lettered.
pub async fn nine_failures_then_success_is_not_dead_lettered<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |q| q.max_delivery = 10).await;
    send(s, "q", vec![msg("m")]).await;
    for n in 1..=9 {
        let got = receive(s, "q", 1).await;
        assert_eq!(got.len(), 1, "delivery {n}");
        assert_eq!(got[0].delivery_count, n);
        settle(s, &got[0], Settle::Abandon).await;
    }
    let got = receive(s, "q", 1).await;
    assert_eq!(got[0].delivery_count, 10);
    settle(s, &got[0], Settle::Complete).await;
    assert!(dead(s, "q").await.is_empty());
    assert_eq!(s.queue_stats("q").await.unwrap(), Default::default());
}

/// Fails `max_delivery` times: dead-lettered with `MaxDeliveryCountExceeded` and delivery
/// count 10, and no longer received.
pub async fn ten_failures_are_dead_lettered<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |q| q.max_delivery = 10).await;
    send(s, "q", vec![msg("m")]).await;
    for _ in 0..10 {
        let got = receive(s, "q", 1).await;
        settle(s, &got[0], Settle::Abandon).await;
    }
    assert!(receive(s, "q", 1).await.is_empty());
    let dl = dead(s, "q").await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].state, MessageState::DeadLettered);
    assert_eq!(dl[0].delivery_count, 10);
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some("MaxDeliveryCountExceeded")
    );
    assert_eq!(s.queue_stats("q").await.unwrap().dead_lettered, 1);
}

/// A receiver that never settles: its lock expires and the message comes again, delivery
/// count 2, under a new token; the old token is refused. The last allowed delivery's lock
/// expiring dead-letters the message.
pub async fn expired_lock_redelivers_and_fences_the_old_token<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |q| {
        q.lock_ms = SHORT;
        q.max_delivery = 2;
    })
    .await;
    send(s, "q", vec![msg("m")]).await;
    let first = receive(s, "q", 1).await.remove(0);
    let second = receive_eventually(s, "q", "after the lock expired")
        .await
        .remove(0);
    assert_eq!(second.sequence, first.sequence);
    assert_eq!(second.delivery_count, 2);
    assert_ne!(second.lock_token, first.lock_token);
    let e = s
        .settle(
            "q",
            first.sequence,
            first.lock_token.as_deref().unwrap(),
            Settle::Complete,
        )
        .await
        .expect_err("stale token");
    assert!(matches!(e, QueueError::LockLost(_)), "{e}");
    let e = s
        .renew("q", first.sequence, first.lock_token.as_deref().unwrap())
        .await
        .expect_err("stale token");
    assert!(matches!(e, QueueError::LockLost(_)), "{e}");
    // The second delivery was the last: when its lock runs out, the message is dead-lettered.
    until_past(s, second.locked_until.unwrap()).await;
    assert!(receive(s, "q", 1).await.is_empty());
    let dl = dead(s, "q").await;
    assert_eq!(dl.len(), 1);
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some("MaxDeliveryCountExceeded")
    );
}

/// Renewing a lock moves its expiry forward and keeps the token.
pub async fn renewed_lock_holds<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |q| q.lock_ms = LONG).await;
    send(s, "q", vec![msg("m")]).await;
    let m = receive(s, "q", 1).await.remove(0);
    let until = s
        .renew("q", m.sequence, m.lock_token.as_deref().unwrap())
        .await
        .unwrap();
    assert!(until >= m.locked_until.unwrap());
    settle(s, &m, Settle::Complete).await;
}

/// A message id accepted inside the window is dropped as a duplicate; after the window it is
/// accepted again. Messages without an id get one and are never duplicates of each other.
pub async fn duplicates_are_dropped_inside_the_window<S: Store + QueueStore>(s: &S) {
    let window = 300;
    queue(s, "q", |q| q.duplicate_window_ms = Some(window)).await;
    let t = now(s).await;
    let sent = send(
        s,
        "q",
        vec![
            with_id("1", "order-1"),
            with_id("2", "order-1"),
            msg("3"),
            msg("4"),
        ],
    )
    .await;
    assert!(
        matches!(&sent[0], Sent::Accepted { message_id, .. } if message_id == "order-1"),
        "{sent:?}"
    );
    assert!(
        matches!(&sent[1], Sent::Duplicate { message_id } if message_id == "order-1"),
        "{sent:?}"
    );
    assert!(matches!(&sent[2], Sent::Accepted { .. }) && matches!(&sent[3], Sent::Accepted { .. }));
    // The window runs from when the store accepted the message (which may be a little after
    // `t`, as the send took its time).
    let first = s.peek("q", 0, 10, false).await.unwrap();
    let accepted = first
        .iter()
        .find(|m| m.message_id == "order-1")
        .map_or(t, |m| m.enqueued_at);
    until_past(s, accepted.max(t) + window).await;
    let again = send(s, "q", vec![with_id("5", "order-1")]).await;
    assert!(
        matches!(&again[0], Sent::Accepted { .. }),
        "outside the window: {again:?}"
    );
    assert_eq!(bodies(&receive(s, "q", 10).await), ["1", "3", "4", "5"]);
    // Without duplicate detection the same id is accepted twice.
    queue(s, "plain", |q| q.duplicate_window_ms = None).await;
    let sent = send(s, "plain", vec![with_id("a", "x"), with_id("b", "x")]).await;
    assert!(
        sent.iter().all(|x| matches!(x, Sent::Accepted { .. })),
        "{sent:?}"
    );
}

/// An expired message is dropped, or dead-lettered with `TTLExpiredException` when the queue
/// says so; a message's own time to live is capped by the queue's default.
pub async fn expired_messages_are_dropped_or_dead_lettered<S: Store + QueueStore>(s: &S) {
    queue(s, "drop", |q| q.default_ttl_ms = Some(SHORT)).await;
    queue(s, "keep", |q| {
        q.default_ttl_ms = Some(SHORT);
        q.dead_letter_on_expiry = true;
    })
    .await;
    queue(s, "own", |_| {}).await;
    let t = now(s).await;
    for q in ["drop", "keep"] {
        send(s, q, vec![msg("x")]).await;
    }
    let own = NewMessage {
        ttl_ms: Some(SHORT),
        ..msg("short")
    };
    send(s, "own", vec![own, msg("long")]).await;
    // Past the latest expiry the store gave (each counted from when that send was accepted).
    let mut expiry = t + SHORT;
    for q in ["drop", "keep", "own"] {
        for m in s.peek(q, 0, 10, false).await.unwrap() {
            expiry = expiry.max(m.expires_at.unwrap_or(expiry));
        }
    }
    until_past(s, expiry).await;
    for q in ["drop", "keep"] {
        assert!(receive(s, q, 10).await.is_empty(), "{q}: expired");
    }
    assert!(dead(s, "drop").await.is_empty());
    let dl = dead(s, "keep").await;
    assert_eq!(dl.len(), 1);
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some("TTLExpiredException")
    );
    assert_eq!(bodies(&receive(s, "own", 10).await), ["long"]);
    // Dead-lettered messages never expire.
    until_past(s, expiry + SHORT).await;
    assert_eq!(dead(s, "keep").await.len(), 1);
}

/// A scheduled message is invisible (and counted as scheduled) until its time.
pub async fn scheduled_messages_wait_for_their_time<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |_| {}).await;
    let at = now(s).await + 300;
    let later = NewMessage {
        scheduled_at: Some(at),
        ..msg("later")
    };
    send(s, "q", vec![later, msg("now")]).await;
    assert_eq!(bodies(&receive(s, "q", 10).await), ["now"]);
    let stats = s.queue_stats("q").await.unwrap();
    assert_eq!((stats.scheduled, stats.locked), (1, 1));
    assert_eq!(
        s.next_visible("q").await.unwrap().map(|v| v <= at),
        Some(true)
    );
    let got = receive_eventually(s, "q", "the scheduled message").await;
    assert_eq!(bodies(&got), ["later"]);
    assert!(now(s).await >= at, "not before its time");
}

/// Explicit dead-lettering keeps the caller's reason; peek shows the sub-queue; redrive moves
/// the chosen messages (or all) back, delivery count reset.
pub async fn dead_letters_peek_and_redrive<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |_| {}).await;
    send(s, "q", vec![msg("a"), msg("b"), msg("c")]).await;
    for m in receive(s, "q", 3).await {
        let how = Settle::DeadLetter {
            reason: "BadOrder".to_owned(),
            description: Some(format!("order {} is malformed", m.sequence)),
        };
        settle(s, &m, how).await;
    }
    let dl = dead(s, "q").await;
    assert_eq!(bodies(&dl), ["a", "b", "c"]);
    assert!(
        dl.iter()
            .all(|m| m.dead_letter_reason.as_deref() == Some("BadOrder")
                && m.dead_letter_description.is_some()
                && m.lock_token.is_none())
    );
    assert_eq!(s.redrive("q", Some(&[dl[1].sequence])).await.unwrap(), 1);
    let back = receive(s, "q", 10).await;
    assert_eq!(bodies(&back), ["b"]);
    assert_eq!(back[0].delivery_count, 1, "counted afresh");
    assert_eq!(back[0].dead_letter_reason, None);
    assert_eq!(s.redrive("q", None).await.unwrap(), 2);
    assert!(dead(s, "q").await.is_empty());
    assert_eq!(s.queue_stats("q").await.unwrap().active, 2);
}

/// Peeking shows messages in order, with their state, and locks nothing.
pub async fn peek_locks_nothing<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |_| {}).await;
    send(s, "q", vec![msg("a"), msg("b")]).await;
    let locked = receive(s, "q", 1).await.remove(0);
    let seen = s.peek("q", 0, 10, false).await.unwrap();
    assert_eq!(bodies(&seen), ["a", "b"]);
    assert_eq!(seen[0].state, MessageState::Locked);
    assert_eq!(seen[1].state, MessageState::Active);
    assert!(
        seen.iter().all(|m| m.lock_token.is_none()),
        "a peek hands out no lock"
    );
    assert_eq!(
        bodies(&s.peek("q", seen[1].sequence, 10, false).await.unwrap()),
        ["b"]
    );
    assert_eq!(
        bodies(&receive(s, "q", 10).await),
        ["b"],
        "still receivable"
    );
    settle(s, &locked, Settle::Complete).await;
}

/// A batch is all or nothing; a message that does not fit the queue fails it; unknown queues
/// are named; a queue's properties and ids come back as sent.
pub async fn batches_are_atomic_and_bad_input_is_refused<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |_| {}).await;
    let bad = NewMessage {
        session_id: Some("s".to_owned()),
        ..msg("bad")
    };
    let e = s
        .enqueue("q", vec![msg("ok"), bad])
        .await
        .expect_err("a session id on a plain queue");
    assert!(matches!(e, QueueError::Invalid(_)), "{e}");
    assert_eq!(
        s.queue_stats("q").await.unwrap(),
        Default::default(),
        "nothing of the batch"
    );
    let e = s
        .enqueue("nope", vec![msg("x")])
        .await
        .expect_err("no such queue");
    assert!(
        matches!(e, QueueError::NoQueue(ref q) if q == "nope"),
        "{e}"
    );
    assert!(matches!(
        s.receive("nope", 1, None).await,
        Err(QueueError::NoQueue(_))
    ));
    let rich = NewMessage {
        message_id: Some("m-1".to_owned()),
        correlation_id: Some("c-1".to_owned()),
        properties: json!({"priority": 2, "tags": ["x"]})
            .as_object()
            .unwrap()
            .clone(),
        ..msg("rich")
    };
    send(s, "q", vec![rich]).await;
    let m = receive(s, "q", 1).await.remove(0);
    assert_eq!(m.message_id, "m-1");
    assert_eq!(m.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(
        serde_json::Value::Object(m.properties),
        json!({"priority": 2, "tags": ["x"]})
    );
    let mut bad_spec = QueueSpec::new("bad name!");
    assert!(bad_spec.problem().is_some());
    assert!(matches!(
        s.put_queue(&bad_spec).await,
        Err(QueueError::Invalid(_))
    ));
    bad_spec.name = "fine".to_owned();
    bad_spec.duplicate_window_ms = Some(1_000);
    assert!(bad_spec.problem().is_none() && bad_spec.configuration_problem().is_some());
    // Listing and deleting.
    let names: Vec<String> = s
        .queues()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["q"]);
    assert!(s.delete_queue("q").await.unwrap());
    assert!(!s.delete_queue("q").await.unwrap());
    assert!(s.queue("q").await.unwrap().is_none());
}

/// A session queue: one receiver per session at a time, each session's messages in order.
pub async fn sessions_have_one_receiver_each<S: Store + QueueStore>(s: &S) {
    queue(s, "s", |q| {
        q.sessions = true;
        q.lock_ms = LONG;
    })
    .await;
    let in_session = |sid: &str, body: &str| NewMessage {
        session_id: Some(sid.to_owned()),
        ..msg(body)
    };
    send(
        s,
        "s",
        vec![
            in_session("a", "a1"),
            in_session("b", "b1"),
            in_session("a", "a2"),
        ],
    )
    .await;
    assert!(matches!(
        s.receive("s", 1, None).await,
        Err(QueueError::Invalid(_))
    ));
    let x = s.receive("s", 1, Some(SessionChoice::Next)).await.unwrap();
    let xs = x.session.clone().expect("a session");
    assert_eq!(
        (xs.session_id.as_str(), bodies(&x.messages)),
        ("a", vec!["a1".to_owned()])
    );
    // Someone else gets the other session, and cannot take the held one.
    let y = s.receive("s", 5, Some(SessionChoice::Next)).await.unwrap();
    assert_eq!(y.session.as_ref().map(|l| l.session_id.as_str()), Some("b"));
    let taken = s
        .receive(
            "s",
            5,
            Some(SessionChoice::Id {
                session_id: "a".to_owned(),
                token: None,
            }),
        )
        .await;
    assert!(matches!(taken, Err(QueueError::LockLost(_))), "{taken:?}");
    // `a2` is visible but held with its session: a waiting receiver sleeps until a lock
    // expires, not through a time already past.
    let t = now(s).await;
    let next = s.next_visible("s").await.unwrap();
    assert!(next.is_some_and(|n| n > t), "{next:?} is after {t}");
    // The holder goes on, in order.
    settle(s, &x.messages[0], Settle::Complete).await;
    let more = s
        .receive(
            "s",
            5,
            Some(SessionChoice::Id {
                session_id: "a".to_owned(),
                token: Some(xs.token.clone()),
            }),
        )
        .await
        .unwrap();
    assert_eq!(bodies(&more.messages), ["a2"]);
    // Released, the session is free for anyone.
    settle(s, &more.messages[0], Settle::Abandon).await;
    assert_eq!(
        s.renew_session("s", "a", &xs.token, true).await.unwrap(),
        None
    );
    let z = s.receive("s", 5, Some(SessionChoice::Next)).await.unwrap();
    assert_eq!(z.session.map(|l| l.session_id), Some("a".to_owned()));
    assert_eq!(bodies(&z.messages), ["a2"]);
}

/// Two receivers working a session queue at once: every message is delivered once, and each
/// session's messages in the order they were sent.
pub async fn sessions_keep_order_under_concurrent_receivers<S: Store + QueueStore>(s: Arc<S>) {
    queue(&*s, "s", |q| {
        q.sessions = true;
        q.lock_ms = LONG;
    })
    .await;
    let mut batch = Vec::new();
    for i in 0..10 {
        for sid in ["a", "b", "c"] {
            batch.push(NewMessage {
                session_id: Some(sid.to_owned()),
                ..msg(&format!("{sid}{i:02}"))
            });
        }
    }
    send(&*s, "s", batch).await;
    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let (s, seen) = (Arc::clone(&s), Arc::clone(&seen));
        receivers.push(tokio::spawn(async move {
            let deadline = std::time::Instant::now() + PATIENCE * 4;
            loop {
                let got = s.receive("s", 1, Some(SessionChoice::Next)).await.unwrap();
                let Some(lock) = got.session else {
                    return;
                };
                let mut messages = got.messages;
                // Work the session to its end, one message at a time.
                while let Some(m) = messages.pop() {
                    seen.lock()
                        .unwrap()
                        .entry(lock.session_id.clone())
                        .or_default()
                        .push(String::from_utf8_lossy(&m.body).into_owned());
                    tokio::task::yield_now().await;
                    s.settle(
                        "s",
                        m.sequence,
                        m.lock_token.as_deref().unwrap(),
                        Settle::Complete,
                    )
                    .await
                    .unwrap();
                    let choice = SessionChoice::Id {
                        session_id: lock.session_id.clone(),
                        token: Some(lock.token.clone()),
                    };
                    messages = s.receive("s", 1, Some(choice)).await.unwrap().messages;
                }
                s.renew_session("s", &lock.session_id, &lock.token, true)
                    .await
                    .unwrap();
                assert!(
                    std::time::Instant::now() < deadline,
                    "the receivers did not finish"
                );
            }
        }));
    }
    for r in receivers {
        r.await.expect("a receiver panicked");
    }
    let seen = seen.lock().unwrap();
    for sid in ["a", "b", "c"] {
        let want: Vec<String> = (0..10).map(|i| format!("{sid}{i:02}")).collect();
        assert_eq!(seen.get(sid), Some(&want), "session {sid}");
    }
}

/// Long-polling receivers are woken by a send to their queue, and only to theirs.
pub async fn queue_wakeup_after_send<S: Store + QueueStore>(s: &S) {
    queue(s, "q", |_| {}).await;
    queue(s, "other", |_| {}).await;
    let wake = s.queue_wakeups("q");
    let woken = wake.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    send(s, "other", vec![msg("elsewhere")]).await;
    assert!(
        still_pending(woken.as_mut()),
        "a send to another queue does not wake this one's receivers"
    );
    send(s, "q", vec![msg("m")]).await;
    tokio::time::timeout(PATIENCE, woken)
        .await
        .expect("a send wakes receivers");
}

/// Whether `f` is still pending when polled once.
fn still_pending<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    f.poll(&mut cx).is_pending()
}
