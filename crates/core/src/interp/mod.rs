//! The interpreter: a pure state machine over one workflow instance.
//!
//! [`step`] takes the instance's [`Instance`] state, one [`Input`] and the current time, and
//! returns a [`Step`]: the next state, the [`Effect`]s the shell must carry out (calls, timers,
//! events, completion) and a trace of the tasks that started and finished. Pure tasks (`set`,
//! `switch`, expressions, `raise`, `emit`) run to completion inside one step; only what leaves
//! the interpreter (a call, a timer, an awaited event) suspends the instance.
//!
//! ```
//! use baton_core::interp::{self, Effect, Env, Input, Instance};
//! use baton_core::{Format, NoResolver, Timestamp, load_str};
//!
//! let wf = load_str(
//!     "document: {dsl: '1.0.0', namespace: demo, name: hello, version: '1.0.0'}\n\
//!      do:\n  - greet:\n      set: {greeting: '${ \"Hello \" + .name }'}\n",
//!     Format::Yaml,
//!     &NoResolver,
//! )
//! .unwrap();
//! let env = Env::new(&wf, "0123456789abcdef0123456789abcdef");
//! let start = Input::Start { input: serde_json::json!({"name": "Ada"}), seed: 7 };
//! let step = interp::step(&env, &Instance::default(), start, Timestamp(0));
//! assert!(matches!(step.effects.last(), Some(Effect::Complete)));
//! assert_eq!(step.next.output.unwrap()["greeting"], "Hello Ada");
//! ```

mod call;
mod exec;
mod frames;
mod openapi;
mod vars;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::WorkflowError;
use crate::expr::Budget;
use crate::model::{HttpOutput, Workflow};
use crate::time::Timestamp;

pub use call::base64;
pub use exec::try_catch::retry_delay;

/// Identifies one suspended operation (a call, a timer, a subscription) of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Token(pub u64);

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Status {
    #[default]
    Pending,
    Running,
    Completed,
    Faulted,
    Cancelled,
}

impl Status {
    /// True once nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Faulted | Self::Cancelled)
    }

    /// The name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Faulted => "faulted",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Everything a step needs besides the state that is not persisted with it.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    pub workflow: &'a Workflow,
    pub instance_id: &'a str,
    /// Every configured secret; `$secrets` shows a workflow the ones it declares.
    pub secrets: Secrets,
    /// `$runtime.metadata`.
    pub runtime_metadata: Arc<Value>,
    pub budget: Budget,
    /// How long to wait between polls of a `202 Accepted` call that gives no `Retry-After`.
    pub poll_interval: crate::Duration,
    /// The shell has already checked the workflow input against the workflow's
    /// `input.schema` (an HTTP trigger does, to answer 400 before any instance exists), so
    /// the start does not check it again.
    pub input_checked: bool,
    /// Record the tasks' trace ([`TraceEvent`]s) in each step's result; true unless the shell
    /// sets it false because nobody reads it (an in-memory run answering an HTTP request with
    /// debug logging off).
    pub trace: bool,
    /// The shell wants the raw workflow input back with the instance (as [`Instance::input`]);
    /// true unless it answers with the output alone. When false, and nothing in the workflow
    /// can read the raw input (`$workflow`, or `$input` in the workflow's `input.from` and
    /// `output.as`), the instance takes the input as its data instead of copying it, and
    /// [`Instance::input`] is left null.
    pub keep_input: bool,
}

/// Secret values by name, cheap to share. `Debug` shows the names, never the values.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(Arc<Map<String, Value>>);

impl Secrets {
    pub fn new(values: Map<String, Value>) -> Self {
        Self(Arc::new(values))
    }

    /// The secret called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The names of the secrets, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// [`Env::poll_interval`] unless configured.
pub const DEFAULT_POLL_INTERVAL: crate::Duration = crate::Duration::from_millis(1000);

impl<'a> Env<'a> {
    /// An environment with no secrets and the default budget.
    pub fn new(workflow: &'a Workflow, instance_id: &'a str) -> Self {
        Self {
            workflow,
            instance_id,
            secrets: Secrets::default(),
            runtime_metadata: Arc::new(Value::Object(Map::new())),
            budget: Budget::default(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            input_checked: false,
            trace: true,
            keep_input: true,
        }
    }
}

/// One thing that happened to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// Start the instance. `seed` drives every random choice (retry jitter, event ids).
    Start { input: Value, seed: u64 },
    /// A call the instance asked for has finished.
    CallCompleted { token: Token, result: CallResult },
    /// A timer the instance started has fired.
    TimerFired { token: Token },
    /// An event arrived (a CloudEvent as JSON).
    Event { event: Value },
    /// Stop the instance.
    Cancel { reason: String },
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallResult {
    /// A named function's output.
    Value(Value),
    /// An HTTP exchange; the core turns it into output or a `communication` error.
    Http(HttpResponse),
    /// The call could not be made or the function failed.
    Failed(WorkflowError),
}

/// An HTTP response as the shell received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body: parsed JSON for JSON content types, otherwise the text (`null` if empty).
    pub content: Value,
    /// The body as base64, for `output: raw`.
    pub raw_base64: String,
}

/// An HTTP request the shell must send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub redirect: bool,
    /// Kept so the response can be shaped (`output: response` echoes the request); stored
    /// with the request so that a durable call shapes its response the same way.
    #[serde(default)]
    pub output: HttpOutput,
    /// Poll a `202 Accepted` answer's `Location` until the final answer (the asynchronous
    /// pattern).
    #[serde(default = "polls_by_default")]
    pub poll: bool,
    /// Credentials the shell adds from a named secret when it sends the request (and each
    /// poll on the same origin); only the secret's name is stored with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SecretAuth>,
}

