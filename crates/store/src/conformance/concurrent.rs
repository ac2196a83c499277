//! Many writers and claimers at once, on tasks of their own.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{LONG, claim, commit, event, get, history, new_work, now, row};
use crate::{Commit, CommitError, Committed, InstanceRow, Store, Work, WorkKind};

/// Waits for every task of `set`, failing on a panic in any.
async fn all<T: 'static>(mut set: JoinSet<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap_or_else(|e| panic!("a task of the case failed: {e}")));
    }
    out
}

/// 200 tasks each create and then update an instance of their own, at once; all succeed and
/// every write is stored.
pub async fn concurrent_commits_to_different_instances<S: Store>(s: Arc<S>) {
    const N: usize = 200;
    let t = now(&*s).await;
    let mut set = JoinSet::new();
    for i in 0..N {
        let s = Arc::clone(&s);
        set.spawn(async move {
            let id = format!("c-{i:03}");
            let created = s
                .commit(Commit {
                    history: vec![event("started")],
                    enqueue: vec![new_work(&id, WorkKind::Activity, 1, t - 1)],
                    ..Commit::create(row(&id))
                })
                .await
                .unwrap_or_else(|e| panic!("creating {id}: {e}"));
            let r1 = get(&*s, &id).await;
            let updated = s
                .commit(Commit {
                    history: vec![event("stepped")],
                    ..Commit::update(r1)
                })
                .await
                .unwrap_or_else(|e| panic!("updating {id}: {e}"));
            assert_eq!(
                (created.revision, updated.revision),
                (1, 2),
                "{id}'s revisions"
            );
            created.enqueued
        });
    }
    let enqueued: BTreeSet<i64> = all(set).await.into_iter().flatten().collect();
    assert_eq!(
        enqueued.len(),
        N,
        "every commit's work item has an id of its own"
    );
    for i in 0..N {
        let id = format!("c-{i:03}");
        assert_eq!(get(&*s, &id).await.revision, 2, "{id} is at revision 2");
        let seqs: Vec<u64> = history(&*s, &id).await.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2], "{id}'s history");
    }
    let mut claimed = BTreeSet::new();
    for _ in 0..N {
        let got = claim(&*s, "w", LONG, 64).await;
        if got.is_empty() {
            break;
        }
        claimed.extend(got.iter().map(|w| w.id));
    }
    assert_eq!(claimed, enqueued, "every enqueued item is claimable");
}

/// Twenty updates of one instance from the same revision race: exactly one wins, the others
/// conflict, and only the winner's writes are stored.
pub async fn concurrent_commits_to_one_instance_one_wins<S: Store>(s: Arc<S>) {
    const N: usize = 20;
    commit(&*s, Commit::create(row("one"))).await;
    let r1 = get(&*s, "one").await;
    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for i in 0..N {
        let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
        let c = Commit {
            history: vec![event(&format!("by-{i}"))],
            ..Commit::update(InstanceRow {
                output: Some(serde_json::json!(i)),
                ..r1.clone()
            })
        };
        set.spawn(async move {
            barrier.wait().await;
            (i, s.commit(c).await)
        });
    }
    let mut winners: Vec<(usize, Committed)> = Vec::new();
    for (i, r) in all(set).await {
        match r {
            Ok(c) => winners.push((i, c)),
            Err(CommitError::Conflict {
                expected, found, ..
            }) => {
                assert_eq!(
                    (expected, found),
                    (Some(1), Some(2)),
                    "writer {i}'s conflict"
                );
            }
            Err(e) => panic!("writer {i}: expected success or Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let (w, c) = &winners[0];
    assert_eq!(c.revision, 2);
    let stored = get(&*s, "one").await;
    assert_eq!(
        (stored.revision, stored.output),
        (2, Some(serde_json::json!(w)))
    );
    let kinds: Vec<String> = history(&*s, "one")
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![format!("by-{w}")],
        "only the winner's history is stored"
    );
}

/// Four claimers racing over 100 due items never get the same item; with a final sweep,
/// every item is claimed exactly once.
pub async fn concurrent_claimers_never_share_an_item<S: Store>(s: Arc<S>) {
    const CLAIMERS: usize = 4;
    let t = now(&*s).await;
    let mut all_ids = BTreeSet::new();
    for i in 0..10 {
        let id = format!("q-{i}");
        let enqueue = (0..10)
            .map(|k| new_work(&id, WorkKind::Activity, k, t - 1 - (k as i64)))
            .collect();
        let ids = commit(
            &*s,
            Commit {
                enqueue,
                ..Commit::create(row(&id))
            },
        )
        .await;
        all_ids.extend(ids);
    }
    assert_eq!(all_ids.len(), 100);
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let mut set = JoinSet::new();
    for c in 0..CLAIMERS {
        let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
        set.spawn(async move {
            let owner = format!("claimer-{c}");
            barrier.wait().await;
            let mut mine: Vec<Work> = Vec::new();
            for _ in 0..200 {
                let got = claim(&*s, &owner, LONG, 3).await;
                if got.is_empty() {
                    break;
                }
                mine.extend(got);
            }
            mine
        });
    }
    let mut seen: Vec<i64> = Vec::new();
    for mine in all(set).await {
        seen.extend(mine.iter().map(|w| w.id));
    }
    // A backend may skip items another claim is taking at that moment; sweep what is left.
    for _ in 0..100 {
        let got = claim(&*s, "sweeper", LONG, 100).await;
        if got.is_empty() {
            break;
        }
        seen.extend(got.iter().map(|w| w.id));
    }
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(
        seen.len(),
        distinct.len(),
        "an item was claimed twice under a live lease"
    );
    assert_eq!(distinct, all_ids, "every item was claimed");
}
