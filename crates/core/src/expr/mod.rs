//! jq expressions, compiled once per definition and evaluated without IO.
//!
//! Serverless Workflow writes runtime expressions as `${ … }` strings. Fields whose type *is* a
//! runtime expression (`if`, `when`, `for.in`, `input.from`, …) also accept the bare form without
//! the braces; [`Expr::compile_loose`] handles those. Everything else (task arguments, `set`
//! bodies, error fields) is a [`Template`]: a JSON value whose strings may embed expressions.
//!
//! Evaluation is bounded by a [`Budget`] so that a hostile or careless expression ends in a clear
//! `expression` error instead of hanging or exhausting the process (see `budget.rs`).
//!
//! Expressions in the everyday subset of jq (field paths, comparisons, `//`, object and array
//! construction, `select`, `sort_by`, `test`, updates such as `.a += …`) also get a native plan
//! (`fast.rs`, docs/adr/0003) that evaluates them on `serde_json::Value` without converting the
//! data; it answers exactly what jaq answers or leaves the evaluation to jaq.

mod budget;
mod convert;
mod fast;
mod template;

pub use budget::Budget;
pub use template::{Template, type_name};

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use serde_json::Value;

use budget::BVal;

type Data = jaq_core::data::JustLut<BVal>;
type Filter = jaq_core::Filter<Data>;

/// Variables every expression can see, in the order the interpreter supplies them.
///
/// `$__now` backs the shadowed `now` builtin so that expressions stay deterministic: the clock is
/// an argument of `step()`, never read inside the core.
pub const STANDARD_VARS: [&str; 8] = [
    "$context",
    "$input",
    "$output",
    "$secrets",
    "$task",
    "$workflow",
    "$runtime",
    "$__now",
];

/// Definitions that replace impure builtins. Later definitions shadow earlier ones, so these win
/// over the standard library's `now`, `env`, `halt`, … .
/// `now` reads the step's clock; defined only for expressions that mention it.
const NOW_DEF: &str = "def now: $__now;\n";

const PRELUDE: &str = r#"
def env: {};
def halt: error("halt is not available in workflow expressions");
def halt_error: error("halt_error is not available in workflow expressions");
def halt_error($code): error("halt_error is not available in workflow expressions");
def input: error("input is not available in workflow expressions");
def inputs: empty;
def debug: .;
def debug(msg): .;
def stderr: .;
def input_filename: null;
"#;

/// Longest expression source accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 8 * 1024;

/// Why an expression could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// The source is not valid jq, or names something that does not exist.
    #[error("cannot compile `{expr}`: {reason}")]
    Compile { expr: String, reason: String },
    /// jq raised an error while evaluating (`error(…)`, a type error, …).
    #[error("evaluating `{expr}` failed: {reason}")]
    Eval { expr: String, reason: String },
    /// The evaluation used more than its budget of steps, memory or stack.
    #[error("evaluating `{expr}` exceeded the expression budget: {reason}")]
    Budget { expr: String, reason: String },
    /// The expression produced a value that is not the type the field needs.
    #[error("`{expr}` must produce {expected}, it produced {found}")]
    Type {
        expr: String,
        expected: &'static str,
        found: String,
    },
}

/// A compiled jq expression together with the names of the variables it was compiled against.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    filter: Arc<Filter>,
    vars: Arc<[String]>,
    /// The native plan, when the expression lies in the subset `fast.rs` evaluates.
    fast: Option<Arc<fast::Plan>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.vars == other.vars
    }
}

/// Supplies variable values at evaluation time. Only variables an expression mentions are asked
/// for, so a binding that is costly to build (`$workflow.definition`) costs nothing when unused.
pub trait Bindings {
    /// The value of `$name` (`name` includes the `$`), or `None` for `null`.
    fn get(&self, name: &str) -> Option<Value>;
}

impl Bindings for Scope {
    fn get(&self, name: &str) -> Option<Value> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// The variables in scope at one point of a workflow: the standard ones plus those a `for`
/// (`$item`, `$index`) or a `catch` (`$error`) introduces.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    vars: Vec<(String, Value)>,
}

impl Scope {
    /// An empty scope; unset variables evaluate to `null`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` (with or without the leading `$`), replacing an earlier binding.
    pub fn set(&mut self, name: &str, value: Value) {
        let name = dollar(name);
        if let Some(slot) = self.vars.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.vars.push((name, value));
        }
    }

    /// Returns a copy with `name` bound.
    pub fn with(&self, name: &str, value: Value) -> Self {
        let mut s = self.clone();
        s.set(name, value);
        s
    }

    /// The bindings, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v))
    }
}

