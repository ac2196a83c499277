//! `baton.toml`: the host's configuration, validated once at start-up.
//!
//! Layers, later ones winning: built-in defaults → `baton.toml` → `BATON_*` environment
//! variables → command-line flags (applied by the CLI). Every error names the file, the line and
//! column, and the field.

use std::collections::BTreeMap;
use std::fmt;

use baton_core::Duration;
use serde::{Deserialize, Deserializer};

/// Why a configuration could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub position: Option<(usize, usize)>,
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub host: HostConfig,
    pub limits: Limits,
    pub express: ExpressConfig,
    pub store: StoreConfig,
    pub durable: DurableConfig,
    pub http: HttpConfig,
    /// `[secrets]`: what workflows read as `$secrets` (those they declare in `use.secrets`)
    /// and what secret-based authentication uses; see [`crate::runtime`].
    pub secrets: BTreeMap<String, crate::runtime::SecretSpec>,
    /// `[queues.<name>]`: queues created (or updated) at start-up.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Functions by name: each binds a trigger to a workflow.
    pub functions: BTreeMap<String, FunctionConfig>,
}

/// `[host]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Address to listen on.
    pub listen: String,
    /// Prefix of trigger and management routes (`api` → `/api/Validate`).
    pub route_prefix: String,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: ConfigDuration,
    /// The URL this host is reached at, as workflows see it in `$runtime.metadata.baseUrl`
    /// (the bound address when absent).
    pub base_url: Option<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7071".to_owned(),
            route_prefix: "api".to_owned(),
            shutdown_grace: ConfigDuration(Duration::from_secs(10)),
            base_url: None,
        }
    }
}

/// `[limits]`: what one request and the host as a whole may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, in bytes (larger → 413).
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted in a request body (deeper → 400).
    pub max_json_depth: usize,
    /// Instances running at once (more → 503 with `Retry-After`).
    pub max_in_flight: usize,
    /// Longest an express instance may run before it is stopped with a timeout error.
    pub workflow_timeout: ConfigDuration,
    /// Loop iterations one jq evaluation may spend.
    pub expression_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_json_depth: 64,
            max_in_flight: 1024,
            workflow_timeout: ConfigDuration(Duration::from_secs(300)),
            expression_steps: 1_000_000,
        }
    }
}

/// `[express]`: how long finished in-memory instances stay queryable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpressConfig {
    /// A finished instance is forgotten this long after it finished…
    pub retention: ConfigDuration,
    /// …or sooner, when more than this many finished instances are kept (oldest first).
    pub max_retained: usize,
}

impl Default for ExpressConfig {
    fn default() -> Self {
        Self {
            retention: ConfigDuration(Duration::from_secs(600)),
            max_retained: 10_000,
        }
    }
}

/// Who may call a function, as in Azure Functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthLevel {
    /// No key needed.
    Anonymous,
    /// The function's own key or a host key.
    #[default]
    Function,
    /// A host (admin) key only.
    Admin,
}

impl AuthLevel {
    /// The name used in configuration and the OpenAPI document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Function => "function",
            Self::Admin => "admin",
        }
    }
}

/// `[store]`: where durable instances are kept: a SQLite file (the default), or a PostgreSQL
/// database shared by several nodes when `url` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite file, relative to the working directory; its folder is created if missing.
    pub path: String,
    /// `full` (every commit survives a power cut) or `normal` (a commit may be lost in a power
    /// cut, never in a crash of the process). SQLite only.
    pub synchronous: SyncMode,
    /// A PostgreSQL connection string (`postgres://user@host:5432/db`): when set, the store is
    /// that database and `path` is not used.
    pub url: Option<String>,
    /// The PostgreSQL schema holding Baton's tables; nodes serving one app share it.
    pub schema: String,
    /// PostgreSQL connections each node keeps open at most.
    pub pool_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: ".baton/baton.db".to_owned(),
            synchronous: SyncMode::Full,
            url: None,
            schema: "baton".to_owned(),
            pool_size: 16,
        }
    }
}

impl StoreConfig {
    /// Whether the store is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.url.is_some()
    }
}

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    #[default]
    Full,
    Normal,
}

/// `[durable]`: how durable instances are run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurableConfig {
    /// How long a node holds claimed work before another may take it over.
    pub lease: ConfigDuration,
    /// Work items carried out at once by this node.
    pub concurrency: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: ConfigDuration,
}

