//! Express instances: run in memory, queryable for a bounded time after they finish.
//!
//! Retention: a finished instance is kept for `express.retention` (10 minutes by default) and
//! at most `express.max_retained` finished instances are kept (10,000 by default, oldest
//! forgotten first). Running instances are never forgotten; their number is bounded by
//! `limits.max_in_flight`. An express instance does not survive a restart. An instance started
//! with [`Express::start_answering`] that finishes at once is not kept at all: its caller
//! answers with the result, and its id is never given out, so nobody could ask for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::time::Instant;

use baton_core::interp::Status;
use baton_core::{ErrorKind, Timestamp, WorkflowError};
use baton_engine::meters::{Counters, InstanceMeters};
use baton_engine::{Begun, Clock, RunOutcome, Runner, Suspended, new_instance_id};
use metrics::Gauge;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::Function;

/// A point-in-time view of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub id: String,
    /// The function that started it.
    pub function: String,
    pub status: Status,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<WorkflowError>,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// A table entry. Snapshots are shared (`Arc`) with waiters and readers rather than copied.
enum Entry {
    Running {
        snapshot: Arc<Snapshot>,
        done: watch::Receiver<Final>,
    },
    Finished(Arc<Snapshot>),
}

/// What a waiter receives: nothing while the instance runs, its final state once it finished.
type Final = Option<Arc<Snapshot>>;

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// Finished instances, oldest first, for eviction.
    finished: VecDeque<(Instant, String)>,
}

/// The host is at its limit of running instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host is running as many instances as it may at once ({0}, limits.max_in_flight)")]
pub struct Full(pub usize);

const IN_FLIGHT: &str = "baton_instances_in_flight";

/// A running instance's permit. The `baton_instances_in_flight` gauge follows the permit's
/// lifetime, so an instance that ends any way (even by a panic) gives its count back.
/// Incremented and decremented rather than `set` from [`Express::in_flight`]: two instances
/// finishing together could otherwise store their counts in the wrong order and leave the gauge
/// stale until the next start.
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self {
            _permit: permit,
            gauge,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// The gauge's handle, resolved on first use (the process's recorder is installed when the
/// router is built, which may come after [`Express::new`]), and the instance counters.
#[derive(Default)]
struct Meters {
    in_flight: OnceLock<Gauge>,
    instances: InstanceMeters,
}

impl Meters {
    fn in_flight(&self) -> Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(IN_FLIGHT))
            .clone()
    }

    fn of(&self, function: &Function) -> Arc<Counters> {
        self.instances
            .of(&function.name, &function.workflow.document.name)
    }
}

/// Runs and tracks express instances. Cheap to clone.
#[derive(Clone)]
pub struct Express {
    runner: Arc<Runner>,
    table: Arc<Mutex<Table>>,
    meters: Arc<Meters>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    retention: std::time::Duration,
    max_retained: usize,
    workflow_timeout: std::time::Duration,
    clock: Clock,
}

/// Limits of an [`Express`] registry.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_in_flight: usize,
    pub retention: baton_core::Duration,
    pub max_retained: usize,
    /// An instance running longer is stopped with a `timeout` error.
    pub workflow_timeout: baton_core::Duration,
}

impl Settings {
    /// The settings a configuration asks for.
    pub fn from_config(c: &crate::Config) -> Self {
        Self {
            max_in_flight: c.limits.max_in_flight,
            retention: c.express.retention.0,
            max_retained: c.express.max_retained,
            workflow_timeout: c.limits.workflow_timeout.0,
        }
    }
}

impl std::fmt::Debug for Express {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Express")
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// A started instance: its id, and a way to wait for it.
#[derive(Debug)]
pub struct Started {
    pub id: String,
    progress: Progress,
}

#[derive(Debug)]
enum Progress {
    /// Finished before [`Express::start`] returned.
    Finished(Arc<Snapshot>),
    Running(watch::Receiver<Final>),
}

impl Started {
    /// Waits until the instance finishes or `timeout` passes, and returns its final state.
    ///
    /// The final state travels with the notification, so a waiter gets its result even if the
    /// instance is evicted from the table right after it finished.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> Option<Arc<Snapshot>> {
        match &mut self.progress {
            Progress::Finished(last) => Some(last.clone()),
            Progress::Running(done) => wait_for(done, timeout).await,
        }
    }
}

async fn wait_for(
    done: &mut watch::Receiver<Final>,
    timeout: std::time::Duration,
) -> Option<Arc<Snapshot>> {
    let done = tokio::time::timeout(timeout, done.wait_for(Option::is_some)).await;
    done.ok()?.ok().and_then(|f| f.clone())
}

