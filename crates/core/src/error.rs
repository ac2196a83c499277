//! Workflow errors: the DSL's error object (RFC 9457 shaped) and its standard types.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The standard error kinds of the DSL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Configuration,
    Validation,
    Expression,
    Authentication,
    Authorization,
    Timeout,
    Communication,
    Runtime,
}

const SPEC_PREFIX: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/";
const CTK_PREFIX: &str = "https://serverlessworkflow.io/dsl/errors/types/";

impl ErrorKind {
    /// All kinds, for lookups.
    pub const ALL: [Self; 8] = [
        Self::Configuration,
        Self::Validation,
        Self::Expression,
        Self::Authentication,
        Self::Authorization,
        Self::Timeout,
        Self::Communication,
        Self::Runtime,
    ];

    /// The last segment of the type URI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configuration => "configuration",
            Self::Validation => "validation",
            Self::Expression => "expression",
            Self::Authentication => "authentication",
            Self::Authorization => "authorization",
            Self::Timeout => "timeout",
            Self::Communication => "communication",
            Self::Runtime => "runtime",
        }
    }

    /// The type URI Baton raises (the specification's form).
    pub fn type_uri(self) -> String {
        format!("{SPEC_PREFIX}{}", self.as_str())
    }

    /// The default status of an error of this kind.
    pub fn default_status(self) -> u16 {
        match self {
            Self::Configuration | Self::Validation | Self::Expression => 400,
            Self::Authentication => 401,
            Self::Authorization => 403,
            Self::Timeout => 408,
            Self::Communication | Self::Runtime => 500,
        }
    }

    /// Recognises a standard type URI in either published form.
    pub fn from_type(uri: &str) -> Option<Self> {
        let last = uri
            .strip_prefix(SPEC_PREFIX)
            .or_else(|| uri.strip_prefix(CTK_PREFIX))?;
        Self::ALL.into_iter().find(|k| k.as_str() == last)
    }
}

/// Compares two error type URIs, treating the specification's and the conformance kit's forms of
/// the standard types as equal.
pub fn same_type(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (ErrorKind::from_type(a), ErrorKind::from_type(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// An error as the DSL describes it: `type`, `status`, `instance`, `title`, `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowError {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl WorkflowError {
    /// A standard error of `kind` raised at `instance` (a task reference such as `/do/0/x`).
    pub fn new(kind: ErrorKind, instance: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: kind.type_uri(),
            status: kind.default_status(),
            instance: Some(instance.to_owned()),
            title: Some(title_for(kind).to_owned()),
            detail: Some(detail.into()),
        }
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The standard kind, if the type is one.
    pub fn kind(&self) -> Option<ErrorKind> {
        ErrorKind::from_type(&self.type_)
    }

    /// The error as a JSON object (what `catch.as` binds).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.type_.clone()));
        m.insert("status".into(), Value::from(self.status));
        if let Some(i) = &self.instance {
            m.insert("instance".into(), Value::String(i.clone()));
        }
        if let Some(t) = &self.title {
            m.insert("title".into(), Value::String(t.clone()));
        }
        if let Some(d) = &self.detail {
            m.insert("detail".into(), Value::String(d.clone()));
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.title.as_deref().unwrap_or("error"),
            self.status
        )?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(i) = &self.instance {
            write!(f, " at {i}")?;
        }
        Ok(())
    }
}

fn title_for(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Configuration => "Configuration Error",
        ErrorKind::Validation => "Validation Error",
        ErrorKind::Expression => "Expression Error",
        ErrorKind::Authentication => "Authentication Error",
        ErrorKind::Authorization => "Authorization Error",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::Communication => "Communication Error",
        ErrorKind::Runtime => "Runtime Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_published_forms_of_standard_types_match() {
        assert!(same_type(
            "https://serverlessworkflow.io/dsl/errors/types/communication",
            "https://serverlessworkflow.io/spec/1.0.0/errors/communication"
        ));
        assert!(!same_type(
            "https://serverlessworkflow.io/dsl/errors/types/timeout",
            "https://serverlessworkflow.io/spec/1.0.0/errors/communication"
        ));
        assert!(same_type("urn:custom", "urn:custom"));
    }
}
