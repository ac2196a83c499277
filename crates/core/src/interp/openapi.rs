//! `call: openapi`: the document is fetched like any HTTP resource, then the operation named by
//! `operationId` is found in it and turned into the HTTP request that calls it. Both OpenAPI 3.x
//! (`servers`, `requestBody`) and Swagger 2.0 (`schemes`, `host`, `basePath`, `in: body`)
//! documents are read; local `$ref`s to parameters and request bodies are followed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ErrorKind, WorkflowError};
use crate::expr::{Bindings, Budget, ExprError};
use crate::model::{HttpOutput, OpenApiCall};

use super::call::{
    authorize, build_request, origin, percent_encode, resolve_location, scalar_text,
};
use super::{HttpRequest, HttpResponse, SecretAuth};

/// A `call: openapi` whose document has been asked for: what is needed to call the operation
/// once it arrives. Stored with the instance, like any frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingOperation {
    document_uri: String,
    operation_id: String,
    parameters: Map<String, Value>,
    /// The operation's literal `authorization`, if any.
    headers: Vec<(String, String)>,
    auth: Option<SecretAuth>,
    output: HttpOutput,
    redirect: bool,
    poll: bool,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Evaluates the task's arguments: the request for the document, and the operation to call
/// with what it says.
pub(crate) fn start(
    call: &OpenApiCall,
    input: &Value,
    vars: &dyn Bindings,
    budget: &Budget,
) -> Result<(HttpRequest, PendingOperation), ExprError> {
    let document = build_request(&call.document, input, vars, budget)?;
    let parameters = match &call.parameters {
        None => Map::new(),
        Some(t) => match t.eval(input, vars, budget)? {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    let mut headers = Vec::new();
    let auth = authorize(
        call.authentication.as_ref(),
        &mut headers,
        input,
        vars,
        budget,
    )?;
    let pending = PendingOperation {
        document_uri: document.uri.clone(),
        operation_id: call.operation_id.clone(),
        parameters,
        headers,
        auth,
        output: call.output,
        redirect: call.redirect,
        poll: call.poll,
    };
    Ok((document, pending))
}

/// The request calling the operation, from the document's answer.
pub(crate) fn operation(
    answer: &HttpResponse,
    op: &PendingOperation,
    task: &str,
) -> Result<HttpRequest, WorkflowError> {
    let fail = |kind: ErrorKind, detail: String| WorkflowError::new(kind, task, detail);
    if !(200..300).contains(&answer.status) {
        return Err(fail(
            ErrorKind::Communication,
            format!(
                "the OpenAPI document {} answered HTTP {}",
                op.document_uri, answer.status
            ),
        )
        .with_status(answer.status));
    }
    let doc = match &answer.content {
        Value::Object(_) => answer.content.clone(),
        // YAML, or JSON served without a JSON media type.
        Value::String(text) => crate::load::parse_text(text, crate::Format::Yaml)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                fail(
                    ErrorKind::Communication,
                    format!(
                        "{} is not an OpenAPI document (neither JSON nor YAML)",
                        op.document_uri
                    ),
                )
            })?,
        _ => {
            return Err(fail(
                ErrorKind::Communication,
                format!("{} is not an OpenAPI document", op.document_uri),
            ));
        }
    };
    let config = |detail: String| fail(ErrorKind::Configuration, detail);
    let (path, method, operation, item) = find(&doc, &op.operation_id).ok_or_else(|| {
        config(format!(
            "the OpenAPI document {} has no operation `{}`",
            op.document_uri, op.operation_id
        ))
    })?;
    let base = base_url(&doc, operation, item, &op.document_uri);

    // Path-level parameters, overridden by the operation's own (same name and location).
    let mut params: Vec<&Value> = Vec::new();
    for list in [item.get("parameters"), operation.get("parameters")] {
        for p in list.and_then(Value::as_array).into_iter().flatten() {
            let p = follow(&doc, p);
            let key = (p.get("name"), p.get("in"));
            params.retain(|q| (q.get("name"), q.get("in")) != key);
            params.push(p);
        }
    }
    let mut used: Vec<&str> = Vec::new();
    let mut uri_path = path.to_owned();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    let mut cookies = Vec::new();
    let mut body = None;
    for p in params {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let place = p.get("in").and_then(Value::as_str).unwrap_or_default();
        let required = place == "path" || p.get("required").and_then(Value::as_bool) == Some(true);
        let Some(value) = op.parameters.get(name).filter(|v| !v.is_null()) else {
            if required {
                return Err(fail(
                    ErrorKind::Validation,
                    format!(
                        "operation `{}` needs its {place} parameter `{name}`",
                        op.operation_id
                    ),
                ));
            }
            continue;
        };
        used.push(name);
        match place {
            "path" => {
                uri_path =
                    uri_path.replace(&format!("{{{name}}}"), &percent_encode(&scalar_text(value)));
            }
            "query" => match value {
                Value::Array(items) if explodes(p) => {
                    query.extend(items.iter().map(|v| (name.to_owned(), scalar_text(v))));
                }
                Value::Array(items) => query.push((name.to_owned(), joined(items, p))),
                v => query.push((name.to_owned(), scalar_text(v))),
            },
            "header" => headers.push((name.to_owned(), scalar_text(value))),
            "cookie" => cookies.push(format!("{name}={}", scalar_text(value))),
            "body" => body = Some(value.clone()),
            other => {
                return Err(config(format!(
                    "operation `{}`: parameters in `{other}` (`{name}`) are not supported",
                    op.operation_id
                )));
            }
        }
    }
    // OpenAPI 3's request body is given as the parameter `body`.
    if let Some(rb) = operation.get("requestBody").map(|rb| follow(&doc, rb)) {
        match op.parameters.get("body") {
            Some(v) => {
                used.push("body");
                body = Some(v.clone());
                // A JSON value is sent as JSON; an operation that takes no JSON gets its
                // first media type.
                if let Some(c) = rb.get("content").and_then(Value::as_object)
                    && !c.keys().any(|k| k.contains("json"))
                    && let Some(media) = c.keys().next()
                {
                    headers.push(("content-type".to_owned(), media.clone()));
                }
            }
            None if rb.get("required").and_then(Value::as_bool) == Some(true) => {
                return Err(fail(
                    ErrorKind::Validation,
                    format!(
                        "operation `{}` needs a request body (`body`)",
                        op.operation_id
                    ),
                ));
            }
            None => {}
        }
    }
    if let Some(unknown) = op
        .parameters
        .keys()
        .find(|k| !used.contains(&k.as_str()) && !declared(&doc, operation, item, k))
    {
        return Err(config(format!(
            "operation `{}` has no parameter `{unknown}`",
            op.operation_id
        )));
    }
    if !cookies.is_empty() {
        headers.push(("cookie".to_owned(), cookies.join("; ")));
    }
    headers.extend(op.headers.iter().cloned());
    Ok(HttpRequest {
        method: method.to_ascii_uppercase(),
        uri: format!("{}{uri_path}", base.trim_end_matches('/')),
        headers,
        query,
        body,
        redirect: op.redirect,
        output: op.output,
        poll: op.poll,
        auth: op.auth.clone(),
    })
}

