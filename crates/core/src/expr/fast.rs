//! A native evaluator for the everyday subset of jq, in front of jaq.
//!
//! Most expressions in workflows read a few fields, compare, combine and build small objects:
//! `(.Address.Zip // "") | test("^[0-9]{5}$") | not`, `{id, check}`, `.results += [...]`. jaq
//! runs them correctly but pays for generality on every evaluation: the data is converted into
//! its value type and back, and every filter step allocates a boxed iterator. For those shapes
//! this module evaluates the expression's syntax tree (parsed by jaq's own parser) directly on
//! `serde_json::Value`, borrowing subtrees of the input instead of copying them.
//!
//! The contract is one-sided, which keeps it safe:
//!
//! * [`Plan::compile`] accepts only constructs it implements exactly; anything else (`reduce`,
//!   `try`, `as` bindings, `..`, slices, formats, most builtins) yields no plan and the
//!   expression always runs on jaq.
//! * At run time, any case whose outcome is not a plain success (a type error, an integer
//!   overflow, an object comparison, a non-finite number, …) returns [`Fallback`] and the caller
//!   evaluates the expression on jaq from scratch, so error messages and edge cases are always
//!   jaq's. Evaluation is pure, so running it twice is harmless.
//!
//! Everything this module answers must be what jaq answers; `tests.rs` checks that differentially
//! over a corpus of expressions and inputs, including every expression of the sample app.
//!
//! Budget: the subset has no recursion and no unbounded loop (no `range`, `repeat`, `recurse`,
//! `until`, user definitions), so an evaluation costs at most the size of the expression times
//! the size of the data (times log n for `sort_by`); the tick budget of jaq's loops does not apply.

use std::borrow::Cow;
use std::cmp::Ordering;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use serde_json::{Map, Number, Value};

use super::Bindings;
use super::convert::MAX_DEPTH;

mod eval;
mod lower;
mod pattern;
mod values;

use eval::*;
use lower::*;
use pattern::Pattern;
use values::*;

/// The evaluation must be left to jaq: the fast path does not know how to answer it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fallback;

type R<T> = Result<T, Fallback>;

/// Whether a stream consumer wants more outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    More,
    Stop,
}

static NULL: Value = Value::Null;

/// The outcome of [`Plan::first_owned`].
#[derive(Debug)]
pub(super) enum Owned {
    Done(Value),
    /// Not answered: the untouched input, for jaq.
    Back(Value),
    /// The result is nested deeper than jaq accepts.
    TooDeep,
}

/// A compiled fast plan for one expression.
#[derive(Debug)]
pub(super) struct Plan {
    root: Node,
}

#[derive(Debug)]
enum Step {
    Key(String),
    Index(i64),
    Iter,
}

#[derive(Debug)]
enum Key {
    Lit(String),
    Expr(Node),
}

#[derive(Debug, Clone, Copy)]
enum UpdateOp {
    /// `=`: the right side's value.
    Assign,
    /// `|=`: the right side applied to the old value.
    Modify,
    /// `+=`, `-=`, …: old op right side.
    Math(MathOp),
    /// `//=`: old // right side.
    Alt,
}

#[derive(Debug, Clone, Copy)]
enum MathOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy)]
enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// Whether a node always yields exactly one value (or fails, which falls back): decided once,
/// when lowering, for the nodes where it depends on their parts (see [`lower::is_single`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    One,
    Stream,
}

#[derive(Debug)]
enum Node {
    Id,
    Const(Value),
    Var(String),
    Path(Box<Node>, Vec<(Step, bool)>, Arity),
    Pipe(Box<Node>, Box<Node>, Arity),
    Comma(Box<Node>, Box<Node>),
    Alt(Box<Node>, Box<Node>, Arity),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    Math(MathOp, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Arr(Option<Box<Node>>),
    /// `{k: v, …}`; with the keys' shape when every key is a distinct literal, so that
    /// building the object copies that shape instead of hashing each key again.
    Obj(Vec<(Key, Node)>, Option<Shape>),
    Str(Vec<StrPiece>),
    If(Vec<(Node, Node)>, Option<Box<Node>>, Arity),
    Empty,
    Not,
    Length,
    Type,
    Select(Box<Node>),
    SortBy(Box<Node>),
    Test(Box<Pattern>),
    Has(Box<Node>),
    Update(Vec<String>, UpdateOp, Box<Node>),
}

/// The keys of an object construction whose keys are distinct literals, in order.
#[derive(Debug)]
struct Shape {
    keys: Map<String, Value>,
    /// Per entry: true if its value is a path of keys into the input (`.a`, `.a.b`) that is
    /// neither part of nor contains another such entry's path, so that on an input given away
    /// the value can be moved out of the input instead of copied (see [`Cx::owned`]).
    moves: Vec<bool>,
}

#[derive(Debug)]
enum StrPiece {
    Lit(String),
    Expr(Node),
}

impl Plan {
    /// A plan for `source`, or `None` if it uses anything outside the subset.
    pub(super) fn compile(source: &str) -> Option<Self> {
        let term = jaq_core::load::parse(source, |p| p.term())?;
        let root = lower(&term)?;
        Some(Self { root })
    }

    /// Like [`Plan::first`] on an input the caller gives away, so that an update (`.a += …`)
    /// changes it in place and an object built from it (`{a: .a, n: (.b | length)}`) moves
    /// the parts it keeps whole instead of copying them. On a fallback the input comes back
    /// unchanged. If the input is `settled` (an expression's result), only the parts of the
    /// result that are new are settled.
    pub(super) fn first_owned(&self, input: Value, settled: bool, vars: &dyn Bindings) -> Owned {
        Cx { vars }.owned(&self.root, input, settled)
    }

    /// The first output of the expression on `input` (`null` if it has none), or [`Fallback`].
    pub(super) fn first(&self, input: &Value, vars: &dyn Bindings) -> R<Value> {
        let mut v = Cx { vars }.first_value(&self.root, input)?;
        if !settle(&mut v, MAX_DEPTH) {
            return Err(Fallback);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
