//! Conversion between `serde_json::Value` (the workflow's data) and jaq's value type.

use jaq_json::{Num, Val};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// Deepest nesting an expression result may have when it leaves jaq.
pub const MAX_DEPTH: usize = 256;

/// Converts a JSON value directly (going through serde's `Deserializer` for `&Value` costs about
/// twice as much, and this runs for every expression evaluated).
pub(super) fn to_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match (n.as_i64().and_then(|i| isize::try_from(i).ok()), n.as_f64()) {
            (Some(i), _) => Val::from(i),
            (None, Some(f)) if n.is_f64() => Val::from(f),
            // Integers beyond isize keep their exact digits.
            _ => Val::deserialize(v).unwrap_or_default(),
        },
        Value::String(s) => Val::from(s.clone()),
        Value::Array(a) => a.iter().map(to_val).collect(),
        Value::Object(o) => Val::obj(
            o.iter()
                .map(|(k, x)| (Val::from(k.clone()), to_val(x)))
                .collect(),
        ),
    }
}

/// Why a result nested deeper than [`MAX_DEPTH`] is refused.
pub(super) fn too_deep() -> String {
    format!("the result is nested deeper than {MAX_DEPTH} levels")
}

pub(super) fn from_val(v: &Val) -> Result<Value, String> {
    convert(v, 0)
}

fn convert(v: &Val, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(text(b)),
        Val::Arr(a) => Value::Array(
            a.iter()
                .map(|x| convert(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(o) => {
            let mut m = Map::with_capacity(o.len());
            for (k, x) in o.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => text(b),
                    other => other.to_string(),
                };
                m.insert(key, convert(x, depth + 1)?);
            }
            Value::Object(m)
        }
    })
}

fn num(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::Number(Number::from(*i as i64)),
        Num::Float(f) => float(*f),
        Num::BigInt(_) | Num::Dec(_) => {
            let s = n.to_string();
            s.parse::<i64>()
                .map(|i| Value::Number(i.into()))
                .or_else(|_| s.parse::<u64>().map(|u| Value::Number(u.into())))
                .unwrap_or_else(|_| s.parse::<f64>().map_or(Value::Null, float))
        }
    }
}

fn float(f: f64) -> Value {
    // jq writes integral floats as integers; keep that so `1.0 + 1` stays `2`.
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}
