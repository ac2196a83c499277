//! Express instances: run in memory, queryable for a bounded time after they finish.
//!
//! Retention: a finished instance is kept for `express.retention` (10 minutes by default) and
//! at most `express.max_retained` finished instances are kept (10,000 by default, oldest
//! forgotten first). Running instances are never forgotten; their number is bounded by
//! `limits.max_in_flight`. An express instance does not survive a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use baton_core::interp::Status;
use baton_core::{ErrorKind, Timestamp, WorkflowError};
use baton_engine::{Clock, Runner, new_instance_id};
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

struct Entry {
    snapshot: Snapshot,
    done: watch::Receiver<Final>,
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
#[error("the host is running its maximum of {0} instances")]
pub struct Full(pub usize);

const IN_FLIGHT: &str = "baton_instances_in_flight";

/// A running instance's permit. The `baton_instances_in_flight` gauge follows the permit's
/// lifetime, so an instance that ends any way (even by a panic) gives its count back.
/// Incremented and decremented rather than `set` from [`Express::in_flight`]: two instances
/// finishing together could otherwise store their counts in the wrong order and leave the gauge
/// stale until the next start.
struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}

/// The labels of an instance's metrics: bounded by the app's functions and workflows.
fn labels(function: &Function) -> [(&'static str, String); 2] {
    [
        ("function", function.name.clone()),
        ("workflow", function.workflow.document.name.clone()),
    ]
}

/// Runs and tracks express instances. Cheap to clone.
#[derive(Clone)]
pub struct Express {
    runner: Arc<Runner>,
    table: Arc<Mutex<Table>>,
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
    done: watch::Receiver<Final>,
}

impl Started {
    /// Waits until the instance finishes or `timeout` passes, and returns its final state.
    ///
    /// The final state travels with the notification, so a waiter gets its result even if the
    /// instance is evicted from the table right after it finished.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> Option<Arc<Snapshot>> {
        let done = tokio::time::timeout(timeout, self.done.wait_for(Option::is_some)).await;
        done.ok()?.ok().and_then(|f| f.clone())
    }
}

impl Express {
    /// A registry that runs instances on `runner`.
    pub fn new(runner: Runner, settings: Settings) -> Self {
        Self {
            runner: Arc::new(runner),
            table: Arc::default(),
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
    pub fn start(&self, function: &Function, input: Value) -> Result<Started, Full> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full(self.max_in_flight))?;
        let slot = Slot::new(permit);
        let labels = labels(function);
        metrics::counter!("baton_instances_started_total", &labels).increment(1);
        let id = new_instance_id();
        let now = self.clock.now();
        let (tx, rx) = watch::channel(None);
        let snapshot = Snapshot {
            id: id.clone(),
            function: function.name.clone(),
            status: Status::Running,
            input: input.clone(),
            output: None,
            error: None,
            created: now,
            updated: now,
        };
        self.lock().entries.insert(
            id.clone(),
            Entry {
                snapshot,
                done: rx.clone(),
            },
        );
        tracing::info!(
            function = %function.name,
            instance = %id,
            "Executing '{}' (Reason='This function was programmatically called via the host APIs.', Id={id})",
            function.name
        );
        let this = self.clone();
        let function = function.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            // The run is its own task so that a panic in the engine becomes a faulted instance
            // (and a 500 for a waiting caller) instead of an instance left "Running" for ever.
            let runner = this.runner.clone();
            let workflow = function.workflow.clone();
            let inner_id = run_id.clone();
            let inner =
                tokio::spawn(async move { runner.run_as(&workflow, input, inner_id).await });
            let abort = inner.abort_handle();
            let (status, output, error) = match tokio::time::timeout(this.workflow_timeout, inner)
                .await
            {
                Ok(Ok(o)) => (o.status, o.output, o.error),
                Ok(Err(join)) => {
                    tracing::error!(instance = %run_id, panic = join.is_panic(), "the instance's task ended abnormally");
                    (
                        Status::Faulted,
                        None,
                        Some(WorkflowError::new(
                            ErrorKind::Runtime,
                            "/",
                            "the instance stopped unexpectedly inside the engine; see the host's log",
                        )),
                    )
                }
                Err(_) => {
                    abort.abort();
                    (
                        Status::Faulted,
                        None,
                        Some(WorkflowError::new(
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
                    )
                }
            };
            let outcome = if status == Status::Completed {
                "baton_instances_completed_total"
            } else {
                "baton_instances_failed_total"
            };
            metrics::counter!(outcome, &labels).increment(1);
            let ms = started.elapsed().as_millis();
            match (&status, &error) {
                (Status::Completed, _) => tracing::info!(
                    function = %function.name, instance = %run_id, duration_ms = ms as u64,
                    "Executed '{}' (Succeeded, Id={run_id}, Duration={ms}ms)", function.name
                ),
                (_, error) => tracing::info!(
                    function = %function.name, instance = %run_id, duration_ms = ms as u64,
                    "Executed '{}' (Failed, Id={run_id}, Duration={ms}ms, Error={})",
                    function.name,
                    error.as_ref().map_or_else(|| status.as_str().to_owned(), ToString::to_string)
                ),
            }
            let last = this.finish(&run_id, status, output, error);
            // `last` is always there: a running entry is never evicted.
            let _ = tx.send(last.map(Arc::new));
        });
        Ok(Started { id, done: rx })
    }

    /// Records the end of an instance and returns its final state (`None` only if the
    /// instance was unknown).
    fn finish(
        &self,
        id: &str,
        status: Status,
        output: Option<Value>,
        error: Option<WorkflowError>,
    ) -> Option<Snapshot> {
        let now = self.clock.now();
        let mut t = self.lock();
        let last = t.entries.get_mut(id).map(|e| {
            e.snapshot.status = status;
            e.snapshot.output = output;
            e.snapshot.error = error;
            e.snapshot.updated = now;
            e.snapshot.clone()
        });
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
    pub fn get(&self, id: &str) -> Option<Snapshot> {
        let mut t = self.lock();
        self.evict(&mut t);
        t.entries.get(id).map(|e| e.snapshot.clone())
    }

    /// Waits for an instance to finish, at most `timeout`; `None` if unknown.
    pub async fn wait(&self, id: &str, timeout: std::time::Duration) -> Option<Snapshot> {
        let rx = self.lock().entries.get(id).map(|e| e.done.clone())?;
        let mut started = Started {
            id: id.to_owned(),
            done: rx,
        };
        match started.wait(timeout).await {
            Some(last) => Some((*last).clone()),
            None => self.get(id),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-updated in a way that
        // matters (each update is one insert or field assignment), so poisoning is ignored.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
