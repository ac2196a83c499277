//! Baton's function host: what `baton serve` serves.
//!
//! * [`App`] is an app folder (or the embedded sample): `baton.toml` ([`Config`]), the workflows
//!   and the [`Function`]s that bind routes to them;
//! * [`Express`] runs express (in-memory) instances and keeps finished ones queryable for a
//!   bounded time;
//! * [`Instances`] runs durable functions' instances on the configured store ([`AnyStore`]),
//!   and reads and manages them for the status API;
//! * [`Queues`] are the host's queues on that store, and [`QueueTriggers`] run a durable
//!   instance for every message of a queue bound to a function;
//! * [`Host`] opens all of these together, as `baton serve` does.
//!
//! ```
//! let app = baton_host::App::sample().unwrap();
//! let validate = app.function("Validate").unwrap();
//! assert_eq!(validate.workflow.document.name, "validate");
//! ```

mod app;
pub mod config;
mod durable;
mod express;
mod host;
pub mod keys;
mod queues;
pub mod runtime;
mod store;
mod triggers;

pub use app::{App, AppError, Function};
pub use config::{AuthLevel, Config, ConfigError, Durability, Mode};
pub use durable::{BeginError, Begun, Control, ControlError, Instances, Version};
pub use express::{Express, Full, Settings, Snapshot, Started};
pub use host::{Host, OpenError};
pub use keys::{Caller, Keys};
pub use queues::{MAX_WAIT, Queues, SEND_FUNCTION, parse_time, parse_ttl};
pub use store::AnyStore;
pub use triggers::QueueTriggers;
