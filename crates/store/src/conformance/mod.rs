//! The behaviour every [`Store`] backend must show, written once against the trait and run
//! unchanged by each backend.
//!
//! Each case is a `pub async fn` that takes a fresh, empty store (a few take it in an
//! [`Arc`](std::sync::Arc) to spawn tasks on it) and panics with a message naming what went
//! wrong. [`conformance_tests!`](crate::conformance_tests) expands to one `#[tokio::test]` per
//! case; a backend's test file writes
//!
//! ```text
//! async fn fresh() -> MyStore { /* a new, empty store */ }
//!
//! baton_store::conformance_tests!(fresh());
//! ```
//!
//! The expansion names `::tokio`, so the backend's tests need `tokio` with the `macros` and
//! `rt-multi-thread` features.
//!
//! Times come from [`Store::now`], never from this machine's clock, so the suite holds for a
//! database clock too. Waiting is always a bounded loop on something the store reports (a claim
//! succeeding, its clock passing a time), never a bare sleep.

// Test code: a failed store call or a broken expectation must panic, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod concurrent;
mod instances;
mod listing;
mod queues;
mod work;

pub use concurrent::*;
pub use instances::*;
pub use listing::*;
pub use queues::*;
pub use work::*;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    Commit, CommitError, Event, Held, InstanceRow, Millis, NewEvent, NewWork, RuntimeStatus, Store,
    Work, WorkKind,
};

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an expression evaluating
/// to a future that yields a fresh, empty store; it is evaluated once per test.
#[macro_export]
macro_rules! conformance_tests {
    (@by_ref $make:expr; $($case:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let store = $make.await;
            $crate::conformance::bounded(
                ::std::stringify!($case),
                $crate::conformance::$case(&store),
            )
            .await;
        }
    )*};
    (@by_arc $make:expr; $($case:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let store = ::std::sync::Arc::new($make.await);
            $crate::conformance::bounded(
                ::std::stringify!($case),
                $crate::conformance::$case(store),
            )
            .await;
        }
    )*};
    ($make:expr $(,)?) => {
        $crate::conformance_tests!(@by_ref $make;
            create_and_read_back,
            create_twice_conflicts,
            update_bumps_revision,
            stale_revision_conflicts_and_writes_nothing,
            update_of_missing_instance_conflicts,
            history_appends_in_order_and_pages,
            definitions_put_get_and_put_again,
            idempotency_key_is_bound_once,
            expired_idempotency_key_is_forgotten,
            list_filters,
            list_pages_newest_first,
            purge_removes_everything,
            purge_drops_work_addressed_to_an_unknown_id,
            count_follows_status_changes,
            purge_where_removes_only_terminal_matches,
            claim_takes_only_due_items_earliest_first,
            claimed_item_is_not_claimed_again,
            expired_lease_is_taken_over,
            stale_holder_is_fenced,
            fence_grows_at_every_claim,
            expired_lease_without_takeover_still_holds,
            done_deletes_the_item,
            cancel_drops_work_by_kind_and_token,
            release_makes_claimable_from_due_at,
            extend_moves_until_forward,
            timers_come_out_in_due_order,
            next_due_reports_earliest_due_or_expiry,
            send_adds_work_without_touching_the_instance,
            fenced_commit_writes_nothing,
            wakeup_after_enqueue,
            wakeup_after_release,
        );
        $crate::conformance_tests!(@by_arc $make;
            concurrent_commits_to_different_instances,
            concurrent_commits_to_one_instance_one_wins,
            concurrent_claimers_never_share_an_item,
        );
    };
}

/// Expands to one `#[tokio::test]` per queue case, for a backend that also implements
/// [`QueueStore`](crate::queues::QueueStore); used like
/// [`conformance_tests!`](crate::conformance_tests).
#[macro_export]
macro_rules! queue_conformance_tests {
    ($make:expr $(,)?) => {
        $crate::conformance_tests!(@by_ref $make;
            queue_send_receive_complete,
            nine_failures_then_success_is_not_dead_lettered,
            ten_failures_are_dead_lettered,
            expired_lock_redelivers_and_fences_the_old_token,
            renewed_lock_holds,
            duplicates_are_dropped_inside_the_window,
            expired_messages_are_dropped_or_dead_lettered,
            scheduled_messages_wait_for_their_time,
            dead_letters_peek_and_redrive,
            peek_locks_nothing,
            batches_are_atomic_and_bad_input_is_refused,
            sessions_have_one_receiver_each,
            queue_wakeup_after_send,
        );
        $crate::conformance_tests!(@by_arc $make;
            sessions_keep_order_under_concurrent_receivers,
        );
    };
}

/// Runs one case, failing it if it has not finished within two minutes (a hang is a failure,
/// not a stuck test run). Used by [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
pub async fn bounded(case: &str, f: impl Future<Output = ()>) {
    if tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .is_err()
    {
        panic!("conformance case `{case}` did not finish within 120 s");
    }
}

/// A lease nobody outlives in a case.
const LONG: i64 = 60_000;
/// A lease that expires while a case waits for it.
const SHORT: i64 = 150;
/// How often a waiting loop looks again, and how long it looks at most.
const POLL: Duration = Duration::from_millis(10);
const PATIENCE: Duration = Duration::from_secs(5);

/// A row to create: the store sets `updated_at` and `revision`.
fn row(id: &str) -> InstanceRow {
    InstanceRow {
        id: id.to_owned(),
        function: "Orders".to_owned(),
        definition: "d0".to_owned(),
        status: RuntimeStatus::Running,
        input: json!({ "id": id, "items": [1, 2, 3] }),
        output: None,
        error: None,
        custom_status: None,
        state: id.as_bytes().to_vec(),
        created_at: 1_000,
        updated_at: 0,
        revision: 0,
    }
}

