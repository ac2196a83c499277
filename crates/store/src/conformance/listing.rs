//! Listing instances (filters, pages) and purging them.

use super::{
    LONG, claim_one, commit, create_with, event, expect_fenced, get, history, instance, new_work,
    next_due, now, row,
};
use crate::{Commit, Filter, Held, IdempotencyKey, InstanceRow, RuntimeStatus, Store, WorkKind};

/// The ids `list` returns for `filter` in one large page (which must be the last).
async fn listed<S: Store>(s: &S, filter: &Filter) -> Vec<String> {
    let page = s
        .list(filter, 100, None)
        .await
        .unwrap_or_else(|e| panic!("list({filter:?}): {e}"));
    assert_eq!(
        page.continuation, None,
        "{filter:?}: a short page is the last"
    );
    page.items.into_iter().map(|r| r.id).collect()
}

/// Every filter field narrows the listing, and they combine.
pub async fn list_filters<S: Store>(s: &S) {
    use RuntimeStatus::*;
    let rows = [
        ("a-1", Running, "F", 100),
        ("a-2", Completed, "F", 200),
        ("a_3", Failed, "G", 300),
        ("ab-4", Pending, "G", 400),
        ("b-5", Terminated, "F", 500),
        ("b-6", Suspended, "H", 600),
    ];
    for (id, status, function, created_at) in rows {
        let r = InstanceRow {
            status,
            function: function.to_owned(),
            created_at,
            ..row(id)
        };
        create_with(s, r, vec![]).await;
    }
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = s
        .list(&Filter::default(), 100, None)
        .await
        .expect("list(all)");
    let mut stored = Vec::new();
    for (id, ..) in rows.iter().rev() {
        stored.push(get(s, id).await);
    }
    assert_eq!(
        all.items, stored,
        "listed rows are the stored rows, newest first"
    );

    let cases: Vec<(Filter, Vec<String>)> = vec![
        (
            Filter {
                statuses: vec![Completed, Failed, Terminated],
                ..Filter::default()
            },
            ids(&["b-5", "a_3", "a-2"]),
        ),
        (
            Filter {
                statuses: vec![Running],
                ..Filter::default()
            },
            ids(&["a-1"]),
        ),
        (
            Filter {
                function: Some("F".to_owned()),
                ..Filter::default()
            },
            ids(&["b-5", "a-2", "a-1"]),
        ),
        (
            Filter {
                created_from: Some(200),
                created_to: Some(500),
                ..Filter::default()
            },
            ids(&["ab-4", "a_3", "a-2"]),
        ),
        (
            Filter {
                id_prefix: Some("a".to_owned()),
                ..Filter::default()
            },
            ids(&["ab-4", "a_3", "a-2", "a-1"]),
        ),
        (
            Filter {
                id_prefix: Some("a-".to_owned()),
                ..Filter::default()
            },
            ids(&["a-2", "a-1"]),
        ),
        // The prefix is literal: no pattern characters.
        (
            Filter {
                id_prefix: Some("a_".to_owned()),
                ..Filter::default()
            },
            ids(&["a_3"]),
        ),
        (
            Filter {
                id_prefix: Some("a%".to_owned()),
                ..Filter::default()
            },
            ids(&[]),
        ),
        (
            Filter {
                statuses: vec![Pending, Running],
                function: Some("G".to_owned()),
                ..Filter::default()
            },
            ids(&["ab-4"]),
        ),
        (
            Filter {
                function: Some("F".to_owned()),
                id_prefix: Some("b".to_owned()),
                created_from: Some(500),
                ..Filter::default()
            },
            ids(&["b-5"]),
        ),
        (
            Filter {
                function: Some("Nope".to_owned()),
                ..Filter::default()
            },
            ids(&[]),
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(listed(s, &filter).await, expected, "list({filter:?})");
    }
}

/// Pages through `filter` `size` at a time; returns the ids and the page sizes.
async fn pages<S: Store>(s: &S, filter: &Filter, size: usize) -> (Vec<String>, Vec<usize>) {
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    let mut continuation: Option<String> = None;
    for _ in 0..50 {
        let page = s
            .list(filter, size, continuation.as_deref())
            .await
            .unwrap_or_else(|e| panic!("list({filter:?}, {size}, {continuation:?}): {e}"));
        assert!(
            page.items.len() <= size,
            "a page holds at most {size} items"
        );
        sizes.push(page.items.len());
        ids.extend(page.items.into_iter().map(|r| r.id));
        match page.continuation {
            Some(next) => continuation = Some(next),
            None => return (ids, sizes),
        }
    }
    panic!("list({filter:?}, {size}) did not reach its last page in 50 pages");
}

/// Pages come newest first (created_at, then id, descending) and cover every instance once.
pub async fn list_pages_newest_first<S: Store>(s: &S) {
    let empty = s.list(&Filter::default(), 7, None).await.expect("list()");
    assert!(
        empty.items.is_empty() && empty.continuation.is_none(),
        "an empty store lists nothing"
    );
    let mut expected = Vec::new();
    // Created out of order, with ties on created_at so that the id decides.
    for k in 0..25u32 {
        let i = (k * 7) % 25;
        let r = InstanceRow {
            created_at: 1_000 + i64::from((i * 11) % 9),
            status: if i % 2 == 0 {
                RuntimeStatus::Completed
            } else {
                RuntimeStatus::Running
            },
            ..row(&format!("p-{i:02}"))
        };
        expected.push((r.created_at, r.id.clone(), r.status));
        create_with(s, r, vec![]).await;
    }
    expected.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));

    let (ids, sizes) = pages(s, &Filter::default(), 7).await;
    let all: Vec<String> = expected.iter().map(|e| e.1.clone()).collect();
    assert_eq!(sizes, vec![7, 7, 7, 4], "25 instances in pages of 7");
    assert_eq!(ids, all, "every instance once, newest first");

    let completed = Filter {
        statuses: vec![RuntimeStatus::Completed],
        ..Filter::default()
    };
    let (ids, sizes) = pages(s, &completed, 4).await;
    let want: Vec<String> = expected
        .iter()
        .filter(|e| e.2 == RuntimeStatus::Completed)
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(
        sizes,
        vec![4, 4, 4, 1],
        "13 completed instances in pages of 4"
    );
    assert_eq!(ids, want, "a filtered listing pages the same way");

    // A page that ends exactly at the last instance may or may not say so; if it does not,
    // the next page is empty and the last.
    let (ids, sizes) = pages(s, &Filter::default(), 25).await;
    assert_eq!(ids, all, "one page of 25");
    assert!(
        sizes == vec![25] || sizes == vec![25, 0],
        "pages of 25: {sizes:?}"
    );
}

