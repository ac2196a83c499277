//! Express execution: one instance in memory, from start to finish.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};

use baton_core::expr::Budget;
use baton_core::interp::{
    CallRequest, CallResult, Effect, Env, Input, Instance, Status, Token, TraceEvent,
};
use baton_core::{ErrorKind, Timestamp, Workflow, WorkflowError};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Clock, Error, FunctionError, Functions, HttpInvoker, HttpOptions};

/// How an instance ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub instance_id: String,
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<WorkflowError>,
    /// Tasks started and finished, in order.
    pub trace: Vec<TraceEvent>,
    /// CloudEvents the instance emitted.
    pub emitted: Vec<Value>,
    /// Calls made (HTTP and functions), retries included.
    pub calls: u32,
}

/// Configures a [`Runner`].
#[derive(Default)]
pub struct RunnerBuilder {
    functions: Functions,
    http: HttpOptions,
    secrets: Option<Value>,
    budget: Budget,
}

impl std::fmt::Debug for RunnerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerBuilder")
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

impl RunnerBuilder {
    /// Registers a native function.
    pub fn function<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
    {
        self.functions.register(name, f);
        self
    }

    /// Sets the HTTP client options.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }

    /// Sets `$secrets`.
    pub fn secrets(mut self, secrets: Value) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Sets the expression budget.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Builds the runner.
    pub fn build(self) -> Result<Runner, Error> {
        Ok(Runner {
            http: HttpInvoker::new(&self.http)?,
            functions: self.functions,
            secrets: self
                .secrets
                .unwrap_or_else(|| Value::Object(Default::default())),
            budget: self.budget,
        })
    }
}

/// Runs workflow instances in memory. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Runner {
    http: HttpInvoker,
    functions: Functions,
    secrets: Value,
    budget: Budget,
}

/// A new instance id: 32 lowercase hex digits, like Durable Functions'.
pub fn new_instance_id() -> String {
    let r = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    format!("{:016x}{:016x}", r(), r())
}

impl Runner {
    /// A builder with no functions and default HTTP options.
    pub fn builder() -> RunnerBuilder {
        RunnerBuilder::default()
    }

    /// Runs one instance of `wf` to its end. Waits really wait (tokio time).
    pub async fn run(&self, wf: &Workflow, input: Value) -> RunOutcome {
        self.run_as(wf, input, new_instance_id()).await
    }

