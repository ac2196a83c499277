//! Between the interpreter's vocabulary (inputs, effects, trace) and the store's (work items,
//! history events, the instance row).

use std::panic::{AssertUnwindSafe, catch_unwind};

use baton_core::interp::{
    CallRequest, CallResult, Effect, Env, Input, Instance, Token, TraceEvent,
};
use baton_core::{ErrorKind, Timestamp, WorkflowError};
use baton_store::{
    Commit, Event, Millis, NewEvent, NewWork, RuntimeStatus, StoreError, Work, WorkKind,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::control::Order;
use super::events;
use crate::meters::InstanceMeters;

/// What an activity work item carries: the call the interpreter asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The calling task's reference.
    pub task: String,
    pub request: CallRequest,
    /// Passed to the callee; the same for every attempt of this call.
    pub idempotency_key: String,
}

/// What a finished work item brings back to its instance.
#[derive(Debug)]
pub(super) enum Fed {
    Call(CallResult),
    Timer,
    Message(Value),
}

/// A step's effects and trace (with the instance's output if it completed, which
/// [`Effect::Complete`] does not carry), or the panic that ended it.
pub(super) type Stepped = Result<(Vec<Effect>, Vec<TraceEvent>, Option<Value>), String>;

/// Applies `input`, turning a panic inside the interpreter (or an expression library) into a
/// failed instance instead of a lost worker.
pub(super) fn guarded_apply(
    inst: &mut Instance,
    env: &Env<'_>,
    input: Input,
    now: Timestamp,
) -> Stepped {
    catch_unwind(AssertUnwindSafe(|| {
        let (effects, trace) = inst.apply(env, input, now);
        let output = if effects.iter().any(|e| matches!(e, Effect::Complete)) {
            inst.output.clone()
        } else {
            None
        };
        (effects, trace, output)
    }))
    .map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned())
    })
}

/// What a finished item asks of its instance.
pub(super) fn order(work: &Work, fed: &Fed) -> Order {
    let token = Token(work.token);
    match fed {
        Fed::Call(result) => Order::Input(Input::CallCompleted {
            token,
            result: result.clone(),
        }),
        Fed::Timer => Order::Input(Input::TimerFired { token }),
        Fed::Message(m) => Order::of_message(m.clone()),
    }
}

/// The history event recording an input applied at `now`, with everything needed to apply it
/// again (see `replay`): an activity's result, a raised event. `arrived` is when an input held
/// during a suspension arrived. The start is recorded by `ExecutionStarted`, a cancel by
/// `ExecutionTerminated`; neither comes through here.
pub(super) fn input_event(
    input: &Input,
    attempt: u32,
    now: Timestamp,
    arrived: Option<Millis>,
) -> Option<NewEvent> {
    let (kind, mut data) = match input {
        Input::CallCompleted { token, result } => (
            events::ACTIVITY_COMPLETED,
            json!({
                "token": token.0,
                "attempt": attempt,
                "failed": matches!(result, CallResult::Failed(_)),
                "result": result,
            }),
        ),
        Input::TimerFired { token } => (events::TIMER_FIRED, json!({"token": token.0})),
        Input::Event { event } => (events::EVENT_RAISED, json!({"event": event})),
        Input::Start { .. } | Input::Cancel { .. } => return None,
    };
    data["now"] = json!(now.millis());
    if let Some(at) = arrived {
        data["arrived"] = json!(at);
    }
    Some(NewEvent {
        kind: kind.to_owned(),
        data,
    })
}

