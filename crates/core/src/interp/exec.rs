//! Running tasks: starting them, resuming them when what they wait for arrives, cancelling them.

use serde_json::{Value, json};

use crate::error::{ErrorKind, WorkflowError, same_type};
use crate::expr::ExprError;
use crate::model::{Backoff, Catch, DataOut, ListId, RetryPolicy, Task, TaskId, TaskKind, Then};
use crate::time::{Duration, Timestamp};

use super::frames::{Body, Branch, Frame, ListFrame, TryFrame};
use super::vars::Vars;
use super::{
    CallRequest, CallResult, Effect, Env, Input, Instance, Status, Token, TraceEvent, TraceKind,
};

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
    let raw = cx.wf_input.clone();
    if let Some(schema) = &wf.input.schema {
        let v = schema.violations(&raw);
        if !v.is_empty() {
            return Some(Outcome::Failed(validation_error(
                "/input",
                "the workflow input",
                &v,
            )));
        }
    }
    let data = match &wf.input.from {
        None => raw,
        Some(t) => match t.eval(&raw, &cx.vars(None, &raw, None, &[]), &cx.env.budget) {
            Ok(v) => v,
            Err(e) => return Some(Outcome::Failed(expr_error("/input/from", &e))),
        },
    };
    if let Some(after) = wf.timeout {
        inst.workflow_timeout = Some(cx.timer(after));
    }
    match run_list(cx, wf.root, 0, data, &[]) {
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
            let wf = cx.env.workflow;
            let input = cx.wf_input.clone();
            transform_out(cx, &wf.output, None, &input, &[], v, "/output")
        }
        Outcome::Failed(e) => Err(e),
    };
    match result {
        Ok(output) => {
            inst.status = Status::Completed;
            inst.output = Some(output.clone());
            cx.effects.push(Effect::Complete { output });
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

// ---------------------------------------------------------------- lists

/// Runs `list` from `index` with `data` as the next task's input.
fn run_list(
    cx: &mut Cx<'_>,
    list: ListId,
    mut index: usize,
    mut data: Value,
    scope: &[(String, Value)],
) -> Started<ListFrame> {
    let wf = cx.env.workflow;
    loop {
        let Some(&tid) = wf.list(list).get(index) else {
            return Started::Finished(Outcome::Done(data, None));
        };
        match start_task(cx, tid, data, scope.to_vec()) {
            Started::Pending(frame) => {
                return Started::Pending(ListFrame {
                    list,
                    index,
                    current: Box::new(frame),
                });
            }
            Started::Finished(o) => match next_in_list(cx, list, index, o) {
                Ok((i, d)) => (index, data) = (i, d),
                Err(o) => return Started::Finished(o),
            },
        }
    }
}

/// Where a list goes after its task at `index` finished: `Ok` to continue at a position with
/// the given input, `Err` when the list itself is finished.
fn next_in_list(
    cx: &Cx<'_>,
    list: ListId,
    index: usize,
    o: Outcome,
) -> Result<(usize, Value), Outcome> {
    match o {
        Outcome::Done(v, then) => match then.unwrap_or_default() {
            Then::Continue => Ok((index + 1, v)),
            Then::Exit => Err(Outcome::Done(v, None)),
            Then::End => Err(Outcome::Ended(v)),
            Then::Goto(name) => match cx.env.workflow.position(list, &name) {
                Some(i) => Ok((i, v)),
                None => Err(Outcome::Failed(WorkflowError::new(
                    ErrorKind::Runtime,
                    "/",
                    format!("`then: {name}` names no task of the list"),
                ))),
            },
        },
        other => Err(other),
    }
}

fn resume_list(cx: &mut Cx<'_>, l: &mut ListFrame, ev: &Ev) -> Option<Option<Outcome>> {
    let o = resume_task(cx, &mut l.current, ev)?;
    let Some(o) = o else { return Some(None) };
    let scope = std::mem::take(&mut l.current.scope);
    Some(match next_in_list(cx, l.list, l.index, o) {
        Err(o) => Some(o),
        Ok((i, data)) => match run_list(cx, l.list, i, data, &scope) {
            Started::Pending(next) => {
                *l = next;
                None
            }
            Started::Finished(o) => Some(o),
        },
    })
}

fn cancel_list(cx: &mut Cx<'_>, l: &ListFrame) {
    cancel_frame(cx, &l.current);
}

// ---------------------------------------------------------------- tasks

fn start_task(
    cx: &mut Cx<'_>,
    tid: TaskId,
    raw: Value,
    scope: Vec<(String, Value)>,
) -> Started<Frame> {
    let task = cx.env.workflow.task(tid);
    let base = &task.base;
    let reference = task.reference.as_str();
    let started = cx.now;
    if let Some(cond) = &base.if_ {
        let run = cond.eval_bool(
            &raw,
            &cx.vars(Some((task, started)), &raw, None, &scope),
            &cx.env.budget,
        );
        match run {
            Ok(true) => {}
            Ok(false) => {
                cx.trace(task, TraceKind::Skipped);
                return Started::Finished(Outcome::Done(raw, None));
            }
            Err(e) => return Started::Finished(Outcome::Failed(expr_error(reference, &e))),
        }
    }
    cx.trace(task, TraceKind::Started);
    let fail = |cx: &mut Cx<'_>, e: WorkflowError| {
        cx.trace(task, TraceKind::Faulted);
        Started::Finished(Outcome::Failed(e))
    };
    if let Some(schema) = &base.input.schema {
        let v = schema.violations(&raw);
        if !v.is_empty() {
            return fail(cx, validation_error(reference, "the task input", &v));
        }
    }
    let input = match &base.input.from {
        None => raw,
        Some(t) => match t.eval(
            &raw,
            &cx.vars(Some((task, started)), &raw, None, &scope),
            &cx.env.budget,
        ) {
            Ok(v) => v,
            Err(e) => return fail(cx, expr_error(reference, &e)),
        },
    };
    let timeout = base.timeout.map(|after| cx.timer(after));
    let mut frame = Frame {
        task: tid,
        input,
        started_at: started,
        scope,
        timeout,
        body: Body::Timer(Token(0)),
    };
    match start_body(cx, task, &frame) {
        Started::Pending(body) => {
            frame.body = body;
            Started::Pending(frame)
        }
        Started::Finished(o) => Started::Finished(finish_task(cx, &frame, o)),
    }
}

/// Completes a task whose body finished: output and export transformations, timeout timer.
fn finish_task(cx: &mut Cx<'_>, frame: &Frame, o: Outcome) -> Outcome {
    let task = cx.env.workflow.task(frame.task);
    if let Some(t) = frame.timeout {
        cx.effects.push(Effect::CancelTimer { token: t });
    }
    let (raw, then) = match o {
        Outcome::Done(v, then) => (v, then),
        Outcome::Ended(v) => {
            cx.trace(task, TraceKind::Completed);
            return Outcome::Ended(v);
        }
        Outcome::Failed(mut e) => {
            if e.instance.is_none() {
                e.instance = Some(task.reference.clone());
            }
            cx.trace(task, TraceKind::Faulted);
            return Outcome::Failed(e);
        }
    };
    let at = Some((task, frame.started_at));
    let result = transform_out(
        cx,
        &task.base.output,
        at,
        &frame.input,
        &frame.scope,
        raw,
        &task.reference,
    )
    .and_then(|out| {
        if task.base.export.as_.is_none() && task.base.export.schema.is_none() {
            return Ok(out);
        }
        let ctx = transform_out(
            cx,
            &task.base.export,
            at,
            &frame.input,
            &frame.scope,
            out.clone(),
            &task.reference,
        )?;
        cx.context = ctx;
        Ok(out)
    });
    match result {
        Ok(out) => {
            cx.trace(task, TraceKind::Completed);
            Outcome::Done(out, Some(then.unwrap_or_else(|| task.base.then.clone())))
        }
        Err(e) => {
            cx.trace(task, TraceKind::Faulted);
            Outcome::Failed(e)
        }
    }
}

fn resume_task(cx: &mut Cx<'_>, frame: &mut Frame, ev: &Ev) -> Option<Option<Outcome>> {
    if let Ev::Timer(t) = ev
        && frame.timeout == Some(*t)
    {
        frame.timeout = None;
        cancel_body(cx, &frame.body);
        let task = cx.env.workflow.task(frame.task);
        let after = task.base.timeout.unwrap_or_default();
        let e = WorkflowError::new(
            ErrorKind::Timeout,
            &task.reference,
            format!(
                "`{}` did not finish within {}",
                task.name,
                after.to_iso8601()
            ),
        );
        return Some(Some(finish_task(cx, frame, Outcome::Failed(e))));
    }
    let o = resume_body(cx, frame, ev)?;
    Some(o.map(|o| finish_task(cx, frame, o)))
}

fn cancel_frame(cx: &mut Cx<'_>, frame: &Frame) {
    if let Some(t) = frame.timeout {
        cx.effects.push(Effect::CancelTimer { token: t });
    }
    cancel_body(cx, &frame.body);
    let task = cx.env.workflow.task(frame.task);
    cx.trace(task, TraceKind::Cancelled);
}

fn cancel_body(cx: &mut Cx<'_>, body: &Body) {
    match body {
        Body::List(l) | Body::For { list: l, .. } => cancel_list(cx, l),
        Body::Fork { branches } => {
            for b in branches {
                if let Branch::Running(f) = b {
                    cancel_frame(cx, f);
                }
            }
        }
        Body::Try(t) => match t {
            TryFrame::Trying {
                list,
                attempt_timer,
                ..
            } => {
                if let Some(t) = attempt_timer {
                    cx.effects.push(Effect::CancelTimer { token: *t });
                }
                cancel_list(cx, list);
            }
            TryFrame::Backoff { timer, .. } => {
                cx.effects.push(Effect::CancelTimer { token: *timer })
            }
            TryFrame::Catching { list } => cancel_list(cx, list),
        },
        Body::Timer(t) => cx.effects.push(Effect::CancelTimer { token: *t }),
        Body::Call { token, .. } => cx.effects.push(Effect::CancelCall { token: *token }),
        Body::Listen { token, .. } => cx.effects.push(Effect::Unsubscribe { token: *token }),
    }
}

// ---------------------------------------------------------------- bodies

fn start_body(cx: &mut Cx<'_>, task: &Task, frame: &Frame) -> Started<Body> {
    let input = &frame.input;
    let scope = &frame.scope;
    let reference = task.reference.as_str();
    let at = Some((task, frame.started_at));
    let budget = &cx.env.budget;
    let finished = |r: Result<Value, WorkflowError>| match r {
        Ok(v) => Started::Finished(Outcome::Done(v, None)),
        Err(e) => Started::Finished(Outcome::Failed(e)),
    };
    match &task.kind {
        TaskKind::Do(list) => match run_list(cx, *list, 0, input.clone(), scope) {
            Started::Pending(l) => Started::Pending(Body::List(l)),
            Started::Finished(o) => Started::Finished(o),
        },
        TaskKind::Set(t) => finished(
            t.eval(input, &cx.vars(at, input, None, scope), budget)
                .map_err(|e| expr_error(reference, &e)),
        ),
        TaskKind::Switch(cases) => {
            for case in cases {
                let hit = match &case.when {
                    None => Ok(true),
                    Some(w) => w.eval_bool(input, &cx.vars(at, input, None, scope), budget),
                };
                match hit {
                    Ok(true) => {
                        return Started::Finished(Outcome::Done(
                            input.clone(),
                            Some(case.then.clone()),
                        ));
                    }
                    Ok(false) => {}
                    Err(e) => return Started::Finished(Outcome::Failed(expr_error(reference, &e))),
                }
            }
            Started::Finished(Outcome::Done(input.clone(), None))
        }
        TaskKind::For(f) => {
            let items = match f.in_.eval(input, &cx.vars(at, input, None, scope), budget) {
                Ok(Value::Array(a)) => a,
                Ok(Value::Null) => Vec::new(),
                Ok(other) => {
                    return Started::Finished(Outcome::Failed(WorkflowError::new(
                        ErrorKind::Expression,
                        reference,
                        format!(
                            "`for.in` must produce an array, it produced {}",
                            crate::expr::type_name(&other)
                        ),
                    )));
                }
                Err(e) => return Started::Finished(Outcome::Failed(expr_error(reference, &e))),
            };
            run_iterations(cx, task, scope, items, 0, input.clone())
        }
        TaskKind::Fork { branches, compete } => start_fork(cx, *branches, *compete, input, scope),
        TaskKind::Try { body, catch } => {
            start_attempt(cx, task, input, scope, *body, catch, 0, cx.now)
        }
        TaskKind::Wait(d) => Started::Pending(Body::Timer(cx.timer(*d))),
        TaskKind::Raise(t) => {
            let vars = cx.vars(at, input, None, scope);
            let ev = |t: &crate::expr::Template| t.eval(input, &vars, budget);
            let build = || -> Result<WorkflowError, ExprError> {
                let text = |v: Value| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                Ok(WorkflowError {
                    type_: text(ev(&t.type_)?),
                    status: ev(&t.status)?
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(500),
                    instance: Some(match &t.instance {
                        Some(i) => text(ev(i)?),
                        None => reference.to_owned(),
                    }),
                    title: t.title.as_ref().map(&ev).transpose()?.map(text),
                    detail: t.detail.as_ref().map(&ev).transpose()?.map(text),
                })
            };
            match build() {
                Ok(e) => Started::Finished(Outcome::Failed(e)),
                Err(e) => Started::Finished(Outcome::Failed(expr_error(reference, &e))),
            }
        }
        TaskKind::CallHttp(call) => {
            match super::call::build_request(call, input, &cx.vars(at, input, None, scope), budget)
            {
                Ok(req) => {
                    let token = cx.token();
                    cx.effects.push(Effect::Call {
                        token,
                        task: reference.to_owned(),
                        request: CallRequest::Http(req.clone()),
                        idempotency_key: format!("{}:{}:{}", cx.env.instance_id, reference, token),
                    });
                    Started::Pending(Body::Call {
                        token,
                        request: Some(Box::new(req)),
                    })
                }
                Err(e) => Started::Finished(Outcome::Failed(expr_error(reference, &e))),
            }
        }
        TaskKind::CallFunction { function, args } => {
            match args.eval(input, &cx.vars(at, input, None, scope), budget) {
                Ok(args) => {
                    let token = cx.token();
                    cx.effects.push(Effect::Call {
                        token,
                        task: reference.to_owned(),
                        request: CallRequest::Function {
                            name: function.clone(),
                            args,
                        },
                        idempotency_key: format!("{}:{}:{}", cx.env.instance_id, reference, token),
                    });
                    Started::Pending(Body::Call {
                        token,
                        request: None,
                    })
                }
                Err(e) => Started::Finished(Outcome::Failed(expr_error(reference, &e))),
            }
        }
        TaskKind::Emit(t) => match t.with.eval(input, &cx.vars(at, input, None, scope), budget) {
            Ok(Value::Object(mut ev)) => {
                if !ev.contains_key("id") {
                    let id = format!("{:016x}{:016x}", cx.random(), cx.random());
                    ev.insert("id".into(), Value::String(id));
                }
                ev.entry("specversion").or_insert_with(|| json!("1.0"));
                ev.entry("time")
                    .or_insert_with(|| Value::String(cx.now.to_rfc3339()));
                let event = Value::Object(ev);
                cx.effects.push(Effect::Emit {
                    event: event.clone(),
                });
                Started::Finished(Outcome::Done(event, None))
            }
            Ok(_) => Started::Finished(Outcome::Failed(WorkflowError::new(
                ErrorKind::Expression,
                reference,
                "`emit.event.with` must produce an object",
            ))),
            Err(e) => Started::Finished(Outcome::Failed(expr_error(reference, &e))),
        },
        TaskKind::Listen(spec) => {
            use crate::model::ListenStrategy;
            let (templates, all) = match &spec.strategy {
                ListenStrategy::All(f) => (f.iter().collect::<Vec<_>>(), true),
                ListenStrategy::Any(f) => (f.iter().collect(), false),
                ListenStrategy::One(f) => (vec![f], true),
            };
            let vars = cx.vars(at, input, None, scope);
            let filters: Result<Vec<Value>, ExprError> = templates
                .iter()
                .map(|t| t.eval(input, &vars, budget))
                .collect();
            match filters {
                Ok(filters) => {
                    let token = cx.token();
                    cx.effects.push(Effect::Subscribe { token });
                    let matched = vec![None; filters.len()];
                    Started::Pending(Body::Listen {
                        token,
                        filters,
                        matched,
                        all,
                    })
                }
                Err(e) => Started::Finished(Outcome::Failed(expr_error(reference, &e))),
            }
        }
    }
}

fn resume_body(cx: &mut Cx<'_>, frame: &mut Frame, ev: &Ev) -> Option<Option<Outcome>> {
    let task = cx.env.workflow.task(frame.task);
    match &mut frame.body {
        Body::List(l) => resume_list(cx, l, ev),
        Body::For { items, index, list } => {
            let o = resume_list(cx, list, ev)?;
            match o {
                None => Some(None),
                Some(Outcome::Done(v, _)) => {
                    let items = std::mem::take(items);
                    let next = *index + 1;
                    match run_iterations(cx, task, &frame.scope, items, next, v) {
                        Started::Pending(b) => {
                            frame.body = b;
                            Some(None)
                        }
                        Started::Finished(o) => Some(Some(o)),
                    }
                }
                Some(o) => Some(Some(o)),
            }
        }
        Body::Fork { branches } => {
            let TaskKind::Fork { compete, .. } = &task.kind else {
                return None;
            };
            resume_fork(cx, branches, *compete, ev)
        }
        Body::Try(_) => resume_try(cx, task, frame, ev),
        Body::Timer(t) => match ev {
            Ev::Timer(x) if x == t => Some(Some(Outcome::Done(frame.input.clone(), None))),
            _ => None,
        },
        Body::Call { token, request } => match ev {
            Ev::Call(x, result) if x == token => Some(Some(match result.clone() {
                CallResult::Value(v) => Outcome::Done(v, None),
                CallResult::Failed(mut e) => {
                    if e.instance.is_none() {
                        e.instance = Some(task.reference.clone());
                    }
                    Outcome::Failed(e)
                }
                CallResult::Http(resp) => match request {
                    Some(req) => match super::call::shape_response(req, resp, &task.reference) {
                        Ok(v) => Outcome::Done(v, None),
                        Err(e) => Outcome::Failed(e),
                    },
                    None => Outcome::Done(resp.content, None),
                },
            })),
            _ => None,
        },
        Body::Listen {
            token,
            filters,
            matched,
            all,
        } => {
            let Ev::Event(event) = ev else { return None };
            let slot = filters
                .iter()
                .enumerate()
                .find(|(i, f)| matched[*i].is_none() && event_matches(f, event))
                .map(|(i, _)| i)?;
            matched[slot] = Some(event.get("data").cloned().unwrap_or(Value::Null));
            let complete = !*all || matched.iter().all(Option::is_some);
            if !complete {
                return Some(None);
            }
            cx.effects.push(Effect::Unsubscribe { token: *token });
            let out: Vec<Value> = matched.iter_mut().filter_map(Option::take).collect();
            Some(Some(Outcome::Done(Value::Array(out), None)))
        }
    }
}

fn event_matches(filter: &Value, event: &Value) -> bool {
    match filter {
        Value::Object(f) => f.iter().all(|(k, want)| event.get(k) == Some(want)),
        _ => false,
    }
}

// ---------------------------------------------------------------- for

fn run_iterations(
    cx: &mut Cx<'_>,
    task: &Task,
    scope: &[(String, Value)],
    items: Vec<Value>,
    mut index: usize,
    mut data: Value,
) -> Started<Body> {
    let TaskKind::For(f) = &task.kind else {
        return Started::Finished(Outcome::Done(data, None));
    };
    loop {
        let Some(item) = items.get(index) else {
            return Started::Finished(Outcome::Done(data, None));
        };
        let mut inner = scope.to_vec();
        inner.push((format!("${}", f.each), item.clone()));
        inner.push((format!("${}", f.at), json!(index)));
        if let Some(w) = &f.while_ {
            match w.eval_bool(
                &data,
                &cx.vars(Some((task, cx.now)), &data, None, &inner),
                &cx.env.budget,
            ) {
                Ok(true) => {}
                Ok(false) => return Started::Finished(Outcome::Done(data, None)),
                Err(e) => {
                    return Started::Finished(Outcome::Failed(expr_error(&task.reference, &e)));
                }
            }
        }
        match run_list(cx, f.body, 0, data, &inner) {
            Started::Pending(list) => return Started::Pending(Body::For { items, index, list }),
            Started::Finished(Outcome::Done(v, _)) => {
                data = v;
                index += 1;
            }
            Started::Finished(o) => return Started::Finished(o),
        }
    }
}

// ---------------------------------------------------------------- fork

fn start_fork(
    cx: &mut Cx<'_>,
    list: ListId,
    compete: bool,
    input: &Value,
    scope: &[(String, Value)],
) -> Started<Body> {
    let ids = cx.env.workflow.list(list).to_vec();
    let mut branches: Vec<Branch> = Vec::with_capacity(ids.len());
    for (i, tid) in ids.iter().enumerate() {
        match start_task(cx, *tid, input.clone(), scope.to_vec()) {
            Started::Pending(f) => branches.push(Branch::Running(Box::new(f))),
            Started::Finished(Outcome::Done(v, _)) if compete => {
                cancel_branches(cx, &branches);
                let _ = i;
                return Started::Finished(Outcome::Done(v, None));
            }
            Started::Finished(Outcome::Done(v, _)) => branches.push(Branch::Done(v)),
            Started::Finished(o) => {
                cancel_branches(cx, &branches);
                return Started::Finished(o);
            }
        }
    }
    fork_result(branches)
}

fn fork_result(branches: Vec<Branch>) -> Started<Body> {
    if branches.iter().all(|b| matches!(b, Branch::Done(_))) {
        let out = branches
            .into_iter()
            .filter_map(|b| match b {
                Branch::Done(v) => Some(v),
                _ => None,
            })
            .collect();
        Started::Finished(Outcome::Done(Value::Array(out), None))
    } else {
        Started::Pending(Body::Fork { branches })
    }
}

fn cancel_branches(cx: &mut Cx<'_>, branches: &[Branch]) {
    for b in branches {
        if let Branch::Running(f) = b {
            cancel_frame(cx, f);
        }
    }
}

fn resume_fork(
    cx: &mut Cx<'_>,
    branches: &mut Vec<Branch>,
    compete: bool,
    ev: &Ev,
) -> Option<Option<Outcome>> {
    let mut hit = None;
    for (i, b) in branches.iter_mut().enumerate() {
        if let Branch::Running(f) = b
            && let Some(r) = resume_task(cx, f, ev)
        {
            hit = Some((i, r));
            break;
        }
    }
    let (i, r) = hit?;
    let Some(o) = r else { return Some(None) };
    match o {
        Outcome::Done(v, _) if compete => {
            branches[i] = Branch::Done(Value::Null);
            cancel_branches(cx, branches);
            Some(Some(Outcome::Done(v, None)))
        }
        Outcome::Done(v, _) => {
            branches[i] = Branch::Done(v);
            match fork_result(std::mem::take(branches)) {
                Started::Pending(Body::Fork { branches: b }) => {
                    *branches = b;
                    Some(None)
                }
                Started::Pending(_) => Some(None),
                Started::Finished(o) => Some(Some(o)),
            }
        }
        other => {
            branches[i] = Branch::Skipped;
            cancel_branches(cx, branches);
            Some(Some(other))
        }
    }
}

// ---------------------------------------------------------------- try / catch / retry

#[allow(clippy::too_many_arguments)]
fn start_attempt(
    cx: &mut Cx<'_>,
    task: &Task,
    input: &Value,
    scope: &[(String, Value)],
    body: ListId,
    catch: &Catch,
    attempt: u32,
    first_started: Timestamp,
) -> Started<Body> {
    let attempt_timer = catch
        .retry
        .as_ref()
        .and_then(|r| r.attempt_timeout)
        .map(|d| cx.timer(d));
    match run_list(cx, body, 0, input.clone(), scope) {
        Started::Pending(list) => Started::Pending(Body::Try(TryFrame::Trying {
            attempt,
            first_started,
            list,
            attempt_timer,
        })),
        Started::Finished(o) => {
            if let Some(t) = attempt_timer {
                cx.effects.push(Effect::CancelTimer { token: t });
            }
            match o {
                Outcome::Failed(e) => {
                    on_error(cx, task, input, scope, catch, e, attempt, first_started)
                }
                other => Started::Finished(other),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn on_error(
    cx: &mut Cx<'_>,
    task: &Task,
    input: &Value,
    scope: &[(String, Value)],
    catch: &Catch,
    error: WorkflowError,
    attempt: u32,
    first_started: Timestamp,
) -> Started<Body> {
    let mut inner = scope.to_vec();
    inner.push((format!("${}", catch.as_), error.to_value()));
    let at = Some((task, first_started));
    let budget = &cx.env.budget;
    let test = |cx: &Cx<'_>,
                e: &Option<crate::expr::Expr>,
                default: bool|
     -> Result<bool, WorkflowError> {
        match e {
            None => Ok(default),
            Some(e) => e
                .eval_bool(input, &cx.vars(at, input, None, &inner), budget)
                .map_err(|x| expr_error(&task.reference, &x)),
        }
    };
    let caught = filter_matches(&catch.filter, &error)
        && match (
            test(cx, &catch.when, true),
            test(cx, &catch.except_when, false),
        ) {
            (Ok(w), Ok(x)) => w && !x,
            (Err(e), _) | (_, Err(e)) => return Started::Finished(Outcome::Failed(e)),
        };
    if !caught {
        return Started::Finished(Outcome::Failed(error));
    }
    if let Some(policy) = &catch.retry {
        let wanted = match (
            test(cx, &policy.when, true),
            test(cx, &policy.except_when, false),
        ) {
            (Ok(w), Ok(x)) => w && !x,
            (Err(e), _) | (_, Err(e)) => return Started::Finished(Outcome::Failed(e)),
        };
        if wanted {
            let jitter = cx.random();
            if let Some(delay) =
                retry_delay(policy, attempt + 1, cx.now.since(first_started), jitter)
            {
                let timer = cx.timer(delay);
                return Started::Pending(Body::Try(TryFrame::Backoff {
                    attempt: attempt + 1,
                    first_started,
                    timer,
                }));
            }
        }
    }
    match catch.body {
        None => Started::Finished(Outcome::Done(input.clone(), None)),
        Some(list) => match run_list(cx, list, 0, input.clone(), &inner) {
            Started::Pending(list) => Started::Pending(Body::Try(TryFrame::Catching { list })),
            Started::Finished(o) => Started::Finished(o),
        },
    }
}

fn resume_try(cx: &mut Cx<'_>, task: &Task, frame: &mut Frame, ev: &Ev) -> Option<Option<Outcome>> {
    let TaskKind::Try { body, catch } = &task.kind else {
        return None;
    };
    let Body::Try(state) = &mut frame.body else {
        return None;
    };
    let next = match state {
        TryFrame::Trying {
            attempt,
            first_started,
            list,
            attempt_timer,
        } => {
            let (attempt, first_started) = (*attempt, *first_started);
            if let (Ev::Timer(t), Some(at)) = (ev, *attempt_timer) {
                if *t == at {
                    cancel_list(cx, list);
                    let e = WorkflowError::new(
                        ErrorKind::Timeout,
                        &task.reference,
                        format!(
                            "attempt {} of `{}` exceeded `limit.attempt.duration`",
                            attempt + 1,
                            task.name
                        ),
                    );
                    on_error(
                        cx,
                        task,
                        &frame.input,
                        &frame.scope,
                        catch,
                        e,
                        attempt,
                        first_started,
                    )
                } else {
                    return resume_attempt(cx, task, frame, ev);
                }
            } else {
                return resume_attempt(cx, task, frame, ev);
            }
        }
        TryFrame::Backoff {
            attempt,
            first_started,
            timer,
        } => match ev {
            Ev::Timer(t) if t == timer => {
                let (attempt, first_started) = (*attempt, *first_started);
                start_attempt(
                    cx,
                    task,
                    &frame.input,
                    &frame.scope,
                    *body,
                    catch,
                    attempt,
                    first_started,
                )
            }
            _ => return None,
        },
        TryFrame::Catching { list } => return resume_list(cx, list, ev),
    };
    Some(match next {
        Started::Pending(b) => {
            frame.body = b;
            None
        }
        Started::Finished(o) => Some(o),
    })
}

fn resume_attempt(
    cx: &mut Cx<'_>,
    task: &Task,
    frame: &mut Frame,
    ev: &Ev,
) -> Option<Option<Outcome>> {
    let TaskKind::Try { catch, .. } = &task.kind else {
        return None;
    };
    let Body::Try(TryFrame::Trying {
        attempt,
        first_started,
        list,
        attempt_timer,
    }) = &mut frame.body
    else {
        return None;
    };
    let o = resume_list(cx, list, ev)?;
    let Some(o) = o else { return Some(None) };
    if let Some(t) = attempt_timer.take() {
        cx.effects.push(Effect::CancelTimer { token: t });
    }
    let (attempt, first_started) = (*attempt, *first_started);
    match o {
        Outcome::Failed(e) => match on_error(
            cx,
            task,
            &frame.input,
            &frame.scope,
            catch,
            e,
            attempt,
            first_started,
        ) {
            Started::Pending(b) => {
                frame.body = b;
                Some(None)
            }
            Started::Finished(o) => Some(Some(o)),
        },
        other => Some(Some(other)),
    }
}

/// Whether an error passes `catch.errors.with`.
pub(crate) fn filter_matches(f: &crate::model::ErrorFilter, e: &WorkflowError) -> bool {
    f.type_.as_deref().is_none_or(|t| same_type(t, &e.type_))
        && f.status.is_none_or(|s| s == e.status)
        && f.instance
            .as_deref()
            .is_none_or(|i| e.instance.as_deref() == Some(i))
        && f.title
            .as_deref()
            .is_none_or(|t| e.title.as_deref() == Some(t))
        && f.detail
            .as_deref()
            .is_none_or(|d| e.detail.as_deref() == Some(d))
}

/// The delay before retry number `retry` (1-based), or `None` when the policy says stop.
///
/// `elapsed` is the time since the first attempt started; `random` is a uniformly distributed
/// number that picks the jitter.
pub fn retry_delay(
    policy: &RetryPolicy,
    retry: u32,
    elapsed: Duration,
    random: u64,
) -> Option<Duration> {
    if policy.max_retries.is_some_and(|max| retry > max) {
        return None;
    }
    let base = policy.delay.as_millis();
    let mut ms = match policy.backoff {
        Backoff::Constant => base,
        Backoff::Linear => base.saturating_mul(u64::from(retry)),
        Backoff::Exponential => base.saturating_mul(
            1u64.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u64::MAX),
        ),
    };
    if let Some((from, to)) = policy.jitter {
        let span = to.as_millis() - from.as_millis();
        let extra = if span == 0 { 0 } else { random % (span + 1) };
        ms = ms.saturating_add(from.as_millis() + extra);
    }
    let delay = Duration::from_millis(ms);
    if policy
        .total
        .is_some_and(|total| elapsed.as_millis().saturating_add(ms) > total.as_millis())
    {
        return None;
    }
    Some(delay)
}
