//! Running tasks: starting them, resuming them when what they wait for arrives, cancelling them.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::error::{ErrorKind, WorkflowError, same_type};
use crate::expr::{ExprError, Template};
use crate::model::{Backoff, Catch, DataOut, ListId, RetryPolicy, Task, TaskId, TaskKind, Then};
use crate::time::{Duration, Timestamp};

use super::frames::{Body, Branch, Frame, ListFrame, TryFrame};
use super::vars::Vars;
use super::{
    CallRequest, CallResult, Effect, Env, Input, Instance, Status, Token, TraceEvent, TraceKind,
};

mod body;
mod for_loop;
mod fork;
mod list;
mod task;
pub(crate) mod try_catch;

use body::*;
use for_loop::*;
use fork::*;
use list::*;
use task::*;
use try_catch::*;

/// How a task, list or body ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Finished with an output; a task also says what comes next.
    Done(Value, Option<Then>),
    /// `then: end` somewhere below: the workflow ends with this output.
    Ended(Value),
    Failed(WorkflowError),
}

/// Either still running (with the state to keep) or finished.
pub(crate) enum Started<T> {
    Pending(T),
    Finished(Outcome),
}

/// What a suspended task can be resumed with.
#[derive(Debug)]
enum Ev {
    Timer(Token),
    Call(Token, CallResult),
    Event(Value),
}

/// Per-step context: the environment, the clock reading, the instance-wide mutable state and
/// the effects collected so far.
pub(crate) struct Cx<'e> {
    env: &'e Env<'e>,
    now: Timestamp,
    pub(crate) effects: Vec<Effect>,
    pub(crate) trace: Vec<TraceEvent>,
    context: Value,
    wf_input: Value,
    wf_started: Timestamp,
    next_token: u64,
    seed: u64,
    draws: u64,
}

