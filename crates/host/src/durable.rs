//! Durable functions: their instances kept in the store, started, read and managed for the
//! HTTP layer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_engine::Runner;
use baton_engine::durable::{Durable, DurableOptions, StartError, StartRequest};
use baton_store::{
    Event, Filter, IdempotencyKey, InstanceRow, Page, RuntimeStatus, Store, StoreError,
};
use serde_json::{Value, json};

use crate::app::{App, Function};
use crate::store::AnyStore;

/// The durable side of a host.
#[derive(Debug)]
pub struct Instances {
    engine: Arc<Durable<AnyStore>>,
    /// The definition hash each workflow (by `document.name`) is registered under.
    current: HashMap<String, String>,
    /// Name and version of definitions by hash, as far as they have been looked up.
    versions: Mutex<HashMap<String, Version>>,
    window_ms: i64,
    described: String,
    /// Fault injection for crash tests: the process aborts right after committing the start
    /// of an instance of this function (`*`: any), before anyone is answered. Set by
    /// `BATON_FAILPOINT_ABORT_AFTER_START`.
    abort_after_start: Option<String>,
}

const UNFINISHED: [RuntimeStatus; 3] = [
    RuntimeStatus::Pending,
    RuntimeStatus::Running,
    RuntimeStatus::Suspended,
];

/// Which definition an instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// `namespace/name`.
    pub name: String,
    pub version: String,
    pub hash: String,
}

/// What a start produced.
#[derive(Debug, Clone)]
pub enum Begun {
    /// A new instance, committed.
    Started(InstanceRow),
    /// The idempotency key was used before with the same request: that instance.
    Replayed(InstanceRow),
}

impl Begun {
    pub fn row(&self) -> &InstanceRow {
        match self {
            Self::Started(r) | Self::Replayed(r) => r,
        }
    }
}

