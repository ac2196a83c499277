//! Feeding a batch of one instance's finished work to it as one commit: outcomes go to the
//! interpreter (or are held while the instance is suspended), control messages suspend, resume,
//! terminate or rewind it, all in the order they reached the instance's mailbox.

use baton_core::Timestamp;
use baton_core::interp::{Env, Input, Instance};
use baton_store::{
    Commit, CommitError, Event, Held, Millis, NewEvent, RuntimeStatus, Store, StoreError, Work,
    WorkKind,
};
use serde_json::json;

use super::control::Order;
use super::replay::{self, Rewound};
use super::state::{Arrival, State};
use super::translate::{self, Fed};
use super::{Durable, events};

/// History is read in pages of this many events.
const HISTORY_PAGE: usize = 1000;

impl<S: Store> Durable<S> {
    /// Applies a batch of outcomes of one instance and commits, retrying on conflicts.
    pub(super) async fn feed(&self, mut batch: Vec<(Work, Fed)>) {
        for _attempt in 0..64 {
            match self.feed_once(&batch).await {
                Ok(None) => return,
                // The rest goes into a commit of its own (see `feed_once`).
                Ok(Some(rest)) => drop(batch.drain(..rest)),
                Err(CommitError::Conflict { .. }) => continue,
                Err(CommitError::Fenced { id, .. }) => {
                    tracing::info!(
                        work = id,
                        "work taken over by another holder; its outcome is dropped"
                    );
                    batch.retain(|(w, _)| w.id != id);
                    if batch.is_empty() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not record finished work; it will run again");
                    return;
                }
            }
        }
        tracing::warn!("an instance kept changing; its work will run again");
    }

    /// One attempt at committing `batch`. `Some(n)` when only the first `n` items went into the
    /// commit: a rewind of an instance that failed earlier in the same batch waits for that
    /// failure to be stored, because a rewind names the stored event it leaves out.
    async fn feed_once(&self, batch: &[(Work, Fed)]) -> Result<Option<usize>, CommitError> {
        let Some((first, _)) = batch.first() else {
            return Ok(None);
        };
        let Some(row) = self.store.instance(&first.instance).await? else {
            // Purged while the work was out, or an event addressed to an instance that never
            // was: nothing to feed, and the work goes (purging an id without an instance
            // removes what is left under it).
            tracing::info!(instance = %first.instance, "work for an instance that is not stored is dropped");
            self.store.purge(&first.instance).await?;
            return Ok(None);
        };
        let orders: Vec<Order> = batch.iter().map(|(w, f)| translate::order(w, f)).collect();
        let mut commit = Commit::update(row);
        let rewinds = orders.iter().any(|o| matches!(o, Order::Rewind(_)));
        if commit.instance.status.is_terminal()
            && !(rewinds && commit.instance.status == RuntimeStatus::Failed)
        {
            // A finished instance takes nothing more: its work is only marked done.
            commit.done.extend(batch.iter().map(|(w, _)| Held::from(w)));
            self.store.commit(commit).await?;
            return Ok(None);
        }
        let row = &commit.instance;
        let Some(wf) = self.workflow(&row.definition) else {
            tracing::warn!(instance = %row.id, definition = %row.definition, "the instance's definition is not pinned here");
            let later = self.store.now().await? + 1000;
            for (w, _) in batch {
                let _ = self.store.release(w.into(), later).await;
            }
            return Ok(None);
        };
        let mut state = State::read(row)?;
        let id = row.id.clone();
        let now = self.now().await?;
        commit.instance.updated_at = now.millis();
        let env = self.runner.env(&wf, &id);
        let mut end = batch.len();
        for (i, ((work, _), order)) in batch.iter().zip(orders).enumerate() {
            let status = commit.instance.status;
            match order {
                Order::Rewind(reason) => {
                    if status != RuntimeStatus::Failed {
                        tracing::debug!(instance = %id, "a rewind of an instance that has not failed is ignored");
                    } else if !commit.history.is_empty() {
                        end = i;
                        break;
                    } else {
                        let history = self.history_of(&id).await?;
                        match replay::rewind(&env, &commit.instance, &history, now) {
                            Ok(r) => rewound(&mut commit, &mut state, &env, r, &reason, now)?,
                            Err(why) => {
                                tracing::warn!(instance = %id, why, "the instance cannot be rewound");
                            }
                        }
                    }
                }
                // An outcome that arrives after the instance ended (a call it no longer waits
                // for) is only marked done.
                _ if status.is_terminal() => {}
                Order::Suspend(reason) => {
                    if status != RuntimeStatus::Suspended {
                        commit.instance.status = RuntimeStatus::Suspended;
                        commit.history.push(NewEvent {
                            kind: events::SUSPENDED.to_owned(),
                            data: json!({"reason": reason}),
                        });
                    }
                }
                Order::Resume(reason) => {
                    if status == RuntimeStatus::Suspended {
                        commit.instance.status = RuntimeStatus::Running;
                        commit.history.push(NewEvent {
                            kind: events::RESUMED.to_owned(),
                            data: json!({"reason": reason, "held": state.held.len()}),
                        });
                        for held in std::mem::take(&mut state.held) {
                            if commit.instance.status.is_terminal() {
                                break;
                            }
                            let arrived = Some(held.at);
                            let inst = &mut state.instance;
                            step(
                                &mut commit,
                                inst,
                                &env,
                                held.input,
                                held.attempt,
                                now,
                                arrived,
                            )?;
                        }
                    }
                }
                Order::Terminate(reason) => {
                    // What was held for a resume goes with the instance.
                    state.held.clear();
                    let cancel = Input::Cancel { reason };
                    step(&mut commit, &mut state.instance, &env, cancel, 0, now, None)?;
                }
                Order::Input(input) if status == RuntimeStatus::Suspended => {
                    state.held.push(Arrival {
                        input,
                        at: now.millis(),
                        attempt: work.attempt,
                    });
                }
                Order::Input(input) => {
                    let inst = &mut state.instance;
                    step(&mut commit, inst, &env, input, work.attempt, now, None)?;
                }
            }
        }
        commit
            .done
            .extend(batch[..end].iter().map(|(w, _)| Held::from(w)));
        state.keep(&mut commit.instance)?;
        let ended = translate::Ended::of(&commit.instance, &wf.document.name);
        self.store.commit(commit).await?;
        if let Some(e) = ended {
            e.report(&self.meters);
            self.settled.notify_waiters();
        }
        Ok((end < batch.len()).then_some(end))
    }

