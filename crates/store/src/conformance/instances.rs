//! Instances, their history, definitions, idempotency keys, listing and purging.

use serde_json::json;

use super::{
    LONG, SHORT, claim, claim_one, commit, create_with, event, expect_conflict, get, history,
    instance, new_work, next_due, now, row, wait_past,
};
use crate::{
    Commit, CommitError, Definition, Held, IdempotencyKey, InstanceRow, KeyBinding, RuntimeStatus,
    Store, WorkKind,
};

/// A created instance reads back as written, at revision 1, stamped by the store's clock.
pub async fn create_and_read_back<S: Store>(s: &S) {
    assert_eq!(
        instance(s, "order-1").await,
        None,
        "an unknown id reads as None"
    );
    let written = InstanceRow {
        status: RuntimeStatus::Pending,
        output: Some(json!({ "total": 12.5, "lines": [1, 2, 3], "note": "ünïcödé ✓" })),
        error: Some(json!({ "type": "https://example.invalid/e", "status": 500 })),
        custom_status: Some(json!("step 1")),
        state: (0..=255u8).collect(),
        created_at: 1_234_567,
        // Both are the store's to set, whatever the caller says.
        revision: 99,
        updated_at: -5,
        ..row("order-1")
    };
    let t0 = now(s).await;
    let done = s
        .commit(Commit::create(written.clone()))
        .await
        .expect("creating order-1");
    let t1 = now(s).await;
    assert_eq!(done.revision, 1, "a created instance is at revision 1");
    assert!(done.enqueued.is_empty(), "nothing was enqueued");
    let read = get(s, "order-1").await;
    assert_eq!(read.revision, 1, "the stored revision of a new instance");
    assert!(
        t0 <= read.updated_at && read.updated_at <= t1,
        "updated_at {} should be the store's time of the commit, between {t0} and {t1}",
        read.updated_at
    );
    let expected = InstanceRow {
        revision: 1,
        updated_at: read.updated_at,
        ..written
    };
    assert_eq!(read, expected, "the row reads back as written");
}

/// Creating an id that exists is a conflict and leaves the first row alone.
pub async fn create_twice_conflicts<S: Store>(s: &S) {
    let (first, _) = create_with(s, row("dup"), vec![]).await;
    let again = InstanceRow {
        function: "Other".to_owned(),
        ..row("dup")
    };
    let r = s
        .commit(Commit {
            history: vec![event("again")],
            ..Commit::create(again)
        })
        .await;
    let (id, expected, found) = expect_conflict(r, "creating `dup` a second time");
    assert_eq!(id, "dup", "the conflict names the instance");
    assert_eq!(expected, None, "a create expects no revision");
    assert_eq!(found, Some(1), "the conflict reports the revision found");
    assert_eq!(get(s, "dup").await, first, "the first row is unchanged");
    assert!(history(s, "dup").await.is_empty(), "no history was written");
}

/// An update from the current revision is stored and bumps it by one.
pub async fn update_bumps_revision<S: Store>(s: &S) {
    let (r1, _) = create_with(s, row("u"), vec![]).await;
    let changed = InstanceRow {
        status: RuntimeStatus::Completed,
        output: Some(json!({ "ok": true })),
        custom_status: Some(json!({ "stage": 2 })),
        state: vec![9, 8, 7],
        ..r1.clone()
    };
    let t0 = now(s).await;
    let done = s
        .commit(Commit::update(changed.clone()))
        .await
        .expect("updating `u` from revision 1");
    let t1 = now(s).await;
    assert_eq!(done.revision, 2, "the commit reports the new revision");
    let r2 = get(s, "u").await;
    assert_eq!(r2.revision, 2, "the stored revision is bumped");
    assert!(
        t0 <= r2.updated_at && r2.updated_at <= t1 && r2.updated_at >= r1.updated_at,
        "updated_at {} should be the store's time of the update, between {t0} and {t1}",
        r2.updated_at
    );
    assert_eq!(
        r2,
        InstanceRow {
            revision: 2,
            updated_at: r2.updated_at,
            ..changed
        },
        "the updated row reads back as written"
    );
    let done = s
        .commit(Commit::update(r2))
        .await
        .expect("updating `u` from revision 2");
    assert_eq!(done.revision, 3, "every commit bumps the revision");
    assert_eq!(get(s, "u").await.revision, 3);
}