/// Why a start was refused.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    /// The key is bound to an instance started with another request.
    #[error(
        "the Idempotency-Key was used for another request (instance `{instance}`); a key may be reused only with the same function and body"
    )]
    KeyReused { instance: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request to a running instance.
#[derive(Debug, Clone)]
pub enum Control {
    Terminate {
        reason: String,
    },
    Suspend {
        reason: String,
    },
    Resume {
        reason: String,
    },
    Rewind {
        reason: String,
    },
    /// Deliver a CloudEvent of type `name` with `data`.
    Raise {
        name: String,
        data: Value,
    },
}

/// Why a control request or a purge was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no instance `{0}`")]
    Unknown(String),
    /// The instance has finished (410 Gone).
    #[error("the instance has finished ({})", .0.as_str())]
    Finished(RuntimeStatus),
    /// The instance is not in the state the request needs (412).
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Instances {
    /// Opens the app's store and registers the definition of every workflow a durable function
    /// uses.
    pub async fn open(app: &App, runner: Arc<Runner>) -> Result<Self, StoreError> {
        let store = Arc::new(AnyStore::open(&app.config.store).await?);
        Self::open_on(app, runner, store).await
    }

    /// [`Instances::open`] on a store already open (shared with the host's queues).
    pub async fn open_on(
        app: &App,
        runner: Arc<Runner>,
        store: Arc<AnyStore>,
    ) -> Result<Self, StoreError> {
        let config = &app.config;
        let described = store.describe(&config.store);
        let options = DurableOptions {
            lease: config.durable.lease.0.to_std(),
            concurrency: config.durable.concurrency,
            ..DurableOptions::default()
        };
        let engine = Arc::new(Durable::new(store, runner, options));
        let mut current = HashMap::new();
        let mut versions = HashMap::new();
        for f in app.functions.iter().filter(|f| f.is_durable()) {
            let name = &f.workflow.document.name;
            if current.contains_key(name) {
                continue;
            }
            let source = app.sources.get(name).map_or("", String::as_str);
            let hash = engine.register(source, Arc::clone(&f.workflow)).await?;
            let doc = &f.workflow.document;
            versions.insert(
                hash.clone(),
                Version {
                    name: format!("{}/{}", doc.namespace, doc.name),
                    version: doc.version.clone(),
                    hash: hash.clone(),
                },
            );
            current.insert(name.clone(), hash);
        }
        Ok(Self {
            engine,
            current,
            versions: Mutex::new(versions),
            window_ms: config.durable.idempotency_window.0.as_millis() as i64,
            described,
            abort_after_start: std::env::var("BATON_FAILPOINT_ABORT_AFTER_START").ok(),
        })
    }

    /// The store, for the start-up banner.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Whether the store answers now (its clock is read): what `/readyz` checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.engine.store().now().await.map(drop)
    }

    /// Carries out durable work until `stop` resolves.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        Arc::clone(&self.engine).run(stop).await;
    }

    /// Starts an instance of `f` and returns once it is committed. With `key`, a retry of the
    /// same request within the window answers with the instance it started.
    pub async fn begin(
        &self,
        f: &Function,
        input: Value,
        key: Option<&str>,
    ) -> Result<Begun, BeginError> {
        self.begin_because(
            f,
            input,
            key,
            "This function was programmatically called via the host APIs.",
        )
        .await
    }

    /// [`Instances::begin`], logging `reason` as the reason for the execution.
    pub async fn begin_because(
        &self,
        f: &Function,
        input: Value,
        key: Option<&str>,
        reason: &str,
    ) -> Result<Begun, BeginError> {
        let definition = self
            .current
            .get(&f.workflow.document.name)
            .cloned()
            .ok_or_else(|| {
                StoreError::Permanent(format!("`{}` is not a durable function", f.name))
            })?;
        let store = self.engine.store();
        let idempotency = match key {
            None => None,
            Some(key) => {
                let request_hash = request_hash(&f.name, &input);
                if let Some(bound) = store.idempotency(key).await? {
                    return self
                        .replay(&bound.instance, &bound.request_hash, &request_hash)
                        .await;
                }
                Some(IdempotencyKey {
                    key: key.to_owned(),
                    request_hash,
                    expires_at: store.now().await? + self.window_ms,
                })
            }
        };
        let asked = idempotency.as_ref().map(|k| k.request_hash.clone());
        let req = StartRequest {
            id: baton_engine::new_instance_id(),
            function: f.name.clone(),
            definition,
            input,
            idempotency,
        };
        tracing::info!(
            function = %f.name,
            instance = %req.id,
            "Executing '{}' (Reason='{}', Id={})",
            f.name,
            reason,
            req.id
        );
        match self.engine.start(req).await {
            Ok(row) => {
                if self
                    .abort_after_start
                    .as_deref()
                    .is_some_and(|f| f == "*" || f == row.function)
                {
                    eprintln!(
                        "BATON_FAILPOINT_ABORT_AFTER_START: aborting after committing `{}`",
                        row.id
                    );
                    std::process::abort();
                }
                Ok(Begun::Started(row))
            }
            // Another request with the key committed first.
            Err(StartError::Duplicate {
                instance,
                request_hash,
            }) => {
                self.replay(&instance, &request_hash, asked.as_deref().unwrap_or(""))
                    .await
            }
            Err(StartError::Exists(id)) => Err(BeginError::Store(StoreError::Transient(format!(
                "instance id `{id}` collided; retry"
            )))),
            Err(StartError::Store(e)) => Err(e.into()),
        }
    }

    async fn replay(&self, instance: &str, bound: &str, asked: &str) -> Result<Begun, BeginError> {
        if bound != asked {
            return Err(BeginError::KeyReused {
                instance: instance.to_owned(),
            });
        }
        match self.engine.store().instance(instance).await? {
            Some(row) => Ok(Begun::Replayed(row)),
            // Purged since; the key went with it, so this is a race with the purge.
            None => Err(BeginError::Store(StoreError::Transient(format!(
                "instance `{instance}` was purged while its key was being used; retry"
            )))),
        }
    }

    /// The instance once it has ended, or as it is after `timeout`.
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<InstanceRow>, StoreError> {
        self.engine.wait(id, timeout).await
    }

    /// The instance once it has ended at a revision after `revision` (a run after a rewind
    /// asked at that revision), or as it is after `timeout`.
    pub async fn wait_past(
        &self,
        id: &str,
        revision: u64,
        timeout: Duration,
    ) -> Result<Option<InstanceRow>, StoreError> {
        self.engine
            .wait_for(id, timeout, |row| {
                row.revision > revision && row.status.is_terminal()
            })
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<InstanceRow>, StoreError> {
        self.engine.store().instance(id).await
    }

    /// How many stored instances are unfinished, by status (`Pending`, `Running`,
    /// `Suspended`): across every node sharing the store.
    pub async fn unfinished(&self) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
        let mut counts = Vec::with_capacity(UNFINISHED.len());
        for status in UNFINISHED {
            counts.push((status, self.engine.store().count(status).await?));
        }
        Ok(counts)
    }

    /// The definition an instance runs, if it is still stored.
    pub async fn version(&self, hash: &str) -> Result<Option<Version>, StoreError> {
        if let Some(v) = self.cached(hash) {
            return Ok(Some(v));
        }
        let Some(d) = self.engine.store().definition(hash).await? else {
            return Ok(None);
        };
        let v = Version {
            name: d.name,
            version: d.version,
            hash: d.hash,
        };
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash.to_owned(), v.clone());
        Ok(Some(v))
    }

    fn cached(&self, hash: &str) -> Option<Version> {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    pub async fn list(
        &self,
        filter: &Filter,
        top: usize,
        continuation: Option<&str>,
    ) -> Result<Page, StoreError> {
        self.engine.store().list(filter, top, continuation).await
    }

    pub async fn history(
        &self,
        id: &str,
        after: u64,
        top: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.engine.store().history(id, after, top).await
    }

    /// Records a request for a running instance; it acts on it as its next step.
    pub async fn control(&self, id: &str, c: Control) -> Result<(), ControlError> {
        let row = self
            .get(id)
            .await?
            .ok_or_else(|| ControlError::Unknown(id.to_owned()))?;
        if let Control::Rewind { reason } = &c {
            if row.status != RuntimeStatus::Failed {
                return Err(ControlError::Precondition(format!(
                    "only a Failed instance can be rewound; this one is {}",
                    row.status.as_str()
                )));
            }
            self.engine.rewind(id, reason).await?;
            return Ok(());
        }
        if row.status.is_terminal() {
            return Err(ControlError::Finished(row.status));
        }
        match c {
            Control::Terminate { reason } => self.engine.terminate(id, &reason).await?,
            Control::Suspend { reason } => self.engine.suspend(id, &reason).await?,
            Control::Resume { reason } => self.engine.resume(id, &reason).await?,
            Control::Raise { name, data } => {
                let event = json!({
                    "specversion": "1.0",
                    "id": baton_engine::new_instance_id(),
                    "source": "baton/raiseEvent",
                    "type": name,
                    "datacontenttype": "application/json",
                    "data": data,
                });
                self.engine.raise(id, event).await?
            }
            Control::Rewind { .. } => unreachable!("handled above"),
        };
        Ok(())
    }

    /// Deletes a finished instance and its history.
    pub async fn purge(&self, id: &str) -> Result<(), ControlError> {
        let row = self
            .get(id)
            .await?
            .ok_or_else(|| ControlError::Unknown(id.to_owned()))?;
        if !row.status.is_terminal() {
            return Err(ControlError::Precondition(format!(
                "the instance is {}; only a finished instance can be purged (terminate it first)",
                row.status.as_str()
            )));
        }
        self.engine.store().purge(id).await?;
        Ok(())
    }

    /// Deletes every finished instance matching `filter`; returns how many.
    pub async fn purge_where(&self, filter: &Filter) -> Result<u64, StoreError> {
        self.engine.store().purge_where(filter).await
    }
}

/// What tells two requests with one idempotency key apart: the function and the body, with
/// object members in a fixed order.
fn request_hash(function: &str, input: &Value) -> String {
    let mut text = String::with_capacity(64);
    text.push_str(function);
    text.push('\n');
    canonical(input, &mut text);
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hashes_ignore_member_order_only() {
        let a = request_hash("F", &json!({"a": 1, "b": [1, {"y": 2, "x": 1}]}));
        let b = request_hash("F", &json!({"b": [1, {"x": 1, "y": 2}], "a": 1}));
        assert_eq!(a, b);
        assert_ne!(
            a,
            request_hash("G", &json!({"a": 1, "b": [1, {"y": 2, "x": 1}]}))
        );
        assert_ne!(
            a,
            request_hash("F", &json!({"a": 1, "b": [{"y": 2, "x": 1}, 1]}))
        );
        assert_ne!(
            a,
            request_hash("F", &json!({"a": "1", "b": [1, {"y": 2, "x": 1}]}))
        );
    }
}