/// `Authorization` to be made from a secret at send time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretAuth {
    pub scheme: crate::model::AuthScheme,
    pub secret: String,
}

fn polls_by_default() -> bool {
    true
}

/// A call the shell must make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallRequest {
    Http(HttpRequest),
    /// A named function with its arguments (the task's evaluated `with`).
    Function {
        name: String,
        args: Value,
    },
}

/// What the shell must do after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Make a call and report it back with [`Input::CallCompleted`].
    Call {
        token: Token,
        /// The calling task's reference.
        task: String,
        request: CallRequest,
        /// Stable for this call attempt: instance id, task reference and token.
        idempotency_key: String,
    },
    /// Forget a call whose result is no longer wanted.
    CancelCall { token: Token },
    /// Fire [`Input::TimerFired`] at `due`.
    StartTimer { token: Token, due: Timestamp },
    /// Forget a timer.
    CancelTimer { token: Token },
    /// Publish a CloudEvent.
    Emit { event: Value },
    /// Start delivering events to the instance.
    Subscribe { token: Token },
    /// Stop delivering events for this subscription.
    Unsubscribe { token: Token },
    /// The instance completed; its output is [`Instance::output`] (not repeated here, so that
    /// completing never copies it).
    Complete,
    /// The instance faulted.
    Fault { error: WorkflowError },
    /// The instance was cancelled.
    Cancelled { reason: String },
}

/// A task starting or finishing, for logs, history and tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub at: Timestamp,
    /// The task's reference and name, shared with the definition.
    pub task: Arc<str>,
    pub name: Arc<str>,
    pub kind: TraceKind,
}

/// What happened to the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceKind {
    Started,
    Completed,
    Skipped,
    Faulted,
    Cancelled,
}

/// The persisted state of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub status: Status,
    /// The raw workflow input.
    pub input: Value,
    /// `$context`.
    pub context: Value,
    pub started_at: Option<Timestamp>,
    pub output: Option<Value>,
    pub error: Option<WorkflowError>,
    pub(crate) root: Option<frames::ListFrame>,
    pub(crate) workflow_timeout: Option<Token>,
    pub(crate) next_token: u64,
    pub(crate) seed: u64,
    pub(crate) draws: u64,
}

/// The result of [`step`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub next: Instance,
    pub effects: Vec<Effect>,
    pub trace: Vec<TraceEvent>,
}

/// Applies `input` to `state` at time `now`. Pure: the same arguments give the same result.
pub fn step(env: &Env<'_>, state: &Instance, input: Input, now: Timestamp) -> Step {
    let mut next = state.clone();
    let (effects, trace) = next.apply(env, input, now);
    Step {
        next,
        effects,
        trace,
    }
}

impl Instance {
    /// Applies `input` in place; the in-place form of [`step`] for shells that own the state.
    pub fn apply(
        &mut self,
        env: &Env<'_>,
        input: Input,
        now: Timestamp,
    ) -> (Vec<Effect>, Vec<TraceEvent>) {
        let mut cx = exec::Cx::new(env, now);
        exec::apply(&mut cx, self, input);
        (compact(cx.effects), cx.trace)
    }
}

/// Drops timers and calls started and cancelled within the same step: a task with a timeout
/// that completes without suspending never reaches the shell's timer wheel.
fn compact(effects: Vec<Effect>) -> Vec<Effect> {
    use std::collections::HashSet;
    let started: HashSet<Token> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartTimer { token, .. }
            | Effect::Call { token, .. }
            | Effect::Subscribe { token } => Some(*token),
            _ => None,
        })
        .collect();
    let cancelled: HashSet<Token> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::CancelTimer { token }
            | Effect::CancelCall { token }
            | Effect::Unsubscribe { token }
                if started.contains(token) =>
            {
                Some(*token)
            }
            _ => None,
        })
        .collect();
    if cancelled.is_empty() {
        return effects;
    }
    effects
        .into_iter()
        .filter(|e| match e {
            Effect::StartTimer { token, .. }
            | Effect::Call { token, .. }
            | Effect::Subscribe { token }
            | Effect::CancelTimer { token }
            | Effect::CancelCall { token }
            | Effect::Unsubscribe { token } => !cancelled.contains(token),
            _ => true,
        })
        .collect()
}

#[cfg(test)]
mod tests;
