//! A host's parts beside its HTTP layer, opened together on one store: the runner, durable
//! instances, queues and queue triggers.

use std::sync::Arc;

use baton_engine::{Runner, RunnerBuilder};
use baton_store::StoreError;
use baton_store::queues::QueueError;
use tokio::sync::watch;

use crate::triggers::QueueTriggers;
use crate::{AnyStore, App, Instances, Queues};

/// Why a host could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store `{path}`: {error}")]
    Store { path: String, error: StoreError },
    #[error("cannot create the queues: {0}")]
    Queues(QueueError),
    #[error(transparent)]
    Runner(#[from] baton_engine::Error),
}

/// The runner, and when the app needs a store (durable functions or queues), the durable
/// instances, queues and queue triggers on it.
#[derive(Debug, Clone)]
pub struct Host {
    pub runner: Runner,
    pub instances: Option<Arc<Instances>>,
    pub queues: Option<Queues>,
    pub triggers: Option<QueueTriggers>,
}

impl Host {
    /// Opens the app's store if it needs one, registers `baton.queues.send` on `builder` when
    /// it has queues, and builds the runner. Nothing runs until [`Host::run`].
    pub async fn open(app: &App, builder: RunnerBuilder) -> Result<Self, OpenError> {
        if !app.needs_store() {
            return Ok(Self {
                runner: builder.build()?,
                instances: None,
                queues: None,
                triggers: None,
            });
        }
        let path = app.config.store.path.clone();
        let store = Arc::new(AnyStore::open(&app.config.store).await.map_err(|error| {
            OpenError::Store {
                path: path.clone(),
                error,
            }
        })?);
        let queues = Queues::open(app, Arc::clone(&store))
            .await
            .map_err(OpenError::Queues)?;
        let runner = queues.register(builder).build()?;
        let instances = Arc::new(
            Instances::open_on(app, Arc::new(runner.clone()), store)
                .await
                .map_err(|error| OpenError::Store { path, error })?,
        );
        let triggers = QueueTriggers::new(app, Arc::clone(&instances), queues.clone());
        Ok(Self {
            runner,
            instances: Some(instances),
            queues: Some(queues),
            triggers: Some(triggers).filter(|t| !t.is_empty()),
        })
    }

    /// Carries out durable work and handles queue-triggered messages until `stop` resolves.
    /// Durable work in flight is left to its lease; messages in hand are abandoned.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let (tx, rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let durable = async {
            if let Some(i) = &self.instances {
                i.run(stopped(rx.clone())).await;
            }
        };
        let triggers = async {
            if let Some(t) = &self.triggers {
                t.run(stopped(rx.clone())).await;
            }
        };
        let signal = async {
            stop.await;
            let _ = tx.send(true);
        };
        tokio::join!(durable, triggers, signal);
    }
}
