//! `fork`: branches started together, joined in order, or raced with `compete`.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn start_fork(
    cx: &mut Cx<'_>,
    list: ListId,
    compete: bool,
    input: &Value,
    scope: &[(String, Value)],
) -> Started<Body> {
    let ids = cx.env.workflow.list(list).to_vec();
    let mut branches: Vec<Branch> = Vec::with_capacity(ids.len());
    for (i, tid) in ids.iter().enumerate() {
        match start_task(cx, *tid, Cow::Borrowed(input), false, scope.to_vec()) {
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

pub(super) fn fork_result(branches: Vec<Branch>) -> Started<Body> {
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

pub(super) fn cancel_branches(cx: &mut Cx<'_>, branches: &[Branch]) {
    for b in branches {
        if let Branch::Running(f) = b {
            cancel_frame(cx, f);
        }
    }
}

pub(super) fn resume_fork(
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
