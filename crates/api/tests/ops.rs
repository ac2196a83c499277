//! What operators read: `/metrics` (Prometheus) and `/openapi.json`.
//!
//! Metrics are process-global and the tests of this file run concurrently in one process, so
//! counts are compared with `>=` or as a difference, never with `==`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use baton_host::{App, Keys};
use serde_json::Value;
use support::metrics::*;
use support::*;

const ADA: &str = include_str!("../../../examples/person-validation/samples/ada.json");

const FAIL: &str = "document: {dsl: '1.0.0', namespace: t, name: ops-fail, version: '1.0.0'}\ndo:\n  - f:\n      raise:\n        error: {type: 'https://example.com/teapot', status: 418, title: Teapot}\n";

const ECHO: &str = "document: {dsl: '1.0.0', namespace: t, name: echo, version: '1.0.0'}\ndo:\n  - e: {set: '${ . }'}\n";

fn is_instance_id(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn requests_are_counted_by_function_or_route_template() {
    let s = state(App::sample().expect("sample"), Keys::default()).await;
    for _ in 0..2 {
        let a = send(&s, post("/api/Validate", ADA)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    assert_eq!(
        send(&s, post("/api/NoSuchFunction", "{}")).await.status,
        StatusCode::NOT_FOUND
    );
    let unknown = "/api/instances/0123456789abcdef0123456789abcdef";
    assert_eq!(send(&s, get(unknown)).await.status, StatusCode::NOT_FOUND);

    let all = scrape(&s).await;
    let requests = "baton_http_requests_total";
    let ok = [("route", "Validate"), ("method", "POST"), ("status", "200")];
    assert!(value(&all, requests, &ok) >= 2.0, "{all:#?}");
    let missing = [("route", "unmatched"), ("status", "404")];
    assert!(value(&all, requests, &missing) >= 1.0, "{all:#?}");
    let template = [("route", "/api/instances/{id}"), ("status", "404")];
    assert!(value(&all, requests, &template) >= 1.0, "{all:#?}");
    let started = [("function", "Validate"), ("workflow", "validate")];
    assert!(value(&all, "baton_instances_started_total", &started) >= 2.0);
    let bucket = [("route", "Validate"), ("le", "+Inf")];
    assert!(value(&all, "baton_http_request_duration_seconds_bucket", &bucket) >= 2.0);
    assert!(
        all.iter()
            .any(|s| s.name == "baton_http_request_duration_seconds_bucket"
                && s.labels.get("le").map(String::as_str) == Some("0.0005")),
        "the latency buckets start at 0.5 ms"
    );
    let leaked: Vec<&Sample> = all
        .iter()
        .filter(|s| {
            s.labels
                .values()
                .any(|v| is_instance_id(v) || v.contains('?'))
        })
        .collect();
    assert!(leaked.is_empty(), "ids or queries in labels: {leaked:#?}");
}

#[tokio::test]
async fn a_faulting_function_counts_as_a_failed_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.OpsFail]\nworkflow = \"ops-fail\"\n",
        &[("fail.yaml", FAIL)],
    );
    let s = state(app, Keys::default()).await;
    let labels = [("function", "OpsFail"), ("workflow", "ops-fail")];
    let before = value(&scrape(&s).await, "baton_instances_failed_total", &labels);
    let a = send(&s, post("/api/OpsFail", "{}")).await;
    assert_eq!(a.status.as_u16(), 418, "{}", a.text);
    let after = scrape(&s).await;
    assert!(value(&after, "baton_instances_failed_total", &labels) >= before + 1.0);
    assert_eq!(
        value(&after, "baton_instances_completed_total", &labels),
        0.0
    );
}

