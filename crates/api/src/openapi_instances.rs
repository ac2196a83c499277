//! The instance routes in `GET /openapi.json`: status, listing, history, management and purge
//! (docs/instances.md). They are described once for each place they are mounted
//! (`instance_routes` in lib.rs): under the route prefix, and again under
//! `/runtime/webhooks/durabletask` for Durable Functions clients. The two copies differ only in
//! their paths, tags and operation ids, which must be unique across the document.

use baton_host::App;
use serde_json::json;
use utoipa::openapi::content::{Content, ContentBuilder};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem,
    PathItemBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    ArrayBuilder, ComponentsBuilder, ObjectBuilder, Ref, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{PathsBuilder, RefOr, Required};

use super::{
    JSON, PROBLEM, accepted, any, host_keys, instance_keys, integer, json_response, problem,
    retry_after, string, with_header,
};
use crate::durable::CONTINUATION;

/// Where Durable Functions clients look for the instance routes.
const WEBHOOK: &str = "/runtime/webhooks/durabletask";

/// The management requests that take only a `reason`: path segment, operation id, summary,
/// what it does. The router matches them as one `{action}` segment, but each is its own path
/// here, because a client calls them by name and the set is closed.
const ACTIONS: [(&str, &str, &str, &str); 4] = [
    (
        "terminate",
        "terminateInstance",
        "Terminates an instance",
        "The instance ends as Terminated.",
    ),
    (
        "suspend",
        "suspendInstance",
        "Suspends an instance",
        "The instance stops taking steps; what arrives meanwhile (activity results, fired \
         timers, events) is kept and applied on resume.",
    ),
    (
        "resume",
        "resumeInstance",
        "Resumes an instance",
        "A Suspended instance takes steps again, first applying what arrived while it was \
         suspended. Resuming an instance that is not suspended changes nothing.",
    ),
    (
        "rewind",
        "rewindInstance",
        "Rewinds a failed instance",
        "A Failed instance runs again from the operation that failed; what had succeeded \
         before is not run again.",
    ),
];

/// One mount of the instance routes.
struct Base {
    /// What the paths start with (`/api`).
    root: String,
    tag: &'static str,
    /// Appended to every operation id, so that the two mounts' ids differ.
    suffix: &'static str,
}

impl Base {
    fn operation(&self, id: &str, summary: &str) -> OperationBuilder {
        OperationBuilder::new()
            .operation_id(Some(format!("{id}{}", self.suffix)))
            .tag(self.tag)
            .summary(Some(summary))
    }
}

/// Adds the instance routes, under both mounts, to `paths`.
pub(super) fn paths(mut paths: PathsBuilder, app: &App, prefix: &str) -> PathsBuilder {
    let bases = [
        Base {
            root: format!("/{prefix}"),
            tag: "instances",
            suffix: "",
        },
        Base {
            root: WEBHOOK.to_owned(),
            tag: "durable-functions-compat",
            suffix: "DurableTask",
        },
    ];
    for b in &bases {
        let instance = format!("{}/instances/{{id}}", b.root);
        paths = paths
            .path(format!("{}/instances", b.root), collection(b))
            .path(&instance, one(b, app))
            .path(format!("{instance}/history"), history(b))
            .path(
                format!("{instance}/raiseEvent/{{eventName}}"),
                raise_event(b),
            );
        for (segment, id, summary, what) in ACTIONS {
            paths = paths.path(
                format!("{instance}/{segment}"),
                action(b, segment, id, summary, what),
            );
        }
    }
    paths
}

/// `/instances`: the listing (GET) and the bulk purge (DELETE).
fn collection(b: &Base) -> PathItem {
    let list = b
        .operation("listInstances", "Lists instances")
        .description(Some(
            "The status objects of the durable instances that match every given filter, newest \
             first, a page at a time. When more remain, the answer carries \
             `x-ms-continuation-token`: send it back (as that header or as \
             `continuationToken`) for the next page. Needs a host key.",
        ))
        .parameters(Some(filters()))
        .parameter(top(100))
        .parameter(continuation_query())
        .parameter(continuation_header())
        .parameter(flag(
            "showInput",
            true,
            "`false` leaves each instance's `input` out (`null`).",
        ))
        .response(
            "200",
            paged(json_response(
                "A page of status objects.",
                ArrayBuilder::new().items(Ref::from_schema_name("InstanceStatus")),
            )),
        )
        .response(
            "400",
            problem(
                "A parameter is not valid (`parameter` names it): an unknown status, a time \
                 that is not RFC 3339, or a continuation token this server did not give.",
            ),
        )
        .response("404", problem(NO_STORE));
    let purge = b
        .operation("purgeInstances", "Purges finished instances")
        .description(Some(
            "Deletes every finished instance that matches every given filter, with its \
             history. Needs a host key.",
        ))
        .parameters(Some(filters()))
        .response("200", purged("How many instances were deleted."))
        .response(
            "400",
            problem(
                "A parameter is not valid (`parameter` names it): an unknown status, a status \
                 that is not finished, or a time that is not RFC 3339.",
            ),
        )
        .response("404", problem(NO_STORE));
    PathItemBuilder::new()
        .operation(HttpMethod::Get, managed(list).build())
        .operation(HttpMethod::Delete, managed(purge).build())
        .build()
}