    /// An instance's whole history, oldest first.
    async fn history_of(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let mut all: Vec<Event> = Vec::new();
        loop {
            let after = all.last().map_or(0, |e| e.seq);
            let page = self.store.history(id, after, HISTORY_PAGE).await?;
            let full = page.len() == HISTORY_PAGE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }
}

/// Applies one input at `now`, recording it (so that a rewind can apply it again) and what it
/// caused.
fn step(
    commit: &mut Commit,
    inst: &mut Instance,
    env: &Env<'_>,
    input: Input,
    attempt: u32,
    now: Timestamp,
    arrived: Option<Millis>,
) -> Result<(), StoreError> {
    if let Some(event) = translate::input_event(&input, attempt, now, arrived) {
        commit.history.push(event);
    }
    let stepped = translate::guarded_apply(inst, env, input, now);
    translate::fill(commit, stepped)
}

/// Puts a rewound instance into the commit: running again from its replayed state, with the
/// work that state waits for (or started again, when its start failed).
fn rewound(
    commit: &mut Commit,
    state: &mut State,
    env: &Env<'_>,
    r: Rewound,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let row = &mut commit.instance;
    row.status = RuntimeStatus::Running;
    row.error = None;
    row.output = None;
    commit.history.push(NewEvent {
        kind: events::REWOUND.to_owned(),
        data: json!({"reason": reason, "skipped": r.skipped, "now": now.millis()}),
    });
    // Anything still stored under a token made again is dropped first (a commit cancels before
    // it enqueues), so no call or timer is there twice.
    for w in &r.outstanding {
        commit.cancel.push((w.kind, w.token));
        commit.history.push(match w.kind {
            WorkKind::Timer => NewEvent {
                kind: events::TIMER_CREATED.to_owned(),
                data: json!({"token": w.token, "due": w.due_at}),
            },
            _ => NewEvent {
                kind: events::ACTIVITY_SCHEDULED.to_owned(),
                data: json!({"token": w.token, "task": w.payload.get("task")}),
            },
        });
    }
    commit.enqueue.extend(r.outstanding);
    *state = State::of(r.instance);
    if let Some(start) = r.restart {
        let stepped = translate::guarded_apply(&mut state.instance, env, start, now);
        translate::fill(commit, stepped)?;
    }
    Ok(())
}
