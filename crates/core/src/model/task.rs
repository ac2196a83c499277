//! Tasks and the policies attached to them.

use std::sync::Arc;

use crate::expr::{Expr, Template};
use crate::time::Duration;

use super::{DataIn, DataOut, EventTemplate, HttpCall, ListId, ListenSpec, OpenApiCall};

/// What happens after a task: `then`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Then {
    /// Run the next task of the list (the default).
    #[default]
    Continue,
    /// Leave the enclosing composite task.
    Exit,
    /// End the workflow.
    End,
    /// Jump to the named sibling task.
    Goto(String),
}

/// Properties every task has.
#[derive(Debug, Clone, Default)]
pub struct TaskBase {
    pub if_: Option<Expr>,
    pub input: DataIn,
    pub output: DataOut,
    pub export: DataOut,
    pub timeout: Option<Duration>,
    pub then: Then,
}

/// A task of the definition.
#[derive(Debug, Clone)]
pub struct Task {
    /// Shared, so that trace events and errors naming the task need not copy it.
    pub name: Arc<str>,
    /// The DSL reference: a JSON pointer such as `/do/0/tryGetPet/try/0/getPet`.
    pub reference: Arc<str>,
    pub base: TaskBase,
    pub kind: TaskKind,
}

impl Task {
    /// The task's kind as the DSL names it (`set`, `call`, …).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            TaskKind::Do(_) => "do",
            TaskKind::Set(_) => "set",
            TaskKind::Switch(_) => "switch",
            TaskKind::For(_) => "for",
            TaskKind::Fork { .. } => "fork",
            TaskKind::Try { .. } => "try",
            TaskKind::Wait(_) => "wait",
            TaskKind::Raise(_) => "raise",
            TaskKind::CallHttp(_) | TaskKind::CallOpenApi(_) | TaskKind::CallFunction { .. } => {
                "call"
            }
            TaskKind::Emit(_) => "emit",
            TaskKind::Listen(_) => "listen",
        }
    }
}

/// The kinds of task Baton runs.
#[derive(Debug, Clone)]
pub enum TaskKind {
    Do(ListId),
    Set(Template),
    Switch(Vec<SwitchCase>),
    For(Box<ForLoop>),
    Fork {
        branches: ListId,
        compete: bool,
    },
    Try {
        body: ListId,
        catch: Box<Catch>,
    },
    Wait(Duration),
    Raise(Box<ErrorTemplate>),
    CallHttp(Box<HttpCall>),
    /// `call: openapi`: the document is fetched, then the operation called.
    CallOpenApi(Box<OpenApiCall>),
    /// A named function (native, or declared in the app); runs as an activity with `with` as input.
    CallFunction {
        function: String,
        args: Template,
    },
    Emit(EventTemplate),
    Listen(ListenSpec),
}

/// One case of a `switch`.
#[derive(Debug, Clone)]
pub struct SwitchCase {
    pub name: String,
    /// No condition means the default case.
    pub when: Option<Expr>,
    pub then: Then,
}

/// A `for` loop.
#[derive(Debug, Clone)]
pub struct ForLoop {
    pub each: String,
    pub at: String,
    pub in_: Expr,
    pub while_: Option<Expr>,
    pub body: ListId,
}

/// An error to raise; fields may be expressions.
#[derive(Debug, Clone)]
pub struct ErrorTemplate {
    pub type_: Template,
    pub status: Template,
    pub instance: Option<Template>,
    pub title: Option<Template>,
    pub detail: Option<Template>,
}

/// `catch`.
#[derive(Debug, Clone, Default)]
pub struct Catch {
    pub filter: ErrorFilter,
    /// Variable the error is bound to (default `error`).
    pub as_: String,
    pub when: Option<Expr>,
    pub except_when: Option<Expr>,
    pub retry: Option<RetryPolicy>,
    pub body: Option<ListId>,
}

/// `catch.errors.with`: static properties a caught error must have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFilter {
    pub type_: Option<String>,
    pub status: Option<u16>,
    pub instance: Option<String>,
    pub title: Option<String>,
    pub detail: Option<String>,
}

/// Backoff of a retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backoff {
    /// Every retry waits `delay`.
    #[default]
    Constant,
    /// Retry *n* waits `delay × n`.
    Linear,
    /// Retry *n* waits `delay × 2^(n−1)`.
    Exponential,
}

/// `retry`.
#[derive(Debug, Clone, Default)]
pub struct RetryPolicy {
    pub when: Option<Expr>,
    pub except_when: Option<Expr>,
    pub delay: Duration,
    pub backoff: Backoff,
    /// Retries allowed after the first attempt (`limit.attempt.count`); `None` is unbounded.
    pub max_retries: Option<u32>,
    /// Limit of one attempt (`limit.attempt.duration`).
    pub attempt_timeout: Option<Duration>,
    /// Limit of all attempts and delays together (`limit.duration`).
    pub total: Option<Duration>,
    /// Random extra delay drawn from this range (`jitter.from`, `jitter.to`).
    pub jitter: Option<(Duration, Duration)>,
}