/// How an instance ended, as the host records it.
struct End {
    status: Status,
    input: Option<Value>,
    output: Option<Value>,
    error: Option<WorkflowError>,
}

impl From<RunOutcome> for End {
    fn from(o: RunOutcome) -> Self {
        Self {
            status: o.status,
            input: Some(o.input),
            output: o.output,
            error: o.error,
        }
    }
}

impl Express {
    /// A registry that runs instances on `runner`.
    pub fn new(runner: Runner, settings: Settings) -> Self {
        Self {
            runner: Arc::new(runner),
            table: Arc::default(),
            meters: Arc::default(),
            permits: Arc::new(Semaphore::new(settings.max_in_flight)),
            max_in_flight: settings.max_in_flight,
            retention: settings.retention.to_std(),
            max_retained: settings.max_retained,
            workflow_timeout: settings.workflow_timeout.to_std(),
            clock: Clock::new(),
        }
    }

    /// Instances running now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Starts an instance of `function` with `input`, unless the host is full.
    ///
    /// The instance's first step runs here, on the caller's thread: one that finishes there
    /// (a pure workflow) is recorded and returned finished, with no task spawned. One that
    /// waits for timers or calls goes on on a task of its own, stopped at the host's
    /// `workflow_timeout` counted from now.
    ///
    /// `input` must already satisfy the workflow's `input.schema`: the HTTP trigger checks it
    /// first (answering 400 otherwise), so the instance does not check it again.
    pub fn start(&self, function: &Function, input: Value) -> Result<Started, Full> {
        self.start_with(function, input, true)
    }

    /// Like [`Express::start`], for a caller that answers with the result itself when the
    /// instance finishes at once (a sync trigger's 200): such an instance is not recorded, since
    /// its id is never given out. One that goes on is recorded as usual.
    pub fn start_answering(&self, function: &Function, input: Value) -> Result<Started, Full> {
        self.start_with(function, input, false)
    }

