//! [`QueueStore`](baton_store::queues::QueueStore) on PostgreSQL.
