//! Lowering jaq's syntax tree into a plan: only the constructs the subset implements.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn lower(t: &Term<&str>) -> Option<Node> {
    Some(match t {
        Term::Id => Node::Id,
        Term::Num(n) => Node::Const(Value::Number(literal_number(n)?)),
        Term::Str(None, parts) => lower_str(parts)?,
        Term::Arr(None) => Node::Arr(None),
        Term::Arr(Some(inner)) => Node::Arr(Some(Box::new(lower(inner)?))),
        Term::Obj(entries) => {
            let entries: Vec<(Key, Node)> = entries
                .iter()
                .map(|(k, v)| lower_entry(k, v.as_ref()))
                .collect::<Option<_>>()?;
            // An object of literal keys and constant values is itself a constant.
            if let Some(Shape { mut keys, .. }) = object_shape(&entries)
                && entries.iter().all(|(_, v)| matches!(v, Node::Const(_)))
            {
                for (slot, (_, v)) in keys.values_mut().zip(entries) {
                    if let Node::Const(c) = v {
                        *slot = c;
                    }
                }
                return Some(Node::Const(Value::Object(keys)));
            }
            let shape = object_shape(&entries);
            Node::Obj(entries, shape)
        }
        // Over a stream, negation is a stream: jaq's.
        Term::Neg(x) => Node::Neg(Box::new(single(lower(x)?)?)),
        Term::Var(name) if !name.starts_with("$__") => Node::Var((*name).to_owned()),
        // jaq's parser wraps terms in a path even when no step follows (`[…]`, `(…)`): such a
        // path is its base, and lowering it as one keeps an owned base from being copied.
        Term::Path(base, path) if path.0.is_empty() => lower(base)?,
        Term::Path(base, p) => {
            let steps =
                p.0.iter()
                    .map(|(part, opt)| Some((lower_step(part)?, matches!(opt, Opt::Optional))))
                    .collect::<Option<Vec<_>>>()?;
            path(lower(base)?, steps)
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
            let a = arity(
                branches.iter().all(|(_, t)| is_single(t))
                    && otherwise.as_deref().is_none_or(is_single),
            );
            Node::If(branches, otherwise, a)
        }
        Term::Call(name, args) => lower_call(name, args)?,
        Term::BinOp(l, op, r) => lower_binop(l, op, r)?,
        // `..`, formats, `reduce`/`foreach`, `try`, `label`, local `def`s, `$__loc__`: jaq's.
        _ => return None,
    })
}

/// Keeps `n` only if it always yields exactly one value (or fails, which falls back): binary
/// operators over streams are cartesian products, which the fast path leaves to jaq.
pub(super) fn single(n: Node) -> Option<Node> {
    is_single(&n).then_some(n)
}

/// True if `n` yields exactly one value (or fails). Constant time: the nodes whose arity depends
/// on their parts carry it, computed by the constructors below when lowering.
pub(super) fn is_single(n: &Node) -> bool {
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
        | Node::Obj(..)
        | Node::Str(_)
        | Node::Not
        | Node::Length
        | Node::Type
        | Node::SortBy(_)
        | Node::Test(_)
        | Node::Has(_)
        | Node::Update(..) => true,
        Node::Path(.., a) | Node::Pipe(.., a) | Node::Alt(.., a) | Node::If(.., a) => {
            *a == Arity::One
        }
        Node::Comma(..) | Node::Empty | Node::Select(_) => false,
    }
}

fn arity(single: bool) -> Arity {
    if single { Arity::One } else { Arity::Stream }
}

/// `base` followed by `steps`: one value if the base is one and every step is a plain key or
/// index (`.[]` iterates; `?` may yield nothing).
pub(super) fn path(base: Node, steps: Vec<(Step, bool)>) -> Node {
    let a = arity(
        is_single(&base)
            && steps
                .iter()
                .all(|(s, opt)| !opt && !matches!(s, Step::Iter)),
    );
    Node::Path(Box::new(base), steps, a)
}

pub(super) fn pipe(l: Node, r: Node) -> Node {
    let a = arity(is_single(&l) && is_single(&r));
    Node::Pipe(Box::new(l), Box::new(r), a)
}

pub(super) fn alt(l: Node, r: Node) -> Node {
    let a = arity(is_single(&l) && is_single(&r));
    Node::Alt(Box::new(l), Box::new(r), a)
}

pub(super) fn literal_number(n: &str) -> Option<Number> {
    if let Ok(i) = n.parse::<i64>() {
        return Some(Number::from(i));
    }
    // Kept a float, as jaq keeps it (`"\(1.0)"` is "1.0"); only results leave as integers.
    let f = n.parse::<f64>().ok()?;
    Number::from_f64(f)
}

