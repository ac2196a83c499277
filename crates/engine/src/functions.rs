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

type BoxFuture = Pin<Box<dyn Future<Output = Result<Value, FunctionError>> + Send>>;
type Handler = Arc<dyn Fn(Value) -> BoxFuture + Send + Sync>;

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
    /// Registers `f` under `name`, replacing an earlier registration.
    pub fn register<F, Fut>(&mut self, name: &str, f: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
    {
        self.by_name.insert(
            name.to_owned(),
            Arc::new(move |args| Box::pin(f(args)) as BoxFuture),
        );
    }

    /// True if a function of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Calls `name`; `None` if no such function is registered.
    pub fn call(&self, name: &str, args: Value) -> Option<BoxFuture> {
        self.by_name.get(name).map(|h| h(args))
    }
}