#[tokio::test]
async fn metrics_and_openapi_need_no_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Mine]\nworkflow = \"echo\"\n",
        &[("echo.yaml", ECHO)],
    );
    let mut keys = Keys::default();
    keys.create(None, "master", "t").expect("key");
    let s = state(app, keys).await;
    assert_eq!(send(&s, get("/metrics")).await.status, StatusCode::OK);
    assert_eq!(send(&s, get("/openapi.json")).await.status, StatusCode::OK);
    assert_eq!(
        send(&s, post("/api/Mine", "{}")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn openapi(s: &baton_api::ApiState) -> Value {
    let a = send(s, get("/openapi.json")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    serde_json::from_str(&a.text).expect("valid JSON")
}

#[tokio::test]
async fn the_openapi_document_lists_every_function_of_the_sample() {
    let app = App::sample().expect("sample");
    let functions: Vec<String> = app
        .functions
        .iter()
        .filter(|f| f.queue.is_none())
        .map(|f| f.route.clone())
        .collect();
    let queued: Vec<String> = app
        .functions
        .iter()
        .filter(|f| f.queue.is_some())
        .map(|f| f.route.clone())
        .collect();
    let doc = openapi(&state(app, Keys::default()).await).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(doc["info"]["title"], "Baton");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("the embedded sample app")
    );
    assert_eq!(functions.len(), 16);
    assert_eq!(
        queued.len(),
        12,
        "six fan-out checks and six pipeline stages"
    );
    for route in &queued {
        assert!(
            doc["paths"][format!("/api/{route}")].is_null(),
            "a queue-triggered function has no route: {route}"
        );
    }
    for route in &functions {
        let op = &doc["paths"][format!("/api/{route}")]["post"];
        assert!(op.is_object(), "/api/{route}");
        assert!(
            op["security"].is_array(),
            "the sample's functions need a key"
        );
    }
    for fixed in [
        "/api/instances/{id}",
        "/api/GetResult",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"][fixed]["get"].is_object(), "{fixed}");
    }
    let validate = &doc["paths"]["/api/Validate"]["post"];
    let input = &validate["requestBody"]["content"]["application/json"]["schema"];
    assert!(input["properties"]["Name"].is_object(), "{input}");
    let accepted = &validate["responses"]["202"]["headers"];
    assert!(accepted["Location"].is_object() && accepted["Retry-After"].is_object());
}

#[tokio::test]
async fn problem_answers_share_the_problem_schema() {
    let doc = openapi(&state(App::sample().expect("sample"), Keys::default()).await).await;
    let problem = &doc["components"]["schemas"]["Problem"];
    for member in ["type", "title", "status", "detail", "instance"] {
        assert!(problem["properties"][member].is_object(), "{member}");
    }
    assert_eq!(problem["additionalProperties"], true);
    let responses = &doc["paths"]["/api/CheckZip"]["post"]["responses"];
    for status in ["400", "404", "405", "413", "415", "503", "5XX"] {
        assert_eq!(
            responses[status]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{status}"
        );
    }
}

#[tokio::test]
async fn openapi_security_follows_each_functions_auth_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Open]\nworkflow = \"echo\"\nauth = \"anonymous\"\n\
         [functions.Mine]\nworkflow = \"echo\"\nauth = \"function\"\n",
        &[("echo.yaml", ECHO)],
    );
    let doc = openapi(&state(app, Keys::default()).await).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        (
            &schemes["functionKey"]["in"],
            &schemes["functionKey"]["name"]
        ),
        (&Value::from("header"), &Value::from("x-functions-key"))
    );
    assert_eq!(
        (
            &schemes["functionKeyQuery"]["in"],
            &schemes["functionKeyQuery"]["name"]
        ),
        (&Value::from("query"), &Value::from("code"))
    );
    let open = &doc["paths"]["/api/Open"]["post"];
    let mine = &doc["paths"]["/api/Mine"]["post"];
    assert_eq!(open["security"], Value::Null);
    assert!(open["responses"]["401"].is_null());
    assert_eq!(
        mine["security"],
        serde_json::json!([{"functionKey": []}, {"functionKeyQuery": []}])
    );
    assert!(mine["responses"]["401"].is_object());
    assert!(
        doc["paths"]["/api/Open"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            .is_object(),
        "a workflow without an input schema accepts any JSON"
    );
}

/// Where the instance routes are mounted: under the prefix, and for Durable Functions clients.
const INSTANCE_BASES: [(&str, &str); 2] = [
    ("/api", "instances"),
    ("/runtime/webhooks/durabletask", "durable-functions-compat"),
];

/// The statuses an operation documents, in order.
fn statuses(op: &Value) -> Vec<&str> {
    op["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("no responses: {op}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The names of an operation's parameters that are `in` the given place.
fn parameters<'a>(op: &'a Value, place: &str) -> Vec<&'a str> {
    op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == place)
                .map(|p| p["name"].as_str().expect("a name"))
                .collect()
        })
        .unwrap_or_default()
}

