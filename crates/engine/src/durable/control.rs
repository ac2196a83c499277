//! Control messages: what a message work item asks of its instance (an event for its `listen`
//! tasks, or terminate, suspend, resume, rewind), and how they are written as payloads.

use baton_core::interp::Input;
use serde_json::{Value, json};

/// What a finished work item asks of its instance.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Order {
    /// Something for the interpreter: a call's result, a fired timer, a raised event.
    Input(Input),
    Terminate(String),
    Suspend(String),
    Resume(String),
    Rewind(String),
}

const TERMINATE: &str = "terminate";
const SUSPEND: &str = "suspend";
const RESUME: &str = "resume";
const REWIND: &str = "rewind";
const EVENT: &str = "event";

impl Order {
    /// The payload of a message work item carrying this order.
    pub(super) fn payload(&self) -> Value {
        match self {
            Self::Input(Input::Event { event }) => json!({ EVENT: event }),
            // Calls and timers are work items of their own kinds, never messages.
            Self::Input(_) => Value::Null,
            Self::Terminate(reason) => json!({ TERMINATE: reason }),
            Self::Suspend(reason) => json!({ SUSPEND: reason }),
            Self::Resume(reason) => json!({ RESUME: reason }),
            Self::Rewind(reason) => json!({ REWIND: reason }),
        }
    }

    /// What a message's payload asks. Anything that is not a control request is an event.
    pub(super) fn of_message(mut payload: Value) -> Self {
        let reason = |p: &Value, key: &str| -> Option<String> {
            p.get(key)
                .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned))
        };
        if let Some(r) = reason(&payload, TERMINATE) {
            Self::Terminate(r)
        } else if let Some(r) = reason(&payload, SUSPEND) {
            Self::Suspend(r)
        } else if let Some(r) = reason(&payload, RESUME) {
            Self::Resume(r)
        } else if let Some(r) = reason(&payload, REWIND) {
            Self::Rewind(r)
        } else {
            let event = payload
                .get_mut(EVENT)
                .map(Value::take)
                .unwrap_or(Value::Null);
            Self::Input(Input::Event { event })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_order_reads_back_from_its_payload() {
        for order in [
            Order::Input(Input::Event {
                event: json!({"type": "go"}),
            }),
            Order::Terminate("t".into()),
            Order::Suspend("s".into()),
            Order::Resume("r".into()),
            Order::Rewind("w".into()),
        ] {
            assert_eq!(Order::of_message(order.payload()), order);
        }
    }
}
