//! The CNCF Serverless Workflow conformance kit (`ctk/*.feature`), run by cucumber against the
//! express [`Runner`].
//!
//! The HTTP scenarios name public hosts; there is no network, so they are answered by a local
//! HTTPS stand-in (see `conformance/server.rs`) that the runner resolves those hosts to.
//!
//! Scenarios whose workflow Baton rejects at load time as unsupported would be left out of the
//! run, each named on stderr with the reason (today none is). Every other scenario must pass; a step
//! phrase without a step definition fails the run (`fail_on_skipped`).
//!
//! This is its own harness (`harness = false`). For `cargo nextest` it answers
//! `--list --format terse` with the single test `conformance`, and runs the kit when invoked
//! with that test's name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "conformance/server.rs"]
mod server;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use baton_core::interp::{Status, TraceEvent, TraceKind};
use baton_core::{Format, LoadError, LoadErrorKind, NoResolver, Workflow, load_str};
use baton_engine::{HttpOptions, RunOutcome, Runner};
use cucumber::gherkin::Step;
use cucumber::writer::Stats as _;
use cucumber::{World, given, then, when};
use serde_json::Value;

const CTK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/serverless-workflow/ctk"
);

/// The one test this harness reports to libtest-style callers.
const TEST_NAME: &str = "conformance";

/// How long one scenario's workflow may run.
const RUN_LIMIT: Duration = Duration::from_secs(60);

static RUNNER: OnceLock<Runner> = OnceLock::new();

#[derive(Debug, Default, World)]
struct CtkWorld {
    workflow: Option<Workflow>,
    input: Option<Value>,
    outcome: Option<RunOutcome>,
}

impl CtkWorld {
    fn outcome(&self) -> anyhow::Result<&RunOutcome> {
        self.outcome
            .as_ref()
            .ok_or_else(|| anyhow!("the workflow was not executed"))
    }

    fn output(&self) -> anyhow::Result<&Value> {
        let run = self.outcome()?;
        run.output
            .as_ref()
            .ok_or_else(|| anyhow!("the workflow has no output; {}", describe(run)))
    }

    /// Indexes of the tasks' `Started` events, by task name.
    fn started(&self, name: &str) -> anyhow::Result<Vec<usize>> {
        let trace = &self.outcome()?.trace;
        let at: Vec<usize> = trace
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == TraceKind::Started && *t.name == *name)
            .map(|(i, _)| i)
            .collect();
        ensure!(
            !at.is_empty(),
            "task `{name}` never started; started: {}",
            started_names(trace)
        );
        Ok(at)
    }
}

fn started_names(trace: &[TraceEvent]) -> String {
    let names: Vec<&str> = trace
        .iter()
        .filter(|t| t.kind == TraceKind::Started)
        .map(|t| &*t.name)
        .collect();
    format!("[{}]", names.join(", "))
}

fn describe(run: &RunOutcome) -> String {
    let error = run
        .error
        .as_ref()
        .map_or_else(|| "none".to_owned(), |e| e.to_value().to_string());
    let output = run
        .output
        .as_ref()
        .map_or_else(|| "none".to_owned(), Value::to_string);
    format!(
        "status {}, output {output}, error {error}, started {}",
        run.status.as_str(),
        started_names(&run.trace)
    )
}

/// The content of a step's doc string. gherkin 0.16 keeps the media type that follows the
/// opening delimiter (`"""yaml`) as the first line and then cannot dedent the rest, so drop that
/// line and dedent here.
fn doc_string(step: &Step) -> anyhow::Result<String> {
    let raw = step
        .docstring
        .as_deref()
        .ok_or_else(|| anyhow!("the step `{}` has no doc string", step.value))?;
    let body = raw.split_once('\n').map_or("", |(_, rest)| rest);
    let indent = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let lines: Vec<&str> = body
        .lines()
        .map(|l| l.get(indent..).unwrap_or_else(|| l.trim_start()))
        .collect();
    Ok(lines.join("\n").trim_end().to_owned() + "\n")
}

fn yaml(step: &Step) -> anyhow::Result<Value> {
    let text = doc_string(step)?;
    serde_saphyr::from_str::<Value>(&text)
        .with_context(|| format!("doc string is not YAML:\n{text}"))
}

fn load(step: &Step) -> Result<Workflow, LoadError> {
    let text =
        doc_string(step).map_err(|e| LoadError::new(LoadErrorKind::Syntax, "/", e.to_string()))?;
    load_str(&text, Format::Yaml, &NoResolver)
}

/// The value at a dotted path (`a.b.0.c`), if every segment exists.
fn at_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Steps

#[given(regex = r"^a workflow with definition:$")]
fn definition(world: &mut CtkWorld, step: &Step) -> anyhow::Result<()> {
    world.workflow = Some(load(step).map_err(|e| anyhow!("the workflow does not load: {e}"))?);
    Ok(())
}

#[given(regex = r"^(?:given )?the workflow input is:$")]
fn input(world: &mut CtkWorld, step: &Step) -> anyhow::Result<()> {
    world.input = Some(yaml(step)?);
    Ok(())
}

