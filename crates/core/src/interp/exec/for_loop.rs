//! `for`: iterations over `in`, checked against `while`.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn run_iterations(
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
        match run_list(cx, f.body, 0, data, false, &inner) {
            Started::Pending(list) => return Started::Pending(Body::For { items, index, list }),
            Started::Finished(Outcome::Done(v, _)) => {
                data = v;
                index += 1;
            }
            Started::Finished(o) => return Started::Finished(o),
        }
    }
}