/// Purging removes the row, its history, its work and its keys, and nothing of others.
pub async fn purge_removes_everything<S: Store>(s: &S) {
    let t = now(s).await;
    let key = |k: &str, instance: &str| IdempotencyKey {
        key: k.to_owned(),
        request_hash: instance.to_owned(),
        expires_at: t + LONG,
    };
    commit(
        s,
        Commit {
            history: vec![event("a1"), event("a2")],
            enqueue: vec![
                new_work("a", WorkKind::Activity, 1, t - 1),
                new_work("a", WorkKind::Timer, 2, t + LONG),
            ],
            idempotency: Some(key("ka", "a")),
            ..Commit::create(row("a"))
        },
    )
    .await;
    commit(
        s,
        Commit {
            history: vec![event("b1")],
            enqueue: vec![new_work("b", WorkKind::Timer, 1, t + 2 * LONG)],
            idempotency: Some(key("kb", "b")),
            ..Commit::create(row("b"))
        },
    )
    .await;
    let held = Held::from(&claim_one(s, "w", LONG, "a's activity").await);
    let b = get(s, "b").await;

    assert!(
        s.purge("a").await.expect("purge(a)"),
        "purging `a` finds it"
    );
    assert_eq!(instance(s, "a").await, None, "the row is gone");
    assert!(history(s, "a").await.is_empty(), "the history is gone");
    assert_eq!(
        s.idempotency("ka").await.expect("idempotency(ka)"),
        None,
        "the key is gone"
    );
    assert_eq!(
        next_due(s).await,
        Some(t + 2 * LONG),
        "only b's timer is left"
    );
    let r = s.extend(held, LONG).await;
    expect_fenced(r, "extending a purged instance's item");

    assert_eq!(get(s, "b").await, b, "b's row is untouched");
    assert_eq!(history(s, "b").await.len(), 1, "b's history is untouched");
    assert!(
        s.idempotency("kb")
            .await
            .expect("idempotency(kb)")
            .is_some()
    );

    assert!(
        !s.purge("a").await.expect("purge(a) again"),
        "the second purge finds nothing"
    );
    assert!(
        !s.purge("never").await.expect("purge(never)"),
        "an unknown id is not purged"
    );

    commit(
        s,
        Commit {
            history: vec![event("again")],
            idempotency: Some(key("ka", "a")),
            ..Commit::create(row("a"))
        },
    )
    .await;
    assert_eq!(
        get(s, "a").await.revision,
        1,
        "a purged id can be created afresh"
    );
    let seqs: Vec<u64> = history(s, "a").await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1], "a recreated instance's history starts again");
}

