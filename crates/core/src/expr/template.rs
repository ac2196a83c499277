//! JSON values with embedded `${ … }` expressions.

use serde_json::{Map, Value};

use super::{Bindings, Budget, Expr, ExprError, VarNames, strip_braces};

/// A JSON value whose strings may be runtime expressions, compiled once.
///
/// Constant sub-trees are kept as plain values so that evaluating a template that holds no
/// expression is a clone.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// No expression anywhere below.
    Const(Value),
    /// A whole-string `${ … }` expression; its result replaces the string.
    Expr(Expr),
    /// An array with at least one expression inside.
    Array(Vec<Template>),
    /// An object with at least one expression inside (keys are literal), and its keys in order
    /// with null values: evaluating copies that shape, which keeps the keys' hashes, rather
    /// than hashing every key again.
    Object {
        fields: Vec<(String, Template)>,
        shape: Map<String, Value>,
    },
}

impl Template {
    /// Compiles every `${ … }` string inside `value`.
    pub fn compile(value: &Value, scope: &VarNames) -> Result<Self, ExprError> {
        Ok(match value {
            Value::String(s) => match strip_braces(s) {
                Some(src) => Self::Expr(Expr::compile(src, scope)?),
                None => Self::Const(value.clone()),
            },
            Value::Array(items) => {
                let items = items
                    .iter()
                    .map(|v| Self::compile(v, scope))
                    .collect::<Result<Vec<_>, _>>()?;
                if items.iter().all(|t| matches!(t, Self::Const(_))) {
                    Self::Const(value.clone())
                } else {
                    Self::Array(items)
                }
            }
            Value::Object(map) => {
                let fields = map
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Self::compile(v, scope)?)))
                    .collect::<Result<Vec<_>, ExprError>>()?;
                if fields.iter().all(|(_, t)| matches!(t, Self::Const(_))) {
                    Self::Const(value.clone())
                } else {
                    let shape = fields
                        .iter()
                        .map(|(k, _)| (k.clone(), Value::Null))
                        .collect();
                    Self::Object { fields, shape }
                }
            }
            other => Self::Const(other.clone()),
        })
    }

    /// Compiles a field typed as a runtime expression: a string is an expression with or without
    /// `${ }`; any other value is a template.
    pub fn compile_loose(value: &Value, scope: &VarNames) -> Result<Self, ExprError> {
        match value {
            Value::String(s) => Ok(Self::Expr(Expr::compile_loose(s, scope)?)),
            other => Self::compile(other, scope),
        }
    }

    /// True if the template is one whole expression, whose result is the expression's: as jq
    /// writes its results (integral floats as integers), unlike constants and the parts of
    /// a template around its expressions, which are kept as written.
    pub fn is_expr(&self) -> bool {
        matches!(self, Self::Expr(_))
    }

    /// True if evaluating needs no expression.
    pub fn is_const(&self) -> bool {
        matches!(self, Self::Const(_))
    }

    /// Like [`Template::eval`] on an input the caller no longer needs (see [`Expr::eval_owned`]).
    pub fn eval_owned(
        &self,
        input: Value,
        settled: bool,
        scope: &dyn Bindings,
        budget: &Budget,
    ) -> Result<Value, ExprError> {
        match self {
            Self::Expr(e) => e.eval_owned(input, settled, scope, budget),
            other => other.eval(&input, scope, budget),
        }
    }

    /// True if some expression of the template reads the variable `name` (with its `$`).
    pub fn mentions(&self, name: &str) -> bool {
        match self {
            Self::Const(_) => false,
            Self::Expr(e) => e.mentions(name),
            Self::Array(items) => items.iter().any(|t| t.mentions(name)),
            Self::Object { fields, .. } => fields.iter().any(|(_, t)| t.mentions(name)),
        }
    }

    /// Evaluates every expression against `input` and returns the resulting value.
    pub fn eval(
        &self,
        input: &Value,
        scope: &dyn Bindings,
        budget: &Budget,
    ) -> Result<Value, ExprError> {
        Ok(match self {
            Self::Const(v) => v.clone(),
            Self::Expr(e) => e.eval(input, scope, budget)?,
            Self::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.eval(input, scope, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Object { fields, shape } => {
                // The keys of a JSON object are distinct, so the shape has one slot per field,
                // in the same order.
                let mut m = shape.clone();
                for (slot, (_, t)) in m.values_mut().zip(fields) {
                    *slot = t.eval(input, scope, budget)?;
                }
                Value::Object(m)
            }
        })
    }

    /// Evaluates and requires a string result.
    pub fn eval_string(
        &self,
        input: &Value,
        scope: &dyn Bindings,
        budget: &Budget,
    ) -> Result<String, ExprError> {
        match self.eval(input, scope, budget)? {
            Value::String(s) => Ok(s),
            other => Err(ExprError::Type {
                expr: self.describe(),
                expected: "a string",
                found: type_name(&other).to_owned(),
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Expr(e) => e.source().to_owned(),
            Self::Const(v) => v.to_string(),
            _ => "template".to_owned(),
        }
    }
}

/// The JSON type name of a value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
