//! `GET /openapi.json`: an OpenAPI 3.1 description of what this host serves, generated once when
//! the router is built from the app's function table (routes, methods, auth levels, input
//! schemas, limits), so it cannot drift from the code that answers.
//!
//! Built with utoipa's builder types, not its derive macros: the routes are data, known only once
//! the app is loaded. One step happens after serialisation: a workflow's input and output schemas
//! are JSON Schema as their authors wrote them, and utoipa's typed `Schema` would drop what it
//! does not model (`$schema`, `$id`, `$defs`, `const`, `if`/`then`, `patternProperties`, …), so
//! they are placed verbatim into the serialised document ([`embed_schemas`]).

use axum::body::Bytes;
use axum::http::header;
use axum::routing::{MethodRouter, get};
use baton_host::{App, AuthLevel, Function, Mode};
use serde_json::Value;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
    PathItemBuilder,
};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ComponentsBuilder, ObjectBuilder, Ref, Schema, SchemaType,
    Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, Info, InfoBuilder, OpenApiBuilder, Paths, PathsBuilder, RefOr, Required,
};

use crate::state::Shared;

// A submodule rather than a sibling, so that it shares this file's private helpers.
#[path = "openapi_instances.rs"]
mod instances;

/// The security scheme of a key in `x-functions-key`.
const KEY_HEADER: &str = "functionKey";
/// The security scheme of a key in `?code=`.
const KEY_QUERY: &str = "functionKeyQuery";
/// The security scheme of a host key in `x-functions-key`: the same header as [`KEY_HEADER`],
/// named apart so that a route needing a host key says so.
const HOST_KEY_HEADER: &str = "hostKey";
/// The security scheme of a host key in `?code=`.
const HOST_KEY_QUERY: &str = "hostKeyQuery";

const JSON: &str = "application/json";
const PROBLEM: &str = "application/problem+json";

/// `GET /openapi.json`, answering the document generated now for `app`.
pub fn route(app: &App, prefix: &str) -> MethodRouter<Shared> {
    let body = Bytes::from(document(app, prefix).to_string());
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, JSON)], body) }
    })
}

/// The OpenAPI document of `app` served under `/{prefix}`.
pub fn document(app: &App, prefix: &str) -> Value {
    let api = OpenApiBuilder::new()
        .info(info(app))
        .paths(paths(app, prefix))
        .components(Some(components()))
        .build();
    let mut doc = serde_json::to_value(api).unwrap_or_else(|e| {
        // Serialising plain data structures into a `Value` has no failure mode in practice.
        tracing::error!(error = %e, "could not serialise the OpenAPI document");
        Value::Null
    });
    embed_schemas(&mut doc, app, prefix);
    doc
}

fn info(app: &App) -> Info {
    InfoBuilder::new()
        .title("Baton")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!(
            "The functions of {}, served by Baton. Each function runs a Serverless Workflow; \
             errors are RFC 9457 problem documents. With no keys configured and a loopback \
             listener (development), every route is open.",
            // Only the folder's name: the document is readable without a key, and a full
            // path would tell callers about the server's file system.
            std::path::Path::new(&app.origin)
                .file_name()
                .map_or_else(|| app.origin.clone(), |n| n.to_string_lossy().into_owned())
        )))
        .build()
}

fn paths(app: &App, prefix: &str) -> Paths {
    let mut paths = PathsBuilder::new();
    for f in app.functions.iter().filter(|f| f.queue.is_none()) {
        paths = paths.path(format!("/{prefix}/{}", f.route), trigger(app, f));
    }
    instances::paths(paths, app, prefix)
        .path(format!("/{prefix}/GetResult"), get_result(app))
        .path("/healthz", healthz())
        .path("/readyz", readyz())
        .path("/metrics", metrics())
        .path("/openapi.json", openapi())
        .build()
}

/// One operation for each method the function accepts.
fn trigger(app: &App, f: &Function) -> PathItem {
    let mut item = PathItemBuilder::new();
    for m in &f.methods {
        let Some(method) = http_method(m) else {
            continue;
        };
        let id = if f.methods.len() == 1 {
            f.name.clone()
        } else {
            format!("{}_{}", f.name, m.to_ascii_lowercase())
        };
        item = item.operation(method, trigger_operation(app, f, m, id));
    }
    item.build()
}

fn http_method(m: &str) -> Option<HttpMethod> {
    Some(match m {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => return None,
    })
}

/// Whether the trigger reads its input from the body; GET and DELETE read the query instead
/// (`triggers::run`).
fn takes_body(method: &str) -> bool {
    !matches!(method, "GET" | "DELETE")
}

