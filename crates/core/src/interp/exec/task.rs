//! One task's life: `if`, input, timeout, body, output and export, cancellation.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Starts a task on `raw`, its input. A fork's branches share one input, so it may come
/// borrowed; it is copied only if the task keeps it. `settled`: the input is an expression's
/// result (see [`Expr::eval_owned`](crate::expr::Expr::eval_owned)).
pub(super) fn start_task(
    cx: &mut Cx<'_>,
    tid: TaskId,
    raw: Cow<'_, Value>,
    settled: bool,
    scope: Vec<(String, Value)>,
) -> Started<Frame> {
    let task = cx.env.workflow.task(tid);
    let base = &task.base;
    let reference = &*task.reference;
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
                return Started::Finished(Outcome::Done(raw.into_owned(), None));
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
    let settled = match &base.input.from {
        None => settled,
        Some(t) => t.is_expr(),
    };
    let input: Cow<'_, Value> = match &base.input.from {
        None => raw,
        Some(t) => match t.eval(
            &raw,
            &cx.vars(Some((task, started)), &raw, None, &scope),
            &cx.env.budget,
        ) {
            Ok(v) => Cow::Owned(v),
            Err(e) => return fail(cx, expr_error(reference, &e)),
        },
    };
    if let TaskKind::Set(t) = &task.kind
        && hands_input_to_set(task, t)
    {
        // Nothing but the `set` reads this input, so it can have it: an update such as
        // `.results += [...]` then changes the document in place instead of copying it, and a
        // borrowed input is never copied.
        let vars = cx.vars(Some((task, started)), &Value::Null, None, &scope);
        let out = match input {
            Cow::Owned(input) => t.eval_owned(input, settled, &vars, &cx.env.budget),
            Cow::Borrowed(input) => t.eval(input, &vars, &cx.env.budget),
        }
        .map_err(|e| expr_error(reference, &e));
        let frame = Frame {
            task: tid,
            input: Value::Null,
            started_at: started,
            scope,
            timeout: None,
            body: Body::Timer(Token(0)),
        };
        let o = match out {
            Ok(v) => Outcome::Done(v, None),
            Err(e) => Outcome::Failed(e),
        };
        return Started::Finished(finish_task(cx, &frame, o));
    }
    let timeout = base.timeout.map(|after| cx.timer(after));
    let mut frame = Frame {
        task: tid,
        input: input.into_owned(),
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

/// True if the task's output, when it runs, is an expression's result: a `set` of one whole
/// expression, or an `output.as` that is one. (Other outputs may hold values as they came,
/// from a document, a call or an event.)
pub(super) fn output_is_expr(task: &Task) -> bool {
    match &task.base.output.as_ {
        Some(t) => t.is_expr(),
        None => matches!(&task.kind, TaskKind::Set(t) if t.is_expr()),
    }
}

/// True if a `set` task's input is read by its body alone: no `$input` or `$task` (which
/// carries the input) in the body, and no `output.as` or `export.as`, which see `$input` too.
/// (A `set` finishes within its step, so its timeout can never fire.)
fn hands_input_to_set(task: &Task, set: &Template) -> bool {
    task.base.output.as_.is_none()
        && task.base.export.as_.is_none()
        && !set.mentions("$input")
        && !set.mentions("$task")
}

/// Completes a task whose body finished: output and export transformations, timeout timer.
pub(super) fn finish_task(cx: &mut Cx<'_>, frame: &Frame, o: Outcome) -> Outcome {
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
                e.instance = Some(task.reference.to_string());
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

pub(super) fn resume_task(cx: &mut Cx<'_>, frame: &mut Frame, ev: &Ev) -> Option<Option<Outcome>> {
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

pub(super) fn cancel_frame(cx: &mut Cx<'_>, frame: &Frame) {
    if let Some(t) = frame.timeout {
        cx.effects.push(Effect::CancelTimer { token: t });
    }
    cancel_body(cx, &frame.body);
    let task = cx.env.workflow.task(frame.task);
    cx.trace(task, TraceKind::Cancelled);
}

pub(super) fn cancel_body(cx: &mut Cx<'_>, body: &Body) {
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
        Body::Call { token, .. } | Body::Describe { token, .. } => {
            cx.effects.push(Effect::CancelCall { token: *token });
        }
        Body::Poll { timer, .. } => cx.effects.push(Effect::CancelTimer { token: *timer }),
        Body::Listen { token, .. } => cx.effects.push(Effect::Unsubscribe { token: *token }),
    }
}