fn new_work(instance: &str, kind: WorkKind, token: u64, due_at: Millis) -> NewWork {
    NewWork {
        instance: instance.to_owned(),
        kind,
        token,
        due_at,
        payload: json!({ "instance": instance, "token": token }),
    }
}

fn event(kind: &str) -> NewEvent {
    NewEvent {
        kind: kind.to_owned(),
        data: json!({ "kind": kind }),
    }
}

async fn now<S: Store>(s: &S) -> Millis {
    s.now().await.expect("now()")
}

async fn instance<S: Store>(s: &S, id: &str) -> Option<InstanceRow> {
    s.instance(id)
        .await
        .unwrap_or_else(|e| panic!("instance({id:?}): {e}"))
}

/// The stored row of an instance that must exist.
async fn get<S: Store>(s: &S, id: &str) -> InstanceRow {
    instance(s, id)
        .await
        .unwrap_or_else(|| panic!("instance {id:?} should exist"))
}

async fn history<S: Store>(s: &S, id: &str) -> Vec<Event> {
    s.history(id, 0, 10_000)
        .await
        .unwrap_or_else(|e| panic!("history({id:?}): {e}"))
}

async fn next_due<S: Store>(s: &S) -> Option<Millis> {
    s.next_due().await.expect("next_due()")
}

/// Commits `c`, which must succeed, and returns the ids it enqueued.
async fn commit<S: Store>(s: &S, c: Commit) -> Vec<i64> {
    let what = format!(
        "commit to {:?} from revision {:?}",
        c.instance.id, c.expected_revision
    );
    s.commit(c)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .enqueued
}

/// Creates `row` with `enqueue` and returns the stored row and the enqueued ids.
async fn create_with<S: Store>(
    s: &S,
    row: InstanceRow,
    enqueue: Vec<NewWork>,
) -> (InstanceRow, Vec<i64>) {
    let id = row.id.clone();
    let ids = commit(
        s,
        Commit {
            enqueue,
            ..Commit::create(row)
        },
    )
    .await;
    (get(s, &id).await, ids)
}

/// Claims, checking what every claim must satisfy: at most `max` distinct items, earliest due
/// first, each leased to `owner` until `lease_ms` after a claim time within the call, and none
/// claimed before it was due.
async fn claim<S: Store>(s: &S, owner: &str, lease_ms: i64, max: usize) -> Vec<Work> {
    let t0 = now(s).await;
    let got = s
        .claim(owner, lease_ms, max)
        .await
        .unwrap_or_else(|e| panic!("claim({owner:?}, {lease_ms}, {max}): {e}"));
    let t1 = now(s).await;
    assert!(
        got.len() <= max,
        "claim with max {max} returned {} items",
        got.len()
    );
    for w in &got {
        let at = w.lease.until - lease_ms;
        assert_eq!(
            w.lease.owner, owner,
            "item {} is leased to its claimer",
            w.id
        );
        assert!(
            t0 <= at && at <= t1,
            "item {}: lease.until {} should be {lease_ms} ms after the claim, which happened \
             between store times {t0} and {t1}",
            w.id,
            w.lease.until
        );
        assert!(
            w.due_at <= at,
            "item {} was claimed at {at}, before it was due at {}",
            w.id,
            w.due_at
        );
        assert!(w.attempt >= 1, "item {} has attempt {}", w.id, w.attempt);
    }
    assert!(
        got.windows(2).all(|p| p[0].due_at <= p[1].due_at),
        "claimed items should come earliest due first: {:?}",
        got.iter().map(|w| (w.id, w.due_at)).collect::<Vec<_>>()
    );
    let mut ids: Vec<i64> = got.iter().map(|w| w.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "one claim returned an item twice");
    got
}

/// Claims until something comes out, every [`POLL`] for at most [`PATIENCE`].
async fn claim_eventually<S: Store>(
    s: &S,
    owner: &str,
    lease_ms: i64,
    max: usize,
    what: &str,
) -> Vec<Work> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = claim(s, owner, lease_ms, max).await;
        if !got.is_empty() {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: nothing became claimable within {PATIENCE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The one item a claim must return.
async fn claim_one<S: Store>(s: &S, owner: &str, lease_ms: i64, what: &str) -> Work {
    let mut got = claim(s, owner, lease_ms, 10).await;
    assert_eq!(
        got.len(),
        1,
        "{what}: expected exactly one item, got {got:?}"
    );
    got.remove(0)
}

/// Waits until the store's clock is past `t`.
async fn wait_past<S: Store>(s: &S, t: Millis) {
    let deadline = Instant::now() + PATIENCE;
    while now(s).await <= t {
        assert!(
            Instant::now() < deadline,
            "the store's clock did not pass {t} within {PATIENCE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn expect_conflict<T: std::fmt::Debug>(
    r: Result<T, CommitError>,
    what: &str,
) -> (String, Option<u64>, Option<u64>) {
    match r {
        Err(CommitError::Conflict {
            instance,
            expected,
            found,
        }) => (instance, expected, found),
        other => panic!("{what}: expected CommitError::Conflict, got {other:?}"),
    }
}

fn expect_fenced<T: std::fmt::Debug>(r: Result<T, CommitError>, what: &str) -> Held {
    match r {
        Err(CommitError::Fenced { id, fence }) => Held { id, fence },
        other => panic!("{what}: expected CommitError::Fenced, got {other:?}"),
    }
}
