//! The instance counters both execution modes keep, through the `metrics` facade (whatever
//! recorder the process installs receives them; with none they cost next to nothing):
//!
//! * `baton_instances_started_total`, `baton_instances_completed_total` and
//!   `baton_instances_failed_total`, labelled `function` and `workflow` (`document.name`), both
//!   bounded by the app. *Failed* covers faulted, timed-out, cancelled and terminated instances.
//!
//! A durable instance is counted by the node that commits its start or its end, so in a
//! cluster the sum over nodes is the total; a failed instance that is rewound and then
//! completes is counted once as failed and once as completed.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use metrics::Counter;

pub const STARTED: &str = "baton_instances_started_total";
pub const COMPLETED: &str = "baton_instances_completed_total";
pub const FAILED: &str = "baton_instances_failed_total";

/// One function's counters.
#[derive(Debug)]
pub struct Counters {
    pub started: Counter,
    pub completed: Counter,
    pub failed: Counter,
}

impl Counters {
    /// Counts an end: completed if `succeeded`, failed otherwise.
    pub fn ended(&self, succeeded: bool) {
        if succeeded {
            self.completed.increment(1);
        } else {
            self.failed.increment(1);
        }
    }
}

/// Counter handles by function, resolved on first use and kept: `metrics::counter!` with labels
/// allocates its label strings and looks the key up in the recorder on every call, a visible
/// share of a pure instance's cost. Resolved lazily rather than up front because a process may
/// install its recorder after building its engines (a handle resolved before then would stay a
/// no-op).
#[derive(Debug, Default)]
pub struct InstanceMeters {
    /// By function name. A read lock on the hot path; written once per function.
    functions: RwLock<HashMap<String, Arc<Counters>>>,
}

impl InstanceMeters {
    /// The counters of `function`, which runs `workflow`.
    pub fn of(&self, function: &str, workflow: &str) -> Arc<Counters> {
        if let Some(c) = self
            .functions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(function)
        {
            return Arc::clone(c);
        }
        let labels = [
            ("function", function.to_owned()),
            ("workflow", workflow.to_owned()),
        ];
        let counters = Arc::new(Counters {
            started: metrics::counter!(STARTED, &labels),
            completed: metrics::counter!(COMPLETED, &labels),
            failed: metrics::counter!(FAILED, &labels),
        });
        Arc::clone(
            self.functions
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(function.to_owned())
                .or_insert(counters),
        )
    }
}
