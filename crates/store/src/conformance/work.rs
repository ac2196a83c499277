//! Work items: claiming, leases, fencing, finishing and cancelling, timers, wakeups.

use std::pin::pin;
use std::time::Duration;

use serde_json::json;

use super::{
    LONG, SHORT, claim, claim_eventually, claim_one, commit, create_with, event, expect_fenced,
    get, history, new_work, next_due, now, row, wait_past,
};
use crate::{Commit, Held, IdempotencyKey, InstanceRow, NewWork, RuntimeStatus, Store, WorkKind};

/// Only items due by the store's clock are claimed, earliest due first, at most `max`, each
/// with what was enqueued, attempt 1 and the claimer's lease.
pub async fn claim_takes_only_due_items_earliest_first<S: Store>(s: &S) {
    assert!(
        claim(s, "w", LONG, 10).await.is_empty(),
        "an empty store has nothing to claim"
    );
    let t = now(s).await;
    let enqueue = vec![
        new_work("c", WorkKind::Activity, 1, t - 100),
        new_work("c", WorkKind::Timer, 2, t - 300),
        new_work("c", WorkKind::Message, 1 << 40, t - 200),
        new_work("c", WorkKind::Timer, 4, t + LONG),
    ];
    let (_, ids) = create_with(s, row("c"), enqueue.clone()).await;
    assert_eq!(ids.len(), 4, "one id per enqueued item");
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "enqueued ids are distinct: {ids:?}");
    assert!(
        claim(s, "w", LONG, 0).await.is_empty(),
        "max 0 claims nothing"
    );

    let first = claim(s, "w1", LONG, 2).await;
    let got: Vec<i64> = first.iter().map(|w| w.id).collect();
    assert_eq!(
        got,
        vec![ids[1], ids[2]],
        "the two earliest due, earliest first"
    );
    for (w, i) in first.iter().zip([1, 2]) {
        let n: &NewWork = &enqueue[i];
        assert_eq!(
            (&w.instance, w.kind, w.token, w.due_at, &w.payload),
            (&n.instance, n.kind, n.token, n.due_at, &n.payload),
            "item {} carries what was enqueued",
            w.id
        );
        assert_eq!(w.attempt, 1, "a first claim is attempt 1");
        assert_eq!(
            w.idempotency_key(),
            format!("c:{}:{}", n.kind.as_str(), n.token)
        );
    }
    let rest = claim(s, "w2", LONG, 10).await;
    let got: Vec<i64> = rest.iter().map(|w| w.id).collect();
    assert_eq!(
        got,
        vec![ids[0]],
        "the last due item, and not the one due in a minute"
    );
    assert!(
        claim(s, "w3", LONG, 10).await.is_empty(),
        "nothing else is due"
    );
}

/// An item under an unexpired lease is not claimed again, by anyone.
pub async fn claimed_item_is_not_claimed_again<S: Store>(s: &S) {
    let t = now(s).await;
    create_with(
        s,
        row("x"),
        vec![new_work("x", WorkKind::Activity, 1, t - 1)],
    )
    .await;
    claim_one(s, "w1", LONG, "the due item").await;
    assert!(
        claim(s, "w2", LONG, 10).await.is_empty(),
        "another owner gets nothing"
    );
    assert!(
        claim(s, "w1", LONG, 10).await.is_empty(),
        "the same owner gets nothing"
    );
}

/// Claims the one item of a fresh instance `id` for `w1` with a short lease, then waits
/// for `w2` to take it over with a long one; checks the takeover and returns both claims.
async fn taken_over<S: Store>(s: &S, id: &str) -> (crate::Work, crate::Work) {
    let t = now(s).await;
    create_with(s, row(id), vec![new_work(id, WorkKind::Activity, 1, t - 1)]).await;
    let a = claim_one(s, "w1", SHORT, "the due item").await;
    let mut got = claim_eventually(s, "w2", LONG, 10, "taking over an expired lease").await;
    assert_eq!(got.len(), 1, "only the expired item: {got:?}");
    let b = got.remove(0);
    assert_eq!(b.id, a.id, "the same item is taken over");
    assert!(
        b.lease.until - LONG >= a.lease.until,
        "taken over at {}, before the first lease ran out at {}",
        b.lease.until - LONG,
        a.lease.until
    );
    assert_eq!(b.attempt, 2, "the takeover is the second attempt");
    assert!(
        b.lease.fence > a.lease.fence,
        "a takeover takes a greater fence"
    );
    (a, b)
}

