use serde_json::{Value, json};

use super::*;
use crate::{Format, NoResolver, load_str};

const HEAD: &str = "document: {dsl: '1.0.0', namespace: test, name: t, version: '1.0.0'}\n";

fn wf(body: &str) -> Workflow {
    load_str(&format!("{HEAD}{body}"), Format::Yaml, &NoResolver).expect("loads")
}

/// Drives an instance to the end, firing timers in due order and answering calls with `answer`.
fn drive(
    w: &Workflow,
    input: Value,
    answer: impl Fn(&CallRequest, u32) -> CallResult,
) -> (Instance, Vec<TraceEvent>, Timestamp, u32) {
    let env = Env::new(w, "test-instance");
    let mut inst = Instance::default();
    let mut now = Timestamp(1_000_000);
    let (mut effects, mut trace) = inst.apply(&env, Input::Start { input, seed: 42 }, now);
    let mut timers: Vec<(Timestamp, Token)> = Vec::new();
    let mut calls = 0u32;
    for _ in 0..10_000 {
        let mut queue = Vec::new();
        for e in effects.drain(..) {
            match e {
                Effect::StartTimer { token, due } => timers.push((due, token)),
                Effect::CancelTimer { token } => timers.retain(|(_, t)| *t != token),
                Effect::Call { token, request, .. } => {
                    calls += 1;
                    queue.push(Input::CallCompleted {
                        token,
                        result: answer(&request, calls),
                    });
                }
                _ => {}
            }
        }
        if queue.is_empty() {
            timers.sort();
            if timers.is_empty() {
                break;
            }
            let (due, token) = timers.remove(0);
            now = now.max(due);
            queue.push(Input::TimerFired { token });
        }
        for i in queue {
            let (e, t) = inst.apply(&env, i, now);
            effects.extend(e);
            trace.extend(t);
        }
    }
    (inst, trace, now, calls)
}

fn run(w: &Workflow, input: Value) -> Instance {
    drive(w, input, |_, _| CallResult::Value(json!(null))).0
}

#[test]
fn set_tasks_chain() {
    let w = wf(
        "do:\n  - a:\n      set: {colors: '${ .colors + [\"red\"] }'}\n  - b:\n      set: {colors: '${ .colors + [\"green\"] }'}\n",
    );
    let i = run(&w, json!({}));
    assert_eq!(i.status, Status::Completed);
    assert_eq!(i.output, Some(json!({"colors": ["red", "green"]})));
}

#[test]
fn then_jumps_exit_and_end() {
    let w = wf(
        "do:\n  - a:\n      set: {v: 1}\n      then: c\n  - b:\n      set: {v: 2}\n  - c:\n      do:\n        - x:\n            set: {v: 3}\n            then: exit\n        - y:\n            set: {v: 4}\n  - d:\n      set: '${ {v: (.v + 10)} }'\n      then: end\n  - e:\n      set: {v: 99}\n",
    );
    assert_eq!(run(&w, json!({})).output, Some(json!({"v": 13})));
}

#[test]
fn if_false_skips_the_task() {
    let w = wf("do:\n  - a:\n      if: '.go'\n      set: {ran: true}\n");
    assert_eq!(
        run(&w, json!({"go": false})).output,
        Some(json!({"go": false}))
    );
    assert_eq!(
        run(&w, json!({"go": true})).output,
        Some(json!({"ran": true}))
    );
}

#[test]
fn switch_picks_the_first_matching_case() {
    let w = wf(
        "do:\n  - s:\n      switch:\n        - big: {when: '.n > 10', then: big}\n        - other: {then: small}\n  - small:\n      set: {size: small}\n      then: end\n  - big:\n      set: {size: big}\n",
    );
    assert_eq!(
        run(&w, json!({"n": 50})).output,
        Some(json!({"size": "big"}))
    );
    assert_eq!(
        run(&w, json!({"n": 5})).output,
        Some(json!({"size": "small"}))
    );
}

#[test]
fn for_iterates_with_item_index_and_while() {
    let w = wf(
        "do:\n  - l:\n      for: {each: c, in: '.items', at: i}\n      while: '$i < 2'\n      do:\n        - add:\n            set: '${ . + {seen: (.seen + [$c, $i])} }'\n",
    );
    assert_eq!(
        run(&w, json!({"items": ["a", "b", "c"]})).output,
        Some(json!({"items": ["a", "b", "c"], "seen": ["a", 0, "b", 1]}))
    );
}