#[when(regex = r"^the workflow is executed$")]
async fn execute(world: &mut CtkWorld) -> anyhow::Result<()> {
    let wf = world
        .workflow
        .as_ref()
        .ok_or_else(|| anyhow!("no workflow was given"))?;
    let input = world
        .input
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let runner = RUNNER.get().ok_or_else(|| anyhow!("no runner"))?;
    let run = tokio::time::timeout(RUN_LIMIT, runner.run(wf, input))
        .await
        .map_err(|_| anyhow!("the workflow did not finish within {RUN_LIMIT:?}"))?;
    world.outcome = Some(run);
    Ok(())
}

fn expect_status(world: &CtkWorld, status: Status) -> anyhow::Result<&RunOutcome> {
    let run = world.outcome()?;
    ensure!(
        run.status == status,
        "expected the workflow to be {}, but: {}",
        status.as_str(),
        describe(run)
    );
    Ok(run)
}

#[then(regex = r"^the workflow should complete$")]
fn should_complete(world: &mut CtkWorld) -> anyhow::Result<()> {
    expect_status(world, Status::Completed).map(drop)
}

#[then(regex = r"^the workflow should complete with output:$")]
fn should_complete_with(world: &mut CtkWorld, step: &Step) -> anyhow::Result<()> {
    let run = expect_status(world, Status::Completed)?;
    let expected = yaml(step)?;
    ensure!(
        run.output.as_ref() == Some(&expected),
        "expected the output {expected}, but: {}",
        describe(run)
    );
    Ok(())
}

#[then(regex = r"^the workflow should fault$")]
fn should_fault(world: &mut CtkWorld) -> anyhow::Result<()> {
    expect_status(world, Status::Faulted).map(drop)
}

#[then(regex = r"^the workflow should be cancelled$")]
fn should_be_cancelled(world: &mut CtkWorld) -> anyhow::Result<()> {
    expect_status(world, Status::Cancelled).map(drop)
}

#[then(regex = r"^the workflow should fault with error:$")]
fn should_fault_with(world: &mut CtkWorld, step: &Step) -> anyhow::Result<()> {
    let run = expect_status(world, Status::Faulted)?;
    let error = run
        .error
        .as_ref()
        .ok_or_else(|| anyhow!("the workflow faulted without an error"))?
        .to_value();
    let Value::Object(expected) = yaml(step)? else {
        bail!("the expected error is not a mapping");
    };
    for (key, want) in &expected {
        let got = error.get(key);
        let same = match (key.as_str(), got, want) {
            // The kit's and the specification's forms of the standard type URIs are one type.
            ("type", Some(Value::String(g)), Value::String(w)) => {
                baton_core::error::same_type(g, w)
            }
            _ => got == Some(want),
        };
        ensure!(
            same,
            "error property `{key}`: expected {want}, got {}; error: {error}",
            got.map_or_else(|| "nothing".to_owned(), Value::to_string)
        );
    }
    Ok(())
}

#[then(regex = r"^the workflow output should have properties (.+)$")]
fn output_has_properties(world: &mut CtkWorld, list: String) -> anyhow::Result<()> {
    let output = world.output()?;
    let names: Vec<&str> = list
        .split(',')
        .map(|n| n.trim().trim_matches('\''))
        .collect();
    ensure!(
        names.iter().all(|n| !n.is_empty()),
        "cannot read the property list {list}"
    );
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|n| at_path(output, n).is_none())
        .collect();
    ensure!(
        missing.is_empty(),
        "the output lacks {missing:?}; output: {output}"
    );
    Ok(())
}

#[then(regex = r"^the workflow output should have a '([^']+)' property with value:$")]
fn output_property_equals(world: &mut CtkWorld, step: &Step, path: String) -> anyhow::Result<()> {
    let output = world.output()?;
    let expected = yaml(step)?;
    let got = at_path(output, &path)
        .ok_or_else(|| anyhow!("the output has no `{path}`; output: {output}"))?;
    ensure!(*got == expected, "`{path}`: expected {expected}, got {got}");
    Ok(())
}

#[then(regex = r"^the workflow output should have a '([^']+)' property containing (\d+) items?$")]
fn output_property_count(world: &mut CtkWorld, path: String, count: usize) -> anyhow::Result<()> {
    let output = world.output()?;
    let got = at_path(output, &path)
        .ok_or_else(|| anyhow!("the output has no `{path}`; output: {output}"))?;
    let len = match got {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        other => bail!("`{path}` is not a collection: {other}"),
    };
    ensure!(len == count, "`{path}` has {len} items, not {count}: {got}");
    Ok(())
}

/// "First" and "last" are about the order tasks started in: the first task started, and the
/// task that started last (for a switch that jumps to `setRed` and ends, `setRed`).
#[then(regex = r"^(\S+) should run first$")]
fn runs_first(world: &mut CtkWorld, name: String) -> anyhow::Result<()> {
    let trace = &world.outcome()?.trace;
    let first = trace.iter().find(|t| t.kind == TraceKind::Started);
    ensure!(
        first.is_some_and(|t| *t.name == *name),
        "`{name}` did not run first; started: {}",
        started_names(trace)
    );
    Ok(())
}