/// The input an event written by [`input_event`] recorded, with the time it was applied at;
/// `None` for other events. An input event without its data (written before inputs were
/// recorded whole) is an error: the instance cannot be replayed.
pub(super) fn recorded_input(event: &Event) -> Option<Result<(Input, Timestamp), String>> {
    let data = &event.data;
    let token = || {
        data.get("token")
            .and_then(Value::as_u64)
            .map(Token)
            .ok_or_else(|| format!("event {} has no token", event.seq))
    };
    let input = match event.kind.as_str() {
        events::ACTIVITY_COMPLETED => token().and_then(|token| {
            let result = data
                .get("result")
                .cloned()
                .ok_or_else(|| format!("event {} has no result", event.seq))?;
            serde_json::from_value(result)
                .map(|result| Input::CallCompleted { token, result })
                .map_err(|e| format!("event {}: {e}", event.seq))
        }),
        events::TIMER_FIRED => token().map(|token| Input::TimerFired { token }),
        events::EVENT_RAISED => data
            .get("event")
            .cloned()
            .map(|event| Input::Event { event })
            .ok_or_else(|| format!("event {} has no event", event.seq)),
        _ => return None,
    };
    Some(input.and_then(|input| Ok((input, recorded_now(event)?))))
}

/// The step time an input event (or `ExecutionStarted`, `ExecutionRewound`) recorded.
pub(super) fn recorded_now(event: &Event) -> Result<Timestamp, String> {
    event
        .data
        .get("now")
        .and_then(Value::as_i64)
        .map(Timestamp)
        .ok_or_else(|| format!("event {} ({}) has no step time", event.seq, event.kind))
}

/// The work item for a call the interpreter asked for, due at `due`.
pub(super) fn activity_work(
    instance: &str,
    token: Token,
    task: String,
    request: CallRequest,
    idempotency_key: String,
    due: Millis,
) -> Result<NewWork, StoreError> {
    let payload = serde_json::to_value(Activity {
        task,
        request,
        idempotency_key,
    })
    .map_err(|e| StoreError::Permanent(format!("an activity is not storable: {e}")))?;
    Ok(NewWork {
        instance: instance.to_owned(),
        kind: WorkKind::Activity,
        token: token.0,
        due_at: due,
        payload,
    })
}

/// The work item for a timer the interpreter started.
pub(super) fn timer_work(instance: &str, token: Token, due: Timestamp) -> NewWork {
    NewWork {
        instance: instance.to_owned(),
        kind: WorkKind::Timer,
        token: token.0,
        due_at: due.millis(),
        payload: Value::Null,
    }
}

/// The CloudEvents extension attribute that addresses an emitted event to one instance.
pub const ADDRESSEE: &str = "batoninstance";

/// The instance an emitted event is addressed to, if any.
fn addressee(event: &Value) -> Option<&str> {
    event
        .get(ADDRESSEE)
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
}

