//! RFC 9457 problem documents for the command line's error output.

use baton_core::{LoadError, WorkflowError};
use serde_json::{Value, json};

/// The problem document of a workflow fault.
pub fn from_fault(e: &WorkflowError) -> Value {
    let mut v = e.to_value();
    if let Value::Object(m) = &mut v {
        m.entry("title")
            .or_insert_with(|| json!("Workflow faulted"));
    }
    v
}

/// The problem document of a definition that cannot be loaded.
pub fn from_load(e: &LoadError) -> Value {
    json!({
        "type": "https://serverlessworkflow.io/spec/1.0.0/errors/validation",
        "title": match e.kind {
            baton_core::LoadErrorKind::Syntax => "The workflow document is not valid YAML or JSON",
            baton_core::LoadErrorKind::Invalid => "The workflow document is invalid",
            baton_core::LoadErrorKind::Unsupported => "The workflow uses an unsupported feature",
        },
        "status": 400,
        "detail": e.to_string(),
        "instance": e.path,
    })
}

/// A usage problem (unreadable file, bad input).
pub fn usage(title: &str, detail: impl std::fmt::Display) -> Value {
    json!({
        "type": "about:blank",
        "title": title,
        "status": 400,
        "detail": detail.to_string(),
    })
}

/// Prints a problem document to standard error.
pub fn print(v: &Value) {
    eprintln!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}