fn trigger_operation(app: &App, f: &Function, method: &str, id: String) -> Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .tag("functions")
        .summary(Some(format!(
            "Runs the workflow `{}`",
            f.workflow.document.name
        )))
        .description(Some(trigger_description(f, method)));
    op = refusals(op, app, method);
    if f.mode == Mode::Sync {
        op = outcomes(op);
    }
    let running =
        "the check-status links (an async function answers at once, a sync one past its wait)";
    op = op.response(
        "202",
        accepted(running, Ref::from_schema_name("CheckStatus")),
    );
    if takes_body(method) {
        op = op.request_body(Some(input_body()));
    }
    let security = match f.auth {
        AuthLevel::Anonymous => None,
        AuthLevel::Function => Some(keys()),
        AuthLevel::Admin => Some(host_keys()),
    };
    if let Some(security) = security {
        let refused = problem("No key, or a key that is not valid for this function.");
        op = op.response("401", refused).securities(Some(security));
    }
    op.build()
}

/// What a trigger refuses before any instance starts.
fn refusals(op: OperationBuilder, app: &App, method: &str) -> OperationBuilder {
    let limits = &app.config.limits;
    let full = format!(
        "The host is running as many instances as it may at once ({}, limits.max_in_flight).",
        limits.max_in_flight
    );
    let not_allowed = problem("The function does not accept this method.");
    let op = op
        .response("400", problem(bad_request(method)))
        .response(
            "405",
            with_header(not_allowed, "Allow", "The methods it accepts."),
        )
        .response("503", retry_after(problem(&full)));
    if !takes_body(method) {
        return op;
    }
    let too_large = format!("The body is larger than {} bytes.", limits.max_body_bytes);
    op.response("413", problem(&too_large)).response(
        "415",
        problem("The body is not `application/json` (or `application/*+json`)."),
    )
}

fn bad_request(method: &str) -> &'static str {
    if takes_body(method) {
        "The body is empty, not JSON, nested too deep, or does not match the input schema \
         (`errors` lists every failing pointer); or the workflow faulted with status 400."
    } else {
        "The query does not match the input schema (`errors` lists every failing pointer); or \
         the workflow faulted with status 400."
    }
}

/// How a sync trigger answers once its instance has finished within the wait.
fn outcomes(op: OperationBuilder) -> OperationBuilder {
    let null = ResponseBuilder::new().description("The workflow's output is `null`.");
    op.response("200", json_response("The workflow's output.", any()))
        .response("204", null.build())
        .response("404", problem("The workflow faulted with status 404."))
        .response(
            "5XX",
            problem(
                "The workflow faulted (the problem carries its error type, title and `task`) \
                 or ran past the host's time limit.",
            ),
        )
        .response(
            "default",
            problem("The workflow faulted with another status."),
        )
}

/// The input, as any JSON until [`embed_schemas`] puts the workflow's input schema here.
fn input_body() -> RequestBody {
    RequestBodyBuilder::new()
        .description(Some("The workflow's input."))
        .required(Some(Required::True))
        .content(JSON, ContentBuilder::new().schema(Some(any())).build())
        .build()
}

fn trigger_description(f: &Function, method: &str) -> String {
    let input = if takes_body(method) {
        "The JSON body is the input."
    } else {
        "The query parameters (except `code`) are the input, as strings."
    };
    let auth = match f.auth {
        AuthLevel::Anonymous => "No key needed.",
        AuthLevel::Function => "Needs the function's key or a host key.",
        AuthLevel::Admin => "Needs a host key.",
    };
    let answer = match f.mode {
        Mode::Sync => format!(
            "Waits up to {} for the output, then answers 202 with where to poll.",
            f.wait.to_iso8601()
        ),
        Mode::Async => "Answers 202 at once with where to poll.".to_owned(),
    };
    format!(
        "Function `{}` (auth level `{}`). {input} {auth} {answer}",
        f.name,
        f.auth.as_str()
    )
}

fn get_result(app: &App) -> PathItem {
    let op = OperationBuilder::new()
        .operation_id(Some("getResult"))
        .tag("instances")
        .summary(Some("The output of an instance"))
        .description(Some(
            "The output itself once finished, or the fault as a problem document.",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .schema(Some(string())),
        )
        .response("200", json_response("The instance's output.", any()))
        .response(
            "202",
            accepted("the status so far", Ref::from_schema_name("InstanceStatus")),
        )
        .response(
            "204",
            ResponseBuilder::new()
                .description("The instance's output is `null`.")
                .build(),
        )
        .response("400", problem("`id` is missing."))
        .response(
            "401",
            problem("No key, or a key that is not valid for this instance."),
        )
        .response(
            "404",
            problem("No such instance (unknown, or finished and forgotten)."),
        )
        .response("5XX", problem("The instance faulted."))
        .response(
            "default",
            problem("The instance faulted with another status."),
        )
        .securities(Some(instance_keys(app)));
    PathItem::new(HttpMethod::Get, op)
}

fn healthz() -> PathItem {
    let body = ObjectBuilder::new().property("status", string()).build();
    let op = OperationBuilder::new()
        .operation_id(Some("healthz"))
        .tag("operations")
        .summary(Some("The process answers"))
        .response("200", json_response("Alive.", body));
    PathItem::new(HttpMethod::Get, op)
}

fn readyz() -> PathItem {
    let body = ObjectBuilder::new()
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["ready", "full"])),
        )
        .property("inFlight", integer())
        .property("maxInFlight", integer())
        .build();
    let op = OperationBuilder::new()
        .operation_id(Some("readyz"))
        .tag("operations")
        .summary(Some("The host can take work"))
        .response(
            "200",
            json_response("Below its limit of running instances.", body.clone()),
        )
        .response(
            "503",
            json_response("At its limit of running instances.", body),
        );
    PathItem::new(HttpMethod::Get, op)
}