    fn start_with(
        &self,
        function: &Function,
        input: Value,
        retain_finished: bool,
    ) -> Result<Started, Full> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full(self.max_in_flight))?;
        let slot = Slot::new(permit, self.meters.in_flight());
        let counters = self.meters.of(function);
        counters.started.increment(1);
        let id = new_instance_id();
        let created = self.clock.now();
        let started = Instant::now();
        tracing::info!(
            function = %function.name,
            instance = %id,
            "Executing '{}' (Reason='This function was programmatically called via the host APIs.', Id={id})",
            function.name
        );
        // An instance nobody will ask about (see `start_answering`) need not keep its input.
        let begin = if retain_finished {
            Runner::begin_checked
        } else {
            Runner::begin_answering
        };
        match begin(&self.runner, &function.workflow, input, id.clone()) {
            Begun::Finished(outcome) => {
                let end = End::from(outcome);
                executed(&counters, function, &id, started, &end);
                let last = self.record_finished(function, &id, created, end, retain_finished);
                drop(slot);
                Ok(Started {
                    id,
                    progress: Progress::Finished(last),
                })
            }
            Begun::Suspended(run) => {
                let done = self.spawn(function, &id, created, started, run, slot, counters);
                Ok(Started {
                    id,
                    progress: Progress::Running(done),
                })
            }
        }
    }

    /// Records an instance that finished inside [`Express::start`].
    fn record_finished(
        &self,
        function: &Function,
        id: &str,
        created: Timestamp,
        end: End,
        retain: bool,
    ) -> Arc<Snapshot> {
        let last = Arc::new(Snapshot {
            id: id.to_owned(),
            function: function.name.clone(),
            status: end.status,
            input: end.input.unwrap_or_default(),
            output: end.output,
            error: end.error,
            created,
            updated: self.clock.now(),
        });
        if !retain {
            return last;
        }
        let mut t = self.lock();
        t.entries
            .insert(id.to_owned(), Entry::Finished(last.clone()));
        t.finished.push_back((Instant::now(), id.to_owned()));
        self.evict(&mut t);
        last
    }

    /// Drives a suspended instance to its end on a task of its own, and records the end.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        function: &Function,
        id: &str,
        created: Timestamp,
        started: Instant,
        run: Suspended,
        slot: Slot,
        counters: Arc<Counters>,
    ) -> watch::Receiver<Final> {
        let (tx, rx) = watch::channel(None);
        let snapshot = Snapshot {
            id: id.to_owned(),
            function: function.name.clone(),
            status: Status::Running,
            input: run.input().clone(),
            output: None,
            error: None,
            created,
            updated: created,
        };
        self.lock().entries.insert(
            id.to_owned(),
            Entry::Running {
                snapshot: Arc::new(snapshot),
                done: rx.clone(),
            },
        );
        let this = self.clone();
        let function = function.clone();
        let run_id = id.to_owned();
        let deadline = started + self.workflow_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // The rest of the run is its own task so that a panic in the engine outside the
            // interpreter's step (which the runner contains itself) still becomes a faulted
            // instance, and a 500 for a waiting caller, instead of one "Running" for ever.
            let inner = tokio::spawn(run.finish());
            let abort = inner.abort_handle();
            let end = match tokio::time::timeout_at(deadline, inner).await {
                Ok(Ok(o)) => End::from(o),
                Ok(Err(join)) => {
                    tracing::error!(instance = %run_id, panic = join.is_panic(), "the instance's task ended abnormally");
                    End {
                        status: Status::Faulted,
                        input: None,
                        output: None,
                        error: Some(WorkflowError::new(
                            ErrorKind::Runtime,
                            "/",
                            "the instance stopped unexpectedly inside the engine; see the host's log",
                        )),
                    }
                }
                Err(_) => {
                    abort.abort();
                    End {
                        status: Status::Faulted,
                        input: None,
                        output: None,
                        error: Some(WorkflowError::new(
                            ErrorKind::Timeout,
                            "/",
                            format!(
                                "the instance ran longer than the host's limit of {}",
                                baton_core::Duration::from_millis(
                                    this.workflow_timeout.as_millis() as u64
                                )
                                .to_iso8601()
                            ),
                        )),
                    }
                }
            };
            executed(&counters, &function, &run_id, started, &end);
            let last = this.finish(&run_id, end);
            // `last` is always there: a running entry is never evicted.
            let _ = tx.send(last);
        });
        rx
    }

    /// Records the end of a spawned instance and returns its final state (`None` only if the
    /// instance was unknown).
    fn finish(&self, id: &str, end: End) -> Option<Arc<Snapshot>> {
        let now = self.clock.now();
        let mut t = self.lock();
        let last = match t.entries.remove(id) {
            Some(Entry::Running { snapshot, .. }) => {
                let mut s = Arc::unwrap_or_clone(snapshot);
                s.status = end.status;
                // The snapshot already holds the input; the run's copy is dropped.
                s.output = end.output;
                s.error = end.error;
                s.updated = now;
                let s = Arc::new(s);
                t.entries.insert(id.to_owned(), Entry::Finished(s.clone()));
                Some(s)
            }
            Some(finished @ Entry::Finished(_)) => {
                t.entries.insert(id.to_owned(), finished);
                None
            }
            None => None,
        };
        t.finished.push_back((Instant::now(), id.to_owned()));
        self.evict(&mut t);
        last
    }

    fn evict(&self, t: &mut Table) {
        while let Some((at, id)) = t.finished.front() {
            let expired = at.elapsed() > self.retention;
            if !(expired || t.finished.len() > self.max_retained) {
                break;
            }
            let id = id.clone();
            t.finished.pop_front();
            t.entries.remove(&id);
        }
    }

    /// The instance's current state; `None` if unknown or forgotten.
    pub fn get(&self, id: &str) -> Option<Arc<Snapshot>> {
        let mut t = self.lock();
        self.evict(&mut t);
        t.entries.get(id).map(|e| match e {
            Entry::Running { snapshot, .. } | Entry::Finished(snapshot) => snapshot.clone(),
        })
    }

    /// Waits for an instance to finish, at most `timeout`; `None` if unknown.
    pub async fn wait(&self, id: &str, timeout: std::time::Duration) -> Option<Arc<Snapshot>> {
        let mut done = match self.lock().entries.get(id)? {
            Entry::Finished(last) => return Some(last.clone()),
            Entry::Running { done, .. } => done.clone(),
        };
        match wait_for(&mut done, timeout).await {
            Some(last) => Some(last),
            None => self.get(id),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-updated in a way that
        // matters (each update is one insert or field assignment), so poisoning is ignored.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts an instance's end and writes its `Executed '…'` line.
fn executed(counters: &Counters, function: &Function, id: &str, started: Instant, end: &End) {
    counters.ended(end.status == Status::Completed);
    let ms = started.elapsed().as_millis();
    match (&end.status, &end.error) {
        (Status::Completed, _) => tracing::info!(
            function = %function.name, instance = %id, duration_ms = ms as u64,
            "Executed '{}' (Succeeded, Id={id}, Duration={ms}ms)", function.name
        ),
        // A failed execution is an error for whoever runs the host, as in the Functions host.
        (status, error) => tracing::error!(
            function = %function.name, instance = %id, duration_ms = ms as u64,
            "Executed '{}' (Failed, Id={id}, Duration={ms}ms, Error={})",
            function.name,
            error.as_ref().map_or_else(|| status.as_str().to_owned(), ToString::to_string)
        ),
    }
}