impl Default for DurableConfig {
    fn default() -> Self {
        Self {
            lease: ConfigDuration(Duration::from_secs(30)),
            concurrency: 256,
            idempotency_window: ConfigDuration(Duration::from_secs(24 * 3600)),
        }
    }
}

/// `[http]`: outbound calls (`call: http`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Internal address ranges calls may reach anyway (CIDR blocks, or single addresses);
    /// every other loopback, private, link-local, unique-local, CGNAT or unspecified address
    /// is refused.
    pub allow: Vec<AllowedRange>,
    /// Limit of one HTTP attempt.
    pub attempt_timeout: ConfigDuration,
    /// How long to wait between polls of a `202 Accepted` answer that gives no `Retry-After`.
    pub poll_interval: ConfigDuration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            attempt_timeout: ConfigDuration(Duration::from_secs(120)),
            poll_interval: ConfigDuration(Duration::from_secs(1)),
        }
    }
}

impl HttpConfig {
    /// The engine's HTTP client settings this section asks for.
    pub fn options(&self) -> baton_engine::HttpOptions {
        baton_engine::HttpOptions {
            attempt_timeout: self.attempt_timeout.0.to_std(),
            poll_interval: self.poll_interval.0.to_std(),
            policy: baton_engine::outbound::AddressPolicy::allowing(self.allow.iter().map(|r| r.0)),
            ..baton_engine::HttpOptions::default()
        }
    }
}

/// An address range in `[http] allow`: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedRange(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for AllowedRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        baton_engine::outbound::parse_range(&s)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// `[queues.<name>]`: a queue's settings (Service Bus' defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// How long a receive locks a message (at most 5 minutes).
    pub lock_duration: ConfigDuration,
    /// Deliveries after which an unsettled message is dead-lettered.
    pub max_delivery_count: u32,
    /// Default time to live of its messages; none: they live until consumed.
    pub time_to_live: Option<ConfigDuration>,
    /// Expired messages go to the dead-letter queue instead of being dropped.
    pub dead_letter_on_expiration: bool,
    /// Whether messages whose `Message-Id` was seen within the window are dropped.
    pub duplicate_detection: bool,
    /// 20 seconds to 7 days.
    pub duplicate_detection_window: ConfigDuration,
    /// FIFO per `Session-Id`, one receiver per session at a time.
    pub sessions: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lock_duration: ConfigDuration(Duration::from_secs(60)),
            max_delivery_count: 10,
            time_to_live: None,
            dead_letter_on_expiration: false,
            duplicate_detection: true,
            duplicate_detection_window: ConfigDuration(Duration::from_secs(600)),
            sessions: false,
        }
    }
}

impl QueueConfig {
    /// The store's settings for the queue `name`.
    pub fn spec(&self, name: &str) -> baton_store::queues::QueueSpec {
        let ms = |d: &ConfigDuration| i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX);
        baton_store::queues::QueueSpec {
            name: name.to_owned(),
            lock_ms: ms(&self.lock_duration),
            max_delivery: self.max_delivery_count,
            default_ttl_ms: self.time_to_live.as_ref().map(ms),
            dead_letter_on_expiry: self.dead_letter_on_expiration,
            duplicate_window_ms: self
                .duplicate_detection
                .then(|| ms(&self.duplicate_detection_window)),
            sessions: self.sessions,
        }
    }
}

/// Whether a function's instances survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// In memory: fast, lost on a crash or restart.
    Express,
    /// Every step committed to the store before it is acted on.
    Durable,
}

/// Whether the caller waits for the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Wait up to `wait` for the output, then answer 202 and let the caller poll.
    #[default]
    Sync,
    /// Answer 202 with the status links at once.
    Async,
}

/// `[functions.<Name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// The workflow's `document.name`.
    pub workflow: String,
    /// The route under the prefix; the function's name by default.
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    #[serde(default)]
    pub auth: AuthLevel,
    #[serde(default)]
    pub mode: Mode,
    /// `express` or `durable`; durable by default for `mode = "async"`, express for `sync`.
    #[serde(default)]
    pub durability: Option<Durability>,
    /// How long a sync caller waits before getting a 202.
    #[serde(default = "default_wait")]
    pub wait: ConfigDuration,
    /// The `Retry-After` a 202 from this trigger asks callers to wait (whole seconds).
    #[serde(default = "default_retry_after")]
    pub retry_after: ConfigDuration,
    /// A queue trigger instead of an HTTP one: each message of this queue starts a durable
    /// instance with the message as input.
    #[serde(default)]
    pub queue: Option<String>,
    /// With `queue`: how many of its messages are handled at once on this node (sessions, on a
    /// session queue); 16 by default.
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
}