/// Once a lease expires, another claimer takes the item over, and holds it.
pub async fn expired_lease_is_taken_over<S: Store>(s: &S) {
    let (_, b) = taken_over(s, "t").await;
    assert_eq!(b.lease.owner, "w2");
    assert!(
        claim(s, "w3", LONG, 10).await.is_empty(),
        "the new lease holds"
    );
}

/// After a takeover the stale holder is refused everything (commit, extend, release) and its
/// commit writes nothing; the new holder is not.
pub async fn stale_holder_is_fenced<S: Store>(s: &S) {
    let (a, b) = taken_over(s, "f").await;
    let before = get(s, "f").await;
    let history_before = history(s, "f").await;
    let t = now(s).await;
    let r = s
        .commit(Commit {
            history: vec![event("stale")],
            enqueue: vec![new_work("f", WorkKind::Timer, 9, t - 1)],
            done: vec![Held::from(&a)],
            idempotency: Some(IdempotencyKey {
                key: "stale".to_owned(),
                request_hash: "h".to_owned(),
                expires_at: t + LONG,
            }),
            ..Commit::update(InstanceRow {
                status: RuntimeStatus::Completed,
                ..before.clone()
            })
        })
        .await;
    let refused = expect_fenced(r, "the stale holder's commit");
    assert_eq!(
        refused,
        Held::from(&a),
        "Fenced names the stale item and fence"
    );
    assert_eq!(get(s, "f").await, before, "the row is unchanged");
    assert_eq!(
        history(s, "f").await,
        history_before,
        "no history was appended"
    );
    assert_eq!(
        s.idempotency("stale").await.expect("idempotency()"),
        None,
        "no key bound"
    );
    assert!(
        claim(s, "w3", LONG, 10).await.is_empty(),
        "nothing was enqueued"
    );

    let r = s.extend(Held::from(&a), LONG).await;
    assert_eq!(
        expect_fenced(r, "the stale holder's extend"),
        Held::from(&a)
    );
    let r = s.release(Held::from(&a), t - 1).await;
    assert_eq!(
        expect_fenced(r, "the stale holder's release"),
        Held::from(&a)
    );
    assert!(
        claim(s, "w3", LONG, 10).await.is_empty(),
        "the stale release freed nothing"
    );

    let lease = s
        .extend(Held::from(&b), LONG)
        .await
        .expect("the new holder's extend");
    assert_eq!((lease.owner.as_str(), lease.fence), ("w2", b.lease.fence));
    commit(
        s,
        Commit {
            done: vec![Held::from(&b)],
            ..Commit::update(before)
        },
    )
    .await;
    let r = s.extend(Held::from(&b), LONG).await;
    expect_fenced(r, "extending an item after finishing it");
}

/// Every claim of an item takes a strictly greater fence: takeovers and claims after release.
pub async fn fence_grows_at_every_claim<S: Store>(s: &S) {
    let t = now(s).await;
    create_with(
        s,
        row("g"),
        vec![new_work("g", WorkKind::Activity, 1, t - 1)],
    )
    .await;
    let mut claims = vec![claim_one(s, "w0", SHORT, "the first claim").await];
    for i in 1..3 {
        let mut got = claim_eventually(s, &format!("w{i}"), SHORT, 10, "a takeover").await;
        assert_eq!(got.len(), 1);
        claims.push(got.remove(0));
    }
    let last = claims.last().map(Held::from).expect("claims");
    s.release(last, now(s).await).await.expect("release()");
    let mut got = claim_eventually(s, "w3", LONG, 10, "claiming after release").await;
    claims.push(got.remove(0));
    let fences: Vec<i64> = claims.iter().map(|w| w.lease.fence).collect();
    assert!(
        fences.windows(2).all(|p| p[0] < p[1]),
        "fences grow at every claim: {fences:?}"
    );
    let attempts: Vec<u32> = claims.iter().map(|w| w.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4], "attempt counts every claim");
}

/// A holder whose lease ran out, but whom nobody has taken over, still holds the item.
pub async fn expired_lease_without_takeover_still_holds<S: Store>(s: &S) {
    let t = now(s).await;
    let (r1, _) = create_with(
        s,
        row("slow"),
        vec![new_work("slow", WorkKind::Activity, 1, t - 1)],
    )
    .await;
    let a = claim_one(s, "w1", SHORT, "the due item").await;
    wait_past(s, a.lease.until).await;
    commit(
        s,
        Commit {
            done: vec![Held::from(&a)],
            ..Commit::update(r1)
        },
    )
    .await;
    assert_eq!(next_due(s).await, None, "the finished item is gone");
}