/// `(path, method, operation, path item)` of the operation called `id`.
fn find<'d>(doc: &'d Value, id: &str) -> Option<(&'d str, &'d str, &'d Value, &'d Value)> {
    doc.get("paths")?
        .as_object()?
        .iter()
        .find_map(|(path, item)| {
            METHODS.iter().find_map(|m| {
                let op = item.get(*m)?;
                (op.get("operationId").and_then(Value::as_str) == Some(id)).then_some((
                    path.as_str(),
                    *m,
                    op,
                    item,
                ))
            })
        })
}

/// A local `$ref` (`#/components/parameters/x`, `#/parameters/x`) followed; anything else as is.
fn follow<'d>(doc: &'d Value, v: &'d Value) -> &'d Value {
    let mut v = v;
    // Bounded: a cycle of references ends here rather than looping.
    for _ in 0..8 {
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            Some(pointer) => match doc.pointer(pointer) {
                Some(target) => v = target,
                None => return v,
            },
            None => return v,
        }
    }
    v
}

/// Whether `name` is a parameter the operation declares (used or not, so an optional one left
/// null is not "unknown").
fn declared(doc: &Value, operation: &Value, item: &Value, name: &str) -> bool {
    [item.get("parameters"), operation.get("parameters")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .any(|p| follow(doc, p).get("name").and_then(Value::as_str) == Some(name))
        || (name == "body" && operation.get("requestBody").is_some())
}

/// Whether an array query parameter is sent as repeated `name=value` pairs: OpenAPI 3's form
/// style explodes by default; Swagger 2.0 does for `collectionFormat: multi`.
fn explodes(p: &Value) -> bool {
    match p.get("collectionFormat").and_then(Value::as_str) {
        Some(f) => f == "multi",
        None => p.get("explode").and_then(Value::as_bool).unwrap_or(
            // Swagger 2.0's default is `csv`; OpenAPI 3 parameters carry a `schema`.
            p.get("schema").is_some(),
        ),
    }
}

/// An array query value joined by its collection format's separator.
fn joined(items: &[Value], p: &Value) -> String {
    let sep = match p.get("collectionFormat").and_then(Value::as_str) {
        Some("ssv") => " ",
        Some("tsv") => "\t",
        Some("pipes") => "|",
        _ => match p.get("style").and_then(Value::as_str) {
            Some("spaceDelimited") => " ",
            Some("pipeDelimited") => "|",
            _ => ",",
        },
    };
    items.iter().map(scalar_text).collect::<Vec<_>>().join(sep)
}

/// Where the operation's path is appended: OpenAPI 3's first `servers` entry (the operation's,
/// its path's, or the document's; variables at their defaults; relative to the document's
/// URI), or Swagger 2.0's `schemes`, `host` and `basePath` (defaulting to the document's own).
fn base_url(doc: &Value, operation: &Value, item: &Value, document_uri: &str) -> String {
    let doc_origin = origin(document_uri).unwrap_or_default();
    if doc.get("swagger").is_some() {
        let doc_scheme = document_uri.split("://").next().unwrap_or("https");
        let schemes: Vec<&str> = operation
            .get("schemes")
            .or_else(|| doc.get("schemes"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let scheme = if schemes.is_empty() || schemes.contains(&doc_scheme) {
            doc_scheme
        } else {
            schemes[0]
        };
        let host = doc
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or_else(|| doc_origin.split("://").nth(1).unwrap_or_default());
        let base_path = doc.get("basePath").and_then(Value::as_str).unwrap_or("");
        return format!("{scheme}://{host}{base_path}");
    }
    let server = [operation, item, doc]
        .iter()
        .find_map(|v| v.get("servers")?.as_array()?.first());
    let Some(server) = server else {
        return doc_origin.to_owned();
    };
    let mut url = server
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    if let Some(vars) = server.get("variables").and_then(Value::as_object) {
        for (name, v) in vars {
            if let Some(d) = v.get("default") {
                url = url.replace(&format!("{{{name}}}"), &scalar_text(d));
            }
        }
    }
    resolve_location(document_uri, &url).unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pending(id: &str, parameters: Value) -> PendingOperation {
        PendingOperation {
            document_uri: "https://api.test/v2/swagger.json".to_owned(),
            operation_id: id.to_owned(),
            parameters: parameters.as_object().cloned().unwrap_or_default(),
            headers: Vec::new(),
            auth: None,
            output: HttpOutput::Content,
            redirect: false,
            poll: true,
        }
    }

    fn answer(doc: Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            content: doc,
            raw_base64: String::new(),
        }
    }

    fn swagger() -> Value {
        json!({
            "swagger": "2.0",
            "host": "pets.test",
            "basePath": "/v2",
            "schemes": ["https", "http"],
            "parameters": {"trace": {"name": "x-trace", "in": "header"}},
            "paths": {
                "/pet/findByStatus": {"get": {
                    "operationId": "findPetsByStatus",
                    "parameters": [
                        {"name": "status", "in": "query", "required": true, "type": "array", "collectionFormat": "multi"},
                        {"$ref": "#/parameters/trace"},
                    ],
                }},
                "/pet/{petId}": {
                    "parameters": [{"name": "petId", "in": "path", "required": true}],
                    "get": {"operationId": "getPetById"},
                    "post": {"operationId": "updatePet", "parameters": [
                        {"name": "body", "in": "body", "required": true},
                        {"name": "tags", "in": "query", "type": "array"},
                    ]},
                },
            },
        })
    }

    #[test]
    fn swagger_operations_become_requests() {
        let r = operation(
            &answer(swagger()),
            &pending(
                "findPetsByStatus",
                json!({"status": ["available", "sold"], "x-trace": 7}),
            ),
            "/do/0/t",
        )
        .expect("built");
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("GET", "https://pets.test/v2/pet/findByStatus")
        );
        assert_eq!(
            r.query,
            [
                ("status".to_owned(), "available".to_owned()),
                ("status".to_owned(), "sold".to_owned())
            ]
        );
        assert_eq!(r.headers, [("x-trace".to_owned(), "7".to_owned())]);

        let r = operation(
            &answer(swagger()),
            &pending(
                "updatePet",
                json!({"petId": "a b", "body": {"name": "Rex"}, "tags": ["x", "y"]}),
            ),
            "/do/0/t",
        )
        .expect("built");
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("POST", "https://pets.test/v2/pet/a%20b")
        );
        assert_eq!(r.body, Some(json!({"name": "Rex"})));
        assert_eq!(r.query, [("tags".to_owned(), "x,y".to_owned())]);
    }

    #[test]
    fn openapi3_servers_and_request_bodies_are_read() {
        let doc = json!({
            "openapi": "3.0.3",
            "servers": [{"url": "/{version}", "variables": {"version": {"default": "v3"}}}],
            "components": {"requestBodies": {"Pet": {"required": true, "content": {"application/json": {}}}}},
            "paths": {"/pet": {"post": {"operationId": "addPet", "requestBody": {"$ref": "#/components/requestBodies/Pet"}}}},
        });
        let r = operation(
            &answer(doc.clone()),
            &pending("addPet", json!({"body": {"n": 1}})),
            "t",
        )
        .expect("built");
        assert_eq!(r.uri, "https://api.test/v3/pet");
        assert_eq!(r.body, Some(json!({"n": 1})));
        let e = operation(&answer(doc), &pending("addPet", json!({})), "t").expect_err("no body");
        assert_eq!(e.kind(), Some(ErrorKind::Validation));
    }

    #[test]
    fn what_cannot_be_called_is_a_clear_error() {
        let doc = answer(swagger());
        let e = operation(&doc, &pending("nope", json!({})), "t").expect_err("missing");
        assert_eq!(
            e.detail.as_deref(),
            Some("the OpenAPI document https://api.test/v2/swagger.json has no operation `nope`")
        );
        let e = operation(&doc, &pending("getPetById", json!({})), "t").expect_err("no id");
        assert_eq!(
            e.detail.as_deref(),
            Some("operation `getPetById` needs its path parameter `petId`")
        );
        let e = operation(
            &doc,
            &pending("getPetById", json!({"petId": 1, "petid": 2})),
            "t",
        )
        .expect_err("typo");
        assert_eq!(
            e.detail.as_deref(),
            Some("operation `getPetById` has no parameter `petid`")
        );
        let mut missing = answer(Value::Null);
        missing.status = 404;
        let e = operation(&missing, &pending("getPetById", json!({})), "t").expect_err("404");
        assert_eq!((e.kind(), e.status), (Some(ErrorKind::Communication), 404));
        // A YAML document is read too.
        let yaml = answer(Value::String(
            "swagger: '2.0'\npaths:\n  /ping:\n    get: {operationId: ping}\n".to_owned(),
        ));
        let r = operation(&yaml, &pending("ping", json!({})), "t").expect("yaml");
        assert_eq!(r.uri, "https://api.test/ping");
    }
}
