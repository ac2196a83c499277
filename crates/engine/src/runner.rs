//! Express execution: one instance in memory, from start to finish.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use baton_core::expr::Budget;
use baton_core::interp::{
    CallRequest, CallResult, Effect, Env, Input, Instance, Secrets, Status, Token, TraceEvent,
};
use baton_core::{ErrorKind, Timestamp, Workflow, WorkflowError};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Call, Clock, Error, FunctionError, Functions, HttpInvoker, HttpOptions};

/// How an instance ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub instance_id: String,
    pub status: Status,
    /// The raw workflow input, handed back so a caller that keeps it need not clone it first
    /// (`null` if the interpreter panicked while it held the input).
    pub input: Value,
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
    secrets: Secrets,
    runtime_metadata: Option<Value>,
    budget: Budget,
    no_task_trace: bool,
}

impl std::fmt::Debug for RunnerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerBuilder")
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

impl RunnerBuilder {
    /// Registers a native function, called with the task's `with`.
    pub fn function<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
    {
        self.functions.register(name, f);
        self
    }

    /// Registers a native function, called with the task's `with` and the [`Call`] it serves
    /// (its idempotency key, stable when a durable activity runs again).
    pub fn function_with_call<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Value, Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
    {
        self.functions.register_with_call(name, f);
        self
    }

    /// Sets the HTTP client options.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }

    /// Sets the secrets: a workflow sees those it declares in `use.secrets` as `$secrets`, and
    /// secret-based authentication reads them when a request is sent.
    pub fn secrets(mut self, secrets: serde_json::Map<String, Value>) -> Self {
        self.secrets = Secrets::new(secrets);
        self
    }

    /// Sets `$runtime.metadata` (the host puts its own base URL there).
    pub fn runtime_metadata(mut self, metadata: Value) -> Self {
        self.runtime_metadata = Some(metadata);
        self
    }

    /// Sets the expression budget.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Whether an in-memory run records its tasks' trace in [`RunOutcome::trace`] (the default).
    /// A host that never reads it turns it off: the trace then costs nothing, and is recorded
    /// only while debug logging is on (it is what the per-task debug lines print). Durable
    /// instances always record it, in their history.
    pub fn task_trace(mut self, keep: bool) -> Self {
        self.no_task_trace = !keep;
        self
    }

    /// Builds the runner.
    pub fn build(self) -> Result<Runner, Error> {
        Ok(Runner {
            http: HttpInvoker::new(&self.http)?.with_secrets(self.secrets.clone()),
            functions: self.functions,
            secrets: self.secrets,
            runtime_metadata: Arc::new(
                self.runtime_metadata
                    .unwrap_or_else(|| Value::Object(Default::default())),
            ),
            budget: self.budget,
            task_trace: !self.no_task_trace,
            poll_interval: baton_core::Duration::from_millis(
                u64::try_from(self.http.poll_interval.as_millis()).unwrap_or(u64::MAX),
            ),
        })
    }
}

/// Runs workflow instances in memory. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Runner {
    http: HttpInvoker,
    functions: Functions,
    secrets: Secrets,
    runtime_metadata: Arc<Value>,
    budget: Budget,
    poll_interval: baton_core::Duration,
    /// See [`RunnerBuilder::task_trace`].
    task_trace: bool,
}

/// A new instance id: 32 lowercase hex digits, like Durable Functions'.
///
/// Unpredictable, since an anonymous function's instances are readable by whoever knows the id:
/// each half is SipHash, under a per-thread random key, of a per-thread counter (the key is what
/// `RandomState::new` draws from the OS once per thread). Building two fresh `RandomState`s and
/// a `format!` per id, as before, showed up in the express request profile.
pub fn new_instance_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (a, b) = (random_u64(), random_u64());
    let mut id = String::with_capacity(32);
    for half in [a, b] {
        for shift in (0..16).rev() {
            id.push(char::from(HEX[((half >> (shift * 4)) & 0xf) as usize]));
        }
    }
    id
}

/// A random 64-bit number; see [`new_instance_id`] for how it is drawn.
pub(crate) fn random_u64() -> u64 {
    thread_local! {
        static KEYED: (std::collections::hash_map::RandomState, Cell<u64>) =
            (std::collections::hash_map::RandomState::new(), Cell::new(0));
    }
    KEYED.with(|(key, counter)| {
        let n = counter.get().wrapping_add(1);
        counter.set(n);
        key.hash_one(n)
    })
}