#[then(regex = r"^(\S+) should run last$")]
fn runs_last(world: &mut CtkWorld, name: String) -> anyhow::Result<()> {
    let trace = &world.outcome()?.trace;
    let last = trace.iter().rev().find(|t| t.kind == TraceKind::Started);
    ensure!(
        last.is_some_and(|t| *t.name == *name),
        "`{name}` did not run last; started: {}",
        started_names(trace)
    );
    Ok(())
}

/// `later` started after `earlier` had finished.
#[then(regex = r"^(\S+) should run after (\S+)$")]
fn runs_after(world: &mut CtkWorld, later: String, earlier: String) -> anyhow::Result<()> {
    let started = world.started(&later)?;
    world.started(&earlier)?;
    let trace = &world.outcome()?.trace;
    let finished = trace
        .iter()
        .position(|t| *t.name == *earlier && t.kind == TraceKind::Completed)
        .ok_or_else(|| anyhow!("`{earlier}` never completed"))?;
    ensure!(
        started.iter().any(|&s| s > finished),
        "`{later}` did not start after `{earlier}` completed; started: {}",
        started_names(trace)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The harness

/// What the command line asks for, read the way libtest (and so nextest) passes it.
enum Mode {
    List { ignored: bool },
    Run,
    Nothing,
}

fn mode() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        return Mode::List {
            ignored: has("--ignored"),
        };
    }
    // Only ignored tests are wanted; this one is not ignored.
    if has("--ignored") {
        return Mode::Nothing;
    }
    // Flags that take a value, so that the value is not read as a filter.
    const VALUED: [&str; 6] = [
        "--format",
        "--test-threads",
        "--logfile",
        "--color",
        "--skip",
        "-Z",
    ];
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if VALUED.contains(&a.as_str()) {
            let value = it.next();
            if a == "--skip" {
                skips.extend(value);
            }
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    let exact = has("--exact");
    let matches = |f: &str| {
        if exact {
            f == TEST_NAME
        } else {
            TEST_NAME.contains(f)
        }
    };
    if skips.iter().any(|s| matches(s))
        || (!filters.is_empty() && !filters.iter().any(|f| matches(f)))
    {
        Mode::Nothing
    } else {
        Mode::Run
    }
}

#[tokio::main]
async fn main() {
    match mode() {
        Mode::List { ignored } => {
            if !ignored {
                println!("{TEST_NAME}: test");
            }
            return;
        }
        Mode::Nothing => {
            println!("running 0 tests");
            return;
        }
        Mode::Run => {}
    }

    // `BATON_CTK_DIR` points the harness at another copy of the kit (to try edited scenarios).
    let ctk =
        std::env::var_os("BATON_CTK_DIR").map_or_else(|| CTK.into(), std::path::PathBuf::from);
    if !ctk.is_dir() {
        eprintln!(
            "CONFORMANCE SKIPPED: ../shared/serverless-workflow/ctk not found — no scenario was run"
        );
        return;
    }

    let stand_in = server::start().await.expect("start the HTTPS stand-in");
    let runner = Runner::builder()
        .http(HttpOptions {
            resolve: server::HOSTS
                .iter()
                .map(|h| ((*h).to_owned(), stand_in.addr))
                .collect(),
            extra_roots: vec![stand_in.cert_pem.clone()],
            attempt_timeout: Duration::from_secs(10),
            // The public hosts the scenarios name are answered by the stand-in on loopback.
            policy: baton_engine::outbound::AddressPolicy::allowing([stand_in.addr.ip().into()]),
            ..HttpOptions::default()
        })
        .build()
        .expect("build the runner");
    RUNNER.set(runner).expect("runner set once");

    // Scenarios left out because Baton rejects their workflow as unsupported.
    let excluded: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = excluded.clone();
    let writer = CtkWorld::cucumber()
        .fail_on_skipped()
        .with_default_cli()
        .filter_run(ctk, move |feature, _rule, scenario| {
            let definition = scenario
                .steps
                .iter()
                .find(|s| s.value == "a workflow with definition:");
            match definition.map(load) {
                Some(Err(e)) if e.kind == LoadErrorKind::Unsupported => {
                    let line = format!(
                        "{} / {}: Baton rejects its workflow at load time as unsupported: {e}",
                        feature.name, scenario.name
                    );
                    eprintln!("CONFORMANCE EXCLUDED: {line}");
                    seen.lock().expect("lock").push(line);
                    false
                }
                _ => true,
            }
        })
        .await;

    let excluded = excluded.lock().expect("lock");
    eprintln!(
        "conformance: steps {} passed, {} skipped, {} failed; {} scenarios excluded as unsupported:",
        writer.passed_steps(),
        writer.skipped_steps(),
        writer.failed_steps(),
        excluded.len()
    );
    for line in excluded.iter() {
        eprintln!("  - {line}");
    }
    if writer.execution_has_failed() {
        eprintln!("conformance: FAILED");
        std::process::exit(1);
    }
}
