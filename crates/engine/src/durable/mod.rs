//! Durable execution: instances whose every step is committed to a [`Store`] before anything
//! it decided is carried out, so that they survive a crash of the process and finish exactly
//! once.
//!
//! * [`Durable::start`] runs the first step on the caller's thread and commits, in one
//!   transaction, the instance row (with the interpreter's state), its history and the work the
//!   step created. Only then does it return, so a caller that acknowledges the start (202) never
//!   acknowledges something that is not stored.
//! * Everything that leaves the interpreter is a **work item**: a call (an *activity*, run at
//!   least once, with a stable idempotency key), a timer (`wait`, retry backoff, timeouts), a
//!   message (a raised event; terminate, suspend, resume, rewind). [`Durable::run`] claims due
//!   items with a lease, carries each out, and feeds its outcome back to the instance as the
//!   next step, committing the new state, the finished item and any new work together.
//! * Pure tasks (`set`, `switch`, expressions) never become work items: they run inside a step.
//! * A commit that finds the instance changed underneath (another item of the same instance
//!   finished at the same time) reloads it and applies the step again; the interpreter is
//!   deterministic, so this is safe. A commit refused for a stale lease (the item was taken over
//!   after this node's lease expired) is dropped: the new holder carries the item out.
//! * Work is found through the store's wake-ups after each commit, with a poll of the next due
//!   time as the fallback, never a fixed sleep loop.
//! * Every input the interpreter is given is recorded in the history whole, with the time of
//!   its step (`ExecutionStarted` the seed, `ActivityCompleted` the call's result,
//!   `EventRaised` the event, `TimerFired` the token), so that an instance can be replayed.
//! * Management requests are messages, applied in the order the instance's mailbox receives
//!   them. [`Durable::suspend`] makes the instance `Suspended`: what arrives meanwhile is marked
//!   done and kept in its state blob (an envelope of the interpreter's `Instance` and the held
//!   inputs), then applied in arrival order by the commit of [`Durable::resume`].
//!   [`Durable::terminate`] ends a running or suspended instance. [`Durable::rewind`] runs a
//!   `Failed` instance again from the operation that failed it: the state is rebuilt by
//!   replaying the recorded inputs except the failing one, and what it then waits for (the
//!   failed call, other open calls and timers) becomes work again; nothing that succeeded runs
//!   again.
//! * After every step the row's `custom_status` is the workflow's `$context.customStatus`.
//!
//! A program that embeds Baton registers its native functions on the [`Runner`] and runs
//! instances durably on an SQLite file; `call: greet` runs `greet` as an activity. An activity
//! runs at least once, so a function with side effects registers with
//! [`RunnerBuilder::function_with_call`](crate::RunnerBuilder::function_with_call) and gets the
//! call's [`Call`](crate::Call): its idempotency key stays the same when the activity runs
//! again after a crash or a lost lease, so the function can tell a repeat from a new call:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use baton_core::{Format, NoResolver, load_str};
//! use baton_engine::{Call, Runner};
//! use baton_engine::durable::{Durable, DurableOptions, StartRequest};
//! use baton_store::{RuntimeStatus, Store};
//! use baton_store_sqlite::{Options, SqliteStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Arc::new(SqliteStore::open(dir.path().join("baton.db"), Options::default()).unwrap());
//! let runner = Runner::builder()
//!     .function_with_call("greet", |args, call: Call| async move {
//!         // The instance, the task and a number for the call.
//!         assert!(call.idempotency_key.starts_with("greeting-1:/do/0/greet:"));
//!         Ok(serde_json::json!(format!("Hello {}", args["name"].as_str().unwrap_or("?"))))
//!     })
//!     .build()
//!     .unwrap();
//! let engine = Arc::new(Durable::new(store.clone(), Arc::new(runner), DurableOptions::default()));
//! let wf = load_str(
//!     "document: {dsl: '1.0.0', namespace: demo, name: hello, version: '1.0.0'}\n\
//!      do:\n  - greet: {call: greet, with: {name: '${ .name }'}}\n",
//!     Format::Yaml,
//!     &NoResolver,
//! )
//! .unwrap();
//! engine.pin("hello-1", Arc::new(wf));
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! tokio::spawn(engine.clone().run(async move { let _ = stopped.await; }));
//!
//! // When `start` returns, the instance is committed: it survives a crash from here on.
//! engine
//!     .start(StartRequest {
//!         id: "greeting-1".into(),
//!         function: "Hello".into(),
//!         definition: "hello-1".into(),
//!         input: serde_json::json!({"name": "Ada"}),
//!         idempotency: None,
//!     })
//!     .await
//!     .unwrap();
//! let row = engine
//!     .wait("greeting-1", std::time::Duration::from_secs(10))
//!     .await
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(row.status, RuntimeStatus::Completed);
//! assert_eq!(row.output, Some(serde_json::json!("Hello Ada")));
//! let _ = stop.send(());
//! # });
//! ```

