//! The host's queues: those `[queues]` declares are created (or brought up to date) at
//! start-up, others through the admin API; all live in the instance store. A receive may
//! long-poll: it waits, up to a bound, for a message to be sent, given back or come due.

use std::sync::Arc;
use std::time::Duration;

use baton_engine::{Call, FunctionError, RunnerBuilder};
use baton_store::queues::{NewMessage, QueueError, QueueStore, Received, Sent, SessionChoice};
use baton_store::{Store, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::ConfigDuration;
use crate::{AnyStore, App};

/// The longest a receive may wait for a message.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The queues of one host, on its store.
#[derive(Debug, Clone)]
pub struct Queues {
    store: Arc<AnyStore>,
}

impl Queues {
    /// Creates or updates every queue `[queues]` declares.
    pub async fn open(app: &App, store: Arc<AnyStore>) -> Result<Self, QueueError> {
        for (name, q) in &app.config.queues {
            store.put_queue(&q.spec(name)).await?;
        }
        Ok(Self { store })
    }

    /// The store's queue operations.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// Receives up to `max` messages, waiting up to `wait` (at most [`MAX_WAIT`]) for one when
    /// none is there: until a write may have made one receivable, or a scheduled message or a
    /// lock comes due.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        session: Option<SessionChoice>,
    ) -> Result<Received, QueueError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let wakeups = self.store.queue_wakeups(queue);
        loop {
            // Registered before looking, so that a send between the look and the wait wakes us.
            let woken = wakeups.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let got = self.store.receive(queue, max, session.clone()).await?;
            let now = tokio::time::Instant::now();
            if !got.messages.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Release a session this call took with nothing in it, so another receiver may have
            // it (one the caller already held stays held).
            let took = !matches!(&session, Some(SessionChoice::Id { token: Some(_), .. }));
            if let Some(lock) = got.session.as_ref().filter(|_| took) {
                self.store
                    .renew_session(queue, &lock.session_id, &lock.token, true)
                    .await?;
            }
            let mut until = deadline;
            if let Some(due) = self.store.next_visible(queue).await? {
                let store_now = self.store.now().await?;
                let ms = u64::try_from(due.saturating_sub(store_now)).unwrap_or(0);
                until = until.min(now + Duration::from_millis(ms.max(1)));
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// The native function workflows send messages with (`call: baton.queues.send`).
pub const SEND_FUNCTION: &str = "baton.queues.send";

/// A time to live: seconds (a number or its text), or a duration (`30s`, `PT30S`); in ms.
pub fn parse_ttl(v: &Value) -> Result<i64, String> {
    let ms = match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| (s * 1000.0).round() as i64),
        Value::String(t) => match t.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Some((s * 1000.0).round() as i64),
            Ok(_) => None,
            Err(_) => {
                let d = ConfigDuration::parse(t).map_err(|e| format!("time to live: {e}"))?;
                i64::try_from(d.0.as_millis()).ok()
            }
        },
        _ => return Err("the time to live is seconds or a duration (`30s`, `PT30S`)".to_owned()),
    };
    ms.filter(|ms| *ms > 0)
        .ok_or_else(|| "the time to live must be positive".to_owned())
}

/// A scheduled enqueue time: RFC 3339 in UTC; in ms since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("`{text}` is not an RFC 3339 time in UTC (2026-12-02T10:00:00Z)"))
}

/// What `call: baton.queues.send` takes (`with`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendArgs {
    queue: String,
    #[serde(default)]
    body: Value,
    /// Defaults to the call's idempotency key, so that a durable activity run again after a
    /// crash sends a duplicate, which the queue drops.
    message_id: Option<String>,
    session_id: Option<String>,
    correlation_id: Option<String>,
    /// A body that is a string is sent as that text when this is not a JSON type.
    content_type: Option<String>,
    time_to_live: Option<Value>,
    scheduled_enqueue_time: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
}

fn function_error(e: &QueueError) -> FunctionError {
    let status = match e {
        QueueError::NoQueue(_) => 404,
        QueueError::LockLost(_) => 410,
        QueueError::Invalid(_) => 400,
        QueueError::Store(StoreError::Transient(_)) => 503,
        QueueError::Store(_) => 500,
    };
    FunctionError {
        status,
        message: e.to_string(),
    }
}

fn bad_args(message: String) -> FunctionError {
    FunctionError {
        status: 400,
        message: format!("{SEND_FUNCTION}: {message}"),
    }
}

impl Queues {
    /// Sends one message as `call: baton.queues.send` asks; answers `{queue, sequenceNumber,
    /// messageId, duplicate}`.
    pub async fn send_from_workflow(
        &self,
        args: Value,
        call: Call,
    ) -> Result<Value, FunctionError> {
        let a: SendArgs = serde_json::from_value(args).map_err(|e| bad_args(e.to_string()))?;
        let text_type = a
            .content_type
            .as_deref()
            .is_some_and(|t| !t.contains("json"));
        let body = match (&a.body, text_type) {
            (Value::String(s), true) => s.clone().into_bytes(),
            (b, _) => b.to_string().into_bytes(),
        };
        let message = NewMessage {
            message_id: Some(a.message_id.unwrap_or(call.idempotency_key)),
            body,
            content_type: Some(
                a.content_type
                    .unwrap_or_else(|| "application/json".to_owned()),
            ),
            session_id: a.session_id,
            correlation_id: a.correlation_id,
            ttl_ms: a
                .time_to_live
                .as_ref()
                .map(parse_ttl)
                .transpose()
                .map_err(bad_args)?,
            scheduled_at: a
                .scheduled_enqueue_time
                .as_deref()
                .map(parse_time)
                .transpose()
                .map_err(bad_args)?,
            properties: a.properties,
        };
        let sent = self
            .store
            .enqueue(&a.queue, vec![message])
            .await
            .map_err(|e| function_error(&e))?;
        Ok(match sent.first() {
            Some(Sent::Accepted {
                sequence,
                message_id,
            }) => {
                json!({"queue": a.queue, "sequenceNumber": sequence, "messageId": message_id, "duplicate": false})
            }
            Some(Sent::Duplicate { message_id }) => {
                json!({"queue": a.queue, "messageId": message_id, "duplicate": true})
            }
            None => return Err(FunctionError::new("the queue accepted nothing")),
        })
    }

    /// `builder` with `baton.queues.send` registered on these queues.
    pub fn register(&self, builder: RunnerBuilder) -> RunnerBuilder {
        let queues = self.clone();
        builder.function_with_call(SEND_FUNCTION, move |args, call| {
            let queues = queues.clone();
            async move { queues.send_from_workflow(args, call).await }
        })
    }
}