const NO_STORE: &str = "This host runs no durable functions, so it keeps no instances.";
const UNKNOWN: &str = "No such instance (or this host runs no durable functions).";
const FINISHED: &str = "The instance has finished (Completed, Failed or Terminated).";

/// `/instances/{id}`: the status (GET) and the purge of one instance (DELETE).
fn one(b: &Base, app: &App) -> PathItem {
    let status = b
        .operation("getInstanceStatus", "The status of an instance")
        .description(Some(
            "Open to a host key and to the keys of the function that started the instance (no \
             key if it is anonymous). Finished express instances are forgotten after the \
             retention time; durable ones are kept until purged.",
        ))
        .parameter(id())
        .parameter(flag(
            "showHistory",
            false,
            "`true` adds `historyEvents` (durable instances).",
        ))
        .parameter(flag(
            "showInput",
            true,
            "`false` leaves `input` out (`null`).",
        ))
        .parameter(flag(
            "returnInternalServerErrorOnFailure",
            false,
            "`true` answers a Failed instance with 500 rather than 200.",
        ))
        .response(
            "200",
            json_response(
                "Finished; `runtimeStatus` says how (for a Failed instance, `output` is the \
                 problem document of its error).",
                Ref::from_schema_name("InstanceStatus"),
            ),
        )
        .response(
            "202",
            accepted(
                "the status so far (Pending, Running or Suspended)",
                Ref::from_schema_name("InstanceStatus"),
            ),
        )
        .response(
            "401",
            problem("No key, or a key that is not valid for this instance."),
        )
        .response(
            "404",
            problem("No such instance (unknown, or finished and forgotten)."),
        )
        .response(
            "500",
            ResponseBuilder::new()
                .description(
                    "Failed, and `returnInternalServerErrorOnFailure=true`: the status object. \
                     Or the store failed: a problem document.",
                )
                .content(JSON, content(Ref::from_schema_name("InstanceStatus")))
                .content(PROBLEM, content(Ref::from_schema_name("Problem")))
                .build(),
        )
        .response("503", busy())
        .securities(Some(instance_keys(app)));
    let purge = b
        .operation("purgeInstance", "Purges an instance")
        .description(Some(
            "Deletes a finished instance and its history. Needs a host key.",
        ))
        .parameter(id())
        .response("200", purged("Deleted (`instancesDeleted` is 1)."))
        .response("404", problem(UNKNOWN))
        .response(
            "412",
            problem("The instance has not finished (terminate it first)."),
        );
    PathItemBuilder::new()
        .operation(HttpMethod::Get, status.build())
        .operation(HttpMethod::Delete, managed(purge).build())
        .build()
}

/// `/instances/{id}/history`.
fn history(b: &Base) -> PathItem {
    let op = b
        .operation("getInstanceHistory", "The history of an instance")
        .description(Some(
            "The instance's history events, oldest first, a page at a time (paged with \
             `x-ms-continuation-token` like the listing). Needs a host key.",
        ))
        .parameter(id())
        .parameter(top(1000))
        .parameter(continuation_query())
        .parameter(continuation_header())
        .response(
            "200",
            paged(json_response(
                "A page of events.",
                Ref::from_schema_name("InstanceHistory"),
            )),
        )
        .response(
            "400",
            problem("`continuationToken` is not a token this server gave."),
        )
        .response("404", problem(UNKNOWN));
    PathItem::new(HttpMethod::Get, managed(op))
}

/// `/instances/{id}/{segment}` for one of [`ACTIONS`].
fn action(b: &Base, segment: &str, id_: &str, summary: &str, what: &str) -> PathItem {
    let mut op = b
        .operation(id_, summary)
        .description(Some(format!(
            "{what} The request is recorded and the instance acts on it as its next step. Needs \
             a host key."
        )))
        .parameter(id())
        .parameter(query(
            "reason",
            string(),
            "Why, in words; recorded with the request.",
        ))
        .response("202", recorded())
        .response("404", problem(UNKNOWN));
    // A rewind is for a Failed instance, which is finished; the others are for one that is not.
    op = if segment == "rewind" {
        op.response("412", problem("The instance is not Failed."))
    } else {
        op.response("410", problem(FINISHED))
    };
    PathItem::new(HttpMethod::Post, managed(op))
}