impl<'e> Cx<'e> {
    pub(crate) fn new(env: &'e Env<'e>, now: Timestamp) -> Self {
        Self {
            env,
            now,
            effects: Vec::new(),
            trace: Vec::new(),
            context: Value::Null,
            wf_input: Value::Null,
            wf_started: now,
            next_token: 0,
            seed: 0,
            draws: 0,
        }
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    fn timer(&mut self, after: Duration) -> Token {
        let token = self.token();
        self.effects.push(Effect::StartTimer {
            token,
            due: self.now.plus(after),
        });
        token
    }

    /// A deterministic pseudo-random number (SplitMix64 over the instance seed).
    fn random(&mut self) -> u64 {
        self.draws += 1;
        let mut z = self
            .seed
            .wrapping_add(self.draws.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn trace(&mut self, task: &Task, kind: TraceKind) {
        if !self.env.trace {
            return;
        }
        self.trace.push(TraceEvent {
            at: self.now,
            task: task.reference.clone(),
            name: task.name.clone(),
            kind,
        });
    }

    fn vars<'a>(
        &'a self,
        task: Option<(&'a Task, Timestamp)>,
        input: &'a Value,
        output: Option<&'a Value>,
        scope: &'a [(String, Value)],
    ) -> Vars<'a> {
        Vars {
            env: self.env,
            now: self.now,
            context: &self.context,
            workflow_input: &self.wf_input,
            workflow_started: self.wf_started,
            task,
            input,
            output,
            scope,
        }
    }
}

fn expr_error(reference: &str, e: &ExprError) -> WorkflowError {
    WorkflowError::new(ErrorKind::Expression, reference, e.to_string())
}

fn validation_error(
    reference: &str,
    what: &str,
    violations: &[crate::model::Violation],
) -> WorkflowError {
    let list: Vec<String> = violations
        .iter()
        .map(|v| {
            format!(
                "{}: {}",
                if v.pointer.is_empty() {
                    "/"
                } else {
                    &v.pointer
                },
                v.message
            )
        })
        .collect();
    WorkflowError::new(
        ErrorKind::Validation,
        reference,
        format!("{what} is invalid: {}", list.join("; ")),
    )
}

/// Applies one input to an instance.
pub(crate) fn apply(cx: &mut Cx<'_>, inst: &mut Instance, input: Input) {
    cx.context = std::mem::take(&mut inst.context);
    cx.wf_input = std::mem::take(&mut inst.input);
    cx.wf_started = inst.started_at.unwrap_or(cx.now);
    cx.next_token = inst.next_token;
    cx.seed = inst.seed;
    cx.draws = inst.draws;
    let mut root = inst.root.take();

    let finished = match input {
        Input::Start { input, seed } if inst.status == Status::Pending => {
            inst.status = Status::Running;
            inst.started_at = Some(cx.now);
            cx.wf_started = cx.now;
            cx.seed = seed;
            cx.wf_input = input;
            cx.context = Value::Object(Default::default());
            start_workflow(cx, inst, &mut root)
        }
        _ if inst.status != Status::Running => None,
        Input::Start { .. } => None,
        Input::Cancel { reason } => {
            if let Some(l) = &root {
                cancel_list(cx, l);
            }
            root = None;
            if let Some(t) = inst.workflow_timeout.take() {
                cx.effects.push(Effect::CancelTimer { token: t });
            }
            inst.status = Status::Cancelled;
            cx.effects.push(Effect::Cancelled { reason });
            None
        }
        Input::TimerFired { token } if inst.workflow_timeout == Some(token) => {
            inst.workflow_timeout = None;
            if let Some(l) = root.take() {
                cancel_list(cx, &l);
            }
            Some(Outcome::Failed(WorkflowError::new(
                ErrorKind::Timeout,
                "/",
                "the workflow ran longer than its timeout",
            )))
        }
        other => {
            let ev = match other {
                Input::TimerFired { token } => Ev::Timer(token),
                Input::CallCompleted { token, result } => Ev::Call(token, result),
                Input::Event { event } => Ev::Event(event),
                Input::Start { .. } | Input::Cancel { .. } => unreachable!("handled above"),
            };
            match root.as_mut() {
                Some(l) => match resume_list(cx, l, &ev) {
                    Some(Some(o)) => {
                        root = None;
                        Some(o)
                    }
                    _ => None,
                },
                None => None,
            }
        }
    };
    if let Some(outcome) = finished {
        finish_workflow(cx, inst, outcome);
    }

    inst.root = root;
    inst.context = std::mem::take(&mut cx.context);
    inst.input = std::mem::take(&mut cx.wf_input);
    inst.next_token = cx.next_token;
    inst.seed = cx.seed;
    inst.draws = cx.draws;
}

fn start_workflow(
    cx: &mut Cx<'_>,
    inst: &mut Instance,
    root: &mut Option<ListFrame>,
) -> Option<Outcome> {
    let wf = cx.env.workflow;
    if let Some(schema) = &wf.input.schema
        && !cx.env.input_checked
    {
        let v = schema.violations(&cx.wf_input);
        if !v.is_empty() {
            return Some(Outcome::Failed(validation_error(
                "/input",
                "the workflow input",
                &v,
            )));
        }
    }
    let settled = wf.input.from.as_ref().is_some_and(Template::is_expr);
    let data = if !cx.env.keep_input && !wf.reads_raw_input {
        // Nobody asks for the raw input again, and nothing can read it: the data is the input
        // itself, or what `input.from` builds from it, moving what it keeps.
        let raw = std::mem::take(&mut cx.wf_input);
        match &wf.input.from {
            None => raw,
            Some(t) => {
                let vars = cx.vars(None, &Value::Null, None, &[]);
                match t.eval_owned(raw, false, &vars, &cx.env.budget) {
                    Ok(v) => v,
                    Err(e) => return Some(Outcome::Failed(expr_error("/input/from", &e))),
                }
            }
        }
    } else {
        // The raw input stays with the instance (`$workflow.input`), so the data is a copy,
        // or what `input.from` builds from the borrowed input.
        let raw = &cx.wf_input;
        match &wf.input.from {
            None => raw.clone(),
            Some(t) => match t.eval(raw, &cx.vars(None, raw, None, &[]), &cx.env.budget) {
                Ok(v) => v,
                Err(e) => return Some(Outcome::Failed(expr_error("/input/from", &e))),
            },
        }
    };
    if let Some(after) = wf.timeout {
        inst.workflow_timeout = Some(cx.timer(after));
    }
    match run_list(cx, wf.root, 0, data, settled, &[]) {
        Started::Pending(l) => {
            *root = Some(l);
            None
        }
        Started::Finished(o) => Some(o),
    }
}

fn finish_workflow(cx: &mut Cx<'_>, inst: &mut Instance, outcome: Outcome) {
    if let Some(t) = inst.workflow_timeout.take() {
        cx.effects.push(Effect::CancelTimer { token: t });
    }
    let result = match outcome {
        Outcome::Done(v, _) | Outcome::Ended(v) => {
            let cx: &Cx<'_> = cx;
            transform_out(
                cx,
                &cx.env.workflow.output,
                None,
                &cx.wf_input,
                &[],
                v,
                "/output",
            )
        }
        Outcome::Failed(e) => Err(e),
    };
    match result {
        Ok(output) => {
            inst.status = Status::Completed;
            inst.output = Some(output);
            cx.effects.push(Effect::Complete);
        }
        Err(error) => {
            inst.status = Status::Faulted;
            inst.error = Some(error.clone());
            cx.effects.push(Effect::Fault { error });
        }
    }
}

/// Applies `as` then checks `schema` of an `output` (or `export`) block.
fn transform_out(
    cx: &Cx<'_>,
    out: &DataOut,
    task: Option<(&Task, Timestamp)>,
    input: &Value,
    scope: &[(String, Value)],
    value: Value,
    path: &str,
) -> Result<Value, WorkflowError> {
    let value = match &out.as_ {
        None => value,
        Some(t) => t
            .eval(
                &value,
                &cx.vars(task, input, Some(&value), scope),
                &cx.env.budget,
            )
            .map_err(|e| expr_error(path, &e))?,
    };
    if let Some(schema) = &out.schema {
        let v = schema.violations(&value);
        if !v.is_empty() {
            return Err(validation_error(path, "the output", &v));
        }
    }
    Ok(value)
}
