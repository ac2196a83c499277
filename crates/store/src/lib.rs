//! Baton's storage abstraction: the durable state of instances, their append-only history, the
//! work items that leave the interpreter (activities, timers, inbound events) with leases, and
//! idempotency keys.
//!
//! [`Store`] is implemented once per backend (SQLite in `baton-store-sqlite`, PostgreSQL in
//! `baton-store-postgres`); [`conformance`] holds the behaviour every backend must show,
//! written once against this trait, and each backend runs it unchanged.
//!
//! # The model
//!
//! * An **instance row** ([`InstanceRow`]) is the whole persisted state of one instance: its
//!   status, input, output, the engine's opaque `state`, and a `revision` that every commit
//!   bumps. Commits name the revision they start from, so two writers of one instance cannot
//!   both win ([`CommitError::Conflict`]).
//! * A **commit** ([`Commit`]) writes, in one transaction, the new instance row, the history
//!   events of the step, the work items the step created, the removal of work it finished or
//!   cancelled, and an idempotency key. Either all of it is stored or none of it.
//! * A **work item** ([`Work`]) is due at a time and is **claimed** with a lease: an owner, an
//!   expiry and a **fence** — a number that grows at every claim. Finishing work (in a commit),
//!   extending or releasing its lease all name the fence they hold; a stale holder (its lease
//!   expired and someone else claimed the item) is refused with [`CommitError::Fenced`], and
//!   its whole commit is discarded.
//! * Times are the store's own clock ([`Store::now`]), in Unix milliseconds: due times and
//!   lease expiries compare against it, never against a caller's clock.

pub mod conformance;
pub mod queues;

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Unix time in milliseconds, by the store's clock.
pub type Millis = i64;

/// An instance's runtime status, as the status API reports it (Durable Functions' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuntimeStatus {
    Pending,
    Running,
    Suspended,
    Completed,
    Failed,
    Terminated,
}

impl RuntimeStatus {
    pub const ALL: [RuntimeStatus; 6] = [
        Self::Pending,
        Self::Running,
        Self::Suspended,
        Self::Completed,
        Self::Failed,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Suspended => "Suspended",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
        }
    }

    /// The status named `s` exactly as [`RuntimeStatus::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Completed, Failed or Terminated: nothing more happens to the instance.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Terminated)
    }
}

/// A workflow definition, stored by the hash of its content so that an instance stays pinned
/// to the exact definition it started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// The content hash (hex), the definition's key.
    pub hash: String,
    /// `namespace/name` of the workflow.
    pub name: String,
    /// `document.version`.
    pub version: String,
    /// The definition's source text (YAML or JSON).
    pub source: String,
}

/// The persisted state of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    pub id: String,
    /// The function (route) that started it.
    pub function: String,
    /// The hash of its [`Definition`].
    pub definition: String,
    pub status: RuntimeStatus,
    pub input: Value,
    pub output: Option<Value>,
    /// The workflow error, for a failed instance.
    pub error: Option<Value>,
    pub custom_status: Option<Value>,
    /// The engine's own state of the instance; the store does not look inside.
    pub state: Vec<u8>,
    pub created_at: Millis,
    /// Set by the store at every commit.
    pub updated_at: Millis,
    /// Set by the store: 1 when created, one more at every commit.
    pub revision: u64,
}

/// What a work item is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkKind {
    /// A call that leaves the interpreter (`call: http`, a native function): at least once.
    Activity,
    /// A durable timer (`wait`, retry backoff, a timeout).
    Timer,
    /// Something to hand to the instance: a raised event, a terminate or resume request.
    Message,
}

impl WorkKind {
    pub const ALL: [WorkKind; 3] = [Self::Activity, Self::Timer, Self::Message];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activity => "activity",
            Self::Timer => "timer",
            Self::Message => "message",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A work item to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewWork {
    pub instance: String,
    pub kind: WorkKind,
    /// The interpreter's token for it (unique within the instance and kind); what a
    /// [`Commit::cancel`] names.
    pub token: u64,
    /// Claimable from this time on.
    pub due_at: Millis,
    pub payload: Value,
}

/// A claimed work item, with the lease its holder must name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Work {
    pub id: i64,
    pub instance: String,
    pub kind: WorkKind,
    pub token: u64,
    pub due_at: Millis,
    pub payload: Value,
    /// How many times it has been claimed, this claim included.
    pub attempt: u32,
    pub lease: Lease,
}