    /// Like [`Runner::run`], under an instance id chosen by the caller.
    pub async fn run_as(&self, wf: &Workflow, input: Value, id: String) -> RunOutcome {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let clock = Clock::new();
        let mut env = Env::new(wf, &id);
        env.secrets = self.secrets.clone();
        env.budget = self.budget;
        let mut run = Run {
            runner: self,
            clock,
            inst: Instance::default(),
            timers: BTreeSet::new(),
            calls: HashMap::new(),
            outcome_trace: Vec::new(),
            emitted: Vec::new(),
            subscribed: false,
            call_count: 0,
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
        run.apply(&env, Input::Start { input, seed }, &tx);
        while !run.inst.status.is_terminal() {
            let next_timer = run.timers.first().copied();
            if next_timer.is_none() && run.calls.is_empty() {
                // Nothing can wake the instance: it waits for events nobody will send.
                let reason = if run.subscribed {
                    "the workflow waits for events, and nothing sends events to an instance run in memory"
                } else {
                    "the workflow is stuck: nothing it waits for is pending"
                };
                run.inst.status = Status::Faulted;
                run.inst.error = Some(WorkflowError::new(ErrorKind::Runtime, "/", reason));
                break;
            }
            let sleep = async {
                match next_timer {
                    Some((due, _)) => tokio::time::sleep_until(run.clock.instant_at(due)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(input) = rx.recv() => {
                    if let Input::CallCompleted { token, .. } = &input {
                        run.calls.remove(token);
                    }
                    run.apply(&env, input, &tx);
                }
                () = sleep => {
                    if let Some((due, token)) = next_timer {
                        run.timers.remove(&(due, token));
                        run.apply(&env, Input::TimerFired { token }, &tx);
                    }
                }
            }
        }
        RunOutcome {
            instance_id: id.clone(),
            status: run.inst.status,
            output: run.inst.output.take(),
            error: run.inst.error.take(),
            trace: std::mem::take(&mut run.outcome_trace),
            emitted: std::mem::take(&mut run.emitted),
            calls: run.call_count,
        }
    }

    fn invoke(
        &self,
        task: String,
        request: CallRequest,
    ) -> impl Future<Output = CallResult> + Send + 'static {
        let http = self.http.clone();
        let functions = self.functions.clone();
        async move {
            match request {
                CallRequest::Http(req) => match http.send(&req, &task).await {
                    Ok(resp) => CallResult::Http(resp),
                    Err(e) => CallResult::Failed(e),
                },
                CallRequest::Function { name, args } => match functions.call(&name, args) {
                    None => CallResult::Failed(WorkflowError::new(
                        ErrorKind::Configuration,
                        &task,
                        format!("no function named `{name}` is registered"),
                    )),
                    Some(fut) => match fut.await {
                        Ok(v) => CallResult::Value(v),
                        Err(e) => CallResult::Failed(
                            WorkflowError::new(ErrorKind::Runtime, &task, e.message)
                                .with_status(e.status),
                        ),
                    },
                },
            }
        }
    }
}

/// The state of one in-memory run.
struct Run<'r> {
    runner: &'r Runner,
    clock: Clock,
    inst: Instance,
    timers: BTreeSet<(Timestamp, Token)>,
    calls: HashMap<Token, JoinHandle<()>>,
    outcome_trace: Vec<TraceEvent>,
    emitted: Vec<Value>,
    subscribed: bool,
    call_count: u32,
}

/// Calls still in flight when a run ends (or its future is dropped, e.g. on a host-imposed
/// timeout) are aborted rather than left running detached.
impl Drop for Run<'_> {
    fn drop(&mut self) {
        for (_, h) in self.calls.drain() {
            h.abort();
        }
    }
}

impl Run<'_> {
    fn apply(&mut self, env: &Env<'_>, input: Input, tx: &mpsc::UnboundedSender<Input>) {
        let (effects, trace) = self.inst.apply(env, input, self.clock.now());
        for t in &trace {
            tracing::debug!(task = %t.task, kind = ?t.kind, "task");
        }
        self.outcome_trace.extend(trace);
        for effect in effects {
            match effect {
                Effect::StartTimer { token, due } => {
                    self.timers.insert((due, token));
                }
                Effect::CancelTimer { token } => self.timers.retain(|(_, t)| *t != token),
                Effect::Call {
                    token,
                    task,
                    request,
                    ..
                } => {
                    self.call_count += 1;
                    let tx = tx.clone();
                    let fut = self.runner.invoke(task, request);
                    let handle = tokio::spawn(async move {
                        // A panicking function must not leave the instance waiting for ever:
                        // run it as its own task and report a panic as a failed call.
                        let result = match tokio::spawn(fut).await {
                            Ok(r) => r,
                            Err(e) => CallResult::Failed(WorkflowError::new(
                                ErrorKind::Runtime,
                                "/",
                                if e.is_panic() {
                                    "the function panicked"
                                } else {
                                    "the call was cancelled"
                                },
                            )),
                        };
                        let _ = tx.send(Input::CallCompleted { token, result });
                    });
                    self.calls.insert(token, handle);
                }
                Effect::CancelCall { token } => {
                    if let Some(h) = self.calls.remove(&token) {
                        h.abort();
                    }
                }
                Effect::Emit { event } => self.emitted.push(event),
                Effect::Subscribe { .. } => self.subscribed = true,
                Effect::Unsubscribe { .. }
                | Effect::Complete { .. }
                | Effect::Fault { .. }
                | Effect::Cancelled { .. } => {}
            }
        }
    }
}