mod control;
mod feed;
mod replay;
mod state;
mod translate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use baton_core::interp::{Input, Instance};
use baton_core::{Timestamp, Workflow};
use baton_store::{
    Commit, CommitError, IdempotencyKey, InstanceRow, Millis, NewEvent, NewWork, Store, StoreError,
    Work, WorkKind,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Runner;
use crate::meters::InstanceMeters;
use crate::runner::random_u64;

use control::Order;
use state::State;
use translate::Fed;
pub use translate::{ADDRESSEE, Activity};

/// How a durable engine claims and runs work.
#[derive(Debug, Clone)]
pub struct DurableOptions {
    /// This node's name in leases.
    pub owner: String,
    /// How long a claim holds an item before another node may take it over.
    pub lease: Duration,
    /// At most this many items are carried out at once.
    pub concurrency: usize,
    /// At most this many items are claimed at a time.
    pub claim_batch: usize,
    /// The longest an idle dispatcher waits before looking for work without a wake-up.
    pub idle_poll: Duration,
}

impl Default for DurableOptions {
    fn default() -> Self {
        Self {
            owner: format!("node-{:016x}", random_u64()),
            lease: Duration::from_secs(30),
            concurrency: 256,
            claim_batch: 64,
            idle_poll: Duration::from_secs(1),
        }
    }
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The idempotency key is bound to another instance already.
    #[error("the idempotency key is bound to instance `{instance}`")]
    Duplicate {
        instance: String,
        request_hash: String,
    },
    /// An instance with this id exists.
    #[error("an instance `{0}` exists already")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub id: String,
    pub function: String,
    /// The hash of the definition the instance is pinned to; [`Durable::pin`] must have been
    /// told which workflow it is.
    pub definition: String,
    pub input: Value,
    pub idempotency: Option<IdempotencyKey>,
}

/// The durable engine over one store.
pub struct Durable<S: Store> {
    store: Arc<S>,
    runner: Arc<Runner>,
    workflows: RwLock<HashMap<String, Arc<Workflow>>>,
    /// Outcomes waiting for their instance's feeder, by instance id (see `deliver`).
    mailboxes: Mutex<HashMap<String, Vec<(Work, Fed)>>>,
    /// Notified after every commit of this engine that ended an instance.
    settled: tokio::sync::Notify,
    /// Instances started and ended by this engine (see [`crate::meters`]).
    meters: InstanceMeters,
    options: DurableOptions,
}

impl<S: Store> std::fmt::Debug for Durable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("owner", &self.options.owner)
            .finish_non_exhaustive()
    }
}

/// The history event kinds a durable instance records.
pub mod events {
    pub const STARTED: &str = "ExecutionStarted";
    pub const COMPLETED: &str = "ExecutionCompleted";
    pub const FAILED: &str = "ExecutionFailed";
    pub const TERMINATED: &str = "ExecutionTerminated";
    pub const SUSPENDED: &str = "ExecutionSuspended";
    pub const RESUMED: &str = "ExecutionResumed";
    pub const REWOUND: &str = "ExecutionRewound";
    pub const TASK: &str = "Task";
    pub const ACTIVITY_SCHEDULED: &str = "ActivityScheduled";
    pub const ACTIVITY_COMPLETED: &str = "ActivityCompleted";
    pub const TIMER_CREATED: &str = "TimerCreated";
    pub const TIMER_FIRED: &str = "TimerFired";
    pub const EVENT_RAISED: &str = "EventRaised";
    pub const EVENT_SENT: &str = "EventSent";
}