fn metrics() -> PathItem {
    let op = OperationBuilder::new()
        .operation_id(Some("metrics"))
        .tag("operations")
        .summary(Some("Prometheus metrics"))
        .description(Some(
            "Request counts and latencies by route, instance counts by function. Open like \
             `/healthz`; restrict it at the network edge if it must not be public.",
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The Prometheus text exposition format.")
                .content(
                    "text/plain; version=0.0.4",
                    ContentBuilder::new().schema(Some(string())).build(),
                )
                .build(),
        );
    PathItem::new(HttpMethod::Get, op)
}

fn openapi() -> PathItem {
    let op = OperationBuilder::new()
        .operation_id(Some("openapi"))
        .tag("operations")
        .summary(Some("This document"))
        .response("200", json_response("The OpenAPI document.", any()));
    PathItem::new(HttpMethod::Get, op)
}

/// Either key scheme satisfies a secured route.
fn keys() -> Vec<SecurityRequirement> {
    vec![
        SecurityRequirement::new(KEY_HEADER, Vec::<String>::new()),
        SecurityRequirement::new(KEY_QUERY, Vec::<String>::new()),
    ]
}

/// Either host key scheme satisfies a route that needs a host key.
fn host_keys() -> Vec<SecurityRequirement> {
    vec![
        SecurityRequirement::new(HOST_KEY_HEADER, Vec::<String>::new()),
        SecurityRequirement::new(HOST_KEY_QUERY, Vec::<String>::new()),
    ]
}

/// Instance routes need a key unless the instance's function is anonymous; when the app has an
/// anonymous function, "no key" (the empty requirement) is one of the alternatives.
fn instance_keys(app: &App) -> Vec<SecurityRequirement> {
    let mut keys = keys();
    if app.functions.iter().any(|f| f.auth == AuthLevel::Anonymous) {
        keys.push(SecurityRequirement::default());
    }
    keys
}

fn json_response(description: &str, schema: impl Into<RefOr<Schema>>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(JSON, ContentBuilder::new().schema(Some(schema)).build())
        .build()
}

/// A problem document, described by the shared `Problem` schema.
fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// A 202: the instance is still running; poll `Location` after `Retry-After` seconds.
fn accepted(what: &str, schema: Ref) -> Response {
    let r = json_response(
        &format!("Still running: {what}. Poll `Location` after `Retry-After` seconds."),
        schema,
    );
    retry_after(with_header(
        r,
        "Location",
        "Where to poll the instance's status.",
    ))
}

fn retry_after(r: Response) -> Response {
    with_header(r, "Retry-After", "Seconds to wait before trying again.")
}

fn with_header(mut r: Response, name: &str, description: &str) -> Response {
    let h = HeaderBuilder::new()
        .schema(Some(string()))
        .description(Some(description))
        .build();
    r.headers.insert(name.to_owned(), RefOr::T(h));
    r
}

fn components() -> Components {
    let key = |in_: fn(ApiKeyValue) -> ApiKey, name: &str, description: &str| {
        let mut v = ApiKeyValue::new(name);
        v.description = Some(description.to_owned());
        SecurityScheme::ApiKey(in_(v))
    };
    let components = ComponentsBuilder::new()
        .security_scheme(
            KEY_HEADER,
            key(
                ApiKey::Header,
                "x-functions-key",
                "A function key, or a host key.",
            ),
        )
        .security_scheme(
            KEY_QUERY,
            key(
                ApiKey::Query,
                "code",
                "A function key, or a host key, in the query.",
            ),
        )
        .security_scheme(
            HOST_KEY_HEADER,
            key(
                ApiKey::Header,
                "x-functions-key",
                "A host key (the master key or another host key).",
            ),
        )
        .security_scheme(
            HOST_KEY_QUERY,
            key(ApiKey::Query, "code", "A host key, in the query."),
        )
        .schema("Problem", problem_schema())
        .schema("CheckStatus", check_status_schema())
        .schema("InstanceStatus", instance_status_schema());
    instances::schemas(components).build()
}

/// RFC 9457: the standard members, plus extensions (`errors`, `task`, `line`, `column`, `limit`).
fn problem_schema() -> Schema {
    ObjectBuilder::new()
        .property(
            "type",
            ObjectBuilder::new().schema_type(Type::String).format(Some(
                utoipa::openapi::SchemaFormat::Custom("uri-reference".to_owned()),
            )),
        )
        .property("title", string())
        .property("status", integer())
        .property("detail", string())
        .property("instance", string())
        .required("type")
        .required("title")
        .required("status")
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
        .into()
}

/// The 202 body of a trigger. A durable instance's also says how to manage it (the links of
/// Durable Functions' check-status body, `durable_status_body` in triggers.rs); `{eventName}`
/// and `{text}` in them are for the client to fill in.
fn check_status_schema() -> Schema {
    // The management links hold `{eventName}` or `{text}`: RFC 6570 templates, not URIs.
    let links = [
        ("statusQueryGetUri", "uri", "The instance's status."),
        (
            "sendEventPostUri",
            "uri-template",
            "Durable instances only: POST an event's data here, `{eventName}` replaced by its \
             type.",
        ),
        (
            "terminatePostUri",
            "uri-template",
            "Durable instances only: POST to terminate; `{text}` is the reason.",
        ),
        (
            "suspendPostUri",
            "uri-template",
            "Durable instances only: POST to suspend; `{text}` is the reason.",
        ),
        (
            "resumePostUri",
            "uri-template",
            "Durable instances only: POST to resume; `{text}` is the reason.",
        ),
        (
            "rewindPostUri",
            "uri-template",
            "Durable instances only: POST to rewind a Failed instance; `{text}` is the reason.",
        ),
        (
            "purgeHistoryDeleteUri",
            "uri",
            "Durable instances only: DELETE to purge the finished instance and its history.",
        ),
    ];
    let mut body = ObjectBuilder::new().property("id", string());
    for (name, format, description) in links {
        let link = string()
            .format(Some(utoipa::openapi::SchemaFormat::Custom(
                format.to_owned(),
            )))
            .description(Some(description));
        body = body.property(name, link);
    }
    body.required("id").required("statusQueryGetUri").into()
}

fn instance_status_schema() -> Schema {
    let status = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([
            "Pending",
            "Running",
            "Suspended",
            "Completed",
            "Failed",
            "Terminated",
        ]));
    let time = || {
        ObjectBuilder::new().schema_type(Type::String).format(Some(
            utoipa::openapi::SchemaFormat::Custom("date-time".to_owned()),
        ))
    };
    ObjectBuilder::new()
        .property("name", string())
        .property("instanceId", string())
        .property("runtimeStatus", status)
        .property("input", any())
        .property("customStatus", any())
        .property("output", any())
        .property("createdTime", time())
        .property("lastUpdatedTime", time())
        .property(
            "definition",
            ObjectBuilder::new()
                .description(Some(
                    "Durable instances only: the definition the instance is pinned to.",
                ))
                .property("name", string().description(Some("`namespace/name`.")))
                .property("version", string())
                .property(
                    "hash",
                    string().description(Some("The SHA-256 of the definition's content.")),
                )
                .required("name")
                .required("version")
                .required("hash"),
        )
        .property(
            "historyEvents",
            ArrayBuilder::new()
                .items(Ref::from_schema_name("HistoryEvent"))
                .description(Some(
                    "With `showHistory=true`, for a durable instance: its history, oldest \
                     first (at most 1000 events).",
                )),
        )
        .into()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer)
}

/// Any JSON value (`{}`).
fn any() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::AnyValue)
}

/// Puts each workflow's input schema on its trigger's request body and its output schema on the
/// 200 answer, verbatim (see the module documentation for why this happens after serialising).
fn embed_schemas(doc: &mut Value, app: &App, prefix: &str) {
    for f in app.functions.iter().filter(|f| f.queue.is_none()) {
        let path = format!("/{prefix}/{}", f.route)
            .replace('~', "~0")
            .replace('/', "~1");
        for m in &f.methods {
            let op = format!("/paths/{path}/{}", m.to_ascii_lowercase());
            if let Some(s) = &f.workflow.input.schema {
                put(
                    doc,
                    &format!("{op}/requestBody/content/application~1json/schema"),
                    s.document(),
                );
            }
            if let Some(s) = &f.workflow.output.schema {
                put(
                    doc,
                    &format!("{op}/responses/200/content/application~1json/schema"),
                    s.document(),
                );
            }
        }
    }
}

fn put(doc: &mut Value, pointer: &str, schema: &Value) {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = schema.clone();
    }
}
