//! The engine's state blob (`InstanceRow::state`): the interpreter's [`Instance`] and the
//! outcomes held while the instance is suspended.

use baton_core::interp::{Input, Instance};
use baton_store::{InstanceRow, Millis, StoreError};
use serde::{Deserialize, Serialize};

/// What the engine keeps of an instance between steps.
///
/// An envelope rather than the bare [`Instance`], so that what arrives while the instance is
/// suspended survives a crash beside it; the alternative, leaving those work items in the
/// store unfinished, would have them claimed again and again (or their leases held) for as long
/// as the suspension lasts. A blob written before the envelope existed (a bare `Instance`) is
/// still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) instance: Instance,
    /// Outcomes that arrived while suspended, in arrival order; applied on resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) held: Vec<Arrival>,
}

/// An outcome that arrived while its instance was suspended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Arrival {
    pub(super) input: Input,
    /// When it arrived, by the store's clock.
    pub(super) at: Millis,
    /// The claim of the work item that brought it, for the history.
    pub(super) attempt: u32,
}

impl State {
    /// Reads a row's state blob.
    pub(super) fn read(row: &InstanceRow) -> Result<Self, StoreError> {
        serde_json::from_slice::<Self>(&row.state)
            .or_else(|_| serde_json::from_slice::<Instance>(&row.state).map(Self::of))
            .map_err(|e| StoreError::Permanent(format!("unreadable instance state: {e}")))
    }

    /// A state with nothing held.
    pub(super) fn of(instance: Instance) -> Self {
        Self {
            instance,
            held: Vec::new(),
        }
    }

    /// Writes the state into the row, with the `customStatus` the workflow exported into its
    /// context (`None` when it has none).
    pub(super) fn keep(&self, row: &mut InstanceRow) -> Result<(), StoreError> {
        row.state = serde_json::to_vec(self).map_err(|e| {
            StoreError::Permanent(format!("the instance state is not storable: {e}"))
        })?;
        row.custom_status = self.instance.context.get("customStatus").cloned();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use baton_core::interp::Token;

    fn row(state: Vec<u8>) -> InstanceRow {
        InstanceRow {
            id: "i".into(),
            function: "f".into(),
            definition: "d".into(),
            status: baton_store::RuntimeStatus::Running,
            input: serde_json::Value::Null,
            output: None,
            error: None,
            custom_status: None,
            state,
            created_at: 0,
            updated_at: 0,
            revision: 1,
        }
    }

    #[test]
    fn a_bare_instance_blob_reads_as_a_state_with_nothing_held() {
        let mut inst = Instance::default();
        inst.context = serde_json::json!({"customStatus": 3});
        let read = State::read(&row(serde_json::to_vec(&inst).unwrap())).unwrap();
        assert_eq!(read, State::of(inst));
    }

    #[test]
    fn held_outcomes_survive_the_round_trip_and_custom_status_follows_the_context() {
        let mut instance = Instance::default();
        instance.context = serde_json::json!({"customStatus": {"stage": 2}});
        let state = State {
            instance,
            held: vec![Arrival {
                input: Input::TimerFired { token: Token(4) },
                at: 17,
                attempt: 1,
            }],
        };
        let mut r = row(Vec::new());
        state.keep(&mut r).unwrap();
        assert_eq!(r.custom_status, Some(serde_json::json!({"stage": 2})));
        assert_eq!(State::read(&r).unwrap(), state);
        State::default().keep(&mut r).unwrap();
        assert_eq!(r.custom_status, None);
    }
}