/// `done` in a commit deletes the item: it is never claimed again.
pub async fn done_deletes_the_item<S: Store>(s: &S) {
    let t = now(s).await;
    let enqueue = vec![
        new_work("d", WorkKind::Activity, 1, t - 2),
        new_work("d", WorkKind::Activity, 2, t - 1),
    ];
    let (r1, _) = create_with(s, row("d"), enqueue).await;
    let got = claim(s, "w", SHORT, 10).await;
    assert_eq!(got.len(), 2, "both items are due");
    let (x, y) = (Held::from(&got[0]), Held::from(&got[1]));
    commit(
        s,
        Commit {
            history: vec![event("x-done")],
            done: vec![x],
            ..Commit::update(r1)
        },
    )
    .await;
    expect_fenced(s.extend(x, LONG).await, "extending a finished item");
    let lease = s.extend(y, LONG).await.expect("extending the other item");
    assert_eq!(
        next_due(s).await,
        Some(lease.until),
        "only the other item's lease is left"
    );
    wait_past(s, got[0].lease.until).await;
    assert!(
        claim(s, "w2", LONG, 10).await.is_empty(),
        "the finished item is not claimed"
    );
}

/// `cancel` drops exactly the named (kind, token) items of the committing instance, claimed
/// or not; naming one that does not exist is fine.
pub async fn cancel_drops_work_by_kind_and_token<S: Store>(s: &S) {
    let t = now(s).await;
    let enqueue = vec![
        new_work("a", WorkKind::Activity, 2, t - 1_000),
        new_work("a", WorkKind::Timer, 1, t - 1),
        new_work("a", WorkKind::Timer, 2, t - 1),
        new_work("a", WorkKind::Activity, 1, t - 1),
    ];
    let (a, _) = create_with(s, row("a"), enqueue).await;
    create_with(s, row("b"), vec![new_work("b", WorkKind::Timer, 1, t - 1)]).await;
    let claimed = claim(s, "w", LONG, 1).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].kind, claimed[0].token), (WorkKind::Activity, 2));
    commit(
        s,
        Commit {
            cancel: vec![
                (WorkKind::Timer, 1),
                (WorkKind::Activity, 2),
                (WorkKind::Message, 99),
            ],
            ..Commit::update(a)
        },
    )
    .await;
    expect_fenced(
        s.extend(Held::from(&claimed[0]), LONG).await,
        "extending a cancelled item",
    );
    let mut left: Vec<(String, WorkKind, u64)> = claim(s, "w", LONG, 10)
        .await
        .into_iter()
        .map(|w| (w.instance, w.kind, w.token))
        .collect();
    left.sort_by_key(|(i, k, t)| (i.clone(), k.as_str(), *t));
    let want = vec![
        ("a".to_owned(), WorkKind::Activity, 1),
        ("a".to_owned(), WorkKind::Timer, 2),
        ("b".to_owned(), WorkKind::Timer, 1),
    ];
    assert_eq!(left, want, "only a's timer 1 and activity 2 were dropped");
}

/// A released item is claimable again from the given time, not before, as a new attempt.
pub async fn release_makes_claimable_from_due_at<S: Store>(s: &S) {
    let t = now(s).await;
    create_with(
        s,
        row("r"),
        vec![new_work("r", WorkKind::Activity, 1, t - 1)],
    )
    .await;
    let a = claim_one(s, "w1", LONG, "the due item").await;
    let again_at = now(s).await + 300;
    s.release(Held::from(&a), again_at)
        .await
        .expect("release()");
    let mut got = claim_eventually(s, "w2", LONG, 10, "claiming the released item").await;
    let b = got.remove(0);
    assert_eq!(b.id, a.id, "the released item");
    assert!(
        b.lease.until - LONG >= again_at,
        "claimed at {}, before the release's due time {again_at}",
        b.lease.until - LONG
    );
    assert_eq!(b.attempt, 2, "a claim after release is a new attempt");
    assert!(b.lease.fence > a.lease.fence, "and takes a new fence");

    s.release(Held::from(&b), now(s).await - 1_000)
        .await
        .expect("release() to a past time");
    let c = claim_one(
        s,
        "w3",
        LONG,
        "an item released to a past time is due at once",
    )
    .await;
    assert_eq!((c.id, c.attempt), (a.id, 3));
}

