//! jq's value semantics as jaq implements them: truth, numbers, order, equality, arithmetic.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

pub(super) fn type_name(v: &Value) -> &'static str {
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
pub(super) enum N {
    I(i64),
    F(f64),
}

pub(super) fn num(v: &Value) -> R<N> {
    match v {
        Value::Number(n) => number(n),
        _ => Err(Fallback),
    }
}

pub(super) fn number(n: &Number) -> R<N> {
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
pub(super) fn float(f: f64) -> Option<Number> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(Number::from(f as i64))
    } else {
        Number::from_f64(f)
    }
}

pub(super) fn length(v: &Value) -> R<Value> {
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

pub(super) fn math<'a>(op: MathOp, l: Cow<'a, Value>, r: Cow<'a, Value>) -> R<Value> {
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

pub(super) fn arith(op: MathOp, a: N, b: N) -> R<Number> {
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

pub(super) fn interpolate(s: &mut String, v: &Value) -> R<()> {
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

pub(super) fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

pub(super) fn num_cmp(a: N, b: N) -> R<Ordering> {
    match (a, b) {
        (N::I(x), N::I(y)) => Ok(x.cmp(&y)),
        _ => a.f().partial_cmp(&b.f()).ok_or(Fallback),
    }
}

/// jq's total order, for the values where jaq's and this module's agree (objects are jaq's).
pub(super) fn jq_cmp(a: &Value, b: &Value) -> R<Ordering> {
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

pub(super) fn cmp_seq(x: &[Value], y: &[Value]) -> R<Ordering> {
    for (a, b) in x.iter().zip(y) {
        match jq_cmp(a, b)? {
            Ordering::Equal => {}
            other => return Ok(other),
        }
    }
    Ok(x.len().cmp(&y.len()))
}

pub(super) fn jq_eq(a: &Value, b: &Value) -> R<bool> {
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
                match field(y, k) {
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
pub(super) fn orderable(v: &Value) -> bool {
    match v {
        Value::Number(n) => number(n).is_ok(),
        Value::Array(a) => a.iter().all(orderable),
        Value::Object(_) => false,
        _ => true,
    }
}

/// Writes integral floats as integers, as a trip through jaq does (`1.0` leaves jaq as `1`),
/// and checks the result's nesting against jaq's limit. False if it is nested too deep.
pub(super) fn settle(v: &mut Value, left: usize) -> bool {
    match v {
        Value::Array(a) => {
            a.is_empty() || (left > 0 && a.iter_mut().all(|x| settle_in(x, left - 1)))
        }
        Value::Object(m) => {
            m.is_empty() || (left > 0 && m.values_mut().all(|x| settle_in(x, left - 1)))
        }
        _ => settle_in(v, left),
    }
}

/// [`settle`] for an item of a container: most items are strings, booleans and integers,
/// which are settled as they are, without a call.
#[inline(always)]
fn settle_in(v: &mut Value, left: usize) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => {
            settle_number(n);
            true
        }
        Value::Array(_) | Value::Object(_) => settle(v, left),
    }
}

#[inline(always)]
fn settle_number(n: &mut Number) {
    if n.is_f64()
        && let Some(i) = n.as_f64().and_then(float)
    {
        *n = i;
    }
}

/// `m[k]`, by a scan of the keys for the small objects documents are mostly made of (cheaper
/// than hashing the key), by hash for larger ones.
pub(super) fn field<'m>(m: &'m Map<String, Value>, k: &str) -> Option<&'m Value> {
    if m.len() <= SCAN_UP_TO {
        m.iter().find_map(|(key, v)| (key == k).then_some(v))
    } else {
        m.get(k)
    }
}

/// [`field`], for changing the value.
pub(super) fn field_mut<'m>(m: &'m mut Map<String, Value>, k: &str) -> Option<&'m mut Value> {
    if m.len() <= SCAN_UP_TO {
        m.iter_mut().find_map(|(key, v)| (key == k).then_some(v))
    } else {
        m.get_mut(k)
    }
}

/// Objects up to this many keys are searched by scanning rather than hashing.
const SCAN_UP_TO: usize = 8;