impl FunctionConfig {
    /// How many messages a queue trigger handles at once.
    pub fn concurrency(&self) -> usize {
        self.max_concurrent_calls.unwrap_or(16) as usize
    }
}

fn default_methods() -> Vec<String> {
    vec!["POST".to_owned()]
}

fn default_retry_after() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}

fn default_wait() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}

/// A duration written as ISO 8601 (`PT30S`) or with a unit suffix (`30s`, `250ms`, `5m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses either form.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with('P') {
            return Duration::parse_iso8601(s).map(Self);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("`{s}` is not a duration (write `30s`, `250ms` or `PT30S`)"))?;
        let ms = match unit {
            "ms" => n,
            "s" => n * 1000,
            "m" => n * 60_000,
            "h" => n * 3_600_000,
            _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
        };
        Ok(Self(Duration::from_millis(ms)))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_iso8601())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// Parses `baton.toml` text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let located = |e: toml::de::Error, field: String| ConfigError {
            file: file.to_owned(),
            position: e.span().map(|s| line_col(text, s.start)),
            message: if field.is_empty() || field == "." {
                e.message().trim().to_owned()
            } else {
                format!("{field}: {}", e.message().trim())
            },
        };
        let doc = toml::Deserializer::parse(text).map_err(|e| located(e, String::new()))?;
        // The path to the field at fault (`functions.Validate.mode`), which toml's own error
        // leaves out when a value, rather than a key, is wrong.
        let config: Self = serde_path_to_error::deserialize(doc).map_err(|e| {
            let field = e.path().to_string();
            located(e.into_inner(), field)
        })?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let fail = |message: String| ConfigError {
            file: file.to_owned(),
            position: None,
            message,
        };
        if self.limits.max_body_bytes == 0 {
            return Err(fail("limits.max_body_bytes must be at least 1".to_owned()));
        }
        if self.limits.max_in_flight == 0 {
            return Err(fail("limits.max_in_flight must be at least 1".to_owned()));
        }
        if self.durable.concurrency == 0 {
            return Err(fail("durable.concurrency must be at least 1".to_owned()));
        }
        if self.durable.lease.0.as_millis() < 1000 {
            return Err(fail("durable.lease must be at least 1s".to_owned()));
        }
        if self.store.url.is_none() && self.store.path.trim().is_empty() {
            return Err(fail("store.path must name a file".to_owned()));
        }
        if let Some(url) = &self.store.url
            && !is_postgres_url(url)
        {
            return Err(fail(
                "store.url must be a postgres:// or postgresql:// connection string".to_owned(),
            ));
        }
        if self.store.pool_size == 0 {
            return Err(fail("store.pool_size must be at least 1".to_owned()));
        }
        let pg = baton_store_postgres::Options {
            schema: self.store.schema.clone(),
            ..baton_store_postgres::Options::new("")
        };
        if let Some(problem) = pg.problem() {
            return Err(fail(format!("store.schema: {problem}")));
        }
        if let Some(url) = &self.host.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(fail(format!(
                "host.base_url: `{url}` must be an http:// or https:// URL"
            )));
        }
        if self.limits.max_json_depth == 0 {
            return Err(fail("limits.max_json_depth must be at least 1".to_owned()));
        }
        for (name, q) in &self.queues {
            if let Some(p) = q.spec(name).configuration_problem() {
                return Err(fail(format!("queues.{name}: {p}")));
            }
        }
        let mut triggered: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, f) in &self.functions {
            if f.queue.is_none() && f.max_concurrent_calls.is_some() {
                return Err(fail(format!(
                    "functions.{name}.max_concurrent_calls: only a queue-triggered function (with `queue`) has it"
                )));
            }
            if f.max_concurrent_calls
                .is_some_and(|n| !(1..=1000).contains(&n))
            {
                return Err(fail(format!(
                    "functions.{name}.max_concurrent_calls must be between 1 and 1000"
                )));
            }
            if let Some(q) = &f.queue {
                if let Some(other) = triggered.insert(q, name) {
                    return Err(fail(format!(
                        "functions.{name}.queue: queue `{q}` already triggers `{other}` (a queue triggers one function)"
                    )));
                }
                if !self.queues.contains_key(q) {
                    return Err(fail(format!(
                        "functions.{name}.queue: no queue is named `{q}` in [queues]"
                    )));
                }
                if f.durability == Some(Durability::Express) {
                    return Err(fail(format!(
                        "functions.{name}: a queue-triggered function is durable (its message is completed when its instance has finished)"
                    )));
                }
            }
            for m in &f.methods {
                if !matches!(
                    m.to_ascii_uppercase().as_str(),
                    "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
                ) {
                    return Err(fail(format!(
                        "functions.{name}.methods: `{m}` is not a method a trigger can use"
                    )));
                }
            }
            let route = f.route.as_deref().unwrap_or(name);
            if route.is_empty() || route.contains(['/', '?', '#', ' ']) {
                return Err(fail(format!(
                    "functions.{name}.route: `{route}` must be one path segment"
                )));
            }
        }
        Ok(())
    }

    /// Applies `BATON_*` environment variables (`BATON_LISTEN`, `BATON_MAX_BODY_BYTES`,
    /// `BATON_MAX_IN_FLIGHT`, `BATON_MAX_JSON_DEPTH`, `BATON_WORKFLOW_TIMEOUT`, `BATON_STORE`,
    /// `BATON_STORE_SYNCHRONOUS`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let fail = |var: &str, message: String| ConfigError {
            file: format!("${var}"),
            position: None,
            message,
        };
        if let Some(v) = get("BATON_LISTEN") {
            self.host.listen = v;
        }
        let number = |var: &str| -> Result<Option<usize>, ConfigError> {
            get(var)
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| fail(var, format!("`{v}` is not a number")))
                })
                .transpose()
        };
        if let Some(n) = number("BATON_MAX_BODY_BYTES")? {
            self.limits.max_body_bytes = n;
        }
        if let Some(n) = number("BATON_MAX_IN_FLIGHT")? {
            self.limits.max_in_flight = n;
        }
        if let Some(n) = number("BATON_MAX_JSON_DEPTH")? {
            self.limits.max_json_depth = n;
        }
        if let Some(v) = get("BATON_STORE") {
            self.set_store(&v).map_err(|e| fail("BATON_STORE", e))?;
        }
        if let Some(v) = get("BATON_STORE_SYNCHRONOUS") {
            self.store.synchronous = match v.to_ascii_lowercase().as_str() {
                "full" => SyncMode::Full,
                "normal" => SyncMode::Normal,
                _ => {
                    return Err(fail(
                        "BATON_STORE_SYNCHRONOUS",
                        format!("`{v}` is neither `full` nor `normal`"),
                    ));
                }
            };
        }
        if let Some(v) = get("BATON_WORKFLOW_TIMEOUT") {
            self.limits.workflow_timeout =
                ConfigDuration::parse(&v).map_err(|e| fail("BATON_WORKFLOW_TIMEOUT", e))?;
        }
        Ok(())
    }
}

impl Config {
    /// Points the store at `sqlite://PATH` (or a bare path), or at a PostgreSQL database
    /// (`postgres://…` or `postgresql://…`).
    pub fn set_store(&mut self, url: &str) -> Result<(), String> {
        if is_postgres_url(url) {
            self.store.url = Some(url.to_owned());
            return Ok(());
        }
        let path = match url.split_once("://") {
            None => url,
            Some(("sqlite", path)) => path,
            Some((scheme, _)) => {
                return Err(format!(
                    "`{scheme}://…`: Baton stores in sqlite://PATH or postgres://…"
                ));
            }
        };
        if path.trim().is_empty() {
            return Err(format!("`{url}` names no file"));
        }
        self.store.path = path.to_owned();
        self.store.url = None;
        Ok(())
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl FunctionConfig {
    /// The durability in effect: as written, else durable for async functions.
    pub fn durability(&self) -> Durability {
        if self.queue.is_some() {
            return Durability::Durable;
        }
        self.durability.unwrap_or(match self.mode {
            Mode::Async => Durability::Durable,
            Mode::Sync => Durability::Express,
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