/// `extend` moves `until` to `lease_ms` from now, keeping owner and fence; the item is not
/// taken over at the old expiry, and the fence still finishes it.
pub async fn extend_moves_until_forward<S: Store>(s: &S) {
    let t = now(s).await;
    let (r1, _) = create_with(
        s,
        row("e"),
        vec![new_work("e", WorkKind::Activity, 1, t - 1)],
    )
    .await;
    let a = claim_one(s, "w1", SHORT, "the due item").await;
    let t0 = now(s).await;
    let lease = s.extend(Held::from(&a), LONG).await.expect("extend()");
    let t1 = now(s).await;
    assert_eq!(
        (lease.owner.as_str(), lease.fence),
        ("w1", a.lease.fence),
        "same holder"
    );
    assert!(
        t0 + LONG <= lease.until && lease.until <= t1 + LONG,
        "until {} should be {LONG} ms after the extend, made between {t0} and {t1}",
        lease.until
    );
    assert!(lease.until > a.lease.until, "the lease moved forward");
    wait_past(s, a.lease.until).await;
    assert!(
        claim(s, "w2", LONG, 10).await.is_empty(),
        "the extended lease holds"
    );
    assert_eq!(
        next_due(s).await,
        Some(lease.until),
        "next_due sees the new expiry"
    );
    commit(
        s,
        Commit {
            done: vec![Held::from(&a)],
            ..Commit::update(r1)
        },
    )
    .await;
}

/// Timers come out in due order, each once it is due; a timer due later stays put.
pub async fn timers_come_out_in_due_order<S: Store>(s: &S) {
    let t = now(s).await;
    let soon = t + 200;
    let enqueue = vec![
        new_work("tm", WorkKind::Timer, 1, t - 50),
        new_work("tm", WorkKind::Timer, 2, soon),
        new_work("tm", WorkKind::Timer, 3, t - 250),
        new_work("tm", WorkKind::Timer, 4, t + LONG),
        new_work("tm", WorkKind::Timer, 5, t - 150),
    ];
    create_with(s, row("tm"), enqueue).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let got = claim(s, "w", LONG, 1).await;
        assert_eq!(got.len(), 1, "a past-due timer is claimable");
        order.push(got[0].token);
    }
    assert_eq!(order, vec![3, 5, 1], "past-due timers in due order");
    let got = claim_eventually(s, "w", LONG, 10, "the timer due in 200 ms").await;
    let tokens: Vec<u64> = got.iter().map(|w| w.token).collect();
    assert_eq!(
        tokens,
        vec![2],
        "the soon timer, and not the one due in a minute"
    );
    assert!(
        claim(s, "w", LONG, 10).await.is_empty(),
        "the later timer is not due"
    );
    // The claimed timers' leases run to at least t + LONG, when the last timer is due.
    assert_eq!(
        next_due(s).await,
        Some(t + LONG),
        "the last timer is what is due next"
    );
}

/// `next_due` is the earliest due time of unleased work or expiry of a lease; None if none.
pub async fn next_due_reports_earliest_due_or_expiry<S: Store>(s: &S) {
    assert_eq!(next_due(s).await, None, "an empty store has nothing due");
    let (r0, _) = create_with(s, row("n"), vec![]).await;
    assert_eq!(
        next_due(s).await,
        None,
        "an instance without work has nothing due"
    );
    let t = now(s).await;
    let later = t + LONG;
    commit(
        s,
        Commit {
            enqueue: vec![new_work("n", WorkKind::Timer, 1, later)],
            ..Commit::update(r0)
        },
    )
    .await;
    assert_eq!(next_due(s).await, Some(later), "a future timer");
    s.send(new_work("n", WorkKind::Message, 1, t - 10))
        .await
        .expect("send()");
    assert_eq!(next_due(s).await, Some(t - 10), "a due message, earlier");
    let m = claim_one(s, "w", 20_000, "the due message").await;
    assert_eq!(
        next_due(s).await,
        Some(m.lease.until),
        "the claimed message's lease expiry"
    );
    commit(
        s,
        Commit {
            done: vec![Held::from(&m)],
            ..Commit::update(get(s, "n").await)
        },
    )
    .await;
    assert_eq!(
        next_due(s).await,
        Some(later),
        "the timer again, once the message is done"
    );
    commit(
        s,
        Commit {
            cancel: vec![(WorkKind::Timer, 1)],
            ..Commit::update(get(s, "n").await)
        },
    )
    .await;
    assert_eq!(
        next_due(s).await,
        None,
        "nothing once the timer is cancelled"
    );
}

