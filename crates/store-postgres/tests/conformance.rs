//! The store conformance suite on PostgreSQL, each test in a schema of its own.

mod support;

baton_store::conformance_tests!(support::fresh());

mod queues {
    use std::time::{Duration, Instant};

    use baton_store_postgres::PostgresStore;

    use super::support;

    /// A fresh store whose wake-up listener has subscribed. Subscribing wakes every waiting
    /// receiver once (what was sent before is lost, so everybody looks), which
    /// `queue_wakeup_after_send` would take for a wake-up by another queue's send.
    async fn listening() -> PostgresStore {
        let store = support::fresh().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.listening() {
            assert!(
                Instant::now() < deadline,
                "the wake-up listener did not subscribe within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store
    }

    baton_store::queue_conformance_tests!(listening());
}