#[test]
fn fork_collects_every_branch_in_order() {
    let w = wf(
        "do:\n  - f:\n      fork:\n        branches:\n          - one: {wait: PT2S}\n          - two: {set: {b: 2}}\n",
    );
    let (i, _, now, _) = drive(&w, json!({"a": 1}), |_, _| CallResult::Value(json!(null)));
    assert_eq!(i.output, Some(json!([{"a": 1}, {"b": 2}])));
    assert_eq!(now, Timestamp(1_002_000));
}

#[test]
fn competing_branches_keep_only_the_winner() {
    let w = wf(
        "do:\n  - f:\n      fork:\n        compete: true\n        branches:\n          - slow: {wait: PT5S}\n          - fast:\n              do:\n                - w: {wait: PT1S}\n                - s: {set: {winner: fast}}\n",
    );
    let (i, trace, now, _) = drive(&w, json!({}), |_, _| CallResult::Value(json!(null)));
    assert_eq!(i.output, Some(json!({"winner": "fast"})));
    assert_eq!(
        now,
        Timestamp(1_001_000),
        "the slow branch's timer must be cancelled"
    );
    assert!(
        trace
            .iter()
            .any(|t| &*t.name == "slow" && t.kind == TraceKind::Cancelled)
    );
}

#[test]
fn raise_faults_with_the_task_reference() {
    let w =
        wf("do:\n  - r:\n      raise:\n        error: {type: 'urn:e', status: 400, title: Bad}\n");
    let i = run(&w, json!({}));
    assert_eq!(i.status, Status::Faulted);
    let e = i.error.expect("error");
    assert_eq!(
        (e.type_.as_str(), e.status, e.instance.as_deref()),
        ("urn:e", 400, Some("/do/0/r"))
    );
}

#[test]
fn catch_binds_the_error_and_runs_its_do() {
    let w = wf(
        "do:\n  - t:\n      try:\n        - r:\n            raise:\n              error: {type: 'https://serverlessworkflow.io/spec/1.0.0/errors/runtime', status: 503}\n      catch:\n        errors:\n          with: {type: 'https://serverlessworkflow.io/dsl/errors/types/runtime', status: 503}\n        as: err\n        do:\n          - h:\n              set: {caught: '${ $err.status }'}\n",
    );
    assert_eq!(run(&w, json!({})).output, Some(json!({"caught": 503})));
}

#[test]
fn filters_that_do_not_match_let_the_error_through() {
    let w = wf(
        "do:\n  - t:\n      try:\n        - r:\n            raise:\n              error: {type: 'urn:x', status: 500}\n      catch:\n        errors:\n          with: {status: 404}\n",
    );
    assert_eq!(run(&w, json!({})).status, Status::Faulted);
    let w = wf(
        "do:\n  - t:\n      try:\n        - r:\n            raise:\n              error: {type: 'urn:x', status: 500}\n      catch:\n        exceptWhen: '$error.status == 500'\n",
    );
    assert_eq!(run(&w, json!({})).status, Status::Faulted);
}

fn retry_wf(policy: &str) -> Workflow {
    wf(&format!(
        "do:\n  - t:\n      try:\n        - c:\n            call: flaky\n      catch:\n        retry:\n{policy}\n"
    ))
}

fn failing_until(n: u32) -> impl Fn(&CallRequest, u32) -> CallResult {
    move |_, attempt| {
        if attempt <= n {
            CallResult::Failed(WorkflowError::new(
                crate::ErrorKind::Communication,
                "/x",
                "down",
            ))
        } else {
            CallResult::Value(json!({"ok": attempt}))
        }
    }
}

#[test]
fn constant_retries_stop_at_the_attempt_count() {
    let w = retry_wf("          delay: PT1S\n          limit: {attempt: {count: 3}}");
    let (i, _, now, calls) = drive(&w, json!({}), failing_until(100));
    assert_eq!(calls, 4, "one attempt and three retries");
    assert_eq!(
        i.status,
        Status::Completed,
        "a caught error without do completes the try"
    );
    assert_eq!(now, Timestamp(1_003_000));
    let (i, _, _, calls) = drive(&w, json!({}), failing_until(2));
    assert_eq!((calls, i.output), (3, Some(json!({"ok": 3}))));
}