/// `send` adds claimable work for an instance without touching its row.
pub async fn send_adds_work_without_touching_the_instance<S: Store>(s: &S) {
    let (before, _) = create_with(s, row("snd"), vec![]).await;
    let t = now(s).await;
    let w = NewWork {
        payload: json!({ "event": "approved", "by": "ada" }),
        ..new_work("snd", WorkKind::Message, 7, t - 1)
    };
    let id = s.send(w.clone()).await.expect("send()");
    assert_eq!(get(s, "snd").await, before, "the instance row is untouched");
    let got = claim_one(s, "w", LONG, "the sent message").await;
    assert_eq!(
        (got.id, &got.instance, got.kind, got.token, &got.payload),
        (id, &w.instance, w.kind, w.token, &w.payload),
        "the claimed item is the one sent"
    );
}

/// A commit refused for one stale fence among several writes nothing, and finishes nothing.
pub async fn fenced_commit_writes_nothing<S: Store>(s: &S) {
    let t = now(s).await;
    let enqueue = vec![
        new_work("fc", WorkKind::Activity, 1, t - 2),
        new_work("fc", WorkKind::Activity, 2, t - 1),
    ];
    let (r1, _) = create_with(s, row("fc"), enqueue).await;
    let got = claim(s, "w", LONG, 10).await;
    assert_eq!(got.len(), 2, "both items are due");
    let (x, y) = (Held::from(&got[0]), Held::from(&got[1]));
    let wrong_fence = Held {
        fence: y.fence + 1,
        ..y
    };
    let gone = Held {
        id: x.id.max(y.id) + 1_000,
        fence: 1,
    };
    for stale in [wrong_fence, gone] {
        let r = s
            .commit(Commit {
                history: vec![event("lost")],
                enqueue: vec![new_work("fc", WorkKind::Timer, 3, t - 1)],
                done: vec![x, stale],
                idempotency: Some(IdempotencyKey {
                    key: "fc".to_owned(),
                    request_hash: "h".to_owned(),
                    expires_at: t + LONG,
                }),
                ..Commit::update(InstanceRow {
                    status: RuntimeStatus::Completed,
                    ..r1.clone()
                })
            })
            .await;
        let refused = expect_fenced(r, &format!("a commit naming {stale:?}"));
        assert_eq!(refused, stale, "Fenced names the stale item");
        assert_eq!(get(s, "fc").await, r1, "the row is unchanged");
        assert!(history(s, "fc").await.is_empty(), "no history was appended");
        assert_eq!(
            s.idempotency("fc").await.expect("idempotency()"),
            None,
            "no key bound"
        );
        s.extend(x, LONG)
            .await
            .expect("the valid item named in the refused commit is still held");
        assert!(
            claim(s, "w2", LONG, 10).await.is_empty(),
            "nothing was enqueued"
        );
    }
}

const WAKEUP_PATIENCE: Duration = Duration::from_secs(5);

/// A commit that enqueues work signals the store's wakeups.
pub async fn wakeup_after_enqueue<S: Store>(s: &S) {
    let (r1, _) = create_with(s, row("wk"), vec![]).await;
    let wakeups = s.wakeups();
    let mut notified = pin!(wakeups.notified());
    notified.as_mut().enable();
    let t = now(s).await;
    commit(
        s,
        Commit {
            enqueue: vec![new_work("wk", WorkKind::Timer, 1, t + LONG)],
            ..Commit::update(r1)
        },
    )
    .await;
    assert!(
        tokio::time::timeout(WAKEUP_PATIENCE, notified)
            .await
            .is_ok(),
        "no wakeup within {WAKEUP_PATIENCE:?} of a commit that enqueued work"
    );
}

/// Releasing a lease signals the store's wakeups.
pub async fn wakeup_after_release<S: Store>(s: &S) {
    let t = now(s).await;
    create_with(
        s,
        row("wr"),
        vec![new_work("wr", WorkKind::Activity, 1, t - 1)],
    )
    .await;
    let a = claim_one(s, "w", LONG, "the due item").await;
    let wakeups = s.wakeups();
    let mut notified = pin!(wakeups.notified());
    notified.as_mut().enable();
    s.release(Held::from(&a), now(s).await)
        .await
        .expect("release()");
    assert!(
        tokio::time::timeout(WAKEUP_PATIENCE, notified)
            .await
            .is_ok(),
        "no wakeup within {WAKEUP_PATIENCE:?} of a release"
    );
}
