//! Native functions: Rust code a workflow calls by name (`call: <name>`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

/// A native function failed; becomes a `runtime` error (or the given status) in the workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FunctionError {
    pub status: u16,
    pub message: String,
}

impl FunctionError {
    /// A failure with status 500.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
        }
    }
}

/// What a native function is told about the call it serves, besides its input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Call {
    /// Names this call of this task in this instance. A durable activity runs at least once:
    /// when it is run again (its node died, its lease ran out) it gets the same key, so a
    /// function with side effects can use it to do them only once. A retry of a failed call is
    /// a new call, with a new key.
    pub idempotency_key: String,
    /// The calling task's reference (a JSON Pointer into the workflow, e.g. `/do/0/check`).
    pub task: String,
}

impl Call {
    /// A call context, for code that drives [`Functions`] itself (tests, other shells).
    pub fn new(idempotency_key: impl Into<String>, task: impl Into<String>) -> Self {
        Self {
            idempotency_key: idempotency_key.into(),
            task: task.into(),
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Value, FunctionError>> + Send>>;
type Handler = Arc<dyn Fn(Value, Call) -> BoxFuture + Send + Sync>;

/// The registry of native functions, by name.
#[derive(Clone, Default)]
pub struct Functions {
    by_name: HashMap<String, Handler>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Functions {
    /// Registers `f` under `name`, replacing an earlier registration. `f` gets the task's
    /// `with` as its input; see [`Functions::register_with_call`] for one that also needs the
    /// call's idempotency key.
    pub fn register<F, Fut>(&mut self, name: &str, f: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
    {
        self.register_with_call(name, move |args, _call| f(args));
    }

    /// Registers `f` under `name`, replacing an earlier registration; `f` gets the task's
    /// `with` and the [`Call`] it serves.
    pub fn register_with_call<F, Fut>(&mut self, name: &str, f: F)
    where
        F: Fn(Value, Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
    {
        self.by_name.insert(
            name.to_owned(),
            Arc::new(move |args, call| Box::pin(f(args, call)) as BoxFuture),
        );
    }

    /// True if a function of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Calls `name`; `None` if no such function is registered.
    pub fn call(&self, name: &str, args: Value, call: Call) -> Option<BoxFuture> {
        self.by_name.get(name).map(|h| h(args, call))
    }
}
