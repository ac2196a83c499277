//! Baton's pure core: the Serverless Workflow model, jq expressions and the interpreter.
//!
//! Nothing here does IO, reads a clock or draws random numbers: time, ids and randomness are
//! arguments, so every decision can be replayed and tested in microseconds.
//!
//! * [`load`] turns DSL 1.0 YAML/JSON into a compiled [`model::Workflow`];
//! * [`expr`] compiles and evaluates jq with a budget;
//! * [`interp`] is the interpreter: [`interp::step`] takes an instance's state, one input
//!   (start, activity result, timer, event, cancel) and the current time, and returns the next
//!   state with the effects the shell must carry out.

pub mod error;
pub mod expr;
pub mod interp;
pub mod load;
pub mod model;
pub mod time;

pub use error::{ErrorKind, WorkflowError};
pub use load::{Format, LoadError, LoadErrorKind, NoResolver, Resolver, load_str, load_value};
pub use model::Workflow;
pub use time::{Duration, Timestamp};