/// A commit from a stale revision is refused whole: no row, history, work, key or `done`.
pub async fn stale_revision_conflicts_and_writes_nothing<S: Store>(s: &S) {
    let t = now(s).await;
    let (r1, ids) = create_with(
        s,
        row("stale"),
        vec![new_work("stale", WorkKind::Activity, 1, t - 1)],
    )
    .await;
    let held = Held::from(&claim_one(s, "w", LONG, "the activity of `stale`").await);
    assert_eq!(held.id, ids[0]);
    commit(
        s,
        Commit {
            history: vec![event("step-1")],
            ..Commit::update(r1.clone())
        },
    )
    .await;
    let r2 = get(s, "stale").await;
    let history_before = history(s, "stale").await;
    let due_before = next_due(s).await;

    let t = now(s).await;
    let r = s
        .commit(Commit {
            history: vec![event("lost")],
            enqueue: vec![new_work("stale", WorkKind::Timer, 2, t - 1)],
            done: vec![held],
            idempotency: Some(IdempotencyKey {
                key: "stale-key".to_owned(),
                request_hash: "h".to_owned(),
                expires_at: t + LONG,
            }),
            ..Commit::update(InstanceRow {
                status: RuntimeStatus::Failed,
                ..r1
            })
        })
        .await;
    let (id, expected, found) = expect_conflict(r, "committing `stale` from revision 1 again");
    assert_eq!(id, "stale");
    assert_eq!(
        expected,
        Some(1),
        "the conflict reports the revision expected"
    );
    assert_eq!(found, Some(2), "the conflict reports the revision found");

    assert_eq!(get(s, "stale").await, r2, "the row is unchanged");
    assert_eq!(
        history(s, "stale").await,
        history_before,
        "no history was appended"
    );
    assert_eq!(
        s.idempotency("stale-key").await.expect("idempotency()"),
        None
    );
    assert_eq!(
        next_due(s).await,
        due_before,
        "no work was added or removed"
    );
    assert!(
        claim(s, "w2", LONG, 10).await.is_empty(),
        "the refused commit enqueued nothing"
    );
    s.extend(held, LONG)
        .await
        .expect("the item named in `done` of the refused commit is still held");
}

/// Updating an instance that does not exist is a conflict that creates nothing.
pub async fn update_of_missing_instance_conflicts<S: Store>(s: &S) {
    let r = s
        .commit(Commit {
            history: vec![event("x")],
            ..Commit::update(InstanceRow {
                revision: 1,
                ..row("ghost")
            })
        })
        .await;
    let (id, expected, found) = expect_conflict(r, "updating the missing `ghost`");
    assert_eq!(id, "ghost");
    assert_eq!((expected, found), (Some(1), None));
    assert_eq!(instance(s, "ghost").await, None, "nothing was created");
    assert!(
        history(s, "ghost").await.is_empty(),
        "no history was written"
    );
}

/// History is appended in commit order, numbered from 1 per instance, stamped by the store,
/// and read in pages after a sequence number.
pub async fn history_appends_in_order_and_pages<S: Store>(s: &S) {
    let kinds: Vec<String> = (1..=10).map(|i| format!("e{i}")).collect();
    let chunks: [&[String]; 4] = [&kinds[0..3], &kinds[3..5], &[], &kinds[5..10]];
    let mut windows = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let history = chunk.iter().map(|k| event(k)).collect();
        let t0 = now(s).await;
        let c = if i == 0 {
            Commit {
                history,
                ..Commit::create(row("h"))
            }
        } else {
            Commit {
                history,
                ..Commit::update(get(s, "h").await)
            }
        };
        commit(s, c).await;
        let t1 = now(s).await;
        windows.extend(chunk.iter().map(|_| (t0, t1)));
    }
    let all = history(s, "h").await;
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<u64>>(),
        "events are numbered from 1, in order"
    );
    for (e, (kind, (t0, t1))) in all.iter().zip(kinds.iter().zip(&windows)) {
        assert_eq!(&e.kind, kind, "event {} is in commit order", e.seq);
        assert_eq!(e.data, json!({ "kind": kind }), "event {} data", e.seq);
        assert!(
            *t0 <= e.at && e.at <= *t1,
            "event {} is stamped {} by the store, expected between {t0} and {t1}",
            e.seq,
            e.at
        );
    }

    let page = |after, limit| async move {
        s.history("h", after, limit)
            .await
            .unwrap_or_else(|e| panic!("history(h, {after}, {limit}): {e}"))
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(0, 4).await, vec![1, 2, 3, 4], "the first page");
    assert_eq!(page(4, 4).await, vec![5, 6, 7, 8], "the page after 4");
    assert_eq!(page(8, 4).await, vec![9, 10], "the last, short page");
    assert_eq!(
        page(10, 4).await,
        Vec::<u64>::new(),
        "nothing after the last"
    );
    assert_eq!(
        page(3, 0).await,
        Vec::<u64>::new(),
        "limit 0 returns nothing"
    );

    commit(
        s,
        Commit {
            history: vec![event("o1"), event("o2")],
            ..Commit::create(row("other"))
        },
    )
    .await;
    let other: Vec<u64> = history(s, "other").await.iter().map(|e| e.seq).collect();
    assert_eq!(other, vec![1, 2], "each instance numbers its own history");
    assert_eq!(
        history(s, "h").await.len(),
        10,
        "other instances' events are not mixed in"
    );
    assert!(
        history(s, "nobody").await.is_empty(),
        "an unknown instance has no history"
    );
}

