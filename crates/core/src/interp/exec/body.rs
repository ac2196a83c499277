//! What each kind of task does when it starts and when what it waits for arrives.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn start_body(cx: &mut Cx<'_>, task: &Task, frame: &Frame) -> Started<Body> {
    let input = &frame.input;
    let scope = &frame.scope;
    let reference = &*task.reference;
    let at = Some((task, frame.started_at));
    let budget = &cx.env.budget;
    let finished = |r: Result<Value, WorkflowError>| match r {
        Ok(v) => Started::Finished(Outcome::Done(v, None)),
        Err(e) => Started::Finished(Outcome::Failed(e)),
    };
    match &task.kind {
        TaskKind::Do(list) => match run_list(cx, *list, 0, input.clone(), false, scope) {
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
            match super::super::call::build_request(
                call,
                input,
                &cx.vars(at, input, None, scope),
                budget,
            ) {
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
        TaskKind::CallOpenApi(call) => {
            match super::super::openapi::start(
                call,
                input,
                &cx.vars(at, input, None, scope),
                budget,
            ) {
                Ok((document, operation)) => {
                    let token = cx.token();
                    cx.effects.push(Effect::Call {
                        token,
                        task: reference.to_owned(),
                        request: CallRequest::Http(document),
                        idempotency_key: format!("{}:{}:{}", cx.env.instance_id, reference, token),
                    });
                    Started::Pending(Body::Describe {
                        token,
                        operation: Box::new(operation),
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

pub(super) fn resume_body(cx: &mut Cx<'_>, frame: &mut Frame, ev: &Ev) -> Option<Option<Outcome>> {
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
        Body::Describe { token, operation } => {
            let Ev::Call(x, result) = ev else { return None };
            if x != token {
                return None;
            }
            let built = match result {
                CallResult::Http(answer) => {
                    super::super::openapi::operation(answer, operation, &task.reference)
                }
                CallResult::Failed(e) => {
                    let mut e = e.clone();
                    if e.instance.is_none() {
                        e.instance = Some(task.reference.to_string());
                    }
                    Err(e)
                }
                CallResult::Value(_) => Err(WorkflowError::new(
                    ErrorKind::Runtime,
                    &task.reference,
                    "the OpenAPI document was not fetched over HTTP",
                )),
            };
            match built {
                Ok(request) => {
                    let token = cx.token();
                    cx.effects.push(Effect::Call {
                        token,
                        task: task.reference.to_string(),
                        request: CallRequest::Http(request.clone()),
                        idempotency_key: format!(
                            "{}:{}:{}",
                            cx.env.instance_id, task.reference, token
                        ),
                    });
                    frame.body = Body::Call {
                        token,
                        request: Some(Box::new(request)),
                    };
                    Some(None)
                }
                Err(e) => Some(Some(Outcome::Failed(e))),
            }
        }
        Body::Poll { timer, request } => match ev {
            Ev::Timer(x) if x == timer => {
                let token = cx.token();
                cx.effects.push(Effect::Call {
                    token,
                    task: task.reference.to_string(),
                    request: CallRequest::Http((**request).clone()),
                    idempotency_key: format!("{}:{}:{}", cx.env.instance_id, task.reference, token),
                });
                frame.body = Body::Call {
                    token,
                    request: Some(request.clone()),
                };
                Some(None)
            }
            _ => None,
        },
        Body::Call { token, request } => {
            let Ev::Call(x, result) = ev else { return None };
            if x != token {
                return None;
            }
            // The asynchronous pattern: a 202 to poll keeps the task waiting, on a timer.
            if let (Some(req), CallResult::Http(resp)) = (request.as_deref(), result)
                && let Some((poll, wait)) =
                    super::super::call::poll_of(req, resp, cx.env.poll_interval.0)
            {
                let timer = cx.timer(crate::Duration::from_millis(wait));
                frame.body = Body::Poll {
                    timer,
                    request: Box::new(poll),
                };
                return Some(None);
            }
            Some(Some(match result.clone() {
                CallResult::Value(v) => Outcome::Done(v, None),
                CallResult::Failed(mut e) => {
                    if e.instance.is_none() {
                        e.instance = Some(task.reference.to_string());
                    }
                    Outcome::Failed(e)
                }
                CallResult::Http(resp) => match request {
                    Some(req) => {
                        match super::super::call::shape_response(req, resp, &task.reference) {
                            Ok(v) => Outcome::Done(v, None),
                            Err(e) => Outcome::Failed(e),
                        }
                    }
                    None => Outcome::Done(resp.content, None),
                },
            }))
        }
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

pub(super) fn event_matches(filter: &Value, event: &Value) -> bool {
    match filter {
        Value::Object(f) => f.iter().all(|(k, want)| event.get(k) == Some(want)),
        _ => false,
    }
}