/// An instance after its first step ([`Runner::begin`]).
// Returned once per instance and matched at once: boxing the larger variant would cost every
// suspended instance an allocation to save a move.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Begun {
    /// It finished inside the first step, on the caller's thread (pure workflows do).
    Finished(RunOutcome),
    /// It waits for timers or calls; [`Suspended::finish`] drives it to its end.
    Suspended(Suspended),
}

/// A started instance that waits for timers or calls. Owns everything it needs, so it can be
/// spawned; dropping it (or the future of [`Suspended::finish`]) aborts its calls in flight.
pub struct Suspended {
    runner: Arc<Runner>,
    workflow: Arc<Workflow>,
    id: String,
    run: Run,
}

impl std::fmt::Debug for Suspended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suspended")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Suspended {
    /// The raw workflow input, as the interpreter keeps it.
    pub fn input(&self) -> &Value {
        &self.run.inst.input
    }

    /// Runs the instance to its end. Waits really wait (tokio time).
    pub async fn finish(mut self) -> RunOutcome {
        {
            let env = self.runner.memory_env(&self.workflow, &self.id);
            self.run.drive(&self.runner, &env).await;
        }
        self.run.outcome(self.id)
    }
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
        let mut run = Run::default();
        {
            let env = self.memory_env(wf, &id);
            run.start(self, &env, input);
            run.drive(self, &env).await;
        }
        run.outcome(id)
    }

    /// Starts an instance on the caller's thread: applies its start and, if that finished it
    /// (as it does for pure workflows), returns the outcome at once, with no task spawned and
    /// no channel made. Otherwise returns the suspended instance, to be driven (usually on a
    /// task of its own) by [`Suspended::finish`]. Must be called within a tokio runtime: a
    /// first step that makes calls spawns them.
    ///
    /// A panic inside the step faults the instance rather than reaching the caller.
    pub fn begin(self: &Arc<Self>, wf: &Arc<Workflow>, input: Value, id: String) -> Begun {
        self.begin_with(wf, input, id, false, true)
    }

    /// [`Runner::begin`] on an input the caller has already checked against the workflow's
    /// `input.schema` (with `Schema::violations`), which is then not checked a second time.
    pub fn begin_checked(self: &Arc<Self>, wf: &Arc<Workflow>, input: Value, id: String) -> Begun {
        self.begin_with(wf, input, id, true, true)
    }

    /// [`Runner::begin_checked`] for a caller that answers with the outcome and does not want
    /// the input back: an instance of a workflow that can neither suspend nor read its raw
    /// input takes the input as its data instead of copying it, and its outcome's `input` is
    /// null. (One that may suspend keeps its input, for whoever asks about it meanwhile.)
    pub fn begin_answering(
        self: &Arc<Self>,
        wf: &Arc<Workflow>,
        input: Value,
        id: String,
    ) -> Begun {
        self.begin_with(wf, input, id, true, wf.may_suspend())
    }

    fn begin_with(
        self: &Arc<Self>,
        wf: &Arc<Workflow>,
        input: Value,
        id: String,
        input_checked: bool,
        keep_input: bool,
    ) -> Begun {
        let mut run = Run::default();
        let mut env = self.memory_env(wf, &id);
        env.input_checked = input_checked;
        env.keep_input = keep_input;
        run.start(self, &env, input);
        if run.inst.status.is_terminal() {
            return Begun::Finished(run.outcome(id));
        }
        Begun::Suspended(Suspended {
            runner: Arc::clone(self),
            workflow: Arc::clone(wf),
            id,
            run,
        })
    }

    /// The environment of an in-memory run: [`Runner::env`], recording the trace only if
    /// someone reads it.
    fn memory_env<'a>(&self, wf: &'a Workflow, id: &'a str) -> Env<'a> {
        let mut env = self.env(wf, id);
        env.trace = self.task_trace || tracing::enabled!(tracing::Level::DEBUG);
        env
    }

    pub(crate) fn env<'a>(&self, wf: &'a Workflow, id: &'a str) -> Env<'a> {
        let mut env = Env::new(wf, id);
        env.secrets = self.secrets.clone();
        env.runtime_metadata = Arc::clone(&self.runtime_metadata);
        env.budget = self.budget;
        env.poll_interval = self.poll_interval;
        env
    }

    /// Makes a call, passing `idempotency_key` to the callee: an HTTP call carries it as the
    /// `Idempotency-Key` header unless the task sets that header itself; a native function gets
    /// it in its [`Call`].
    pub(crate) fn invoke(
        &self,
        task: String,
        mut request: CallRequest,
        idempotency_key: String,
    ) -> impl Future<Output = CallResult> + Send + 'static {
        if let CallRequest::Http(req) = &mut request
            && !req
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
        {
            req.headers
                .push(("Idempotency-Key".to_owned(), idempotency_key.clone()));
        }
        let http = self.http.clone();
        let functions = self.functions.clone();
        async move {
            match request {
                CallRequest::Http(req) => match http.send(&req, &task).await {
                    Ok(resp) => CallResult::Http(resp),
                    Err(e) => CallResult::Failed(e),
                },
                CallRequest::Function { name, args } => match functions.call(
                    &name,
                    args,
                    Call {
                        idempotency_key,
                        task: task.clone(),
                    },
                ) {
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
#[derive(Default)]
struct Run {
    clock: Clock,
    inst: Instance,
    timers: BTreeSet<(Timestamp, Token)>,
    calls: HashMap<Token, JoinHandle<()>>,
    /// Where calls report back; made by the first call, so a run that makes none has none.
    results: Option<(mpsc::UnboundedSender<Input>, mpsc::UnboundedReceiver<Input>)>,
    outcome_trace: Vec<TraceEvent>,
    emitted: Vec<Value>,
    subscribed: bool,
    call_count: u32,
}

/// Calls still in flight when a run ends (or its future is dropped, e.g. on a host-imposed
/// timeout) are aborted rather than left running detached.
impl Drop for Run {
    fn drop(&mut self) {
        for (_, h) in self.calls.drain() {
            h.abort();
        }
    }
}

impl Run {
    fn start(&mut self, runner: &Runner, env: &Env<'_>, input: Value) {
        let seed = random_u64();
        self.apply(runner, env, Input::Start { input, seed });
    }

    /// Feeds timers and call results to the instance until it ends.
    async fn drive(&mut self, runner: &Runner, env: &Env<'_>) {
        while !self.inst.status.is_terminal() {
            let next_timer = self.timers.first().copied();
            if next_timer.is_none() && self.calls.is_empty() {
                // Nothing can wake the instance: it waits for events nobody will send.
                let reason = if self.subscribed {
                    "the workflow waits for events, and nothing sends events to an instance run in memory"
                } else {
                    "the workflow is stuck: nothing it waits for is pending"
                };
                self.inst.status = Status::Faulted;
                self.inst.error = Some(WorkflowError::new(ErrorKind::Runtime, "/", reason));
                break;
            }
            let clock = self.clock;
            let sleep = async {
                match next_timer {
                    Some((due, _)) => tokio::time::sleep_until(clock.instant_at(due)).await,
                    None => std::future::pending().await,
                }
            };
            let results = &mut self.results;
            let recv = async move {
                match results {
                    Some((_, rx)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                Some(input) = recv => input,
                () = sleep => match next_timer {
                    Some((due, token)) => {
                        self.timers.remove(&(due, token));
                        Input::TimerFired { token }
                    }
                    None => continue,
                },
            };
            if let Input::CallCompleted { token, .. } = &input {
                self.calls.remove(token);
            }
            self.apply(runner, env, input);
        }
    }

    fn outcome(&mut self, id: String) -> RunOutcome {
        RunOutcome {
            instance_id: id,
            status: self.inst.status,
            input: std::mem::take(&mut self.inst.input),
            output: self.inst.output.take(),
            error: self.inst.error.take(),
            trace: std::mem::take(&mut self.outcome_trace),
            emitted: std::mem::take(&mut self.emitted),
            calls: self.call_count,
        }
    }

    /// Applies one input and carries out its effects. A panic in there (the interpreter is
    /// meant never to panic, but an expression library might) faults the instance: contained
    /// here, around the step, rather than by running every instance on a task of its own, so
    /// that an instance finished by its first step needs no task at all.
    fn apply(&mut self, runner: &Runner, env: &Env<'_>, input: Input) {
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.apply_unguarded(runner, env, input)
        }));
        if let Err(panic) = applied {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(instance = %env.instance_id, panic = %message, "the interpreter panicked");
            self.inst.status = Status::Faulted;
            self.inst.output = None;
            self.inst.error = Some(WorkflowError::new(
                ErrorKind::Runtime,
                "/",
                "the instance stopped unexpectedly inside the engine; see the host's log",
            ));
        }
    }

    fn apply_unguarded(&mut self, runner: &Runner, env: &Env<'_>, input: Input) {
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
                    idempotency_key,
                } => {
                    self.call_count += 1;
                    let tx = self
                        .results
                        .get_or_insert_with(mpsc::unbounded_channel)
                        .0
                        .clone();
                    let fut = runner.invoke(task, request, idempotency_key);
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
                | Effect::Complete
                | Effect::Fault { .. }
                | Effect::Cancelled { .. } => {}
            }
        }
    }
}