fn dollar(name: &str) -> String {
    if name.starts_with('$') {
        name.to_owned()
    } else {
        format!("${name}")
    }
}

/// Names of the non-standard variables visible at a point of the definition, used at compile
/// time so that a reference to an unknown variable is a load error rather than a runtime one.
#[derive(Debug, Clone, Default)]
pub struct VarNames(Vec<String>);

impl VarNames {
    /// Adds a variable name (with or without `$`).
    pub fn push(&mut self, name: &str) {
        let name = dollar(name);
        if !self.0.contains(&name) {
            self.0.push(name);
        }
    }

    /// A copy with extra names.
    pub fn with<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut v = self.clone();
        for n in names {
            v.push(n);
        }
        v
    }
}

/// If `s` is a `${ … }` runtime expression, returns the jq source inside the braces.
pub fn strip_braces(s: &str) -> Option<&str> {
    let t = s.trim();
    t.strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .map(str::trim)
}

impl Expr {
    /// Compiles a `${ … }` expression, or a bare one for fields typed as runtime expressions.
    pub fn compile_loose(source: &str, scope: &VarNames) -> Result<Self, ExprError> {
        Self::compile(strip_braces(source).unwrap_or(source), scope)
    }

    /// Compiles jq source (without `${ }`).
    pub fn compile(source: &str, scope: &VarNames) -> Result<Self, ExprError> {
        let fail = |reason: String| ExprError::Compile {
            expr: source.to_owned(),
            reason,
        };
        if source.len() > MAX_SOURCE_LEN {
            return Err(fail(format!(
                "the expression is {} bytes long, the limit is {MAX_SOURCE_LEN}",
                source.len()
            )));
        }
        // Only the variables the source mentions are declared, so an evaluation binds (and
        // converts) just those; a mention that is not a variable (`$inputs`) still fails to
        // compile as undefined.
        let mentioned = |n: &str| {
            if n == "$__now" {
                source.contains("now")
            } else {
                source.contains(n)
            }
        };
        let mut names: Vec<String> = STANDARD_VARS
            .iter()
            .filter(|n| mentioned(n))
            .map(|s| (*s).to_owned())
            .collect();
        for n in &scope.0 {
            if mentioned(n) && !names.contains(n) {
                names.push(n.clone());
            }
        }
        budget::reject_definitions(source).map_err(fail)?;
        let now_def = if mentioned("$__now") { NOW_DEF } else { "" };
        let code = format!("{now_def}{PRELUDE}{}\n{source}", budget::TICKING_DEFS);
        let prelude_lines = code.lines().count() - source.lines().count().max(1);
        let arena = Arena::default();
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let loader = Loader::new(defs);
        let modules = loader
            .load(
                &arena,
                File {
                    code: &code,
                    path: (),
                },
            )
            .map_err(|errs| fail(describe_load_errors(&code, prelude_lines, &errs)))?;
        let filter = Compiler::default()
            .with_funs(budget::funs())
            .with_global_vars(names.iter().map(String::as_str))
            .compile(modules)
            .map_err(|errs| {
                let undefined: Vec<String> = errs
                    .iter()
                    .flat_map(|(_, es)| es.iter().map(|(name, u)| undefined(name, u)))
                    .collect();
                fail(undefined.join("; "))
            })?;
        Ok(Self {
            source: source.into(),
            filter: Arc::new(filter),
            vars: names.into(),
            fast: fast::Plan::compile(source).map(Arc::new),
        })
    }

    /// The jq source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression and returns its first output (`null` if it produced none).
    ///
    /// Expressions in the subset of `fast.rs` run natively; whatever that subset cannot answer
    /// exactly (errors included) runs on jaq.
    pub fn eval(
        &self,
        input: &Value,
        scope: &dyn Bindings,
        budget: &Budget,
    ) -> Result<Value, ExprError> {
        if let Some(plan) = &self.fast {
            // A panic in the native path is a bug there, not in the expression: let jaq answer.
            if let Ok(Ok(v)) = catch_unwind(AssertUnwindSafe(|| plan.first(input, scope))) {
                return Ok(v);
            }
        }
        self.eval_jaq(input, scope, budget)
    }

