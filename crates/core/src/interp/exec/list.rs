//! Running task lists: `do`, branches' bodies, `for` iterations and `catch.do`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Runs `list` from `index` with `data` as the next task's input; `settled` if that is an
/// expression's result (see [`start_task`]).
pub(super) fn run_list(
    cx: &mut Cx<'_>,
    list: ListId,
    mut index: usize,
    mut data: Value,
    mut settled: bool,
    scope: &[(String, Value)],
) -> Started<ListFrame> {
    let wf = cx.env.workflow;
    loop {
        let Some(&tid) = wf.list(list).get(index) else {
            return Started::Finished(Outcome::Done(data, None));
        };
        let task = wf.task(tid);
        let settled_in = settled;
        // The output is an expression's result if the task makes one and, should its `if`
        // skip it (passing its input on), if its input is one.
        settled = output_is_expr(task) && (settled_in || task.base.if_.is_none());
        match start_task(cx, tid, Cow::Owned(data), settled_in, scope.to_vec()) {
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
pub(super) fn next_in_list(
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

pub(super) fn resume_list(cx: &mut Cx<'_>, l: &mut ListFrame, ev: &Ev) -> Option<Option<Outcome>> {
    let o = resume_task(cx, &mut l.current, ev)?;
    let Some(o) = o else { return Some(None) };
    let scope = std::mem::take(&mut l.current.scope);
    Some(match next_in_list(cx, l.list, l.index, o) {
        Err(o) => Some(o),
        Ok((i, data)) => match run_list(cx, l.list, i, data, false, &scope) {
            Started::Pending(next) => {
                *l = next;
                None
            }
            Started::Finished(o) => Some(o),
        },
    })
}

pub(super) fn cancel_list(cx: &mut Cx<'_>, l: &ListFrame) {
    cancel_frame(cx, &l.current);
}
