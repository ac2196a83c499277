//! The typed, compiled form of a workflow definition.
//!
//! A [`Workflow`] is immutable once loaded: every expression is compiled, every reusable
//! reference (`use.errors`, `use.retries`, `use.timeouts`) is resolved, and every task has a
//! stable [`TaskId`] and its DSL reference (`/do/0/name/...`). Instances refer to tasks by id,
//! so an instance's state is meaningful only together with the exact definition it started on.

mod call;
mod task;

pub use call::{
    AuthScheme, Authentication, EndpointUri, EventTemplate, HttpCall, HttpOutput, ListenSpec,
    ListenStrategy, OpenApiCall,
};
pub use task::{
    Backoff, Catch, ErrorFilter, ErrorTemplate, ForLoop, RetryPolicy, SwitchCase, Task, TaskBase,
    TaskKind, Then,
};

use std::sync::Arc;

use crate::expr::Template;
use crate::time::Duration;

/// Index of a task in [`Workflow::task`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId(pub u32);

/// Index of a task list in [`Workflow::list`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ListId(pub u32);

/// `document`: who the workflow is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentInfo {
    pub dsl: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub title: Option<String>,
    pub summary: Option<String>,
}

/// A compiled JSON Schema.
#[derive(Clone)]
pub struct Schema {
    pub(crate) validator: Arc<jsonschema::Validator>,
    pub(crate) document: Arc<serde_json::Value>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.document)
    }
}

/// One schema violation: where in the instance, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer into the validated document.
    pub pointer: String,
    pub message: String,
}

impl Schema {
    /// Validates `value` and lists every violation (empty when valid).
    pub fn violations(&self, value: &serde_json::Value) -> Vec<Violation> {
        // Most documents are valid; checking that alone builds no error objects.
        if self.validator.is_valid(value) {
            return Vec::new();
        }
        self.validator
            .iter_errors(value)
            .map(|e| Violation {
                pointer: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    }

    /// The schema document.
    pub fn document(&self) -> &serde_json::Value {
        &self.document
    }
}

/// `input`: validated against `schema`, then transformed by `from`.
#[derive(Debug, Clone, Default)]
pub struct DataIn {
    pub schema: Option<Schema>,
    pub from: Option<Template>,
}

/// `output` or `export`: transformed by `as`, then validated against `schema`.
#[derive(Debug, Clone, Default)]
pub struct DataOut {
    pub schema: Option<Schema>,
    pub as_: Option<Template>,
}

/// A loaded, compiled workflow definition.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub document: DocumentInfo,
    pub input: DataIn,
    pub output: DataOut,
    pub timeout: Option<Duration>,
    /// The top-level `do`.
    pub root: ListId,
    /// `use.secrets`: the secrets the workflow declares, the only ones `$secrets` shows it and
    /// its authentication policies may `use`.
    pub secrets: Vec<String>,
    /// The original document, as `$workflow.definition` shows it.
    pub source: Arc<serde_json::Value>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) lists: Vec<Vec<TaskId>>,
    /// An expression may read the raw workflow input: some string of the definition mentions
    /// `$workflow` (decided on the text, so it errs towards true), or the workflow's own
    /// `input.from` or `output.as` reads `$input`.
    pub(crate) reads_raw_input: bool,
}

impl Workflow {
    /// True if an instance can wait for something: a call, a `wait`, an event, a retry's delay.
    /// One that cannot ends within the step that starts it.
    pub fn may_suspend(&self) -> bool {
        self.tasks.iter().any(|t| match &t.kind {
            TaskKind::Wait(_)
            | TaskKind::CallHttp(_)
            | TaskKind::CallOpenApi(_)
            | TaskKind::CallFunction { .. }
            | TaskKind::Listen(_) => true,
            TaskKind::Try { catch, .. } => catch.retry.is_some(),
            TaskKind::Do(_)
            | TaskKind::Set(_)
            | TaskKind::Switch(_)
            | TaskKind::For(_)
            | TaskKind::Fork { .. }
            | TaskKind::Raise(_)
            | TaskKind::Emit(_) => false,
        })
    }

    /// The task with this id.
    pub fn task(&self, id: TaskId) -> &Task {
        &self.tasks[id.0 as usize]
    }

    /// The tasks of a list, in order.
    pub fn list(&self, id: ListId) -> &[TaskId] {
        &self.lists[id.0 as usize]
    }

    /// Finds a task of `list` by name (for `then: <name>`).
    pub fn position(&self, list: ListId, name: &str) -> Option<usize> {
        self.list(list)
            .iter()
            .position(|t| *self.task(*t).name == *name)
    }

    /// Every task, in definition order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter()
    }

    /// A short `namespace/name@version` label.
    pub fn label(&self) -> String {
        format!(
            "{}/{}@{}",
            self.document.namespace, self.document.name, self.document.version
        )
    }
}
