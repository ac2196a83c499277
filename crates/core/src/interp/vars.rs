//! The variables expressions see (`$context`, `$input`, `$task`, …), built on demand.

use serde_json::{Value, json};

use crate::expr::Bindings;
use crate::model::Task;
use crate::time::Timestamp;

use super::Env;

/// Bindings for an expression evaluated while running a task (or the workflow itself when
/// `task` is `None`).
pub(crate) struct Vars<'a> {
    pub env: &'a Env<'a>,
    pub now: Timestamp,
    pub context: &'a Value,
    pub workflow_input: &'a Value,
    pub workflow_started: Timestamp,
    pub task: Option<(&'a Task, Timestamp)>,
    pub input: &'a Value,
    pub output: Option<&'a Value>,
    pub scope: &'a [(String, Value)],
}

fn instant(t: Timestamp) -> Value {
    json!({
        "iso8601": t.to_rfc3339(),
        "epoch": {"seconds": t.millis().div_euclid(1000), "milliseconds": t.millis()},
    })
}

impl Bindings for Vars<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        if let Some((_, v)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        Some(match name {
            "$context" => self.context.clone(),
            "$input" => self.input.clone(),
            "$output" => self.output.cloned().unwrap_or(Value::Null),
            // Only what the workflow declares in `use.secrets`.
            "$secrets" => Value::Object(
                self.env
                    .workflow
                    .secrets
                    .iter()
                    .filter_map(|n| Some((n.clone(), self.env.secrets.get(n)?.clone())))
                    .collect(),
            ),
            "$__now" => json!(self.now.millis() as f64 / 1000.0),
            "$runtime" => json!({
                "name": "baton",
                "version": env!("CARGO_PKG_VERSION"),
                "metadata": *self.env.runtime_metadata,
            }),
            "$workflow" => json!({
                "id": self.env.instance_id,
                "definition": *self.env.workflow.source,
                "input": self.workflow_input,
                "startedAt": instant(self.workflow_started),
            }),
            "$task" => match self.task {
                Some((task, started)) => json!({
                    "name": task.name,
                    "reference": task.reference,
                    "definition": self.env.workflow.source.pointer(&task.reference).cloned().unwrap_or(Value::Null),
                    "input": self.input,
                    "output": self.output,
                    "startedAt": instant(started),
                }),
                None => Value::Null,
            },
            _ => return None,
        })
    }
}