#[test]
fn linear_and_exponential_backoff_space_the_attempts() {
    let w = retry_wf(
        "          delay: PT1S\n          backoff: {linear: {}}\n          limit: {attempt: {count: 3}}",
    );
    assert_eq!(
        drive(&w, json!({}), failing_until(100)).2,
        Timestamp(1_000_000 + 1000 + 2000 + 3000)
    );
    let w = retry_wf(
        "          delay: PT1S\n          backoff: {exponential: {}}\n          limit: {attempt: {count: 4}}",
    );
    assert_eq!(
        drive(&w, json!({}), failing_until(100)).2,
        Timestamp(1_000_000 + 1000 + 2000 + 4000 + 8000)
    );
}

#[test]
fn total_duration_limits_the_retries() {
    let w = retry_wf("          delay: PT1S\n          limit: {duration: PT2.5S}");
    assert_eq!(drive(&w, json!({}), failing_until(100)).3, 3);
}

#[test]
fn jitter_stays_within_its_range_and_is_deterministic() {
    let policy = RetryPolicy {
        delay: crate::Duration::from_secs(1),
        jitter: Some((
            crate::Duration::from_millis(100),
            crate::Duration::from_millis(300),
        )),
        ..RetryPolicy::default()
    };
    for r in 0..1000u64 {
        let d = retry_delay(&policy, 1, crate::Duration(0), r.wrapping_mul(0x9E37_79B9))
            .expect("retry");
        assert!((1100..=1300).contains(&d.as_millis()), "{d:?}");
    }
    let w = retry_wf(
        "          delay: PT1S\n          jitter: {from: PT0S, to: PT1S}\n          limit: {attempt: {count: 2}}",
    );
    assert_eq!(
        drive(&w, json!({}), failing_until(100)).2,
        drive(&w, json!({}), failing_until(100)).2
    );
}

use crate::model::RetryPolicy;

#[test]
fn task_timeouts_cancel_the_task_and_raise_a_timeout_error() {
    let w = wf("do:\n  - slow:\n      wait: PT10S\n      timeout: {after: PT1S}\n");
    let (i, _, now, _) = drive(&w, json!({}), |_, _| CallResult::Value(json!(null)));
    let e = i.error.expect("faulted");
    assert_eq!(
        (e.kind(), e.status, now),
        (Some(crate::ErrorKind::Timeout), 408, Timestamp(1_001_000))
    );
}

#[test]
fn errors_propagate_out_of_nested_do_for_and_fork() {
    let w = wf(
        "do:\n  - outer:\n      do:\n        - l:\n            for: {in: '[1,2]'}\n            do:\n              - f:\n                  fork:\n                    branches:\n                      - ok: {set: {}}\n                      - bad:\n                          raise:\n                            error: {type: 'urn:deep', status: 418}\n",
    );
    let i = run(&w, json!({}));
    let e = i.error.expect("faulted");
    assert_eq!(
        e.instance.as_deref(),
        Some("/do/0/outer/do/0/l/do/0/f/fork/branches/1/bad")
    );
    assert_eq!(e.status, 418);
}

#[test]
fn input_output_and_export_transform_data() {
    let w = wf(
        "do:\n  - a:\n      input: {from: '.user'}\n      set: {name: '${ .name }'}\n      output: {as: '.name'}\n      export: {as: '{who: .}'}\n  - b:\n      set: {greeting: '${ \"hi \" + $context.who }'}\n",
    );
    assert_eq!(
        run(&w, json!({"user": {"name": "Ada"}})).output,
        Some(json!({"greeting": "hi Ada"}))
    );
}

#[test]
fn input_schemas_reject_bad_input_with_pointers() {
    let w = wf(
        "input:\n  schema:\n    document: {type: object, properties: {n: {type: integer}}}\ndo:\n  - a: {set: {}}\n",
    );
    let e = run(&w, json!({"n": "x"})).error.expect("invalid");
    assert_eq!(e.kind(), Some(crate::ErrorKind::Validation));
    assert!(
        e.detail.as_deref().unwrap_or_default().contains("/n"),
        "{e}"
    );
}