    /// Like [`Expr::eval`] on an input the caller no longer needs: an update such as
    /// `.results += [...]` then changes it in place instead of copying the whole document.
    ///
    /// `settled` says the input is itself the result of an expression, so already written as
    /// jq writes values (integral floats as integers) and within the nesting limit: the parts
    /// of it that the result keeps are then not normalised again.
    pub fn eval_owned(
        &self,
        input: Value,
        settled: bool,
        scope: &dyn Bindings,
        budget: &Budget,
    ) -> Result<Value, ExprError> {
        let Some(plan) = &self.fast else {
            return self.eval_jaq(&input, scope, budget);
        };
        // The input moves into the native path; should that panic (a bug there), it is gone,
        // so the evaluation fails instead of falling back.
        match catch_unwind(AssertUnwindSafe(|| plan.first_owned(input, settled, scope))) {
            Ok(fast::Owned::Done(v)) => Ok(v),
            Ok(fast::Owned::Back(input)) => self.eval_jaq(&input, scope, budget),
            Ok(fast::Owned::TooDeep) => Err(ExprError::Eval {
                expr: self.source.to_string(),
                reason: convert::too_deep(),
            }),
            Err(_) => Err(ExprError::Eval {
                expr: self.source.to_string(),
                reason: "the expression evaluator failed (a bug in Baton)".to_owned(),
            }),
        }
    }

    /// True if the expression reads the variable `name` (with its `$`).
    pub fn mentions(&self, name: &str) -> bool {
        self.vars.iter().any(|v| v == name)
    }

    /// True if the expression has a native plan (see `fast.rs`).
    pub fn is_native(&self) -> bool {
        self.fast.is_some()
    }

    /// Evaluates on jaq alone, never on the native plan: the reference the native plan is
    /// checked against, and the baseline of its benchmarks.
    pub fn eval_jaq(
        &self,
        input: &Value,
        scope: &dyn Bindings,
        budget: &Budget,
    ) -> Result<Value, ExprError> {
        let vars: Vec<BVal> = self
            .vars
            .iter()
            .map(|n| scope.get(n).map_or(BVal::Null, |v| convert::to_val(&v)))
            .collect();
        let input = convert::to_val(input);
        let source = &self.source;
        let outcome = budget::run_budgeted(budget, || {
            let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new(vars));
            let mut out = self.filter.id.run((ctx, input));
            match out.next() {
                None => Ok(Value::Null),
                Some(Ok(v)) => convert::from_val(&v),
                Some(Err(e)) => Err(match e.get_err() {
                    Ok(err) => err.to_string(),
                    Err(_) => "the expression halted".to_owned(),
                }),
            }
        });
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(reason)) => Err(ExprError::Eval {
                expr: source.to_string(),
                reason,
            }),
            Err(reason) => Err(ExprError::Budget {
                expr: source.to_string(),
                reason,
            }),
        }
    }

    /// Evaluates to a boolean as jq does: everything but `false` and `null` is true.
    pub fn eval_bool(
        &self,
        input: &Value,
        scope: &dyn Bindings,
        budget: &Budget,
    ) -> Result<bool, ExprError> {
        Ok(!matches!(
            self.eval(input, scope, budget)?,
            Value::Null | Value::Bool(false)
        ))
    }
}

/// What the compiler did not find, in jq's words: ``no function `frobnicate/0` ``, ``no variable
/// `$nope` ``.
fn undefined(name: &str, what: &jaq_core::compile::Undefined) -> String {
    use jaq_core::compile::Undefined;
    match what {
        Undefined::Filter(arity) => format!("no function `{name}/{arity}`"),
        Undefined::Var => format!("no variable `${}`", name.trim_start_matches('$')),
        other => format!("no {} `{name}`", other.as_str()),
    }
}

fn describe_load_errors<P>(
    code: &str,
    prelude_lines: usize,
    errs: &jaq_core::load::Errors<&str, P>,
) -> String {
    use jaq_core::load::Error;
    let pos = |s: &str| -> String {
        let offset = (s.as_ptr() as usize).saturating_sub(code.as_ptr() as usize);
        let offset = offset.min(code.len());
        let before = &code[..offset];
        let line = before.matches('\n').count() + 1;
        let line = line.saturating_sub(prelude_lines);
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {col}")
    };
    let mut out = Vec::new();
    for (_, e) in errs {
        match e {
            Error::Io(ios) => out.extend(ios.iter().map(|(p, m)| format!("{p}: {m}"))),
            Error::Lex(ls) => out.extend(
                ls.iter()
                    .map(|(expect, at)| format!("expected {} at {}", expect.as_str(), pos(at))),
            ),
            Error::Parse(ps) => out.extend(ps.iter().map(|(expect, at)| {
                let found = at.chars().take(12).collect::<String>();
                if found.is_empty() {
                    format!("expected {} at the end", expect.as_str())
                } else {
                    format!(
                        "expected {} at {} (found `{found}`)",
                        expect.as_str(),
                        pos(at)
                    )
                }
            })),
        }
    }
    out.join("; ")
}

#[cfg(test)]
mod tests;
