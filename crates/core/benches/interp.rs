//! Benchmarks of the pure interpreter: whole instances run from `Input::Start` to
//! `Effect::Complete` inside one `step` (pure tasks never suspend), plus the cost of loading
//! and compiling a workflow. Figures are recorded in `docs/benchmarks.md`.
//!
//! Run with `cargo bench -p baton-core --bench interp`.

use baton_core::interp::{self, Effect, Env, Input, Instance, Step, TraceKind};
use baton_core::{Format, NoResolver, Timestamp, Workflow, load_str};
use serde_json::{Value, json};

/// One root task, a `fork` of six `set` branches: 7 tasks per instance.
const FORK6_SET: &str = r#"document: {dsl: '1.0.0', namespace: bench, name: fork6-set, version: '1.0.0'}
do:
  - validate:
      fork:
        branches:
          - first:
              set: {check: 'first', ok: '${ (.Name.First // "" | length) > 1 }'}
          - last:
              set: {check: 'last', ok: '${ (.Name.Last // "" | length) > 1 }'}
          - line1:
              set: {check: 'line1', ok: '${ (.Address.Line1 // "") != "" }'}
          - city:
              set: {check: 'city', ok: '${ (.Address.City // "" | length) > 1 }'}
          - state:
              set: {check: 'state', ok: '${ (.Address.State // "" | length) == 2 }'}
          - zip:
              set: {check: 'zip', ok: '${ (.Address.Zip // "" | length) == 5 }'}
"#;

/// One root task, a `do` of the same six checks, each adding its result to the data:
/// 7 tasks per instance.
const CHAIN6_SET: &str = r#"document: {dsl: '1.0.0', namespace: bench, name: chain6-set, version: '1.0.0'}
do:
  - validate:
      do:
        - first:
            set: '${ . + {c1: ((.Name.First // "") | length > 1)} }'
        - last:
            set: '${ . + {c2: ((.Name.Last // "") | length > 1)} }'
        - line1:
            set: '${ . + {c3: ((.Address.Line1 // "") != "")} }'
        - city:
            set: '${ . + {c4: ((.Address.City // "") | length > 1)} }'
        - state:
            set: '${ . + {c5: ((.Address.State // "") | length == 2)} }'
        - zip:
            set: '${ . + {c6: ((.Address.Zip // "") | length == 5)} }'
"#;

/// The chain's shape with constant `set` values that need no jq: 7 tasks per instance.
const CHAIN6_CONST: &str = r#"document: {dsl: '1.0.0', namespace: bench, name: chain6-const, version: '1.0.0'}
do:
  - validate:
      do:
        - first:
            set: {c1: true}
        - last:
            set: {c2: true}
        - line1:
            set: {c3: true}
        - city:
            set: {c4: true}
        - state:
            set: {c5: true}
        - zip:
            set: {c6: true}
"#;

/// Tasks each workflow above runs per instance (the root task plus its six children).
const TASKS_PER_INSTANCE: usize = 7;

fn main() {
    divan::main();
}

fn person() -> Value {
    json!({
        "Name": {"First": "John", "Last": "Doe"},
        "Address": {"Line1": "1 Main St", "City": "Somewhere", "State": "OR", "Zip": "12345"}
    })
}

fn load(yaml: &str) -> Workflow {
    load_str(yaml, Format::Yaml, &NoResolver).unwrap_or_else(|e| panic!("workflow loads: {e:?}"))
}

fn run_once(wf: &Workflow, input: &Value) -> Step {
    let env = Env::new(wf, "bench");
    let start = Input::Start {
        input: input.clone(),
        seed: 1,
    };
    interp::step(&env, &Instance::default(), start, Timestamp(0))
}

/// Loads `yaml` and checks, outside timing, that one instance completes with the expected
/// number of tasks, so a bench can never silently measure a fault.
fn prepare(yaml: &str) -> (Workflow, Value) {
    let wf = load(yaml);
    let input = person();
    let step = run_once(&wf, &input);
    assert!(
        matches!(step.effects.last(), Some(Effect::Complete)),
        "instance must complete in one step, got {:?}",
        step.effects
    );
    let completed = step
        .trace
        .iter()
        .filter(|t| t.kind == TraceKind::Completed)
        .count();
    assert_eq!(completed, TASKS_PER_INSTANCE, "trace: {:?}", step.trace);
    (wf, input)
}