/// Definitions are stored by hash; storing a hash again is a no-op.
pub async fn definitions_put_get_and_put_again<S: Store>(s: &S) {
    let d = Definition {
        hash: "ab12".to_owned(),
        name: "orders/place".to_owned(),
        version: "1.0.0".to_owned(),
        source: "document:\n  name: place\n".to_owned(),
    };
    let get = |hash: &'static str| async move {
        s.definition(hash)
            .await
            .unwrap_or_else(|e| panic!("definition({hash:?}): {e}"))
    };
    assert_eq!(get("ab12").await, None, "an unknown hash reads as None");
    s.put_definition(&d).await.expect("put_definition()");
    assert_eq!(get("ab12").await, Some(d.clone()), "reads back as written");
    s.put_definition(&d)
        .await
        .expect("putting the same definition again");
    let other_content = Definition {
        source: "changed".to_owned(),
        ..d.clone()
    };
    s.put_definition(&other_content)
        .await
        .expect("putting the same hash again");
    assert_eq!(
        get("ab12").await,
        Some(d.clone()),
        "putting a hash again changes nothing"
    );
    let e = Definition {
        hash: "cd34".to_owned(),
        ..d.clone()
    };
    s.put_definition(&e).await.expect("put_definition(cd34)");
    assert_eq!(get("cd34").await, Some(e));
    assert_eq!(get("ab12").await, Some(d));
}

/// A key recorded with a commit is found; a second commit with it is refused whole, with the
/// first binding.
pub async fn idempotency_key_is_bound_once<S: Store>(s: &S) {
    assert_eq!(s.idempotency("k").await.expect("idempotency()"), None);
    let t = now(s).await;
    let key = |hash: &str| IdempotencyKey {
        key: "k".to_owned(),
        request_hash: hash.to_owned(),
        expires_at: t + LONG,
    };
    commit(
        s,
        Commit {
            idempotency: Some(key("h1")),
            ..Commit::create(row("a"))
        },
    )
    .await;
    let first = KeyBinding {
        instance: "a".to_owned(),
        request_hash: "h1".to_owned(),
    };
    let found = s.idempotency("k").await.expect("idempotency(k)");
    assert_eq!(found, Some(first.clone()), "the key is bound to `a`");

    let r = s
        .commit(Commit {
            history: vec![event("b-1")],
            enqueue: vec![new_work("b", WorkKind::Activity, 1, t - 1)],
            idempotency: Some(key("h2")),
            ..Commit::create(row("b"))
        })
        .await;
    match r {
        Err(CommitError::KeyTaken(binding)) => {
            assert_eq!(binding, first, "KeyTaken carries the first binding");
        }
        other => panic!("a second commit with key `k`: expected KeyTaken, got {other:?}"),
    }
    assert_eq!(
        instance(s, "b").await,
        None,
        "the refused create stored no row"
    );
    assert!(
        history(s, "b").await.is_empty(),
        "the refused create stored no history"
    );
    assert_eq!(
        next_due(s).await,
        None,
        "the refused create enqueued nothing"
    );
    let found = s.idempotency("k").await.expect("idempotency(k)");
    assert_eq!(found, Some(first), "the key is still bound to `a`");
}

/// A key past its expiry (by the store's clock) is not reported and can be bound again.
pub async fn expired_idempotency_key_is_forgotten<S: Store>(s: &S) {
    let t = now(s).await;
    let expires_at = t + SHORT;
    commit(
        s,
        Commit {
            idempotency: Some(IdempotencyKey {
                key: "short".to_owned(),
                request_hash: "h1".to_owned(),
                expires_at,
            }),
            ..Commit::create(row("a"))
        },
    )
    .await;
    wait_past(s, expires_at + 1).await;
    assert_eq!(
        s.idempotency("short").await.expect("idempotency(short)"),
        None,
        "an expired key is not reported"
    );
    commit(
        s,
        Commit {
            idempotency: Some(IdempotencyKey {
                key: "short".to_owned(),
                request_hash: "h2".to_owned(),
                expires_at: now(s).await + LONG,
            }),
            ..Commit::create(row("b"))
        },
    )
    .await;
    assert_eq!(
        s.idempotency("short").await.expect("idempotency(short)"),
        Some(KeyBinding {
            instance: "b".to_owned(),
            request_hash: "h2".to_owned(),
        }),
        "an expired key can be bound again"
    );
}
