//! Baton's shell: drives the pure interpreter of `baton-core` and carries out its effects.
//!
//! This crate owns everything the core must not do: the clock, timers, HTTP calls and native
//! functions. [`Runner`] executes one instance in memory (Baton's *express* mode), the way
//! `baton run` and express HTTP triggers use it:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use baton_core::{Format, NoResolver, load_str};
//! use baton_engine::Runner;
//!
//! let wf = load_str(
//!     "document: {dsl: '1.0.0', namespace: demo, name: hello, version: '1.0.0'}\n\
//!      do:\n  - pause: {wait: PT0.01S}\n  - greet: {call: greet, with: {name: '${ .name }'}}\n",
//!     Format::Yaml,
//!     &NoResolver,
//! )
//! .unwrap();
//! let runner = Runner::builder()
//!     .function("greet", |args| async move {
//!         Ok(serde_json::json!({"greeting": format!("Hello {}", args["name"].as_str().unwrap_or("?"))}))
//!     })
//!     .build()
//!     .unwrap();
//! let run = runner.run(&wf, serde_json::json!({"name": "Ada"})).await;
//! assert_eq!(run.output.unwrap()["greeting"], "Hello Ada");
//! # });
//! ```
//!
//! [`durable::Durable`] runs instances durably on a `baton_store::Store` instead: every step is
//! committed before what it decided is carried out, and instances can be suspended, resumed,
//! terminated and, once failed, rewound (see the [`durable`] module).

mod clock;
pub mod durable;
mod functions;
mod http;
pub mod meters;
pub mod outbound;
mod runner;

pub use clock::Clock;
pub use functions::{Call, FunctionError, Functions};
pub use http::{HttpInvoker, HttpOptions};
pub use runner::{Begun, RunOutcome, Runner, RunnerBuilder, Suspended, new_instance_id};

/// Why the engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built (TLS configuration, certificates).
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}
