//! What every handler shares, and the authorisation rules.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use baton_host::{App, AuthLevel, Caller, Express, Instances, Keys, Queues};

use crate::problem::Problem;

/// What the router serves: the host's parts. [`crate::router`] shares one of these among all
/// requests ([`Shared`]).
#[derive(Debug, Clone)]
pub struct ApiState {
    pub app: Arc<App>,
    pub express: Express,
    /// Durable functions' instances; `None` when the host has no store (no durable function).
    pub durable: Option<Arc<Instances>>,
    /// The host's queues; `None` when it has no store.
    pub queues: Option<Queues>,
    pub keys: Arc<Keys>,
    /// No keys and a loopback listener: every route is open (local development).
    pub dev_mode: bool,
}

/// The router's state: one [`ApiState`] behind one pointer, so that each request (which clones
/// the state for the metrics middleware and again for its handler) touches one reference count
/// instead of the state's eight, whose cache lines would otherwise pass between the worker
/// threads on every request.
#[derive(Debug, Clone)]
pub(crate) struct Shared(Arc<ApiState>);

impl Shared {
    pub(crate) fn new(state: ApiState) -> Self {
        Self(Arc::new(state))
    }
}

impl std::ops::Deref for Shared {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0
    }
}

/// The key a request presents: `x-functions-key`, else `?code=`.
pub fn presented_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(k) = headers.get("x-functions-key").and_then(|v| v.to_str().ok()) {
        return Some(k.to_owned());
    }
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "code")
        .map(|(_, v)| v.to_owned())
}

impl ApiState {
    /// The route prefix without slashes (`api`).
    pub fn prefix(&self) -> &str {
        self.app.config.host.route_prefix.trim_matches('/')
    }

    /// Checks a request against an auth level; `function` is the function the route belongs to.
    pub fn authorize(
        &self,
        level: AuthLevel,
        function: Option<&str>,
        headers: &HeaderMap,
        query: Option<&str>,
        path: &str,
    ) -> Result<(), Problem> {
        if self.dev_mode || level == AuthLevel::Anonymous {
            return Ok(());
        }
        let Some(key) = presented_key(headers, query) else {
            return Err(unauthorized(
                path,
                "this route needs a key in `x-functions-key` or `?code=`",
            ));
        };
        match (level, self.keys.identify(&key, function)) {
            (_, Some(Caller::Host(_))) => Ok(()),
            (AuthLevel::Function, Some(Caller::Function { .. })) => Ok(()),
            _ => Err(unauthorized(path, "the key is not valid for this route")),
        }
    }

    /// An instance's status is open to a host key and to the keys of the function that started
    /// it (a caller that may start an instance may poll it); `None` when the instance is unknown,
    /// which only a host key may learn.
    pub fn authorize_instance(
        &self,
        function: Option<&str>,
        headers: &HeaderMap,
        query: Option<&str>,
        path: &str,
    ) -> Result<(), Problem> {
        let level = match function.and_then(|f| self.app.functions.iter().find(|g| g.name == f)) {
            Some(f) if f.auth == AuthLevel::Anonymous => AuthLevel::Anonymous,
            Some(_) => AuthLevel::Function,
            None => AuthLevel::Admin,
        };
        self.authorize(level, function, headers, query, path)
    }
}

fn unauthorized(path: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail).at(path)
}
