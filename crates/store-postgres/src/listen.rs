//! The wake-up listener: one connection of its own that `LISTEN`s on the schema's channel and
//! turns each notification into a wake-up of this node's waiters — dispatchers for `w`, a
//! queue's long-polling receivers for `q:<queue>`.
//!
//! The connection is kept up for the store's lifetime: when it drops it is made again, with a
//! growing pause (up to 5 s). Notifications sent while it was down are lost, so after every
//! (re)connection everybody is woken once to look for themselves; engines' bounded idle waits
//! cover the time in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::quote_ident;

/// The payload that wakes dispatchers.
pub(crate) const WORK: &str = "w";
/// The prefix of the payload that wakes a queue's receivers.
pub(crate) const QUEUE: &str = "q:";

type Queues = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

#[derive(Debug)]
pub(crate) struct Listener {
    listening: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub(crate) fn start(
        config: tokio_postgres::Config,
        channel: String,
        work: Arc<Notify>,
        queues: Queues,
    ) -> Self {
        let listening = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&listening);
        let task = tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                match listen(&config, &channel, &work, &queues, &flag).await {
                    Ok(()) => pause = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?pause, "the wake-up listener lost its database connection");
                    }
                }
                flag.store(false, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
        Self { listening, task }
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }
}

/// One connection's life: listen, then hand out notifications until it fails.
async fn listen(
    config: &tokio_postgres::Config,
    channel: &str,
    work: &Notify,
    queues: &Queues,
    listening: &AtomicBool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let sql = format!("LISTEN {}", quote_ident(channel));
    let mut subscribe = std::pin::pin!(client.batch_execute(&sql));
    let mut subscribed = false;
    loop {
        tokio::select! {
            r = &mut subscribe, if !subscribed => {
                r?;
                subscribed = true;
                // Whatever was sent while nobody listened is lost: everybody looks once. (Before
                // the flag goes up, so that whoever sees it up waits for notifications only.)
                work.notify_waiters();
                for n in queues.lock().unwrap_or_else(PoisonError::into_inner).values() {
                    n.notify_waiters();
                }
                listening.store(true, Ordering::SeqCst);
            }
            m = std::future::poll_fn(|cx| connection.poll_message(cx)) => match m {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let payload = n.payload();
                    if payload == WORK {
                        work.notify_waiters();
                    } else if let Some(q) = payload.strip_prefix(QUEUE) {
                        let found = queues
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(q)
                            .cloned();
                        if let Some(n) = found {
                            n.notify_waiters();
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
}

/// The wake-up of `queue`'s receivers, made on first use.
pub(crate) fn queue_notify(queues: &Queues, queue: &str) -> Arc<Notify> {
    Arc::clone(
        queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(queue.to_owned())
            .or_default(),
    )
}