/// An input the shell says it has checked is not checked again: the instance runs on it (so
/// the flag alone decides; with it unset the same input faults, as above).
#[test]
fn an_input_checked_by_the_shell_is_not_validated_again() {
    let w = wf(
        "input:\n  schema:\n    document: {type: object, properties: {n: {type: integer}}}\ndo:\n  - a: {set: '${ .n }'}\n",
    );
    let mut env = Env::new(&w, "checked");
    env.input_checked = true;
    let mut inst = Instance::default();
    let start = Input::Start {
        input: json!({"n": "x"}),
        seed: 1,
    };
    let (effects, _) = inst.apply(&env, start, Timestamp(0));
    assert!(
        matches!(effects.last(), Some(Effect::Complete)),
        "{effects:?}"
    );
    assert_eq!(inst.output, Some(json!("x")));
}

#[test]
fn calls_become_effects_with_idempotency_keys() {
    let w = wf(
        "do:\n  - c:\n      call: http\n      with:\n        method: get\n        endpoint: 'https://example.com/pets/{id}'\n",
    );
    let env = Env::new(&w, "abc");
    let s = step(
        &env,
        &Instance::default(),
        Input::Start {
            input: json!({"id": 7}),
            seed: 1,
        },
        Timestamp(0),
    );
    let Some(Effect::Call {
        request: CallRequest::Http(r),
        idempotency_key,
        ..
    }) = s.effects.first()
    else {
        panic!("{:?}", s.effects)
    };
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("GET", "https://example.com/pets/7")
    );
    assert!(idempotency_key.starts_with("abc:/do/0/c:"));
    // A 404 becomes a communication error carrying the status.
    let token = match &s.effects[0] {
        Effect::Call { token, .. } => *token,
        _ => unreachable!(),
    };
    let resp = HttpResponse {
        status: 404,
        headers: vec![],
        content: json!(null),
        raw_base64: String::new(),
    };
    let s2 = step(
        &env,
        &s.next,
        Input::CallCompleted {
            token,
            result: CallResult::Http(resp),
        },
        Timestamp(5),
    );
    let e = s2.next.error.expect("faulted");
    assert_eq!(
        (e.kind(), e.status),
        (Some(crate::ErrorKind::Communication), 404)
    );
}

#[test]
fn emit_produces_a_cloud_event() {
    let w = wf(
        "do:\n  - e:\n      emit:\n        event:\n          with: {source: 'https://x', type: 't.v1', data: {n: '${ .n }'}}\n",
    );
    let out = run(&w, json!({"n": 3})).output.expect("done");
    assert_eq!(out["data"], json!({"n": 3}));
    assert_eq!(out["specversion"], "1.0");
    assert!(out["id"].is_string() && out["time"].is_string());
}

#[test]
fn listen_waits_for_a_matching_event() {
    let w = wf(
        "do:\n  - l:\n      listen:\n        to:\n          one:\n            with: {type: 'com.x.ready'}\n",
    );
    let env = Env::new(&w, "i");
    let s = step(
        &env,
        &Instance::default(),
        Input::Start {
            input: json!({}),
            seed: 1,
        },
        Timestamp(0),
    );
    assert_eq!(s.next.status, Status::Running);
    let s = step(
        &env,
        &s.next,
        Input::Event {
            event: json!({"type": "other"}),
        },
        Timestamp(1),
    );
    assert_eq!(s.next.status, Status::Running);
    let s = step(
        &env,
        &s.next,
        Input::Event {
            event: json!({"type": "com.x.ready", "data": {"v": 1}}),
        },
        Timestamp(2),
    );
    assert_eq!(s.next.output, Some(json!([{"v": 1}])));
}

#[test]
fn cancel_stops_everything_in_flight() {
    let w = wf(
        "do:\n  - f:\n      fork:\n        branches:\n          - a: {wait: PT1S}\n          - b: {call: thing}\n",
    );
    let env = Env::new(&w, "i");
    let s = step(
        &env,
        &Instance::default(),
        Input::Start {
            input: json!({}),
            seed: 1,
        },
        Timestamp(0),
    );
    let s = step(
        &env,
        &s.next,
        Input::Cancel {
            reason: "user".into(),
        },
        Timestamp(1),
    );
    assert_eq!(s.next.status, Status::Cancelled);
    assert!(
        s.effects
            .iter()
            .any(|e| matches!(e, Effect::CancelTimer { .. }))
    );
    assert!(
        s.effects
            .iter()
            .any(|e| matches!(e, Effect::CancelCall { .. }))
    );
}