/// What the document says of one operation of the instance routes.
struct Expected {
    /// After `{base}/instances`.
    path: &'static str,
    method: &'static str,
    /// Sorted.
    statuses: &'static [&'static str],
    /// The query parameters, in order.
    query: &'static [&'static str],
    host_key: bool,
}

#[tokio::test]
async fn the_openapi_document_describes_the_instance_routes_under_both_mounts() {
    let doc = openapi(&state(App::sample().expect("sample"), Keys::default()).await).await;
    let host = serde_json::json!([{"hostKey": []}, {"hostKeyQuery": []}]);
    let function = serde_json::json!([{"functionKey": []}, {"functionKeyQuery": []}]);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["hostKey"]["name"], "x-functions-key");
    assert_eq!(schemes["hostKeyQuery"]["in"], "query");
    for (base, tag) in INSTANCE_BASES {
        let path = |p: &str| &doc["paths"][format!("{base}/instances{p}")];
        let table = [
            Expected {
                path: "",
                method: "get",
                statuses: &["200", "400", "401", "404", "503"],
                query: &[
                    "runtimeStatus",
                    "name",
                    "createdTimeFrom",
                    "createdTimeTo",
                    "instanceIdPrefix",
                    "top",
                    "continuationToken",
                    "showInput",
                ],
                host_key: true,
            },
            Expected {
                path: "",
                method: "delete",
                statuses: &["200", "400", "401", "404", "503"],
                query: &[
                    "runtimeStatus",
                    "name",
                    "createdTimeFrom",
                    "createdTimeTo",
                    "instanceIdPrefix",
                ],
                host_key: true,
            },
            Expected {
                path: "/{id}",
                method: "get",
                statuses: &["200", "202", "401", "404", "500", "503"],
                query: &[
                    "showHistory",
                    "showInput",
                    "returnInternalServerErrorOnFailure",
                ],
                host_key: false,
            },
            Expected {
                path: "/{id}",
                method: "delete",
                statuses: &["200", "401", "404", "412", "503"],
                query: &[],
                host_key: true,
            },
            Expected {
                path: "/{id}/history",
                method: "get",
                statuses: &["200", "400", "401", "404", "503"],
                query: &["top", "continuationToken"],
                host_key: true,
            },
            Expected {
                path: "/{id}/terminate",
                method: "post",
                statuses: &["202", "401", "404", "410", "503"],
                query: &["reason"],
                host_key: true,
            },
            Expected {
                path: "/{id}/suspend",
                method: "post",
                statuses: &["202", "401", "404", "410", "503"],
                query: &["reason"],
                host_key: true,
            },
            Expected {
                path: "/{id}/resume",
                method: "post",
                statuses: &["202", "401", "404", "410", "503"],
                query: &["reason"],
                host_key: true,
            },
            Expected {
                path: "/{id}/rewind",
                method: "post",
                statuses: &["202", "401", "404", "412", "503"],
                query: &["reason"],
                host_key: true,
            },
            Expected {
                path: "/{id}/raiseEvent/{eventName}",
                method: "post",
                statuses: &["202", "400", "401", "404", "410", "413", "415", "503"],
                query: &[],
                host_key: true,
            },
        ];
        let mut expected: Vec<String> = table
            .iter()
            .map(|e| format!("{} {base}/instances{}", e.method, e.path))
            .collect();
        expected.sort();
        let mut described: Vec<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .filter(|(p, _)| p.starts_with(&format!("{base}/instances")))
            .flat_map(|(p, item)| {
                let methods = item.as_object().expect("a path item").keys();
                methods.map(move |m| format!("{m} {p}"))
            })
            .collect();
        described.sort();
        assert_eq!(described, expected, "exactly these operations");
        for Expected {
            path: p,
            method,
            statuses: want,
            query,
            host_key,
        } in table
        {
            let op = &path(p)[method];
            let at = format!("{method} {base}/instances{p}");
            assert!(op.is_object(), "{at} is missing");
            let mut got = statuses(op);
            got.sort_unstable();
            assert_eq!(got, want, "{at}");
            assert_eq!(parameters(op, "query"), query, "{at}");
            assert_eq!(op["tags"], serde_json::json!([tag]), "{at}");
            let security = if host_key { &host } else { &function };
            assert_eq!(&op["security"], security, "{at}");
            if p.contains("{id}") {
                assert_eq!(parameters(op, "path")[0], "id", "{at}");
            }
            for (status, r) in op["responses"].as_object().expect("responses") {
                if status.starts_with(['4', '5']) {
                    assert_eq!(
                        r["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{at} {status}"
                    );
                }
            }
        }
        assert!(
            doc["paths"][format!("{base}/instances/{{id}}/{{action}}")].is_null(),
            "the actions are four paths, not a template"
        );
        let list = &path("")["get"];
        assert_eq!(parameters(list, "header"), ["x-ms-continuation-token"]);
        assert!(list["responses"]["200"]["headers"]["x-ms-continuation-token"].is_object());
        assert_eq!(
            list["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
            "#/components/schemas/InstanceStatus"
        );
        let history = &path("/{id}/history")["get"];
        assert_eq!(parameters(history, "header"), ["x-ms-continuation-token"]);
        assert!(history["responses"]["200"]["headers"]["x-ms-continuation-token"].is_object());
        let status = &path("/{id}")["get"];
        let failed = &status["responses"]["500"]["content"];
        assert_eq!(
            failed["application/json"]["schema"]["$ref"],
            "#/components/schemas/InstanceStatus"
        );
        assert!(status["responses"]["202"]["headers"]["Retry-After"].is_object());
        let raise = &path("/{id}/raiseEvent/{eventName}")["post"];
        assert_eq!(parameters(raise, "path"), ["id", "eventName"]);
        assert!(raise["requestBody"]["content"]["application/json"].is_object());
        for (p, method) in [("", "delete"), ("/{id}", "delete")] {
            assert_eq!(
                path(p)[method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Purged"
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_schemas_carry_the_durable_members() {
    let doc = openapi(&state(App::sample().expect("sample"), Keys::default()).await).await;
    let schemas = &doc["components"]["schemas"];
    let status = &schemas["InstanceStatus"]["properties"];
    assert!(
        status["runtimeStatus"]["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::from("Suspended"))
    );
    for member in ["name", "version", "hash"] {
        assert!(
            status["definition"]["properties"][member].is_object(),
            "{member}"
        );
    }
    assert_eq!(
        status["historyEvents"]["items"]["$ref"],
        "#/components/schemas/HistoryEvent"
    );
    let check = &schemas["CheckStatus"]["properties"];
    for uri in [
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "suspendPostUri",
        "resumePostUri",
        "rewindPostUri",
        "purgeHistoryDeleteUri",
    ] {
        assert!(check[uri].is_object(), "{uri}");
    }
    for member in ["seq", "at", "kind", "data"] {
        assert!(
            schemas["HistoryEvent"]["properties"][member].is_object(),
            "{member}"
        );
    }
    assert!(schemas["InstanceHistory"]["properties"]["events"].is_object());
    assert!(schemas["Purged"]["properties"]["instancesDeleted"].is_object());
}

#[tokio::test]
async fn every_operation_id_in_the_openapi_document_is_unique() {
    let doc = openapi(&state(App::sample().expect("sample"), Keys::default()).await).await;
    let mut seen = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            if let Some(first) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("`{id}` names both {first} and {method} {path}");
            }
        }
    }
    assert!(seen.contains_key("listInstances") && seen.contains_key("listInstancesDurableTask"));
}

/// Every instance route the document describes is one the router serves: asked with the
/// documented method, none falls through to "nothing is served" or "does not accept".
#[tokio::test]
async fn the_documented_instance_routes_are_served() {
    let s = state(App::sample().expect("sample"), Keys::default()).await;
    let doc = openapi(&s).await;
    let mut asked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.contains("/instances") {
            continue;
        }
        let uri = path
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{eventName}", "go");
        for method in item.as_object().expect("a path item").keys() {
            let req = axum::http::Request::builder()
                .method(method.to_ascii_uppercase().as_str())
                .uri(&uri)
                .body(axum::body::Body::empty())
                .expect("request");
            let a = send(&s, req).await;
            let at = format!("{method} {uri}");
            assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{at}: {}", a.text);
            assert!(!a.text.contains("nothing is served"), "{at}: {}", a.text);
            asked += 1;
        }
    }
    assert_eq!(asked, 2 * 10);
}