pub(super) fn literal_str(parts: &[StrPart<&str, Term<&str>>]) -> Option<String> {
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

pub(super) fn lower_str(parts: &[StrPart<&str, Term<&str>>]) -> Option<Node> {
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

/// The object an all-literal, duplicate-free key list builds, with null values in key order;
/// `None` if a key is computed or repeated (a later duplicate overwrites an earlier value).
fn object_shape(entries: &[(Key, Node)]) -> Option<Shape> {
    let mut keys = Map::with_capacity(entries.len());
    for (k, _) in entries {
        let Key::Lit(k) = k else { return None };
        if keys.insert(k.clone(), Value::Null).is_some() {
            return None;
        }
    }
    let paths: Vec<Option<Vec<&str>>> = entries.iter().map(|(_, v)| key_path(v)).collect();
    let moves = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.as_ref().is_some_and(|p| {
                paths.iter().enumerate().all(|(j, q)| {
                    i == j
                        || q.as_ref()
                            .is_none_or(|q| !p.starts_with(q) && !q.starts_with(p))
                })
            })
        })
        .collect();
    Some(Shape { keys, moves })
}

/// The keys of `n` if it is the input (no keys) or a path of plain (not optional) keys from it.
fn key_path(n: &Node) -> Option<Vec<&str>> {
    let Node::Path(base, steps, Arity::One) = n else {
        return matches!(n, Node::Id).then(Vec::new);
    };
    if !matches!(**base, Node::Id) {
        return None;
    }
    steps
        .iter()
        .map(|(s, optional)| match s {
            Step::Key(k) if !optional => Some(k.as_str()),
            _ => None,
        })
        .collect()
}

pub(super) fn lower_entry(k: &Term<&str>, v: Option<&Term<&str>>) -> Option<(Key, Node)> {
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
            Key::Lit(s) => path(Node::Id, vec![(Step::Key(s.clone()), false)]),
            Key::Expr(_) => return None,
        },
    };
    Some((key, value))
}

pub(super) fn lower_step(part: &Part<Term<&str>>) -> Option<Step> {
    match part {
        Part::Range(None, None) => Some(Step::Iter),
        Part::Index(Term::Str(None, parts)) => Some(Step::Key(literal_str(parts)?)),
        Part::Index(Term::Num(n)) => n.parse::<i64>().ok().map(Step::Index),
        // Slices and computed indices: jaq's.
        _ => None,
    }
}

pub(super) fn lower_call(name: &str, args: &[Term<&str>]) -> Option<Node> {
    Some(match (name, args) {
        ("true", []) => Node::Const(Value::Bool(true)),
        ("false", []) => Node::Const(Value::Bool(false)),
        ("null", []) => Node::Const(Value::Null),
        ("empty", []) => Node::Empty,
        ("not", []) => Node::Not,
        ("length", []) => Node::Length,
        ("type", []) => Node::Type,
        ("select", [f]) => Node::Select(Box::new(single(lower(f)?)?)),
        ("map", [f]) => Node::Arr(Some(Box::new(pipe(
            path(Node::Id, vec![(Step::Iter, false)]),
            lower(f)?,
        )))),
        ("sort_by", [f]) => Node::SortBy(Box::new(lower(f)?)),
        ("has", [k]) => Node::Has(Box::new(single(lower(k)?)?)),
        ("test", [Term::Str(None, parts)]) => {
            Node::Test(Box::new(Pattern::compile(&literal_str(parts)?)?))
        }
        _ => return None,
    })
}

pub(super) fn lower_binop(l: &Term<&str>, op: &BinaryOp<&str>, r: &Term<&str>) -> Option<Node> {
    let pair = |l: &Term<&str>, r: &Term<&str>| -> Option<(Box<Node>, Box<Node>)> {
        Some((Box::new(single(lower(l)?)?), Box::new(single(lower(r)?)?)))
    };
    Some(match op {
        BinaryOp::Pipe(None) => pipe(lower(l)?, lower(r)?),
        BinaryOp::Comma => Node::Comma(Box::new(lower(l)?), Box::new(lower(r)?)),
        BinaryOp::Alt => alt(lower(l)?, lower(r)?),
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
pub(super) fn update(l: &Term<&str>, op: UpdateOp, r: &Term<&str>) -> Option<Node> {
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

pub(super) fn cmp_op(c: &Cmp) -> CmpOp {
    match c {
        Cmp::Lt => CmpOp::Lt,
        Cmp::Le => CmpOp::Le,
        Cmp::Gt => CmpOp::Gt,
        Cmp::Ge => CmpOp::Ge,
        Cmp::Eq => CmpOp::Eq,
        Cmp::Ne => CmpOp::Ne,
    }
}

pub(super) fn math_op(m: &Math) -> Option<MathOp> {
    Some(match m {
        Math::Add => MathOp::Add,
        Math::Sub => MathOp::Sub,
        Math::Mul => MathOp::Mul,
        Math::Div => MathOp::Div,
        // jq's remainder truncates its operands first; jaq's.
        Math::Rem => return None,
    })
}