impl Work {
    /// A stable idempotency key for the callee: the same for every attempt of this item.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.instance, self.kind.as_str(), self.token)
    }
}

/// A lease on a work item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    /// Grows at every claim of the item; only the newest holder's fence is accepted.
    pub fence: i64,
    pub until: Millis,
}

/// A claimed item, named by the fence its holder got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub id: i64,
    pub fence: i64,
}

impl From<&Work> for Held {
    fn from(w: &Work) -> Self {
        Self {
            id: w.id,
            fence: w.lease.fence,
        }
    }
}

/// One history event of an instance, as a step records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub kind: String,
    pub data: Value,
}

/// A stored history event: numbered from 1 within its instance, stamped by the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Millis,
    pub kind: String,
    pub data: Value,
}

/// An idempotency key to record with a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub key: String,
    /// A hash of the request it came with. The store refuses any second binding of a live key
    /// ([`CommitError::KeyTaken`], carrying this hash); telling a retry of the same request
    /// (same hash: answer with the bound instance) from a misuse (another hash: 409) is the
    /// caller's.
    pub request_hash: String,
    /// The key is forgotten after this time.
    pub expires_at: Millis,
}

/// What an idempotency key is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBinding {
    pub instance: String,
    pub request_hash: String,
}

/// One atomic write: everything a step of one instance changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// The instance's new row (`updated_at` and `revision` are the store's to set).
    pub instance: InstanceRow,
    /// The revision this commit starts from, or `None` to create the instance (refused if an
    /// instance with that id exists).
    pub expected_revision: Option<u64>,
    pub history: Vec<NewEvent>,
    pub enqueue: Vec<NewWork>,
    /// Claimed work this step has finished: deleted, if each fence is still current.
    pub done: Vec<Held>,
    /// Unclaimed or claimed work of this instance to drop (a cancelled timer or call).
    pub cancel: Vec<(WorkKind, u64)>,
    pub idempotency: Option<IdempotencyKey>,
}

impl Commit {
    /// A commit that creates `instance` with nothing else.
    pub fn create(instance: InstanceRow) -> Self {
        Self {
            instance,
            expected_revision: None,
            history: Vec::new(),
            enqueue: Vec::new(),
            done: Vec::new(),
            cancel: Vec::new(),
            idempotency: None,
        }
    }

    /// A commit that updates `instance` from the revision it carries.
    pub fn update(instance: InstanceRow) -> Self {
        let expected = instance.revision;
        Self {
            expected_revision: Some(expected),
            ..Self::create(instance)
        }
    }
}

/// What a commit stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The instance's revision now.
    pub revision: u64,
    /// The ids of the work items created, in the order of [`Commit::enqueue`].
    pub enqueued: Vec<i64>,
}

/// Why a commit or a lease operation was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The instance is not at the expected revision (or, on create, already exists).
    #[error(
        "instance `{instance}` changed underneath (expected revision {expected:?}, found {found:?})"
    )]
    Conflict {
        instance: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    /// The work item was claimed by someone else since (or is gone). A holder whose lease
    /// expired but whose item nobody has claimed since still holds it.
    #[error("work item {id} is no longer held with fence {fence}")]
    Fenced { id: i64, fence: i64 },
    /// The idempotency key is bound to an instance already.
    #[error("the idempotency key is already bound to instance `{}`", .0.instance)]
    KeyTaken(KeyBinding),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failure of the backend itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: a busy database, a lost connection.
    #[error("storage is unavailable: {0}")]
    Transient(String),
    /// Not worth retrying: corruption, a schema from a newer Baton, a full disk.
    #[error("storage failed: {0}")]
    Permanent(String),
}

