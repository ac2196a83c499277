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
use regex_bites::bytes::Regex;
use serde_json::{Map, Number, Value};

use super::Bindings;
use super::convert::MAX_DEPTH;

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

#[derive(Debug)]
enum Node {
    Id,
    Const(Value),
    Var(String),
    Path(Box<Node>, Vec<(Step, bool)>),
    Pipe(Box<Node>, Box<Node>),
    Comma(Box<Node>, Box<Node>),
    Alt(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    Math(MathOp, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Arr(Option<Box<Node>>),
    Obj(Vec<(Key, Node)>),
    Str(Vec<StrPiece>),
    If(Vec<(Node, Node)>, Option<Box<Node>>),
    Empty,
    Not,
    Length,
    Type,
    Select(Box<Node>),
    SortBy(Box<Node>),
    Test(Box<Regex>),
    Has(Box<Node>),
    Update(Vec<String>, UpdateOp, Box<Node>),
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
    /// changes it in place instead of copying it. On a fallback the input comes back unchanged.
    pub(super) fn first_owned(&self, input: Value, vars: &dyn Bindings) -> Owned {
        let cx = Cx { vars };
        let Node::Update(keys, op, rhs) = &self.root else {
            return match self.first(&input, vars) {
                Ok(v) => Owned::Done(v),
                Err(Fallback) => Owned::Back(input),
            };
        };
        match cx.update_in_place(keys, *op, rhs, input) {
            Ok(mut v) => {
                if settle(&mut v, MAX_DEPTH) {
                    Owned::Done(v)
                } else {
                    // The input is gone, but jaq would build the same result and refuse it too.
                    Owned::TooDeep
                }
            }
            Err(input) => Owned::Back(input),
        }
    }

    /// The first output of the expression on `input` (`null` if it has none), or [`Fallback`].
    pub(super) fn first(&self, input: &Value, vars: &dyn Bindings) -> R<Value> {
        let cx = Cx { vars };
        let mut first = None;
        cx.each(&self.root, input, &mut |v| {
            first = Some(v.into_owned());
            Ok(Flow::Stop)
        })?;
        let mut v = first.unwrap_or(Value::Null);
        if !settle(&mut v, MAX_DEPTH) {
            return Err(Fallback);
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Lowering jaq's syntax tree

fn lower(t: &Term<&str>) -> Option<Node> {
    Some(match t {
        Term::Id => Node::Id,
        Term::Num(n) => Node::Const(Value::Number(literal_number(n)?)),
        Term::Str(None, parts) => lower_str(parts)?,
        Term::Arr(None) => Node::Arr(None),
        Term::Arr(Some(inner)) => Node::Arr(Some(Box::new(lower(inner)?))),
        Term::Obj(entries) => Node::Obj(
            entries
                .iter()
                .map(|(k, v)| lower_entry(k, v.as_ref()))
                .collect::<Option<_>>()?,
        ),
        // Over a stream, negation is a stream: jaq's.
        Term::Neg(x) => Node::Neg(Box::new(single(lower(x)?)?)),
        Term::Var(name) if !name.starts_with("$__") => Node::Var((*name).to_owned()),
        Term::Path(base, path) => {
            let steps = path
                .0
                .iter()
                .map(|(part, opt)| Some((lower_step(part)?, matches!(opt, Opt::Optional))))
                .collect::<Option<Vec<_>>>()?;
            Node::Path(Box::new(lower(base)?), steps)
        }
        Term::IfThenElse(branches, otherwise) => {
            let branches = branches
                .iter()
                .map(|(c, then)| Some((single(lower(c)?)?, lower(then)?)))
                .collect::<Option<Vec<_>>>()?;
            let otherwise = match otherwise {
                Some(e) => Some(Box::new(lower(e)?)),
                None => None,
            };
            Node::If(branches, otherwise)
        }
        Term::Call(name, args) => lower_call(name, args)?,
        Term::BinOp(l, op, r) => lower_binop(l, op, r)?,
        // `..`, formats, `reduce`/`foreach`, `try`, `label`, local `def`s, `$__loc__`: jaq's.
        _ => return None,
    })
}

/// Keeps `n` only if it always yields exactly one value (or fails, which falls back): binary
/// operators over streams are cartesian products, which the fast path leaves to jaq.
fn single(n: Node) -> Option<Node> {
    is_single(&n).then_some(n)
}

fn is_single(n: &Node) -> bool {
    match n {
        Node::Id
        | Node::Const(_)
        | Node::Var(_)
        | Node::And(..)
        | Node::Or(..)
        | Node::Cmp(..)
        | Node::Math(..)
        | Node::Neg(_)
        | Node::Arr(_)
        | Node::Obj(_)
        | Node::Str(_)
        | Node::Not
        | Node::Length
        | Node::Type
        | Node::SortBy(_)
        | Node::Test(_)
        | Node::Has(_)
        | Node::Update(..) => true,
        Node::Path(base, steps) => {
            is_single(base)
                && steps
                    .iter()
                    .all(|(s, opt)| !opt && !matches!(s, Step::Iter))
        }
        Node::Pipe(a, b) | Node::Alt(a, b) => is_single(a) && is_single(b),
        Node::If(branches, otherwise) => {
            branches.iter().all(|(_, t)| is_single(t)) && otherwise.as_deref().is_none_or(is_single)
        }
        Node::Comma(..) | Node::Empty | Node::Select(_) => false,
    }
}

fn literal_number(n: &str) -> Option<Number> {
    if let Ok(i) = n.parse::<i64>() {
        return Some(Number::from(i));
    }
    // Kept a float, as jaq keeps it (`"\(1.0)"` is "1.0"); only results leave as integers.
    let f = n.parse::<f64>().ok()?;
    Number::from_f64(f)
}

fn literal_str(parts: &[StrPart<&str, Term<&str>>]) -> Option<String> {
    let mut s = String::new();
    for p in parts {
        match p {
            StrPart::Str(t) => s.push_str(t),
            StrPart::Char(c) => s.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(s)
}

fn lower_str(parts: &[StrPart<&str, Term<&str>>]) -> Option<Node> {
    if let Some(s) = literal_str(parts) {
        return Some(Node::Const(Value::String(s)));
    }
    let mut pieces = Vec::new();
    for p in parts {
        pieces.push(match p {
            StrPart::Str(t) => StrPiece::Lit((*t).to_owned()),
            StrPart::Char(c) => StrPiece::Lit(c.to_string()),
            StrPart::Term(t) => StrPiece::Expr(single(lower(t)?)?),
        });
    }
    Some(Node::Str(pieces))
}

fn lower_entry(k: &Term<&str>, v: Option<&Term<&str>>) -> Option<(Key, Node)> {
    let key = match k {
        Term::Str(None, parts) => match literal_str(parts) {
            Some(s) => Key::Lit(s),
            None => Key::Expr(lower_str(parts)?),
        },
        Term::Var(name) if v.is_none() && !name.starts_with("$__") => {
            // `{$x}` is `{x: $x}`.
            let bare = name.trim_start_matches('$').to_owned();
            return Some((Key::Lit(bare), Node::Var((*name).to_owned())));
        }
        // `{(f): v}`; a bare identifier key is already a string term.
        other => Key::Expr(single(lower(other)?)?),
    };
    let value = match v {
        Some(v) => single(lower(v)?)?,
        // `{id}` is `{id: .id}`.
        None => match &key {
            Key::Lit(s) => Node::Path(Box::new(Node::Id), vec![(Step::Key(s.clone()), false)]),
            Key::Expr(_) => return None,
        },
    };
    Some((key, value))
}

fn lower_step(part: &Part<Term<&str>>) -> Option<Step> {
    match part {
        Part::Range(None, None) => Some(Step::Iter),
        Part::Index(Term::Str(None, parts)) => Some(Step::Key(literal_str(parts)?)),
        Part::Index(Term::Num(n)) => n.parse::<i64>().ok().map(Step::Index),
        // Slices and computed indices: jaq's.
        _ => None,
    }
}

fn lower_call(name: &str, args: &[Term<&str>]) -> Option<Node> {
    Some(match (name, args) {
        ("true", []) => Node::Const(Value::Bool(true)),
        ("false", []) => Node::Const(Value::Bool(false)),
        ("null", []) => Node::Const(Value::Null),
        ("empty", []) => Node::Empty,
        ("not", []) => Node::Not,
        ("length", []) => Node::Length,
        ("type", []) => Node::Type,
        ("select", [f]) => Node::Select(Box::new(single(lower(f)?)?)),
        ("map", [f]) => Node::Arr(Some(Box::new(Node::Pipe(
            Box::new(Node::Path(Box::new(Node::Id), vec![(Step::Iter, false)])),
            Box::new(lower(f)?),
        )))),
        ("sort_by", [f]) => Node::SortBy(Box::new(lower(f)?)),
        ("has", [k]) => Node::Has(Box::new(single(lower(k)?)?)),
        ("test", [Term::Str(None, parts)]) => {
            Node::Test(Box::new(Regex::new(&literal_str(parts)?).ok()?))
        }
        _ => return None,
    })
}

fn lower_binop(l: &Term<&str>, op: &BinaryOp<&str>, r: &Term<&str>) -> Option<Node> {
    let pair = |l: &Term<&str>, r: &Term<&str>| -> Option<(Box<Node>, Box<Node>)> {
        Some((Box::new(single(lower(l)?)?), Box::new(single(lower(r)?)?)))
    };
    Some(match op {
        BinaryOp::Pipe(None) => Node::Pipe(Box::new(lower(l)?), Box::new(lower(r)?)),
        BinaryOp::Comma => Node::Comma(Box::new(lower(l)?), Box::new(lower(r)?)),
        BinaryOp::Alt => Node::Alt(Box::new(lower(l)?), Box::new(lower(r)?)),
        BinaryOp::And => {
            let (a, b) = pair(l, r)?;
            Node::And(a, b)
        }
        BinaryOp::Or => {
            let (a, b) = pair(l, r)?;
            Node::Or(a, b)
        }
        BinaryOp::Cmp(c) => {
            let (a, b) = pair(l, r)?;
            Node::Cmp(cmp_op(c), a, b)
        }
        BinaryOp::Math(m) => {
            let (a, b) = pair(l, r)?;
            Node::Math(math_op(m)?, a, b)
        }
        BinaryOp::Assign => update(l, UpdateOp::Assign, r)?,
        BinaryOp::Update => update(l, UpdateOp::Modify, r)?,
        BinaryOp::UpdateMath(m) => update(l, UpdateOp::Math(math_op(m)?), r)?,
        BinaryOp::UpdateAlt => update(l, UpdateOp::Alt, r)?,
        // `f as $x | g`: jaq's.
        BinaryOp::Pipe(Some(_)) => return None,
    })
}

/// `.a.b op= r` with a path of object keys only.
fn update(l: &Term<&str>, op: UpdateOp, r: &Term<&str>) -> Option<Node> {
    let Term::Path(base, path) = l else {
        return None;
    };
    if !matches!(**base, Term::Id) {
        return None;
    }
    let keys = path
        .0
        .iter()
        .map(|(part, opt)| match (part, opt) {
            (Part::Index(Term::Str(None, parts)), Opt::Essential) => literal_str(parts),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    if keys.is_empty() {
        return None;
    }
    Some(Node::Update(keys, op, Box::new(single(lower(r)?)?)))
}

fn cmp_op(c: &Cmp) -> CmpOp {
    match c {
        Cmp::Lt => CmpOp::Lt,
        Cmp::Le => CmpOp::Le,
        Cmp::Gt => CmpOp::Gt,
        Cmp::Ge => CmpOp::Ge,
        Cmp::Eq => CmpOp::Eq,
        Cmp::Ne => CmpOp::Ne,
    }
}

fn math_op(m: &Math) -> Option<MathOp> {
    Some(match m {
        Math::Add => MathOp::Add,
        Math::Sub => MathOp::Sub,
        Math::Mul => MathOp::Mul,
        Math::Div => MathOp::Div,
        // jq's remainder truncates its operands first; jaq's.
        Math::Rem => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation

struct Cx<'b> {
    vars: &'b dyn Bindings,
}

type Sink<'s, 'v> = dyn FnMut(Cow<'v, Value>) -> R<Flow> + 's;

impl Cx<'_> {
    /// Feeds every output of `n` on `input` to `f`, until `f` asks to stop.
    fn each<'v>(&self, n: &'v Node, input: &'v Value, f: &mut Sink<'_, 'v>) -> R<Flow> {
        match n {
            Node::Path(base, steps) => {
                let mut go = |b: Cow<'v, Value>| match b {
                    Cow::Borrowed(b) => walk(b, steps, &mut |v| f(Cow::Borrowed(v))),
                    Cow::Owned(o) => walk(&o, steps, &mut |v| f(Cow::Owned(v.clone()))),
                };
                if is_single(base) {
                    go(self.one(base, input)?)
                } else {
                    self.each(base, input, &mut go)
                }
            }
            Node::Pipe(a, b) => self.each(a, input, &mut |v| match (v, &**b) {
                (Cow::Borrowed(v), _) => self.each(b, v, f),
                // `[…] | sort_by(f)`: the array is this pipe's own, so sort it where it is.
                (Cow::Owned(Value::Array(items)), Node::SortBy(key)) => {
                    f(Cow::Owned(Value::Array(self.sort_items(key, items)?)))
                }
                (Cow::Owned(o), _) => self.each(b, &o, &mut |w| f(Cow::Owned(w.into_owned()))),
            }),
            Node::Comma(a, b) => match self.each(a, input, f)? {
                Flow::Stop => Ok(Flow::Stop),
                Flow::More => self.each(b, input, f),
            },
            Node::Alt(a, b) => {
                let mut any = false;
                let flow = self.each(a, input, &mut |v| {
                    if truthy(&v) {
                        any = true;
                        f(v)
                    } else {
                        Ok(Flow::More)
                    }
                })?;
                if any {
                    Ok(flow)
                } else {
                    self.each(b, input, f)
                }
            }
            Node::If(branches, otherwise) => {
                for (cond, then) in branches {
                    if truthy(&*self.one(cond, input)?) {
                        return self.each(then, input, f);
                    }
                }
                match otherwise {
                    Some(e) => self.each(e, input, f),
                    None => f(Cow::Borrowed(input)),
                }
            }
            Node::Empty => Ok(Flow::More),
            Node::Select(cond) => {
                if truthy(&*self.one(cond, input)?) {
                    f(Cow::Borrowed(input))
                } else {
                    Ok(Flow::More)
                }
            }
            _ => f(self.one(n, input)?),
        }
    }

    /// The one output of `n`, which [`is_single`] guarantees (or a fallback).
    fn one<'v>(&self, n: &'v Node, input: &'v Value) -> R<Cow<'v, Value>> {
        Ok(match n {
            Node::Id => Cow::Borrowed(input),
            Node::Const(v) => Cow::Borrowed(v),
            Node::Var(name) => Cow::Owned(self.vars.get(name).unwrap_or(Value::Null)),
            Node::Path(..) | Node::Pipe(..) | Node::Alt(..) | Node::If(..) => {
                let mut out = None;
                self.each(n, input, &mut |v| {
                    out = Some(v);
                    Ok(Flow::Stop)
                })?;
                out.ok_or(Fallback)?
            }
            Node::And(a, b) => Cow::Owned(Value::Bool(
                truthy(&*self.one(a, input)?) && truthy(&*self.one(b, input)?),
            )),
            Node::Or(a, b) => Cow::Owned(Value::Bool(
                truthy(&*self.one(a, input)?) || truthy(&*self.one(b, input)?),
            )),
            Node::Cmp(op, a, b) => {
                let (l, r) = (self.one(a, input)?, self.one(b, input)?);
                let yes = match op {
                    CmpOp::Eq => jq_eq(&l, &r)?,
                    CmpOp::Ne => !jq_eq(&l, &r)?,
                    CmpOp::Lt => jq_cmp(&l, &r)? == Ordering::Less,
                    CmpOp::Le => jq_cmp(&l, &r)? != Ordering::Greater,
                    CmpOp::Gt => jq_cmp(&l, &r)? == Ordering::Greater,
                    CmpOp::Ge => jq_cmp(&l, &r)? != Ordering::Less,
                };
                Cow::Owned(Value::Bool(yes))
            }
            Node::Math(op, a, b) => {
                let (l, r) = (self.one(a, input)?, self.one(b, input)?);
                Cow::Owned(math(*op, l, r)?)
            }
            Node::Neg(a) => match num(&*self.one(a, input)?)? {
                N::I(i) => Cow::Owned(Value::Number(i.checked_neg().ok_or(Fallback)?.into())),
                N::F(x) => Cow::Owned(Value::Number(Number::from_f64(-x).ok_or(Fallback)?)),
            },
            Node::Arr(None) => Cow::Owned(Value::Array(Vec::new())),
            Node::Arr(Some(inner)) => {
                let mut items = Vec::new();
                self.each(inner, input, &mut |v| {
                    items.push(v.into_owned());
                    Ok(Flow::More)
                })?;
                Cow::Owned(Value::Array(items))
            }
            Node::Obj(entries) => {
                let mut m = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    let key = match k {
                        Key::Lit(s) => s.clone(),
                        Key::Expr(e) => match self.one(e, input)?.into_owned() {
                            Value::String(s) => s,
                            _ => return Err(Fallback),
                        },
                    };
                    m.insert(key, self.one(v, input)?.into_owned());
                }
                Cow::Owned(Value::Object(m))
            }
            Node::Str(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        StrPiece::Lit(t) => s.push_str(t),
                        StrPiece::Expr(e) => interpolate(&mut s, &*self.one(e, input)?)?,
                    }
                }
                Cow::Owned(Value::String(s))
            }
            Node::Not => Cow::Owned(Value::Bool(!truthy(input))),
            Node::Length => Cow::Owned(length(input)?),
            Node::Type => Cow::Owned(Value::String(type_name(input).to_owned())),
            Node::SortBy(key) => Cow::Owned(self.sort_by(key, input)?),
            Node::Test(re) => match input {
                Value::String(s) => Cow::Owned(Value::Bool(re.is_match(s.as_bytes()))),
                _ => return Err(Fallback),
            },
            Node::Has(k) => {
                let k = self.one(k, input)?;
                Cow::Owned(Value::Bool(match (input, &*k) {
                    (Value::Object(m), Value::String(k)) => m.contains_key(k),
                    // jaq counts negative indices from the end; those are jaq's.
                    (Value::Array(a), Value::Number(i)) => match i.as_u64() {
                        Some(i) => i < a.len() as u64,
                        None => return Err(Fallback),
                    },
                    _ => return Err(Fallback),
                }))
            }
            Node::Update(keys, op, rhs) => Cow::Owned(self.update(keys, *op, rhs, input)?),
            Node::Comma(..) | Node::Empty | Node::Select(_) => return Err(Fallback),
        })
    }

    fn sort_by(&self, key: &Node, input: &Value) -> R<Value> {
        let Value::Array(items) = input else {
            return Err(Fallback);
        };
        self.sort_items(key, items.clone()).map(Value::Array)
    }

    /// `sort_by(key)`: a stable sort on the arrays of `key`'s outputs, as jaq's.
    fn sort_items(&self, key: &Node, items: Vec<Value>) -> R<Vec<Value>> {
        let mut keyed = Vec::with_capacity(items.len());
        for item in items {
            let mut k = Vec::new();
            self.each(key, &item, &mut |v| {
                k.push(v.into_owned());
                Ok(Flow::More)
            })?;
            keyed.push((k, item));
        }
        // Every comparison must be decidable before sorting, so that the comparator never has
        // to fall back halfway.
        if !keyed.iter().all(|(k, _)| k.iter().all(orderable)) {
            return Err(Fallback);
        }
        keyed.sort_by(|a, b| cmp_seq(&a.0, &b.0).unwrap_or(Ordering::Equal));
        Ok(keyed.into_iter().map(|(_, v)| v).collect())
    }

    fn update(&self, keys: &[String], op: UpdateOp, rhs: &Node, input: &Value) -> R<Value> {
        self.update_in_place(keys, op, rhs, input.clone())
            .map_err(|_| Fallback)
    }

    /// `.k1.k2 op= rhs` on an input the caller gives away. Every check happens before the input
    /// is touched, so a fallback hands it back unchanged for jaq.
    fn update_in_place(
        &self,
        keys: &[String],
        op: UpdateOp,
        rhs: &Node,
        mut input: Value,
    ) -> Result<Value, Value> {
        // The right side of `=`, `+=`, `//=` sees the whole input; that of `|=` the old value.
        let given = match op {
            UpdateOp::Modify => None,
            _ => match self.one(rhs, &input) {
                Ok(v) => Some(v.into_owned()),
                Err(Fallback) => return Err(input),
            },
        };
        // jaq updates only through objects (through null it fails, where jq would create the
        // object); the last key may be missing.
        let mut old = &input;
        for (i, k) in keys.iter().enumerate() {
            let Value::Object(m) = old else {
                return Err(input);
            };
            old = match m.get(k) {
                Some(v) => v,
                None if i + 1 == keys.len() => &NULL,
                None => return Err(input),
            };
        }
        let new = match (op, given) {
            (UpdateOp::Assign, Some(v)) => Some(v),
            (UpdateOp::Alt, Some(v)) => (!truthy(old)).then_some(v),
            (UpdateOp::Modify, _) => match self.one(rhs, old) {
                Ok(v) => Some(v.into_owned()),
                Err(Fallback) => return Err(input),
            },
            (UpdateOp::Math(m), Some(v)) => {
                if !math_succeeds(m, old, &v) {
                    return Err(input);
                }
                // Numbers are computed here; other operands are combined in place below.
                match (old, &v) {
                    (Value::Number(_), Value::Number(_)) => {
                        match math(m, Cow::Borrowed(old), Cow::Owned(v)) {
                            Ok(n) => Some(n),
                            Err(Fallback) => return Err(input),
                        }
                    }
                    _ => {
                        let slot = slot_mut(&mut input, keys);
                        let old = std::mem::take(slot);
                        // Cannot fail: `math_succeeds` checked the operand types.
                        *slot = math(m, Cow::Owned(old), Cow::Owned(v)).unwrap_or_default();
                        return Ok(input);
                    }
                }
            }
            _ => return Err(input),
        };
        if let Some(new) = new {
            *slot_mut(&mut input, keys) = new;
        }
        Ok(input)
    }
}

/// The value at `keys`, inserted as null if the last key is missing. The caller has checked
/// that every container on the way is an object.
fn slot_mut<'v>(mut v: &'v mut Value, keys: &[String]) -> &'v mut Value {
    for k in keys {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        let Value::Object(m) = v else {
            unreachable!("made an object just above")
        };
        v = m.entry(k.clone()).or_insert(Value::Null);
    }
    v
}

/// True if `l op r` succeeds for non-numbers (numbers are checked by computing them).
fn math_succeeds(op: MathOp, l: &Value, r: &Value) -> bool {
    matches!(
        (op, l, r),
        (_, Value::Number(_), Value::Number(_))
            | (MathOp::Add, Value::Null, _)
            | (MathOp::Add, _, Value::Null)
            | (MathOp::Add, Value::String(_), Value::String(_))
            | (MathOp::Add, Value::Array(_), Value::Array(_))
            | (MathOp::Add, Value::Object(_), Value::Object(_))
    )
}

/// Follows `steps` from `v`, feeding every value reached to `f`.
fn walk<'v>(
    v: &'v Value,
    steps: &[(Step, bool)],
    f: &mut dyn FnMut(&'v Value) -> R<Flow>,
) -> R<Flow> {
    // A step that does not fit the value is an error, or nothing under `?`. jaq's rules for
    // which steps fit differ from jq's in places (`.[0]` on an object is null in jaq), so a
    // misfit is always jaq's to answer; `?` matters here only for the steps that fit.
    let Some(((step, _optional), rest)) = steps.split_first() else {
        return f(v);
    };
    let mismatch = || Err(Fallback);
    match (step, v) {
        (Step::Key(k), Value::Object(m)) => walk(m.get(k).unwrap_or(&NULL), rest, f),
        (Step::Key(_) | Step::Index(_), Value::Null) => walk(&NULL, rest, f),
        (Step::Index(i), Value::Array(a)) => {
            let at = if *i < 0 { a.len() as i64 + i } else { *i };
            let item = usize::try_from(at).ok().and_then(|at| a.get(at));
            walk(item.unwrap_or(&NULL), rest, f)
        }
        (Step::Iter, Value::Array(a)) => {
            for x in a {
                if walk(x, rest, f)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            Ok(Flow::More)
        }
        (Step::Iter, Value::Object(m)) => {
            for x in m.values() {
                if walk(x, rest, f)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            Ok(Flow::More)
        }
        _ => mismatch(),
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A number as jaq holds it: a machine integer or a float.
#[derive(Clone, Copy)]
enum N {
    I(i64),
    F(f64),
}

fn num(v: &Value) -> R<N> {
    match v {
        Value::Number(n) => number(n),
        _ => Err(Fallback),
    }
}

fn number(n: &Number) -> R<N> {
    if let Some(i) = n.as_i64() {
        Ok(N::I(i))
    } else if n.is_f64() {
        n.as_f64().map(N::F).ok_or(Fallback)
    } else {
        // Beyond i64: jaq keeps the digits; leave it to jaq.
        Err(Fallback)
    }
}

impl N {
    fn f(self) -> f64 {
        match self {
            N::I(i) => i as f64,
            N::F(x) => x,
        }
    }
}

/// A float as it leaves jaq (see `convert.rs`): integral floats become integers. Only results
/// are written this way; inside an evaluation a float stays a float.
fn float(f: f64) -> Option<Number> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(Number::from(f as i64))
    } else {
        Number::from_f64(f)
    }
}

fn length(v: &Value) -> R<Value> {
    Ok(Value::Number(match v {
        Value::Null => 0.into(),
        Value::Number(n) => match number(n)? {
            N::I(i) => i.checked_abs().ok_or(Fallback)?.into(),
            N::F(x) => Number::from_f64(x.abs()).ok_or(Fallback)?,
        },
        Value::String(s) => s.chars().count().into(),
        Value::Array(a) => a.len().into(),
        Value::Object(m) => m.len().into(),
        Value::Bool(_) => return Err(Fallback),
    }))
}

fn math<'a>(op: MathOp, l: Cow<'a, Value>, r: Cow<'a, Value>) -> R<Value> {
    if let (Value::Number(a), Value::Number(b)) = (&*l, &*r) {
        let (a, b) = (number(a)?, number(b)?);
        return arith(op, a, b).map(Value::Number);
    }
    match (op, l, r) {
        (MathOp::Add, Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null), x)
        | (MathOp::Add, x, Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null)) => {
            Ok(x.into_owned())
        }
        (MathOp::Add, l, r) => match (l.into_owned(), r.into_owned()) {
            (Value::String(mut a), Value::String(b)) => {
                a.push_str(&b);
                Ok(Value::String(a))
            }
            (Value::Array(mut a), Value::Array(b)) => {
                a.extend(b);
                Ok(Value::Array(a))
            }
            (Value::Object(mut a), Value::Object(b)) => {
                a.extend(b);
                Ok(Value::Object(a))
            }
            _ => Err(Fallback),
        },
        _ => Err(Fallback),
    }
}

fn arith(op: MathOp, a: N, b: N) -> R<Number> {
    if let (N::I(x), N::I(y)) = (a, b) {
        let exact = match op {
            MathOp::Add => x.checked_add(y),
            MathOp::Sub => x.checked_sub(y),
            MathOp::Mul => x.checked_mul(y),
            MathOp::Div => None,
        };
        if let Some(v) = exact {
            return Ok(v.into());
        }
        if !matches!(op, MathOp::Div) {
            return Err(Fallback);
        }
    }
    let (x, y) = (a.f(), b.f());
    let v = match op {
        MathOp::Add => x + y,
        MathOp::Sub => x - y,
        MathOp::Mul => x * y,
        MathOp::Div if y == 0.0 => return Err(Fallback),
        MathOp::Div => x / y,
    };
    // Past 2^53 an integer result may differ from jaq's exact arithmetic.
    if v.abs() >= 9.0e15 {
        return Err(Fallback);
    }
    // A float stays a float until the result leaves (`settle`), as in jaq.
    Number::from_f64(v).ok_or(Fallback)
}

fn interpolate(s: &mut String, v: &Value) -> R<()> {
    match v {
        Value::String(t) => s.push_str(t),
        Value::Null => s.push_str("null"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match number(n)? {
            N::I(i) => s.push_str(&i.to_string()),
            // jaq's float formatting is its own.
            N::F(_) => return Err(Fallback),
        },
        _ => return Err(Fallback),
    }
    Ok(())
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn num_cmp(a: N, b: N) -> R<Ordering> {
    match (a, b) {
        (N::I(x), N::I(y)) => Ok(x.cmp(&y)),
        _ => a.f().partial_cmp(&b.f()).ok_or(Fallback),
    }
}

/// jq's total order, for the values where jaq's and this module's agree (objects are jaq's).
fn jq_cmp(a: &Value, b: &Value) -> R<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Ok(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Number(x), Value::Number(y)) => num_cmp(number(x)?, number(y)?),
        (Value::String(x), Value::String(y)) => Ok(x.as_bytes().cmp(y.as_bytes())),
        (Value::Array(x), Value::Array(y)) => cmp_seq(x, y),
        (Value::Object(_), Value::Object(_)) => Err(Fallback),
        _ => Ok(rank(a).cmp(&rank(b))),
    }
}

fn cmp_seq(x: &[Value], y: &[Value]) -> R<Ordering> {
    for (a, b) in x.iter().zip(y) {
        match jq_cmp(a, b)? {
            Ordering::Equal => {}
            other => return Ok(other),
        }
    }
    Ok(x.len().cmp(&y.len()))
}

fn jq_eq(a: &Value, b: &Value) -> R<bool> {
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(number(x)?, number(y)?)? == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(y) {
                if !jq_eq(p, q)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, p) in x {
                match y.get(k) {
                    Some(q) if jq_eq(p, q)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        _ => a == b,
    })
}

/// True if [`jq_cmp`] decides every comparison involving `v`.
fn orderable(v: &Value) -> bool {
    match v {
        Value::Number(n) => number(n).is_ok(),
        Value::Array(a) => a.iter().all(orderable),
        Value::Object(_) => false,
        _ => true,
    }
}

/// Writes integral floats as integers, as a trip through jaq does (`1.0` leaves jaq as `1`),
/// and checks the result's nesting against jaq's limit. False if it is nested too deep.
fn settle(v: &mut Value, left: usize) -> bool {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(i) = n.as_f64().and_then(float) {
                *n = i;
            }
            true
        }
        Value::Array(a) => a.is_empty() || (left > 0 && a.iter_mut().all(|x| settle(x, left - 1))),
        Value::Object(m) => {
            m.is_empty() || (left > 0 && m.values_mut().all(|x| settle(x, left - 1)))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests;
