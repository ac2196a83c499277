use serde_json::json;

use super::*;

fn eval(src: &str, input: serde_json::Value) -> Result<serde_json::Value, ExprError> {
    Expr::compile(src, &VarNames::default())?.eval(&input, &Scope::new(), &Budget::default())
}

#[test]
fn evaluates_jq_against_the_input() {
    assert_eq!(eval(".a + 1", json!({"a": 41})), Ok(json!(42)));
    assert_eq!(
        eval(r#""Hello \(.first)!""#, json!({"first": "Jo"})),
        Ok(json!("Hello Jo!"))
    );
    assert_eq!(eval("[.[] | . * 2]", json!([1, 2])), Ok(json!([2, 4])));
}

#[test]
fn empty_output_is_null_and_first_output_wins() {
    assert_eq!(eval("empty", json!(1)), Ok(json!(null)));
    assert_eq!(eval("1, 2", json!(null)), Ok(json!(1)));
}

#[test]
fn variables_come_from_the_scope() {
    let names = VarNames::default().with(["item"]);
    let e = Expr::compile("$item + $input.n", &names).expect("compiles");
    let mut scope = Scope::new();
    scope.set("item", json!(2));
    scope.set("$input", json!({"n": 3}));
    assert_eq!(
        e.eval(&json!(null), &scope, &Budget::default()),
        Ok(json!(5))
    );
}

#[test]
fn unknown_variables_are_compile_errors() {
    let err = Expr::compile("$nope", &VarNames::default()).expect_err("must fail");
    assert!(matches!(err, ExprError::Compile { .. }), "{err}");
    assert!(err.to_string().ends_with(": no variable `$nope`"), "{err}");
}

#[test]
fn unknown_functions_are_named_with_their_arity() {
    let err = Expr::compile(".a | frobnicate | ltrimstr(1; 2)", &VarNames::default())
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("no function `frobnicate/0`") && msg.contains("no function `ltrimstr/2`"),
        "{msg}"
    );
}

#[test]
fn syntax_errors_say_where() {
    let err = Expr::compile(".a +", &VarNames::default()).expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("cannot compile `.a +`"), "{msg}");
}

#[test]
fn jq_errors_are_eval_errors() {
    let err = eval(r#"error("boom")"#, json!(null)).expect_err("must fail");
    assert!(
        matches!(err, ExprError::Eval { ref reason, .. } if reason.contains("boom")),
        "{err}"
    );
}

#[test]
fn impure_builtins_are_neutralised() {
    let e = Expr::compile("now", &VarNames::default()).expect("compiles");
    let mut scope = Scope::new();
    scope.set("$__now", json!(1234.5));
    assert_eq!(
        e.eval(&json!(null), &scope, &Budget::default()),
        Ok(json!(1234.5))
    );
    assert_eq!(eval("env", json!(null)), Ok(json!({})));
    assert!(eval("halt", json!(null)).is_err());
}

#[test]
fn runaway_loops_hit_the_budget() {
    for src in [
        "until(false; .)",
        "[repeat(1)]",
        "last(range(1e12))",
        "[range(0; 10; 0)] | length",
        "reduce range(1e9) as $i (0; . + 1)",
        "0 | [recurse(. + 1)] | length",
        "[while(true; .)]",
        "[.[] | try until(false; .) catch 1, (repeat(1) | select(false))]",
    ] {
        let small = Budget { steps: 50_000 };
        let err = Expr::compile(src, &VarNames::default())
            .and_then(|e| e.eval(&json!([1, 2]), &Scope::new(), &small))
            .expect_err(src);
        assert!(matches!(err, ExprError::Budget { .. }), "{src}: {err}");
    }
}

#[test]
fn bounded_loops_fit_the_budget() {
    assert_eq!(eval("[range(5)]", json!(null)), Ok(json!([0, 1, 2, 3, 4])));
    assert_eq!(
        eval("[limit(3; repeat(7))]", json!(null)),
        Ok(json!([7, 7, 7]))
    );
    assert_eq!(
        eval("[.[] | select(. > 1)]", json!([1, 2, 3])),
        Ok(json!([2, 3]))
    );
    assert_eq!(eval("until(. > 100; . * 2)", json!(1)), Ok(json!(128)));
}

#[test]
fn user_definitions_are_rejected() {
    let err = Expr::compile("def f: f; f", &VarNames::default()).expect_err("must fail");
    assert!(err.to_string().contains("`def`"), "{err}");
    // The word inside a string or as part of a name is fine.
    assert_eq!(
        eval(r#""def" + .undefined_x"#, json!({"undefined_x": "!"})),
        Ok(json!("def!"))
    );
}

#[test]
fn deep_results_are_refused() {
    let err = eval("reduce range(300) as $i (0; [.])", json!(null)).expect_err("too deep");
    assert!(matches!(err, ExprError::Eval { .. }), "{err}");
}

#[test]
fn overlong_sources_are_refused() {
    let src = format!(". + {}", "1 + ".repeat(MAX_SOURCE_LEN / 4) + "1");
    assert!(Expr::compile(&src, &VarNames::default()).is_err());
}

#[test]
fn templates_evaluate_only_their_expressions() {
    let t = Template::compile(
        &json!({"a": "${ .x }", "b": "plain", "c": ["${ .x + 1 }", 3]}),
        &VarNames::default(),
    )
    .expect("compiles");
    assert_eq!(
        t.eval(&json!({"x": 1}), &Scope::new(), &Budget::default()),
        Ok(json!({"a": 1, "b": "plain", "c": [2, 3]}))
    );
    let c = Template::compile(&json!({"a": [1, "x"]}), &VarNames::default()).expect("compiles");
    assert!(c.is_const());
    // The keys keep the definition's order, whichever fields are expressions.
    let t = Template::compile(
        &json!({"z": 1, "a": "${ .x }", "m": {"q": "${ .x * 2 }", "b": 0}, "b": "c"}),
        &VarNames::default(),
    )
    .expect("compiles");
    let out = t.eval(&json!({"x": 2}), &Scope::new(), &Budget::default());
    assert_eq!(
        out.map(|v| v.to_string()),
        Ok(r#"{"z":1,"a":2,"m":{"q":4,"b":0},"b":"c"}"#.to_owned())
    );
}

#[test]
fn values_round_trip_through_jq_unchanged() {
    let doc = json!({
        "int": 42, "neg": -7, "float": 1.5, "big": 18446744073709551615u64, "zero": 0,
        "s": "Zoë 🚀", "null": null, "t": true, "arr": [1, "two", [3]], "obj": {"b": 1, "a": 2}
    });
    assert_eq!(eval(".", doc.clone()), Ok(doc));
}