fn bench_run(bencher: divan::Bencher, yaml: &str) {
    let (wf, input) = prepare(yaml);
    bencher.bench_local(|| divan::black_box(run_once(&wf, &input)));
}

#[divan::bench]
fn fork6_set(bencher: divan::Bencher) {
    bench_run(bencher, FORK6_SET);
}

#[divan::bench]
fn chain6_set(bencher: divan::Bencher) {
    bench_run(bencher, CHAIN6_SET);
}

#[divan::bench]
fn chain6_const(bencher: divan::Bencher) {
    bench_run(bencher, CHAIN6_CONST);
}

/// Reads the sample app's files, for its workflows' `input.schema` references.
struct SampleFiles;

impl baton_core::Resolver for SampleFiles {
    fn resolve(&self, uri: &str) -> Result<Value, String> {
        let name = uri.rsplit('/').next().unwrap_or(uri);
        let path = format!(
            "{}/../../examples/person-validation/schemas/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
    }
}

/// The sample app's own workflow `name` (its `.yaml` file), run on the person document.
fn bench_sample(bencher: divan::Bencher, name: &str) {
    let path = format!(
        "{}/../../examples/person-validation/workflows/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let wf = load_str(&yaml, Format::Yaml, &SampleFiles)
        .unwrap_or_else(|e| panic!("{name} loads: {e:?}"));
    let input = person();
    let step = run_once(&wf, &input);
    assert!(
        matches!(step.effects.last(), Some(Effect::Complete))
            && step
                .next
                .output
                .as_ref()
                .is_some_and(|o| o["valid"] == true),
        "{name} must answer valid in one step, got {:?}",
        step.effects
    );
    bencher.bench_local(|| divan::black_box(run_once(&wf, &input)));
}

/// `Validate`: the six checks chained, then the answer (8 tasks, 8 jq evaluations including
/// `input.from`, the input schema validated).
#[divan::bench]
fn sample_validate(bencher: divan::Bencher) {
    bench_sample(bencher, "validate");
}

/// `ValidateParallel`: the six checks forked, then the answer.
#[divan::bench]
fn sample_validate_parallel(bencher: divan::Bencher) {
    bench_sample(bencher, "validate-parallel");
}

#[divan::bench]
fn load_fork6() -> Workflow {
    load(divan::black_box(FORK6_SET))
}

/// Loading with no jq expressions, to separate jq compilation from the rest of loading.
#[divan::bench]
fn load_chain6_const() -> Workflow {
    load(divan::black_box(CHAIN6_CONST))
}

/// One expression evaluation in isolation, natively (`native = true`) and on jaq: the identity
/// on the person document (a copy natively; conversion in and out on jaq), a constant (the fixed
/// cost of an evaluation), and two of the sample's checks.
#[allow(clippy::expect_used)] // a bench that cannot compile its expression must stop
mod expr {
    use baton_core::expr::{Budget, Expr, Scope, VarNames};

    fn person() -> serde_json::Value {
        super::person()
    }

    /// The same expression on both evaluators: `eval` (the native plan where there is one) and
    /// `eval_jaq` (jaq alone, the reference).
    fn both(b: divan::Bencher, src: &str, native: bool) {
        let e = Expr::compile(src, &VarNames::default()).expect("compiles");
        assert!(e.is_native(), "`{src}` has a native plan");
        let input = person();
        let scope = Scope::new();
        if native {
            b.bench(|| e.eval(divan::black_box(&input), &scope, &Budget::default()));
        } else {
            b.bench(|| e.eval_jaq(divan::black_box(&input), &scope, &Budget::default()));
        }
    }

    const CHECK: &str = "((.Name.First // \"\") | length) <= 1";
    const STATE: &str = "(.Address.State // \"\") | test(\"^[A-Za-z]{2}$\") | not";

    #[divan::bench(args = [true, false])]
    fn identity_person(b: divan::Bencher, native: bool) {
        both(b, ".", native);
    }

    #[divan::bench(args = [true, false])]
    fn constant(b: divan::Bencher, native: bool) {
        both(b, "1", native);
    }

    #[divan::bench(args = [true, false])]
    fn first_name_check(b: divan::Bencher, native: bool) {
        both(b, CHECK, native);
    }

    #[divan::bench(args = [true, false])]
    fn state_regex_check(b: divan::Bencher, native: bool) {
        both(b, STATE, native);
    }
}
