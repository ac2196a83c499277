//! `try`/`catch`: filters, retries with backoff and jitter, `catch.do`.

#[allow(clippy::wildcard_imports)]
use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn start_attempt(
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
    match run_list(cx, body, 0, input.clone(), false, scope) {
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
pub(super) fn on_error(
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
    // `when` must hold and `exceptWhen` must not; an error while testing them faults the task.
    let holds = |cx: &Cx<'_>, when, except_when| -> Result<bool, WorkflowError> {
        Ok(test(cx, when, true)? && !test(cx, except_when, false)?)
    };
    if !filter_matches(&catch.filter, &error) {
        return Started::Finished(Outcome::Failed(error));
    }
    match holds(cx, &catch.when, &catch.except_when) {
        Ok(true) => {}
        Ok(false) => return Started::Finished(Outcome::Failed(error)),
        Err(e) => return Started::Finished(Outcome::Failed(e)),
    }
    if let Some(policy) = &catch.retry {
        let wanted = match holds(cx, &policy.when, &policy.except_when) {
            Ok(w) => w,
            Err(e) => return Started::Finished(Outcome::Failed(e)),
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
        Some(list) => match run_list(cx, list, 0, input.clone(), false, &inner) {
            Started::Pending(list) => Started::Pending(Body::Try(TryFrame::Catching { list })),
            Started::Finished(o) => Started::Finished(o),
        },
    }
}

pub(super) fn resume_try(
    cx: &mut Cx<'_>,
    task: &Task,
    frame: &mut Frame,
    ev: &Ev,
) -> Option<Option<Outcome>> {
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
            let timed_out = matches!(ev, Ev::Timer(t) if Some(*t) == *attempt_timer);
            if !timed_out {
                return resume_attempt(cx, task, frame, ev);
            }
            let (attempt, first_started) = (*attempt, *first_started);
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

pub(super) fn resume_attempt(
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