#[test]
fn state_round_trips_through_serde() {
    let w = wf("do:\n  - a: {wait: PT1S}\n  - b: {set: {done: true}}\n");
    let env = Env::new(&w, "i");
    let s = step(
        &env,
        &Instance::default(),
        Input::Start {
            input: json!({}),
            seed: 1,
        },
        Timestamp(0),
    );
    let stored: Instance =
        serde_json::from_str(&serde_json::to_string(&s.next).expect("ser")).expect("de");
    assert_eq!(stored, s.next);
    let token = match s.effects[0] {
        Effect::StartTimer { token, .. } => token,
        _ => panic!(),
    };
    let s = step(&env, &stored, Input::TimerFired { token }, Timestamp(1000));
    assert_eq!(s.next.output, Some(json!({"done": true})));
}

#[test]
fn attempt_duration_cancels_a_slow_attempt_and_retries_it() {
    // Each attempt waits 5 s but may take 1 s: three attempts time out, then catch.do runs.
    let w = wf(
        "do:\n  - t:\n      try:\n        - slow: {wait: PT5S}\n      catch:\n        errors:\n          with: {type: 'https://serverlessworkflow.io/spec/1.0.0/errors/timeout'}\n        retry:\n          delay: PT1S\n          limit: {attempt: {count: 2, duration: PT1S}}\n        do:\n          - gaveUp: {set: {status: '${ $error.status }'}}\n",
    );
    let (i, trace, now, _) = drive(&w, json!({}), |_, _| CallResult::Value(json!(null)));
    assert_eq!(i.output, Some(json!({"status": 408})));
    // 3 attempts of 1 s each, 2 delays of 1 s.
    assert_eq!(now, Timestamp(1_005_000));
    let cancelled = trace
        .iter()
        .filter(|t| &*t.name == "slow" && t.kind == TraceKind::Cancelled)
        .count();
    assert_eq!(cancelled, 3);
}

#[test]
fn reusable_errors_are_raised_with_evaluated_fields() {
    let w = wf(
        "use:\n  errors:\n    notFound: {type: 'https://example.com/not-found', status: 404, title: Not Found, detail: '${ \"no \" + .name }'}\ndo:\n  - r:\n      raise: {error: notFound}\n",
    );
    let e = run(&w, json!({"name": "pet"})).error.expect("faulted");
    assert_eq!(
        (e.status, e.title.as_deref(), e.detail.as_deref()),
        (404, Some("Not Found"), Some("no pet"))
    );
    assert_eq!(e.instance.as_deref(), Some("/do/0/r"));
}

#[test]
fn failing_expressions_are_expression_errors_at_the_task() {
    let w = wf("do:\n  - a: {set: {x: 1}}\n  - b: {set: {y: '${ .x | error(\"nope\") }'}}\n");
    let e = run(&w, json!({})).error.expect("faulted");
    assert_eq!(
        (e.kind(), e.status, e.instance.as_deref()),
        (Some(crate::ErrorKind::Expression), 400, Some("/do/1/b"))
    );
}

#[test]
fn output_and_export_schemas_are_enforced() {
    let w = wf(
        "do:\n  - a:\n      set: {n: 'x'}\n      output:\n        schema:\n          document: {type: object, properties: {n: {type: integer}}}\n",
    );
    let e = run(&w, json!({})).error.expect("faulted");
    assert_eq!(e.kind(), Some(crate::ErrorKind::Validation));
    assert!(e.detail.unwrap_or_default().contains("/n"));
    let w = wf(
        "do:\n  - a:\n      set: {n: 1}\n      export:\n        as: '.n'\n        schema:\n          document: {type: object}\n",
    );
    assert_eq!(
        run(&w, json!({})).error.and_then(|e| e.kind()),
        Some(crate::ErrorKind::Validation)
    );
}

