//! The [`QueueStore`] methods of [`SqliteStore`]: each runs its write (above) on the writer
//! thread, or its read on a reader connection, and wakes the queue's receivers when a message
//! may have become receivable.

use super::*;

impl SqliteStore {
    /// Runs `f` on the writer; when it succeeds and `wakes` names a queue, wakes that
    /// queue's waiting receivers.
    async fn write<T, F>(&self, wakes: Option<&str>, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, Millis) -> Outcome<T> + Send + 'static,
    {
        let out = flatten(self.writer.run(false, f).await);
        if let Some(queue) = wakes
            && out.is_ok()
        {
            self.wakeups_of(queue).notify_waiters();
        }
        out
    }

    fn wakeups_of(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        let mut all = self
            .queue_wakeups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(all.entry(queue.to_owned()).or_default())
    }
}

impl QueueStore for SqliteStore {
    async fn put_queue(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        let spec = spec.clone();
        self.write(Some(&spec.name.clone()), move |t, _| put_queue(t, &spec))
            .await
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, QueueError> {
        let name = name.to_owned();
        self.write(None, move |t, _| delete_queue(t, &name)).await
    }

    async fn queues(&self) -> Result<Vec<QueueSpec>, QueueError> {
        Ok(self
            .read(|c| {
                let mut stmt = c
                    .prepare_cached("SELECT spec FROM queues ORDER BY name")
                    .map_err(classify)?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(classify)?;
                let texts: Vec<String> = rows.collect::<Result<_, _>>().map_err(classify)?;
                Ok(texts
                    .iter()
                    .filter_map(|s| serde_json::from_str(s).ok())
                    .collect())
            })
            .await?)
    }

    async fn queue(&self, name: &str) -> Result<Option<QueueSpec>, QueueError> {
        let name = name.to_owned();
        Ok(self
            .read(move |c| spec_of(c, &name).map_err(classify))
            .await?)
    }

    async fn enqueue(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Sent>, QueueError> {
        let queue = queue.to_owned();
        let wake = queue.clone();
        self.write(Some(wake.as_str()), move |t, now| {
            enqueue(t, &queue, messages, now)
        })
        .await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        session: Option<SessionChoice>,
    ) -> Result<Received, QueueError> {
        let queue = queue.to_owned();
        self.write(None, move |t, now| {
            receive(t, &queue, max.max(1), session, now)
        })
        .await
    }

    async fn settle(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
        how: Settle,
    ) -> Result<(), QueueError> {
        let (queue, token) = (queue.to_owned(), lock_token.to_owned());
        let wakes = matches!(how, Settle::Abandon);
        let wake = queue.clone();
        self.write(wakes.then_some(wake.as_str()), move |t, now| {
            settle(t, &queue, sequence, &token, how, now)
        })
        .await
    }

    async fn renew(
        &self,
        queue: &str,
        sequence: i64,
        lock_token: &str,
    ) -> Result<Millis, QueueError> {
        let (queue, token) = (queue.to_owned(), lock_token.to_owned());
        self.write(None, move |t, now| renew(t, &queue, sequence, &token, now))
            .await
    }

    async fn renew_session(
        &self,
        queue: &str,
        session_id: &str,
        token: &str,
        release: bool,
    ) -> Result<Option<Millis>, QueueError> {
        let (queue, session_id, token) =
            (queue.to_owned(), session_id.to_owned(), token.to_owned());
        let wake = queue.clone();
        self.write(release.then_some(wake.as_str()), move |t, now| {
            renew_session(t, &queue, &session_id, &token, release, now)
        })
        .await
    }

    async fn peek(
        &self,
        queue: &str,
        from: i64,
        max: usize,
        dead_letter: bool,
    ) -> Result<Vec<Message>, QueueError> {
        let queue = queue.to_owned();
        self.read(move |c| peek(c, &queue, from, max, dead_letter, now_ms()))
            .await?
    }

    async fn redrive(&self, queue: &str, sequences: Option<&[i64]>) -> Result<u64, QueueError> {
        let (queue, seqs) = (queue.to_owned(), sequences.map(<[i64]>::to_vec));
        let wake = queue.clone();
        self.write(Some(wake.as_str()), move |t, now| {
            redrive(t, &queue, seqs, now)
        })
        .await
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let queue = queue.to_owned();
        self.write(None, move |t, now| stats(t, &queue, now)).await
    }

    async fn next_visible(&self, queue: &str) -> Result<Option<Millis>, QueueError> {
        let queue = queue.to_owned();
        Ok(self
            .read(move |c| {
                // Only times still to come: a message visible now but not receivable (its
                // session is held by another receiver) waits for that session's lock instead.
                row(
                    c,
                    "SELECT MIN(t) FROM ( \
                       SELECT MIN(visible_at) AS t FROM queue_messages \
                         WHERE queue = ?1 AND dead_lettered = 0 AND visible_at > ?2 \
                       UNION ALL \
                       SELECT MIN(locked_until) FROM queue_sessions \
                         WHERE queue = ?1 AND locked_until > ?2)",
                    rusqlite::params![queue, now_ms()],
                    |r| r.get(0),
                )
                .map_err(classify)
            })
            .await?)
    }

    fn queue_wakeups(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        self.wakeups_of(queue)
    }
}
