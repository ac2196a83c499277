//! RFC 9457 problem documents for the command line's error output.

use baton_core::WorkflowError;

use crate::files::LoadFailure;
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

/// The problem document of a workflow file that cannot be loaded.
pub fn from_load(failure: &LoadFailure) -> Value {
    let e = match failure {
        LoadFailure::Unreadable { .. } => {
            return usage("Cannot read the workflow file", failure);
        }
        LoadFailure::Invalid(e) => e,
    };
    let mut v = json!({
        "type": "https://serverlessworkflow.io/spec/1.0.0/errors/validation",
        "title": match e.kind {
            baton_core::LoadErrorKind::Syntax => "The workflow document is not valid YAML or JSON",
            baton_core::LoadErrorKind::Invalid => "The workflow document is invalid",
            baton_core::LoadErrorKind::Unsupported => "The workflow uses an unsupported feature",
        },
        "status": 400,
        "detail": e.to_string(),
    });
    // The JSON pointer of the part at fault; a fault of the whole document has none to give.
    if !e.path.is_empty() {
        v["instance"] = json!(e.path);
    }
    v
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
