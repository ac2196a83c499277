use super::*;

fn load(yaml: &str) -> Result<Workflow, LoadError> {
    load_str(yaml, Format::Yaml, &NoResolver)
}

const HEAD: &str = "document: {dsl: '1.0.0', namespace: test, name: t, version: '1.0.0'}\n";

#[test]
fn loads_a_minimal_workflow() {
    let wf = load(&format!("{HEAD}do:\n  - a:\n      set: {{x: 1}}\n")).expect("loads");
    assert_eq!(wf.document.name, "t");
    let first = wf.task(wf.list(wf.root)[0]);
    assert_eq!(&*first.name, "a");
    assert_eq!(&*first.reference, "/do/0/a");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = load("document: {dsl: '1.0.0'\ndo: [").expect_err("bad yaml");
    assert_eq!(err.kind, LoadErrorKind::Syntax);
    assert!(err.position.is_some(), "{err}");
    let err = load_str("{\"document\": }", Format::Json, &NoResolver).expect_err("bad json");
    assert_eq!(err.position, Some((1, 14)));
}

#[test]
fn unknown_properties_are_named_with_their_path() {
    let err = load(&format!(
        "{HEAD}do:\n  - a:\n      set: {{x: 1}}\n      thn: end\n"
    ))
    .expect_err("typo");
    assert_eq!(err.path, "/do/0/a/thn");
    assert!(err.to_string().contains("unknown property `thn`"), "{err}");
}

#[test]
fn unsupported_features_are_rejected_by_name() {
    let err = load(&format!(
        "{HEAD}do:\n  - a:\n      run:\n        container: {{image: x}}\n"
    ))
    .expect_err("run");
    assert_eq!(err.kind, LoadErrorKind::Unsupported);
    assert_eq!(err.path, "/do/0/a/run/container");
    let err = load(&format!(
        "{HEAD}do:\n  - a:\n      call: grpc\n      with: {{}}\n"
    ))
    .expect_err("grpc");
    assert!(err.to_string().contains("call: grpc"), "{err}");
}

#[test]
fn then_targets_must_exist() {
    let err = load(&format!(
        "{HEAD}do:\n  - a:\n      set: {{}}\n      then: nowhere\n"
    ))
    .expect_err("target");
    assert!(err.to_string().contains("`then: nowhere`"), "{err}");
}

#[test]
fn expressions_are_compiled_at_load() {
    let err = load(&format!(
        "{HEAD}do:\n  - a:\n      set: {{x: '${{ .a + }}'}}\n"
    ))
    .expect_err("jq");
    assert_eq!(err.path, "/do/0/a/set");
    assert!(err.to_string().contains("cannot compile"), "{err}");
}

#[test]
fn reusable_errors_and_retries_resolve() {
    let wf = load(&format!(
        "{HEAD}use:\n  errors:\n    e: {{type: 'urn:x', status: 400}}\n  retries:\n    r: {{delay: PT1S, limit: {{attempt: {{count: 2}}}}}}\ndo:\n  - t:\n      try:\n        - x:\n            raise: {{error: e}}\n      catch:\n        retry: r\n"
    ))
    .expect("loads");
    let t = wf.task(wf.list(wf.root)[0]);
    let crate::model::TaskKind::Try { catch, .. } = &t.kind else {
        panic!("try")
    };
    assert_eq!(catch.retry.as_ref().and_then(|r| r.max_retries), Some(2));
    let err = load(&format!(
        "{HEAD}do:\n  - x:\n      raise: {{error: missing}}\n"
    ))
    .expect_err("ref");
    assert!(
        err.to_string().contains("no error named `missing`"),
        "{err}"
    );
}

#[test]
fn yaml_reads_only_true_and_false_as_booleans() {
    let v = parse_text("a: NO\nb: on\nc: y\nd: true\n", Format::Yaml).expect("parses");
    assert_eq!(
        v,
        serde_json::json!({"a": "NO", "b": "on", "c": "y", "d": true})
    );
}

#[test]
fn the_asynchronous_pattern_is_on_unless_metadata_turns_it_off() {
    let call = |metadata: &str| {
        load(&format!(
            "{HEAD}do:\n  - c:\n      call: http\n{metadata}      with: {{method: get, endpoint: 'https://example.com/'}}\n"
        ))
    };
    let poll = |wf: &Workflow| match &wf.task(wf.list(wf.root)[0]).kind {
        crate::model::TaskKind::CallHttp(c) => c.poll,
        other => panic!("not an HTTP call: {other:?}"),
    };
    assert!(poll(&call("").expect("loads")));
    assert!(!poll(
        &call("      metadata: {asyncPattern: false}\n").expect("loads")
    ));
    let err = call("      metadata: {asyncPattern: 'no'}\n").expect_err("not a boolean");
    assert_eq!(err.path, "/do/0/c/metadata/asyncPattern");
}