/// Which instances to list or purge. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub statuses: Vec<RuntimeStatus>,
    pub function: Option<String>,
    /// Created at or after.
    pub created_from: Option<Millis>,
    /// Created before.
    pub created_to: Option<Millis>,
    /// Ids starting with this.
    pub id_prefix: Option<String>,
}

impl Filter {
    /// The statuses an instance must have to match, for a listing or, with `terminal_only`, a
    /// purge (which takes only finished instances: of the statuses asked for, or of all).
    /// `Some` of an empty list: any status; `None`: nothing can match (only unfinished
    /// statuses were asked for, and only finished instances may be purged).
    pub fn statuses_to_match(&self, terminal_only: bool) -> Option<Vec<RuntimeStatus>> {
        if !terminal_only {
            return Some(self.statuses.clone());
        }
        if self.statuses.is_empty() {
            return Some(
                RuntimeStatus::ALL
                    .into_iter()
                    .filter(|s| s.is_terminal())
                    .collect(),
            );
        }
        let finished: Vec<RuntimeStatus> = self
            .statuses
            .iter()
            .copied()
            .filter(|s| s.is_terminal())
            .collect();
        (!finished.is_empty()).then_some(finished)
    }
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub items: Vec<InstanceRow>,
    /// Pass back to get the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// The storage a durable engine runs on. All methods are safe to call concurrently; every
/// write is atomic.
pub trait Store: Send + Sync + 'static {
    /// The store's clock, in Unix milliseconds: what due times and leases compare against.
    fn now(&self) -> impl Future<Output = Result<Millis, StoreError>> + Send;

    /// Stores a definition; storing the same hash again is a no-op.
    fn put_definition(&self, d: &Definition)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    fn definition(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<Definition>, StoreError>> + Send;

    /// Writes everything in `c` in one transaction, or nothing.
    fn commit(&self, c: Commit) -> impl Future<Output = Result<Committed, CommitError>> + Send;

    fn instance(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<InstanceRow>, StoreError>> + Send;

    /// Instances matching `filter`, newest first (by creation, then id), `size` at most.
    fn list(
        &self,
        filter: &Filter,
        size: usize,
        continuation: Option<&str>,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// An instance's history events after `after` (0 for all), in order, `limit` at most.
    fn history(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    /// How many instances have `status`. Meant for the unfinished statuses (what a metrics
    /// scrape shows); counting a terminal status may read every finished instance.
    fn count(&self, status: RuntimeStatus) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes an instance with its history, work and idempotency keys; work stored under
    /// `id` without an instance (an event addressed to one that never was) goes too. False if
    /// there was no instance.
    fn purge(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Purges every terminal instance matching `filter`; returns how many.
    fn purge_where(&self, filter: &Filter) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Adds one work item for an existing instance outside any step (a raised event, a
    /// terminate request), without touching the instance row. Returns its id.
    fn send(&self, work: NewWork) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Claims up to `max` work items that are due and not leased (or whose lease expired),
    /// earliest claimable first (an unleased item's due time, a taken-over item's lease
    /// expiry), for `owner`, until `lease_ms` from now. Each claim takes a new fence.
    fn claim(
        &self,
        owner: &str,
        lease_ms: i64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Work>, StoreError>> + Send;

    /// Moves a held lease's expiry to `lease_ms` from now.
    fn extend(
        &self,
        held: Held,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Lease, CommitError>> + Send;

    /// Gives a held item back, claimable again from `due_at`.
    fn release(
        &self,
        held: Held,
        due_at: Millis,
    ) -> impl Future<Output = Result<(), CommitError>> + Send;

    /// The earliest time at which some work becomes claimable — an unleased item's due time,
    /// a leased item's lease expiry — if any: when a dispatcher with nothing to do should look
    /// again.
    fn next_due(&self) -> impl Future<Output = Result<Option<Millis>, StoreError>> + Send;

    /// The binding of an unexpired idempotency key.
    fn idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<KeyBinding>, StoreError>> + Send;

    /// Signalled after every write that made work claimable (a commit that enqueued work, a
    /// [`Store::send`], a [`Store::release`]), so that idle dispatchers wake without polling.
    fn wakeups(&self) -> Arc<tokio::sync::Notify>;
}
