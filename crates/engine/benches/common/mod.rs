//! What the durable benches share: the fan-out workflow and the start request.

#![allow(dead_code)]

use baton_engine::durable::StartRequest;
use serde_json::json;

/// A `fork` of six `call: check` activities.
pub const FAN_OUT: &str = r#"document: {dsl: '1.0.0', namespace: bench, name: fan-out, version: '1.0.0'}
do:
  - checks:
      fork:
        branches:
          - c1: {call: check, with: {n: 1}}
          - c2: {call: check, with: {n: 2}}
          - c3: {call: check, with: {n: 3}}
          - c4: {call: check, with: {n: 4}}
          - c5: {call: check, with: {n: 5}}
          - c6: {call: check, with: {n: 6}}
"#;

/// A start of the fan-out, pinned as `fan-out`, with id `id`.
pub fn request(id: &str) -> StartRequest {
    StartRequest {
        id: id.to_owned(),
        function: "Bench".to_owned(),
        definition: "fan-out".to_owned(),
        input: json!({}),
        idempotency: None,
    }
}
