//! Between the interpreter's vocabulary (inputs, effects, trace) and the store's (work items,
//! history events, the instance row).

use std::panic::{AssertUnwindSafe, catch_unwind};

use baton_core::interp::{
    CallRequest, CallResult, Effect, Env, Input, Instance, Token, TraceEvent,
};
use baton_core::{ErrorKind, Timestamp, WorkflowError};
use baton_store::{
    Commit, InstanceRow, NewEvent, NewWork, RuntimeStatus, StoreError, Work, WorkKind,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::events;

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

/// The step's effects and trace, or the panic that ended it.
pub(super) type Stepped = Result<(Vec<Effect>, Vec<TraceEvent>), String>;

/// Applies `input`, turning a panic inside the interpreter (or an expression library) into a
/// failed instance instead of a lost worker.
pub(super) fn guarded_apply(
    inst: &mut Instance,
    env: &Env<'_>,
    input: Input,
    now: Timestamp,
) -> Stepped {
    catch_unwind(AssertUnwindSafe(|| inst.apply(env, input, now))).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned())
    })
}

/// The interpreter input for a finished item, recording what arrived in the history.
pub(super) fn input_for(work: &Work, fed: &Fed, history: &mut Vec<NewEvent>) -> Input {
    let token = Token(work.token);
    match fed {
        Fed::Call(result) => {
            history.push(NewEvent {
                kind: events::ACTIVITY_COMPLETED.to_owned(),
                data: json!({"token": work.token, "attempt": work.attempt, "failed": matches!(result, CallResult::Failed(_))}),
            });
            Input::CallCompleted {
                token,
                result: result.clone(),
            }
        }
        Fed::Timer => {
            history.push(NewEvent {
                kind: events::TIMER_FIRED.to_owned(),
                data: json!({"token": work.token}),
            });
            Input::TimerFired { token }
        }
        Fed::Message(m) => {
            if let Some(reason) = m.get("terminate") {
                let reason = reason.as_str().unwrap_or("terminated").to_owned();
                Input::Cancel { reason }
            } else {
                let event = m.get("event").cloned().unwrap_or(Value::Null);
                history.push(NewEvent {
                    kind: events::EVENT_RAISED.to_owned(),
                    data: event.clone(),
                });
                Input::Event { event }
            }
        }
    }
}

/// The interpreter's state, into the row.
pub(super) fn keep_state(row: &mut InstanceRow, inst: &Instance) -> Result<(), StoreError> {
    row.state = serde_json::to_vec(inst)
        .map_err(|e| StoreError::Permanent(format!("the instance state is not storable: {e}")))?;
    Ok(())
}

/// Puts a step's outcome into `commit`: new work, cancelled work, history, and the instance's
/// status, output or error ([`keep_state`] stores the state itself, once per commit).
pub(super) fn fill(commit: &mut Commit, stepped: Stepped) -> Result<(), StoreError> {
    let Commit {
        instance: row,
        history,
        enqueue,
        cancel,
        ..
    } = commit;
    let now = row.updated_at;
    let (effects, trace) = match stepped {
        Ok(x) => x,
        Err(panic) => {
            tracing::error!(instance = %row.id, panic = %panic, "the interpreter panicked; the instance fails");
            let error = WorkflowError::new(
                ErrorKind::Runtime,
                "/",
                "the instance stopped unexpectedly inside the engine; see the host's log",
            );
            (vec![Effect::Fault { error }], Vec::new())
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
                let payload = serde_json::to_value(Activity {
                    task,
                    request,
                    idempotency_key,
                })
                .map_err(|e| StoreError::Permanent(format!("an activity is not storable: {e}")))?;
                enqueue.push(NewWork {
                    instance: row.id.clone(),
                    kind: WorkKind::Activity,
                    token: token.0,
                    due_at: now,
                    payload,
                });
            }
            Effect::CancelCall { token } => cancel.push((WorkKind::Activity, token.0)),
            Effect::StartTimer { token, due } => {
                history.push(NewEvent {
                    kind: events::TIMER_CREATED.to_owned(),
                    data: json!({"token": token.0, "due": due.millis()}),
                });
                enqueue.push(NewWork {
                    instance: row.id.clone(),
                    kind: WorkKind::Timer,
                    token: token.0,
                    due_at: due.millis(),
                    payload: Value::Null,
                });
            }
            Effect::CancelTimer { token } => cancel.push((WorkKind::Timer, token.0)),
            Effect::Emit { event } => history.push(NewEvent {
                kind: events::EVENT_SENT.to_owned(),
                data: event,
            }),
            Effect::Subscribe { .. } | Effect::Unsubscribe { .. } => {}
            Effect::Complete { output } => {
                row.status = RuntimeStatus::Completed;
                history.push(NewEvent {
                    kind: events::COMPLETED.to_owned(),
                    data: json!({}),
                });
                row.output = Some(output);
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