#[test]
fn timeouts_can_be_caught_by_an_enclosing_try() {
    let w = wf(
        "do:\n  - t:\n      try:\n        - slow:\n            wait: PT1M\n            timeout: {after: PT2S}\n      catch:\n        errors:\n          with: {type: 'https://serverlessworkflow.io/dsl/errors/types/timeout', status: 408}\n        do:\n          - fallback: {set: {used: fallback}}\n",
    );
    let (i, _, now, _) = drive(&w, json!({}), |_, _| CallResult::Value(json!(null)));
    assert_eq!(
        (i.output, now),
        (Some(json!({"used": "fallback"})), Timestamp(1_002_000))
    );
}

#[test]
fn stale_or_unknown_tokens_change_nothing() {
    let w = wf("do:\n  - a: {wait: PT1S}\n");
    let env = Env::new(&w, "i");
    let s = step(
        &env,
        &Instance::default(),
        Input::Start {
            input: json!({}),
            seed: 1,
        },
        Timestamp(0),
    );
    let again = step(
        &env,
        &s.next,
        Input::TimerFired { token: Token(999) },
        Timestamp(10),
    );
    assert_eq!(again.next, s.next);
    assert!(again.effects.is_empty());
    // Starting twice is ignored too.
    let twice = step(
        &env,
        &s.next,
        Input::Start {
            input: json!({"other": 1}),
            seed: 2,
        },
        Timestamp(10),
    );
    assert_eq!(twice.next, s.next);
}

/// Across a grid of policies and failure counts: attempts never exceed the policy, a success
/// within the budget is always reached, and exactly one terminal effect is ever emitted.
#[test]
fn attempts_never_exceed_the_policy_and_instances_finish_once() {
    for backoff in ["constant", "linear", "exponential"] {
        for count in 0..5u32 {
            let w = retry_wf(&format!(
                "          delay: PT1S\n          backoff: {{{backoff}: {{}}}}\n          limit: {{attempt: {{count: {count}}}}}"
            ));
            for fails in 0..8u32 {
                let env = Env::new(&w, "grid");
                let mut inst = Instance::default();
                let mut now = Timestamp(0);
                let mut pending = vec![Input::Start {
                    input: json!({}),
                    seed: u64::from(fails),
                }];
                let (mut calls, mut terminal, mut timers) = (0u32, 0, Vec::new());
                while let Some(input) = pending.pop().or_else(|| {
                    timers.sort();
                    (!timers.is_empty()).then(|| {
                        let (due, token) = timers.remove(0);
                        now = due;
                        Input::TimerFired { token }
                    })
                }) {
                    for e in inst.apply(&env, input, now).0 {
                        match e {
                            Effect::Call { token, .. } => {
                                calls += 1;
                                pending.push(Input::CallCompleted {
                                    token,
                                    result: failing_until(fails)(
                                        &CallRequest::Function {
                                            name: String::new(),
                                            args: json!(null),
                                        },
                                        calls,
                                    ),
                                });
                            }
                            Effect::StartTimer { token, due } => timers.push((due, token)),
                            Effect::CancelTimer { token } => timers.retain(|(_, t)| *t != token),
                            Effect::Complete | Effect::Fault { .. } => terminal += 1,
                            _ => {}
                        }
                    }
                }
                let case = format!("{backoff} count={count} fails={fails}");
                assert_eq!(calls, (fails + 1).min(count + 1), "{case}");
                assert_eq!(terminal, 1, "{case}");
                assert_eq!(inst.status, Status::Completed, "{case}");
                let succeeded = fails <= count;
                assert_eq!(
                    inst.output.as_ref().is_some_and(|o| o.get("ok").is_some()),
                    succeeded,
                    "{case}"
                );
            }
        }
    }
}