/// `/instances/{id}/raiseEvent/{eventName}`.
fn raise_event(b: &Base) -> PathItem {
    let op = b
        .operation("raiseInstanceEvent", "Sends an event to an instance")
        .description(Some(
            "Delivers a CloudEvent of type `eventName`, with the body as its data (`null` \
             without a body), to the instance's `listen` tasks. Needs a host key.",
        ))
        .parameter(id())
        .parameter(
            ParameterBuilder::new()
                .name("eventName")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The event's `type`."))
                .schema(Some(string())),
        )
        .request_body(Some(
            RequestBodyBuilder::new()
                .description(Some("The event's data."))
                .required(Some(Required::False))
                .content(JSON, content(any()))
                .build(),
        ))
        .response("202", recorded())
        .response(
            "400",
            problem("The body is empty, not JSON, or nested too deep."),
        )
        .response("404", problem(UNKNOWN))
        .response("410", problem(FINISHED))
        .response("413", problem("The body is larger than the host's limit."))
        .response(
            "415",
            problem("The body is not `application/json` (or `application/*+json`)."),
        );
    PathItem::new(HttpMethod::Post, managed(op))
}

/// What every management route shares: a host key, and the store's answers.
fn managed(op: OperationBuilder) -> OperationBuilder {
    op.response("401", problem("No key, or a key that is not a host key."))
        .response("503", busy())
        .securities(Some(host_keys()))
}

fn busy() -> Response {
    retry_after(problem("The store is unavailable for a moment."))
}

/// A 202 with an empty body.
fn recorded() -> Response {
    ResponseBuilder::new()
        .description("Recorded; the instance acts on it as its next step.")
        .build()
}

fn purged(description: &str) -> Response {
    json_response(description, Ref::from_schema_name("Purged"))
}

/// A page of a listing: the token of the next one, when more remain.
fn paged(r: Response) -> Response {
    with_header(
        r,
        CONTINUATION,
        "Present when more remain: send it back for the next page.",
    )
}

fn content(schema: impl Into<RefOr<Schema>>) -> Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn id() -> ParameterBuilder {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The instance's id."))
        .schema(Some(string()))
}

fn query(name: &str, schema: ObjectBuilder, description: &str) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
}

fn flag(name: &str, default: bool, description: &str) -> ParameterBuilder {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .default(Some(json!(default)));
    query(name, schema, description)
}

fn top(default: u32) -> ParameterBuilder {
    let schema = integer()
        .minimum(Some(1))
        .maximum(Some(1000))
        .default(Some(json!(default)));
    query("top", schema, "The most items in a page (at most 1000).")
}

fn continuation_query() -> ParameterBuilder {
    query(
        "continuationToken",
        string(),
        "The `x-ms-continuation-token` of the previous page.",
    )
}

fn continuation_header() -> ParameterBuilder {
    ParameterBuilder::new()
        .name(CONTINUATION)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "The `x-ms-continuation-token` of the previous page (instead of \
             `continuationToken`).",
        ))
        .schema(Some(string()))
}

/// The filters of a listing and of a bulk purge.
fn filters() -> Vec<Parameter> {
    let time = || string().format(Some(SchemaFormat::Custom("date-time".to_owned())));
    vec![
        query(
            "runtimeStatus",
            string(),
            "Comma-separated statuses (Pending, Running, Suspended, Completed, Failed, \
             Terminated). A purge takes only finished ones and defaults to all three.",
        )
        .build(),
        query("name", string(), "The function that started the instance.").build(),
        query(
            "createdTimeFrom",
            time(),
            "Created at or after this time (RFC 3339).",
        )
        .build(),
        query(
            "createdTimeTo",
            time(),
            "Created at or before this time (RFC 3339).",
        )
        .build(),
        query("instanceIdPrefix", string(), "The id starts with this.").build(),
    ]
}

/// The schemas only these routes answer with.
pub(super) fn schemas(c: ComponentsBuilder) -> ComponentsBuilder {
    let time = string().format(Some(SchemaFormat::Custom("date-time".to_owned())));
    let event = ObjectBuilder::new()
        .property(
            "seq",
            integer().description(Some("Its place in the history, from 1.")),
        )
        .property("at", time)
        .property(
            "kind",
            string().description(Some(
                "`ExecutionStarted`, `ActivityScheduled`, `EventRaised`, …",
            )),
        )
        .property("data", any())
        .required("seq")
        .required("at")
        .required("kind");
    let history = ObjectBuilder::new()
        .property("instanceId", string())
        .property(
            "events",
            ArrayBuilder::new().items(Ref::from_schema_name("HistoryEvent")),
        )
        .required("instanceId")
        .required("events");
    let purged = ObjectBuilder::new()
        .property("instancesDeleted", integer())
        .required("instancesDeleted");
    c.schema("HistoryEvent", event)
        .schema("InstanceHistory", history)
        .schema("Purged", purged)
}
