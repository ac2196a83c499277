//! The expression budget.
//!
//! jaq has no fuel counter of its own, so the budget is enforced in three places:
//!
//! * every builtin that can loop without bound (`range`, `repeat`, `recurse(f)`, `while`, `until`,
//!   `limit`-driven `combinations`) is redefined in the prelude to call the native `__tick` once per
//!   iteration; `__tick` spends one unit of the thread's fuel and fails once it is gone;
//! * user-written `def`s are rejected at compile time, so the only recursion is the
//!   builtins' (which tick);
//! * exhaustion is sticky: once the fuel is gone every later tick fails too, so `try … catch`
//!   cannot swallow the failure and loop on, and the evaluation reports a budget error whatever
//!   the filter did with the failure;
//! * a panic inside jaq (for instance a capacity overflow from `"x" * 1e18`) is caught at the
//!   evaluation boundary and reported as a budget error instead of unwinding into the caller.
//!
//! The alternative, evaluating on a watchdog thread, was rejected: a Rust thread cannot be
//! stopped, so a runaway expression would keep a core busy for ever.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use jaq_core::native::{Fun, bome, run, v};
use jaq_core::{Error, Exn};

use super::Data;

/// jaq's JSON value, the type expressions compute on.
pub(super) type BVal = jaq_json::Val;

/// Limits for one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Loop iterations (ticks) one evaluation may spend.
    pub steps: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self { steps: 1_000_000 }
    }
}

thread_local! {
    static FUEL: Cell<u64> = const { Cell::new(u64::MAX) };
    static EXHAUSTED: Cell<bool> = const { Cell::new(false) };
}

const EXHAUSTED_MSG: &str = "expression budget exhausted";

fn tick() -> Result<(), Exn<'static, BVal>> {
    let left = FUEL.with(Cell::get);
    if left == 0 || EXHAUSTED.with(Cell::get) {
        EXHAUSTED.with(|e| e.set(true));
        return Err(Exn::from(Error::str(EXHAUSTED_MSG)));
    }
    FUEL.with(|f| f.set(left - 1));
    Ok(())
}

/// The native filters: jaq's core and standard ones plus `__tick`.
pub(super) fn funs() -> impl Iterator<Item = Fun<Data>> {
    let tick_fun = run::<Data>(("__tick", v(0), |cv| {
        bome(tick().map(|()| cv.1).map_err(|_| Error::str(EXHAUSTED_MSG)))
    }));
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .chain(std::iter::once(tick_fun))
}

/// Definitions that put the unbounded builtins on the budget (see the module docs).
pub(super) const TICKING_DEFS: &str = r#"
def range($from; $upto; $by): $from |
  if $by > 0 then def rec: __tick | if . < $upto then ., (. + $by | rec) else empty end; rec
  elif $by < 0 then def rec: __tick | if . > $upto then ., (. + $by | rec) else empty end; rec
  else def rec: __tick | if . != $upto then ., (. + $by | rec) else empty end; rec
  end;
def range($from; $upto): range($from; $upto; 1);
def range($upto): range(0; $upto; 1);
def repeat(f): def rec: __tick | (f, rec); rec;
def recurse(f): def rec: __tick | (., (f | rec)); rec;
def recurse(f; cond): recurse(f | select(cond));
def while(cond; update): def rec: __tick | if cond then ., (update | rec) else empty end; rec;
def until(cond; update): def rec: __tick | if cond then . else (update | rec) end; rec;
def combinations($n): [limit($n; repeat(.))] | combinations;
"#;

/// Runs `f` under `budget`. The outer `Err` means the budget was exceeded (or jaq panicked).
pub(super) fn run_budgeted<T>(budget: &Budget, f: impl FnOnce() -> T) -> Result<T, String> {
    let saved = (FUEL.with(Cell::get), EXHAUSTED.with(Cell::get));
    FUEL.with(|c| c.set(budget.steps));
    EXHAUSTED.with(|c| c.set(false));
    let result = catch_unwind(AssertUnwindSafe(f));
    let exhausted = EXHAUSTED.with(Cell::get);
    FUEL.with(|c| c.set(saved.0));
    EXHAUSTED.with(|c| c.set(saved.1));
    match result {
        Ok(_) if exhausted => Err(format!("more than {} loop iterations", budget.steps)),
        Ok(v) => Ok(v),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the evaluator failed".to_owned());
            Err(msg)
        }
    }
}

/// Rejects user-written function definitions, the one way to loop without ticking.
pub(super) fn reject_definitions(source: &str) -> Result<(), String> {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = source.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if b == b'"' {
            in_string = true;
            continue;
        }
        let word_start = i == 0 || !is_ident(bytes[i - 1]);
        if word_start
            && source[i..].starts_with("def")
            && bytes.get(i + 3).is_none_or(|c| !is_ident(*c))
        {
            return Err(
                "function definitions (`def`) are not allowed in workflow expressions".to_owned(),
            );
        }
    }
    Ok(())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}
