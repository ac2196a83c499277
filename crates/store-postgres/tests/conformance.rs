//! The store conformance suite on PostgreSQL, each test in a schema of its own.

mod support;

baton_store::conformance_tests!(support::fresh());