/// A commit may leave work under another instance's id (an event addressed to it); when no
/// instance has that id, purging it removes that work.
pub async fn purge_drops_work_addressed_to_an_unknown_id<S: Store>(s: &S) {
    let t = now(s).await;
    commit(
        s,
        Commit {
            enqueue: vec![new_work("ghost", WorkKind::Message, 1, t - 1)],
            ..Commit::create(row("sender"))
        },
    )
    .await;
    let item = claim_one(s, "w", LONG, "the addressed message").await;
    assert_eq!(
        item.instance, "ghost",
        "the work is under the addressee's id"
    );
    assert!(
        !s.purge("ghost").await.expect("purge(ghost)"),
        "there is no instance `ghost` to purge"
    );
    assert_eq!(next_due(s).await, None, "the addressed work is gone");
    expect_fenced(
        s.extend(Held::from(&item), LONG).await,
        "extending the purged work",
    );
    assert!(instance(s, "sender").await.is_some(), "the sender stays");
}

/// `purge_where` removes the terminal instances that match, with their work, and counts them.
pub async fn purge_where_removes_only_terminal_matches<S: Store>(s: &S) {
    let t = now(s).await;
    let base = t + LONG;
    for (n, status) in RuntimeStatus::ALL.into_iter().enumerate() {
        for (function, offset) in [("F", 0), ("G", 1_000)] {
            let id = format!("{function}-{}", status.as_str());
            // The work of the instances to purge is due first, so that `next_due` shows it gone.
            let n = n as i64;
            let due = base + offset + if status.is_terminal() { n } else { 100 + n };
            let r = InstanceRow {
                status,
                function: function.to_owned(),
                ..row(&id)
            };
            commit(
                s,
                Commit {
                    history: vec![event("e")],
                    enqueue: vec![new_work(&id, WorkKind::Timer, 1, due)],
                    ..Commit::create(r)
                },
            )
            .await;
        }
    }
    let only = |statuses: Vec<RuntimeStatus>, function: Option<&str>| Filter {
        statuses,
        function: function.map(str::to_owned),
        ..Filter::default()
    };
    let purge = |f: Filter| async move {
        s.purge_where(&f)
            .await
            .unwrap_or_else(|e| panic!("purge_where({f:?}): {e}"))
    };
    assert_eq!(
        purge(only(vec![], Some("F"))).await,
        3,
        "F's three terminal instances"
    );
    for status in RuntimeStatus::ALL {
        let id = format!("F-{}", status.as_str());
        let present = instance(s, &id).await.is_some();
        assert_eq!(
            present,
            !status.is_terminal(),
            "{id} present after purging F"
        );
        assert_eq!(
            history(s, &id).await.is_empty(),
            status.is_terminal(),
            "{id}'s history"
        );
        assert!(
            instance(s, &format!("G-{}", status.as_str()))
                .await
                .is_some()
        );
    }
    assert_eq!(
        next_due(s).await,
        Some(base + 100),
        "the purged instances' work is gone; F-Pending's timer is the earliest left"
    );
    let running = only(vec![RuntimeStatus::Running, RuntimeStatus::Pending], None);
    assert_eq!(
        purge(running).await,
        0,
        "instances that are not terminal are never purged"
    );
    let g_completed = only(vec![RuntimeStatus::Completed], Some("G"));
    assert_eq!(purge(g_completed).await, 1, "G-Completed alone");
    assert_eq!(
        purge(Filter::default()).await,
        2,
        "G-Failed and G-Terminated"
    );
    assert_eq!(
        purge(Filter::default()).await,
        0,
        "nothing terminal is left"
    );
    let left = listed(s, &Filter::default()).await;
    assert_eq!(
        left.len(),
        6,
        "the six instances that are not terminal are left: {left:?}"
    );
}

/// `count` follows creates, status changes and purges, one status at a time.
pub async fn count_follows_status_changes<S: Store>(s: &S) {
    use RuntimeStatus::*;
    let counts = async |s: &S| {
        let mut all = Vec::new();
        for status in RuntimeStatus::ALL {
            let n = s
                .count(status)
                .await
                .unwrap_or_else(|e| panic!("count({status:?}): {e}"));
            all.push((status, n));
        }
        all
    };
    let of = |all: &[(RuntimeStatus, u64)], status| {
        all.iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    assert!(
        counts(s).await.iter().all(|(_, n)| *n == 0),
        "an empty store counts nothing"
    );
    for (id, status) in [
        ("r1", Running),
        ("r2", Running),
        ("p1", Pending),
        ("s1", Suspended),
    ] {
        create_with(s, InstanceRow { status, ..row(id) }, vec![]).await;
    }
    let before = counts(s).await;
    assert_eq!(
        [Running, Pending, Suspended, Completed].map(|st| of(&before, st)),
        [2, 1, 1, 0],
        "{before:?}"
    );

    let mut done = get(s, "r1").await;
    done.status = Completed;
    commit(s, Commit::update(done)).await;
    assert!(s.purge("p1").await.expect("purge(p1)"));
    let after = counts(s).await;
    assert_eq!(
        [Running, Pending, Suspended, Completed].map(|st| of(&after, st)),
        [1, 0, 1, 1],
        "{after:?}"
    );
}