impl<S: Store> Durable<S> {
    /// An engine that calls out through `runner` (its HTTP client, native functions, secrets
    /// and budget) and keeps everything in `store`.
    pub fn new(store: Arc<S>, runner: Arc<Runner>, options: DurableOptions) -> Self {
        Self {
            store,
            runner,
            workflows: RwLock::new(HashMap::new()),
            mailboxes: Mutex::new(HashMap::new()),
            settled: tokio::sync::Notify::new(),
            meters: InstanceMeters::default(),
            options,
        }
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Tells the engine which workflow the definition `hash` is. Instances pinned to a hash the
    /// engine has not been told of wait (their work is released) until it is.
    pub fn pin(&self, hash: &str, workflow: Arc<Workflow>) {
        self.workflows
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash.to_owned(), workflow);
    }

    /// Stores a definition by the hash of its content and pins `workflow` under that hash;
    /// returns the hash. `source` is everything the definition's behaviour depends on: its text
    /// and the text of any resource it references (schemas), in a fixed order. Registering a
    /// changed definition gives a new hash; instances pinned to the old one keep running on the
    /// old workflow, which stays pinned.
    pub async fn register(
        &self,
        source: &str,
        workflow: Arc<Workflow>,
    ) -> Result<String, StoreError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, source.as_bytes());
        let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let doc = &workflow.document;
        self.store
            .put_definition(&baton_store::Definition {
                hash: hash.clone(),
                name: format!("{}/{}", doc.namespace, doc.name),
                version: doc.version.clone(),
                source: source.to_owned(),
            })
            .await?;
        self.pin(&hash, workflow);
        Ok(hash)
    }

    fn workflow(&self, hash: &str) -> Option<Arc<Workflow>> {
        self.workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    async fn now(&self) -> Result<Timestamp, StoreError> {
        Ok(Timestamp(self.store.now().await?))
    }

    /// Runs the first step and commits the new instance with everything it decided. Returns
    /// the stored row: when this returns, the instance exists.
    pub async fn start(&self, req: StartRequest) -> Result<InstanceRow, StartError> {
        let wf = self.workflow(&req.definition).ok_or_else(|| {
            StoreError::Permanent(format!("definition `{}` is not pinned", req.definition))
        })?;
        let now = self.now().await?;
        let mut inst = Instance::default();
        let env = self.runner.env(&wf, &req.id);
        let mut commit = Commit::create(InstanceRow {
            id: req.id.clone(),
            function: req.function.clone(),
            definition: req.definition.clone(),
            status: baton_store::RuntimeStatus::Pending,
            input: req.input.clone(),
            output: None,
            error: None,
            custom_status: None,
            state: Vec::new(),
            created_at: now.millis(),
            updated_at: now.millis(),
            revision: 0,
        });
        // The seed and the step time make the start replayable (a rewind); the input is the
        // row's.
        let seed = random_u64();
        commit.history.push(NewEvent {
            kind: events::STARTED.to_owned(),
            data: json!({
                "function": req.function,
                "definition": req.definition,
                "seed": seed,
                "now": now.millis(),
            }),
        });
        commit.idempotency = req.idempotency;
        let input = Input::Start {
            input: req.input,
            seed,
        };
        let stepped = translate::guarded_apply(&mut inst, &env, input, now);
        translate::fill(&mut commit, stepped)?;
        State::of(inst).keep(&mut commit.instance)?;
        // The caller's copy of the row; the commit takes the original.
        let mut row = commit.instance.clone();
        match self.store.commit(commit).await {
            Ok(done) => {
                row.revision = done.revision;
                self.meters
                    .of(&row.function, &wf.document.name)
                    .started
                    .increment(1);
                if let Some(e) = translate::Ended::of(&row, &wf.document.name) {
                    e.report(&self.meters);
                    self.settled.notify_waiters();
                }
                Ok(row)
            }
            Err(CommitError::KeyTaken(b)) => Err(StartError::Duplicate {
                instance: b.instance,
                request_hash: b.request_hash,
            }),
            Err(CommitError::Conflict { .. }) => Err(StartError::Exists(req.id)),
            Err(CommitError::Fenced { .. }) => Err(StartError::Store(StoreError::Permanent(
                "a start finished no work, yet was fenced".to_owned(),
            ))),
            Err(CommitError::Store(e)) => Err(StartError::Store(e)),
        }
    }

    /// The instance once it has ended, waiting at most `timeout`: its row if it ended (or has
    /// not within the time), `None` if there is no such instance. Woken by this engine's
    /// commits; an instance finished by another node is seen at the next check, at most every
    /// 100 ms.
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<InstanceRow>, StoreError> {
        self.wait_for(id, timeout, |row| row.status.is_terminal())
            .await
    }

    /// [`Durable::wait`] for a row that satisfies `done` (an end after a rewind, say).
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&InstanceRow) -> bool,
    ) -> Result<Option<InstanceRow>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let Some(row) = self.store.instance(id).await? else {
                return Ok(None);
            };
            let now = tokio::time::Instant::now();
            if done(&row) || now >= deadline {
                return Ok(Some(row));
            }
            let next = deadline.min(now + Duration::from_millis(100));
            tokio::select! {
                () = &mut settled => {}
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Asks a running (or suspended) instance to stop: delivered as a message, applied as its
    /// next step.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<i64, StoreError> {
        self.message(id, Order::Terminate(reason.to_owned())).await
    }

    /// Delivers an event to an instance (`listen` tasks).
    pub async fn raise(&self, id: &str, event: Value) -> Result<i64, StoreError> {
        self.message(id, Order::Input(Input::Event { event })).await
    }

    /// Asks an instance to stop taking steps until [`Durable::resume`]: its status becomes
    /// `Suspended`, and what arrives meanwhile (activity results, fired timers, events) is kept
    /// with its state and applied, in arrival order, on resume. Work already out still runs.
    /// Applied in the order of the instance's messages; suspending a suspended instance does
    /// nothing.
    pub async fn suspend(&self, id: &str, reason: &str) -> Result<i64, StoreError> {
        self.message(id, Order::Suspend(reason.to_owned())).await
    }

    /// Lets a suspended instance run again: what arrived while it was suspended is applied in
    /// the same commit that makes it `Running`. Resuming an instance that is not suspended does
    /// nothing.
    pub async fn resume(&self, id: &str, reason: &str) -> Result<i64, StoreError> {
        self.message(id, Order::Resume(reason.to_owned())).await
    }

    /// Asks a `Failed` instance to run again from the operation that failed it, without
    /// running again what had succeeded: its state is rebuilt by replaying its recorded
    /// inputs except the one that failed it, and what that state waits for (the failed call,
    /// calls and timers still open) becomes work again. When the start itself failed, the
    /// instance starts again. Ignored by an instance that has not failed (check the status
    /// first to tell the caller).
    pub async fn rewind(&self, id: &str, reason: &str) -> Result<i64, StoreError> {
        self.message(id, Order::Rewind(reason.to_owned())).await
    }

    async fn message(&self, id: &str, order: Order) -> Result<i64, StoreError> {
        let payload = order.payload();
        let now = self.store.now().await?;
        self.store
            .send(NewWork {
                instance: id.to_owned(),
                kind: WorkKind::Message,
                token: random_u64() >> 1,
                due_at: now,
                payload,
            })
            .await
    }

    /// Claims and carries out work until `stop` resolves. Items in flight when it does are
    /// left to their leases: another run (or this node after a restart) takes them over.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let slots = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let wakeups = self.store.wakeups();
        let lease_ms = self.options.lease.as_millis() as i64;
        tokio::pin!(stop);
        loop {
            // Registered before looking, so a commit between the claim and the wait is not
            // missed.
            let woken = wakeups.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let free = slots.available_permits().min(self.options.claim_batch);
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match self.store.claim(&self.options.owner, lease_ms, free).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming work failed; retrying");
                        Vec::new()
                    }
                }
            };
            let got = claimed.len();
            for work in claimed {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let me = Arc::clone(&self);
                if work.kind == WorkKind::Message {
                    // Posted here, in claim order (due time, then id: the order they were
                    // sent), so that an instance applies its messages in that order: a suspend
                    // and a resume sent one after the other never trade places, as they could
                    // if each were handed over by a task of its own.
                    let instance = work.instance.clone();
                    if me.post(work) {
                        tokio::spawn(async move {
                            me.drain(&instance).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
                tokio::spawn(async move {
                    me.carry_out(work).await;
                    drop(permit);
                });
            }
            if got == free && free > 0 {
                continue;
            }
            let wait = self.idle_wait().await;
            tokio::select! {
                () = &mut stop => return,
                () = &mut woken => {}
                () = tokio::time::sleep(wait) => {}
                // A finished item frees a slot when all were taken.
                Ok(p) = Arc::clone(&slots).acquire_owned(), if free == 0 => drop(p),
            }
        }
    }

    /// Until the next item is due (or a lease expires), at most the idle poll.
    async fn idle_wait(&self) -> Duration {
        let cap = self.options.idle_poll;
        match (self.store.next_due().await, self.store.now().await) {
            (Ok(Some(due)), Ok(now)) => {
                Duration::from_millis((due - now).clamp(0, cap.as_millis() as Millis) as u64)
            }
            _ => cap,
        }
    }

    /// Carries out one claimed item and feeds its outcome to its instance.
    async fn carry_out(&self, mut work: Work) {
        // The payload is read once, here; the rest of the item only names it.
        let payload = std::mem::take(&mut work.payload);
        let input = match work.kind {
            WorkKind::Activity => {
                let activity: Activity = match serde_json::from_value(payload) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!(work = work.id, error = %e, "an unreadable activity");
                        return;
                    }
                };
                let result = self.run_activity(&work, activity).await;
                Fed::Call(result)
            }
            WorkKind::Timer => Fed::Timer,
            WorkKind::Message => Fed::Message(payload),
        };
        self.deliver(work, input).await;
    }

    /// Runs an activity, renewing its lease while it runs.
    async fn run_activity(
        &self,
        work: &Work,
        activity: Activity,
    ) -> baton_core::interp::CallResult {
        let call = self
            .runner
            .invoke(activity.task, activity.request, activity.idempotency_key);
        tokio::pin!(call);
        let renew_every = self.options.lease / 3;
        let lease_ms = self.options.lease.as_millis() as i64;
        loop {
            tokio::select! {
                r = &mut call => return r,
                () = tokio::time::sleep(renew_every) => {
                    if let Err(e) = self.store.extend(work.into(), lease_ms).await {
                        tracing::warn!(work = work.id, error = %e, "lost the lease of a running activity");
                    }
                }
            }
        }
    }

    /// Hands an item's outcome to its instance. Outcomes for one instance are applied by one
    /// feeder at a time: those that arrive while it commits wait in the instance's mailbox and
    /// go, all together, into its next step and commit. Six activities finishing at once then
    /// cost one or two commits instead of six racing on one revision.
    async fn deliver(&self, work: Work, fed: Fed) {
        let instance = work.instance.clone();
        if self.enqueue(work, fed) {
            self.drain(&instance).await;
        }
    }

    /// Puts a claimed message into its instance's mailbox; true when the caller is to
    /// [`drain`](Self::drain) it (no feeder is at work on the instance).
    fn post(&self, mut work: Work) -> bool {
        let payload = std::mem::take(&mut work.payload);
        self.enqueue(work, Fed::Message(payload))
    }

    /// Puts an outcome into its instance's mailbox; true when no feeder was at work on the
    /// instance, and the caller becomes it.
    fn enqueue(&self, work: Work, fed: Fed) -> bool {
        let mut boxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(waiting) = boxes.get_mut(&work.instance) {
            waiting.push((work, fed));
            return false;
        }
        boxes.insert(work.instance.clone(), vec![(work, fed)]);
        true
    }

    /// Feeds an instance's mailbox until it is empty, then gives the instance up.
    async fn drain(&self, instance: &str) {
        loop {
            let batch = {
                let mut boxes = self
                    .mailboxes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match boxes.get_mut(instance) {
                    Some(waiting) if !waiting.is_empty() => std::mem::take(waiting),
                    _ => {
                        boxes.remove(instance);
                        return;
                    }
                }
            };
            self.feed(batch).await;
        }
    }
}
