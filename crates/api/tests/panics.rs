//! A panic inside the interpreter's step faults the instance; the client gets a problem, not a
//! dropped connection. Alone in its own test binary: it installs a thread's default tracing
//! subscriber, and tracing caches callsite interest process-wide, so tests running alongside on
//! other threads could make the subscriber miss the event.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use baton_host::Keys;
use support::*;

/// Stands in for a panic inside the interpreter's step: panics on the engine's trace line of
/// the task named `boom`. A thread's default subscriber, so the tests run on one thread.
struct PanicsAtBoom;

impl tracing::Subscriber for PanicsAtBoom {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Task(bool);
        impl tracing::field::Visit for Task {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "task" && format!("{v:?}").ends_with("/boom") {
                    self.0 = true;
                }
            }
        }
        let mut task = Task(false);
        event.record(&mut task);
        if event.metadata().target() == "baton_engine::runner" && task.0 {
            panic!("deliberate test panic inside the step");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

const BOOM: &str = "document: {dsl: '1.0.0', namespace: t, name: boom, version: '1.0.0'}\ndo:\n  - boom: {set: {never: true}}\n";
const LATE_BOOM: &str = "document: {dsl: '1.0.0', namespace: t, name: lateboom, version: '1.0.0'}\ndo:\n  - w: {wait: PT1S}\n  - boom: {set: {never: true}}\n";

#[tokio::test(start_paused = true)]
async fn a_panic_inside_a_step_faults_the_instance_with_a_500() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Boom]\nworkflow = \"boom\"\n[functions.BoomAsync]\nworkflow = \"boom\"\nmode = \"async\"\ndurability = \"express\"\n[functions.LateBoom]\nworkflow = \"lateboom\"\n",
        &[("boom.yaml", BOOM), ("lateboom.yaml", LATE_BOOM)],
    );
    let s = state(app, Keys::default()).await;
    let _panics = tracing::subscriber::set_default(PanicsAtBoom);
    // In the first step, on the caller's thread; and in the spawned rest of a run that waited.
    for route in ["Boom", "LateBoom"] {
        let a = send(&s, post(&format!("/api/{route}"), "{}")).await;
        assert_eq!(
            a.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{route}: {}",
            a.text
        );
        assert!(is_problem(&a), "{route}: {}", a.text);
        assert!(
            a.body["detail"]
                .as_str()
                .unwrap()
                .contains("stopped unexpectedly"),
            "{route}: {}",
            a.text
        );
    }
    let a = send(&s, post("/api/BoomAsync", "{}")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let status = send(&s, get(a.headers["location"].to_str().unwrap())).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_eq!(status.body["runtimeStatus"], "Failed");
    assert_eq!(s.express.in_flight(), 0);
}
