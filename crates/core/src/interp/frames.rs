//! The persisted shape of a running instance: a tree of frames mirroring the tasks in flight.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{ListId, TaskId};
use crate::time::Timestamp;

use super::Token;

/// A running task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub(crate) task: TaskId,
    /// The task's transformed input (`$input`).
    pub(crate) input: Value,
    pub(crate) started_at: Timestamp,
    /// Variables introduced by enclosing `for` and `catch` (`$item`, `$index`, `$error`).
    pub(crate) scope: Vec<(String, Value)>,
    /// The timer of the task's `timeout`, if it has one.
    pub(crate) timeout: Option<Token>,
    pub(crate) body: Body,
}

/// What a running task is waiting on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// `do`: the running task of the list.
    List(ListFrame),
    /// `for`: the items and the running iteration.
    For {
        items: Vec<Value>,
        index: usize,
        list: ListFrame,
    },
    /// `fork`: one entry per branch.
    Fork { branches: Vec<Branch> },
    /// `try`.
    Try(TryFrame),
    /// `wait`.
    Timer(Token),
    /// `call`.
    Call {
        token: Token,
        request: Option<Box<super::HttpRequest>>,
    },
    /// `call: openapi`: waiting for the document, to call the operation.
    Describe {
        token: Token,
        operation: Box<super::openapi::PendingOperation>,
    },
    /// `call: http` answered 202: waiting for `timer` to send `request` (the poll).
    Poll {
        timer: Token,
        request: Box<super::HttpRequest>,
    },
    /// `listen`: the filters (evaluated when the task started) and the events matched so far.
    Listen {
        token: Token,
        filters: Vec<Value>,
        matched: Vec<Option<Value>>,
        all: bool,
    },
}

/// A task list being run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ListFrame {
    pub(crate) list: ListId,
    pub(crate) index: usize,
    pub(crate) current: Box<Frame>,
}

/// A branch of a `fork`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Branch {
    Running(Box<Frame>),
    Done(Value),
    /// Never started: a competing sibling finished first.
    Skipped,
}

/// A `try` in one of its phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum TryFrame {
    /// Running the `try` list; `attempt` is 0 for the first run.
    Trying {
        attempt: u32,
        first_started: Timestamp,
        list: ListFrame,
        /// Timer of `limit.attempt.duration`.
        attempt_timer: Option<Token>,
    },
    /// Waiting out a retry delay.
    Backoff {
        attempt: u32,
        first_started: Timestamp,
        timer: Token,
    },
    /// Running `catch.do` with the error bound.
    Catching { list: ListFrame },
}