/// Puts a step's outcome into `commit`: new work, cancelled work, history, and the instance's
/// status, output or error (`State::keep` stores the state itself, once per commit).
pub(super) fn fill(commit: &mut Commit, stepped: Stepped) -> Result<(), StoreError> {
    let Commit {
        instance: row,
        history,
        enqueue,
        cancel,
        ..
    } = commit;
    let now = row.updated_at;
    let (effects, trace, mut output) = match stepped {
        Ok(x) => x,
        Err(panic) => {
            tracing::error!(instance = %row.id, panic = %panic, "the interpreter panicked; the instance fails");
            let error = WorkflowError::new(
                ErrorKind::Runtime,
                "/",
                "the instance stopped unexpectedly inside the engine; see the host's log",
            );
            (vec![Effect::Fault { error }], Vec::new(), None)
        }
    };
    for t in trace {
        history.push(NewEvent {
            kind: events::TASK.to_owned(),
            data: json!({"task": &*t.task, "name": &*t.name, "kind": format!("{:?}", t.kind), "at": t.at.millis()}),
        });
    }
    if row.status == RuntimeStatus::Pending {
        row.status = RuntimeStatus::Running;
    }
    for e in effects {
        match e {
            Effect::Call {
                token,
                task,
                request,
                idempotency_key,
            } => {
                history.push(NewEvent {
                    kind: events::ACTIVITY_SCHEDULED.to_owned(),
                    data: json!({"token": token.0, "task": task}),
                });
                enqueue.push(activity_work(
                    &row.id,
                    token,
                    task,
                    request,
                    idempotency_key,
                    now,
                )?);
            }
            Effect::CancelCall { token } => cancel.push((WorkKind::Activity, token.0)),
            Effect::StartTimer { token, due } => {
                history.push(NewEvent {
                    kind: events::TIMER_CREATED.to_owned(),
                    data: json!({"token": token.0, "due": due.millis()}),
                });
                enqueue.push(timer_work(&row.id, token, due));
            }
            Effect::CancelTimer { token } => cancel.push((WorkKind::Timer, token.0)),
            Effect::Emit { event } => {
                // An event addressed to an instance is delivered to it in this same commit:
                // exactly once, and only if this step is kept.
                if let Some(target) = addressee(&event) {
                    enqueue.push(NewWork {
                        instance: target.to_owned(),
                        kind: WorkKind::Message,
                        token: crate::runner::random_u64() >> 1,
                        due_at: now,
                        payload: Order::Input(Input::Event {
                            event: event.clone(),
                        })
                        .payload(),
                    });
                }
                history.push(NewEvent {
                    kind: events::EVENT_SENT.to_owned(),
                    data: event,
                });
            }
            Effect::Subscribe { .. } | Effect::Unsubscribe { .. } => {}
            Effect::Complete => {
                row.status = RuntimeStatus::Completed;
                history.push(NewEvent {
                    kind: events::COMPLETED.to_owned(),
                    data: json!({}),
                });
                row.output = output.take();
            }
            Effect::Fault { error } => {
                row.status = RuntimeStatus::Failed;
                let error = serde_json::to_value(&error).unwrap_or(Value::Null);
                history.push(NewEvent {
                    kind: events::FAILED.to_owned(),
                    data: error.clone(),
                });
                row.error = Some(error);
            }
            Effect::Cancelled { reason } => {
                row.status = RuntimeStatus::Terminated;
                history.push(NewEvent {
                    kind: events::TERMINATED.to_owned(),
                    data: json!({"reason": reason}),
                });
            }
        }
    }
    Ok(())
}

/// What is reported of an ended instance (its `Executed '…'` line and its count), taken from
/// its row before the row goes into its commit.
#[derive(Debug)]
pub(super) struct Ended {
    function: String,
    workflow: String,
    id: String,
    status: RuntimeStatus,
    ms: i64,
    error: Option<String>,
}

impl Ended {
    /// `Some` if the row, an instance of `workflow`, is terminal.
    pub(super) fn of(row: &baton_store::InstanceRow, workflow: &str) -> Option<Self> {
        row.status.is_terminal().then(|| Self {
            function: row.function.clone(),
            workflow: workflow.to_owned(),
            id: row.id.clone(),
            status: row.status,
            ms: row.updated_at - row.created_at,
            error: row.error.as_ref().map(|e| {
                e["detail"]
                    .as_str()
                    .or(e["title"].as_str())
                    .unwrap_or("")
                    .to_owned()
            }),
        })
    }

    /// Counts the end and writes the Functions host's line for it, once its commit is stored.
    pub(super) fn report(&self, meters: &InstanceMeters) {
        let Self {
            function,
            workflow,
            id,
            status,
            ms,
            error,
        } = self;
        let succeeded = *status == RuntimeStatus::Completed;
        meters.of(function, workflow).ended(succeeded);
        let error = error.as_deref().unwrap_or(status.as_str());
        match status {
            RuntimeStatus::Completed => tracing::info!(
                function = %function, instance = %id, duration_ms = *ms,
                "Executed '{function}' (Succeeded, Id={id}, Duration={ms}ms)"
            ),
            // Terminating is an operator's decision, not a fault.
            RuntimeStatus::Terminated => tracing::info!(
                function = %function, instance = %id, duration_ms = *ms,
                "Executed '{function}' (Terminated, Id={id}, Duration={ms}ms, Error={error})"
            ),
            // A failed execution is an error for whoever runs the host, as in the Functions host.
            _ => tracing::error!(
                function = %function, instance = %id, duration_ms = *ms,
                "Executed '{function}' (Failed, Id={id}, Duration={ms}ms, Error={error})"
            ),
        }
    }
}