/// A `set` that reads `$input`, or whose task reshapes its output with `$input`, still sees the
/// task's input when other `set`s are handed theirs to update in place.
#[test]
fn set_tasks_see_their_input_whether_or_not_they_update_it_in_place() {
    let w = wf(r#"do:
  - grow:
      set: '${ .list += [2] }'
  - echo:
      set: '${ .list += [$input.list | length] }'
  - reshape:
      set: '${ .list += [3] }'
      output:
        as: '${ {list, before: ($input.list | length)} }'
"#);
    let i = run(&w, json!({"list": [1]}));
    assert_eq!(i.status, Status::Completed, "{:?}", i.error);
    assert_eq!(i.output, Some(json!({"list": [1, 2, 2, 3], "before": 3})));
}

/// An update settles only what it adds when its input is an expression's result; a document
/// that comes as it was written (the workflow input, a constant, a task skipped by its `if`)
/// is settled whole, as jq would write it.
#[test]
fn updates_settle_what_did_not_come_from_an_expression() {
    let input = json!({"kept": 1.0, "n": 1});
    let cases = [
        // The raw workflow input.
        "do:\n  - add:\n      set: '${ .n += 1 }'\n",
        // A constant document, then an update.
        "do:\n  - constant:\n      set: {kept: 1.0, n: 1}\n  - add:\n      set: '${ .n += 1 }'\n",
        // A `set` skipped by its `if` passes the raw input on.
        "do:\n  - skipped:\n      if: '${ false }'\n      set: '${ {kept: 2, n: 1} }'\n  - add:\n      set: '${ .n += 1 }'\n",
        // `input.from` built from the raw input keeps its float.
        "input:\n  from: '${ {kept: .kept, n: .n} }'\ndo:\n  - add:\n      set: '${ .n += 1 }'\n",
    ];
    for body in cases {
        let inst = run(&wf(body), input.clone());
        assert_eq!(inst.status, Status::Completed, "{body}");
        let out = inst.output.expect("an output");
        assert_eq!(out.to_string(), r#"{"kept":1,"n":2}"#, "{body}");
    }
}

/// A shell that does not want the raw input back lets the instance take it as its data,
/// unless something in the workflow can read it; the output is the same either way.
#[test]
fn the_input_is_taken_only_when_nothing_can_read_it_again() {
    let input = json!({"a": 1.0, "b": [1, 2]});
    let cases = [
        // (workflow, taken)
        (
            "input:\n  from: '{all: ., n: 1}'\ndo:\n  - s:\n      set: '${ .n += 1 }'\n",
            true,
        ),
        ("do:\n  - s:\n      set: '${ .b += [3] }'\n", true),
        (
            "do:\n  - s:\n      set: '${ .b += [$workflow.input.a] }'\n",
            false,
        ),
        (
            "input:\n  from: '{all: $input, n: 1}'\ndo:\n  - s:\n      set: '${ .n += 1 }'\n",
            false,
        ),
        (
            "output:\n  as: '${ {out: ., in: $input} }'\ndo:\n  - s:\n      set: '${ .b += [3] }'\n",
            false,
        ),
    ];
    for (body, taken) in cases {
        let w = wf(body);
        let run_with = |keep_input: bool| {
            let mut env = Env::new(&w, "test-instance");
            env.keep_input = keep_input;
            let mut inst = Instance::default();
            inst.apply(
                &env,
                Input::Start {
                    input: input.clone(),
                    seed: 1,
                },
                Timestamp(0),
            );
            inst
        };
        let kept = run_with(true);
        let given = run_with(false);
        assert_eq!(kept.status, Status::Completed, "{body}");
        assert_eq!(kept.input, input, "{body}");
        assert_eq!(
            given.output.as_ref().map(Value::to_string),
            kept.output.as_ref().map(Value::to_string),
            "{body}"
        );
        let expected = if taken { Value::Null } else { input.clone() };
        assert_eq!(given.input, expected, "{body}");
    }
}

#[test]
fn only_waits_calls_events_and_retries_can_suspend() {
    for (body, suspends) in [
        (
            "do:\n  - s: {set: {a: 1}}\n  - f:\n      fork:\n        branches:\n          - t: {set: {b: 2}}\n",
            false,
        ),
        (
            "do:\n  - t:\n      try:\n        - r: {raise: {error: {type: x, status: 400}}}\n      catch:\n        do:\n          - s: {set: {c: 1}}\n",
            false,
        ),
        ("do:\n  - w: {wait: {seconds: 1}}\n", true),
        (
            "do:\n  - c: {call: http, with: {method: get, endpoint: 'http://example.com'}}\n",
            true,
        ),
        (
            "do:\n  - t:\n      try:\n        - s: {set: {a: 1}}\n      catch:\n        retry:\n          delay: {seconds: 1}\n          limit: {attempt: {count: 2}}\n",
            true,
        ),
    ] {
        assert_eq!(wf(body).may_suspend(), suspends, "{body}");
    }
}
