//! Rewind by replay: a failed instance is rebuilt from its history, every recorded input applied
//! again in order at its recorded time except the one that failed it.
//!
//! The interpreter is deterministic given its inputs, the seed and the step times, and the
//! history records all three (`ExecutionStarted` the seed, each input event its data and step
//! time), so the replay reaches exactly the state the instance was in before the failing input,
//! without calling anything. What that state waits for (calls it made that never completed —
//! the failed one among them —, timers that never fired) is read off the replay's own effects
//! and becomes work again; a timeout whose firing failed the instance is armed again for its
//! whole duration from the rewind. The rejected alternative, keeping a snapshot of the state before
//! every step, would store the whole instance once per step for the rare rewind.

use baton_core::Timestamp;
use baton_core::interp::{Effect, Env, Input, Instance, Status};
use baton_store::{Event, InstanceRow, NewWork, WorkKind};
use serde_json::Value;

use super::events;
use super::translate::{self, guarded_apply};

/// A failed instance, rewound.
#[derive(Debug)]
pub(super) struct Rewound {
    /// The instance as it was just before the input that failed it (new, when that was the
    /// start).
    pub(super) instance: Instance,
    /// The work that state waits for: calls made and not completed, timers not fired.
    pub(super) outstanding: Vec<NewWork>,
    /// The sequence number of the input event left out.
    pub(super) skipped: u64,
    /// The start to apply again, when the start itself failed.
    pub(super) restart: Option<Input>,
}

/// An input as the history recorded it: where, what, and the step time it was applied at.
struct Recorded {
    seq: u64,
    input: Input,
    at: Timestamp,
}

/// The inputs that built the instance, in order: what every earlier rewind left out is left
/// out, and a rewind that left out the start applied it again at its own time.
fn recorded_inputs(row: &InstanceRow, history: &[Event]) -> Result<Vec<Recorded>, String> {
    let mut inputs: Vec<Recorded> = Vec::new();
    for ev in history {
        match ev.kind.as_str() {
            events::STARTED => {
                let seed = ev.data.get("seed").and_then(Value::as_u64).ok_or_else(|| {
                    "the instance started before its inputs were recorded".to_owned()
                })?;
                inputs.push(Recorded {
                    seq: ev.seq,
                    input: Input::Start {
                        input: row.input.clone(),
                        seed,
                    },
                    at: translate::recorded_now(ev)?,
                });
            }
            events::REWOUND => {
                let skipped = ev.data.get("skipped").and_then(Value::as_u64);
                let at = inputs.iter().rposition(|r| Some(r.seq) == skipped);
                let left = inputs.remove(
                    at.ok_or_else(|| format!("rewind {} names no recorded input", ev.seq))?,
                );
                if matches!(left.input, Input::Start { .. }) {
                    inputs.push(Recorded {
                        seq: ev.seq,
                        input: left.input,
                        at: translate::recorded_now(ev)?,
                    });
                }
            }
            _ => {
                if let Some(recorded) = translate::recorded_input(ev) {
                    let (input, at) = recorded?;
                    inputs.push(Recorded {
                        seq: ev.seq,
                        input,
                        at,
                    });
                }
            }
        }
    }
    Ok(inputs)
}

/// Rewinds a failed instance from its whole history; `now` is the rewind's time, when the calls
/// to make again are due.
pub(super) fn rewind(
    env: &Env<'_>,
    row: &InstanceRow,
    history: &[Event],
    now: Timestamp,
) -> Result<Rewound, String> {
    let mut inputs = recorded_inputs(row, history)?;
    // Nothing is applied after the input that fails an instance: it is the last.
    let failed = inputs
        .pop()
        .ok_or_else(|| "the history records no input".to_owned())?;
    if matches!(failed.input, Input::Start { .. }) {
        return Ok(Rewound {
            instance: Instance::default(),
            outstanding: Vec::new(),
            skipped: failed.seq,
            restart: Some(failed.input),
        });
    }
    let mut instance = Instance::default();
    let mut open: Vec<NewWork> = Vec::new();
    // When each timer still open was started: the step time of the input that started it.
    let mut timer_started: Vec<(u64, Timestamp)> = Vec::new();
    for Recorded { seq, input, at } in inputs {
        match &input {
            Input::CallCompleted { token, .. } => close(WorkKind::Activity, token.0, &mut open),
            Input::TimerFired { token } => close(WorkKind::Timer, token.0, &mut open),
            _ => {}
        }
        let (effects, _, _) = guarded_apply(&mut instance, env, input, at)
            .map_err(|panic| format!("replaying event {seq} panicked: {panic}"))?;
        for effect in effects {
            match effect {
                Effect::Call {
                    token,
                    task,
                    request,
                    idempotency_key,
                } => open.push(
                    translate::activity_work(
                        &row.id,
                        token,
                        task,
                        request,
                        idempotency_key,
                        now.millis(),
                    )
                    .map_err(|e| e.to_string())?,
                ),
                Effect::CancelCall { token } => close(WorkKind::Activity, token.0, &mut open),
                Effect::StartTimer { token, due } => {
                    timer_started.push((token.0, at));
                    open.push(translate::timer_work(&row.id, token, due));
                }
                Effect::CancelTimer { token } => close(WorkKind::Timer, token.0, &mut open),
                Effect::Complete | Effect::Fault { .. } | Effect::Cancelled { .. } => {
                    return Err(format!(
                        "replaying event {seq} ended the instance: the history does not match \
                         the definition"
                    ));
                }
                Effect::Emit { .. } | Effect::Subscribe { .. } | Effect::Unsubscribe { .. } => {}
            }
        }
    }
    if instance.status != Status::Running {
        return Err(format!(
            "the replay left the instance {}",
            instance.status.as_str()
        ));
    }
    // A timer whose firing failed the instance (a timeout) runs again in full from the
    // rewind, as the operation it bounds does; left at its old due time it would fire at once
    // and fail the instance again.
    if let Input::TimerFired { token } = failed.input
        && let Some(w) = open
            .iter_mut()
            .find(|w| (w.kind, w.token) == (WorkKind::Timer, token.0))
        && let Some((_, started)) = timer_started.iter().find(|(t, _)| *t == token.0)
    {
        w.due_at = now.millis() + (w.due_at - started.millis()).max(0);
    }
    Ok(Rewound {
        instance,
        outstanding: open,
        skipped: failed.seq,
        restart: None,
    })
}

/// Forgets the open work item `(kind, token)`: it completed, fired or was cancelled.
fn close(kind: WorkKind, token: u64, open: &mut Vec<NewWork>) {
    open.retain(|w| (w.kind, w.token) != (kind, token));
}
