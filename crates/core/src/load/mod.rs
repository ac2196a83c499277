//! Loading DSL documents: text → JSON value → compiled [`Workflow`].
//!
//! The loader is hand-written over `serde_json::Value` rather than derived, so that every
//! problem names the exact JSON pointer, unknown properties are refused (a typo never silently
//! disables a retry policy), and valid-but-unsupported features are rejected by name.
//! `docs/adr/0001-own-workflow-model.md` says why the `serverless_workflow_core` crate is not used.

mod error;
mod errors;
mod io_tasks;
mod tasks;

pub use error::{LoadError, LoadErrorKind};

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::expr::{ExprError, Template, VarNames};
use crate::model::{DataIn, DataOut, DocumentInfo, Schema, Task, TaskId, Workflow};
use crate::time::Duration;

/// Supplies external resources a document refers to (schemas by `resource.endpoint`).
/// The core does no IO: the shell reads files and hands them over through this trait.
pub trait Resolver {
    /// Returns the JSON document at `uri` (relative URIs are relative to the workflow file).
    fn resolve(&self, uri: &str) -> Result<Value, String>;
}

/// A resolver that refuses every external resource.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

impl Resolver for NoResolver {
    fn resolve(&self, uri: &str) -> Result<Value, String> {
        Err(format!("external resource `{uri}` cannot be resolved here"))
    }
}

/// The text format of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// Guesses the format from a file name (`.json` is JSON, anything else YAML).
    pub fn from_path(path: &str) -> Self {
        if path.to_ascii_lowercase().ends_with(".json") {
            Self::Json
        } else {
            Self::Yaml
        }
    }
}

/// Parses YAML or JSON text into a JSON value, with line and column on syntax errors.
pub fn parse_text(text: &str, format: Format) -> Result<Value, LoadError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| LoadError {
            kind: LoadErrorKind::Syntax,
            file: None,
            position: Some((e.line(), e.column())),
            path: String::new(),
            message: e.to_string(),
        }),
        // YAML 1.2 booleans only: `no`, `on`, `y` stay strings (a country code `NO` is not false).
        Format::Yaml => {
            serde_saphyr::from_str_with_options::<Value>(text, yaml_options()).map_err(|e| {
                LoadError {
                    kind: LoadErrorKind::Syntax,
                    file: None,
                    position: e
                        .location()
                        .map(|l| (l.line() as usize, l.column() as usize)),
                    path: String::new(),
                    message: first_line(&e.to_string()),
                }
            })
        }
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o
}

/// The parser's message without its own "error: line N column M:" prefix (the position is
/// reported separately).
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s);
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains("column") => rest.to_owned(),
        _ => line.to_owned(),
    }
}

/// Loads a workflow from text.
pub fn load_str(
    text: &str,
    format: Format,
    resolver: &dyn Resolver,
) -> Result<Workflow, LoadError> {
    let value = parse_text(text, format)?;
    load_value(value, resolver)
}

/// Loads a workflow from a parsed document.
pub fn load_value(value: Value, resolver: &dyn Resolver) -> Result<Workflow, LoadError> {
    let root = object(&value, "")?;
    check_keys(
        root,
        "",
        &[
            "document", "input", "use", "do", "timeout", "output", "schedule", "evaluate",
        ],
    )?;
    if root.contains_key("schedule") {
        return Err(LoadError::unsupported(
            "/schedule",
            "`schedule`: Baton starts workflows from triggers in baton.toml (HTTP, queues), not from the document",
        ));
    }
    if let Some(ev) = root.get("evaluate") {
        let lang = ev.get("language").and_then(Value::as_str).unwrap_or("jq");
        if lang != "jq" {
            return Err(LoadError::unsupported(
                "/evaluate/language",
                format!("expression language `{lang}` (only jq is supported)"),
            ));
        }
    }
    let document = document(root.get("document"))?;
    let mut cx = Loader::new(resolver);
    if let Some(u) = root.get("use") {
        cx.uses(u)?;
    }
    let scope = VarNames::default();
    let input = cx.data_in(root.get("input"), "/input", &scope)?;
    let output = cx.data_out(root.get("output"), "/output", &scope, "as")?;
    let timeout = cx.timeout(root.get("timeout"), "/timeout")?;
    let do_ = root
        .get("do")
        .ok_or_else(|| LoadError::invalid("", "a workflow needs a `do` list"))?;
    let root_list = cx.task_list(do_, "/do", &scope)?;
    let reads_raw_input = mentions(&value, "$workflow")
        || [&input.from, &output.as_]
            .into_iter()
            .flatten()
            .any(|t| t.mentions("$input"));
    Ok(Workflow {
        document,
        input,
        output,
        timeout,
        root: root_list,
        secrets: cx.secrets,
        tasks: cx.tasks,
        lists: cx.lists,
        reads_raw_input,
        source: Arc::new(value),
    })
}

/// True if some string (or key) of `v` contains `text`.
fn mentions(v: &Value, text: &str) -> bool {
    match v {
        Value::String(s) => s.contains(text),
        Value::Array(items) => items.iter().any(|x| mentions(x, text)),
        Value::Object(m) => m.iter().any(|(k, x)| k.contains(text) || mentions(x, text)),
        _ => false,
    }
}

fn document(v: Option<&Value>) -> Result<DocumentInfo, LoadError> {
    let v = v.ok_or_else(|| LoadError::invalid("", "a workflow needs a `document` section"))?;
    let m = object(v, "/document")?;
    check_keys(
        m,
        "/document",
        &[
            "dsl",
            "namespace",
            "name",
            "version",
            "title",
            "summary",
            "tags",
            "metadata",
        ],
    )?;
    let req = |k: &str| -> Result<String, LoadError> {
        m.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| LoadError::invalid(&format!("/document/{k}"), "a string is required"))
    };
    let dsl = req("dsl")?;
    if !dsl.starts_with("1.") {
        return Err(LoadError::unsupported(
            "/document/dsl",
            format!("DSL version {dsl} (Baton runs DSL 1.x)"),
        ));
    }
    let opt = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(DocumentInfo {
        dsl,
        namespace: req("namespace")?,
        name: req("name")?,
        version: req("version")?,
        title: opt("title"),
        summary: opt("summary"),
    })
}

/// Loader state while walking one document.
pub(crate) struct Loader<'r> {
    resolver: &'r dyn Resolver,
    pub(crate) tasks: Vec<Task>,
    pub(crate) lists: Vec<Vec<TaskId>>,
    pub(crate) errors: HashMap<String, Value>,
    pub(crate) retries: HashMap<String, Value>,
    pub(crate) timeouts: HashMap<String, Value>,
    pub(crate) authentications: HashMap<String, Value>,
    pub(crate) functions: HashMap<String, Value>,
    /// `use.secrets`: the only secrets the workflow may read.
    pub(crate) secrets: Vec<String>,
}

impl<'r> Loader<'r> {
    fn new(resolver: &'r dyn Resolver) -> Self {
        Self {
            resolver,
            tasks: Vec::new(),
            lists: Vec::new(),
            errors: HashMap::new(),
            retries: HashMap::new(),
            timeouts: HashMap::new(),
            authentications: HashMap::new(),
            functions: HashMap::new(),
            secrets: Vec::new(),
        }
    }

    fn uses(&mut self, v: &Value) -> Result<(), LoadError> {
        let m = object(v, "/use")?;
        check_keys(
            m,
            "/use",
            &[
                "authentications",
                "errors",
                "extensions",
                "functions",
                "retries",
                "secrets",
                "timeouts",
                "catalogs",
            ],
        )?;
        if m.contains_key("extensions") {
            return Err(LoadError::unsupported(
                "/use/extensions",
                "`use.extensions`",
            ));
        }
        if m.contains_key("catalogs") {
            return Err(LoadError::unsupported(
                "/use/catalogs",
                "`use.catalogs` (function catalogs)",
            ));
        }
        let named = |k: &str| -> Result<HashMap<String, Value>, LoadError> {
            match m.get(k) {
                None => Ok(HashMap::new()),
                Some(v) => Ok(object(v, &format!("/use/{k}"))?
                    .iter()
                    .map(|(n, d)| (n.clone(), d.clone()))
                    .collect()),
            }
        };
        self.errors = named("errors")?;
        self.retries = named("retries")?;
        self.timeouts = named("timeouts")?;
        self.authentications = named("authentications")?;
        self.functions = named("functions")?;
        if let Some(v) = m.get("secrets") {
            let list = v.as_array().ok_or_else(|| {
                LoadError::invalid("/use/secrets", "a list of secret names is required")
            })?;
            for (i, name) in list.iter().enumerate() {
                match name.as_str() {
                    Some(n) if !n.is_empty() => self.secrets.push(n.to_owned()),
                    _ => {
                        return Err(LoadError::invalid(
                            &format!("/use/secrets/{i}"),
                            "a secret's name must be a non-empty string",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn data_in(
        &self,
        v: Option<&Value>,
        path: &str,
        scope: &VarNames,
    ) -> Result<DataIn, LoadError> {
        let Some(v) = v else {
            return Ok(DataIn::default());
        };
        let m = object(v, path)?;
        check_keys(m, path, &["schema", "from"])?;
        Ok(DataIn {
            schema: m
                .get("schema")
                .map(|s| self.schema(s, &format!("{path}/schema")))
                .transpose()?,
            from: m
                .get("from")
                .map(|f| loose(f, &format!("{path}/from"), scope))
                .transpose()?,
        })
    }

    pub(crate) fn data_out(
        &self,
        v: Option<&Value>,
        path: &str,
        scope: &VarNames,
        key: &str,
    ) -> Result<DataOut, LoadError> {
        let Some(v) = v else {
            return Ok(DataOut::default());
        };
        let m = object(v, path)?;
        check_keys(m, path, &["schema", key])?;
        Ok(DataOut {
            schema: m
                .get("schema")
                .map(|s| self.schema(s, &format!("{path}/schema")))
                .transpose()?,
            as_: m
                .get(key)
                .map(|f| loose(f, &format!("{path}/{key}"), scope))
                .transpose()?,
        })
    }

    fn schema(&self, v: &Value, path: &str) -> Result<Schema, LoadError> {
        let m = object(v, path)?;
        check_keys(m, path, &["format", "document", "resource"])?;
        if let Some(f) = m.get("format").and_then(Value::as_str)
            && f != "json"
            && !f.starts_with("json:")
        {
            return Err(LoadError::unsupported(
                &format!("{path}/format"),
                format!("schema format `{f}` (only JSON Schema is supported)"),
            ));
        }
        let document = match (m.get("document"), m.get("resource")) {
            (Some(d), None) => d.clone(),
            (None, Some(r)) => {
                let uri = match r {
                    Value::Object(o) => o.get("endpoint").and_then(|e| match e {
                        Value::String(s) => Some(s.clone()),
                        Value::Object(eo) => {
                            eo.get("uri").and_then(Value::as_str).map(str::to_owned)
                        }
                        _ => None,
                    }),
                    _ => None,
                }
                .ok_or_else(|| {
                    LoadError::invalid(
                        &format!("{path}/resource"),
                        "`resource.endpoint` is required",
                    )
                })?;
                self.resolver
                    .resolve(&uri)
                    .map_err(|e| LoadError::invalid(&format!("{path}/resource"), e))?
            }
            _ => {
                return Err(LoadError::invalid(
                    path,
                    "a schema has exactly one of `document` and `resource`",
                ));
            }
        };
        let validator = jsonschema::validator_for(&document)
            .map_err(|e| LoadError::invalid(path, format!("not a valid JSON Schema: {e}")))?;
        Ok(Schema {
            validator: Arc::new(validator),
            document: Arc::new(document),
        })
    }

    pub(crate) fn timeout(
        &self,
        v: Option<&Value>,
        path: &str,
    ) -> Result<Option<Duration>, LoadError> {
        let Some(v) = v else { return Ok(None) };
        let (def, def_path) = match v {
            Value::String(name) => (
                self.timeouts.get(name).ok_or_else(|| {
                    LoadError::invalid(path, format!("no timeout named `{name}` in `use.timeouts`"))
                })?,
                format!("/use/timeouts/{name}"),
            ),
            other => (other, path.to_owned()),
        };
        let m = object(def, &def_path)?;
        check_keys(m, &def_path, &["after"])?;
        let after = m
            .get("after")
            .ok_or_else(|| LoadError::invalid(&def_path, "`after` is required"))?;
        Ok(Some(duration(after, &format!("{def_path}/after"))?))
    }
}

/// Parses a DSL duration: ISO 8601 text or `{days, hours, minutes, seconds, milliseconds}`.
pub(crate) fn duration(v: &Value, path: &str) -> Result<Duration, LoadError> {
    match v {
        Value::String(s) if crate::expr::strip_braces(s).is_some() => Err(LoadError::unsupported(
            path,
            "durations computed by expressions",
        )),
        Value::String(s) => Duration::parse_iso8601(s).map_err(|e| LoadError::invalid(path, e)),
        Value::Object(m) => {
            check_keys(
                m,
                path,
                &["days", "hours", "minutes", "seconds", "milliseconds"],
            )?;
            let mut ms: u64 = 0;
            for (k, unit) in [
                ("days", 86_400_000u64),
                ("hours", 3_600_000),
                ("minutes", 60_000),
                ("seconds", 1000),
                ("milliseconds", 1),
            ] {
                if let Some(n) = m.get(k) {
                    let n = n.as_u64().ok_or_else(|| {
                        LoadError::invalid(
                            &format!("{path}/{k}"),
                            "a non-negative integer is required",
                        )
                    })?;
                    ms = ms.saturating_add(n.saturating_mul(unit));
                }
            }
            if m.is_empty() {
                return Err(LoadError::invalid(
                    path,
                    "a duration needs at least one unit",
                ));
            }
            Ok(Duration::from_millis(ms))
        }
        _ => Err(LoadError::invalid(
            path,
            "a duration is an ISO 8601 string or an object",
        )),
    }
}

pub(crate) fn object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, LoadError> {
    v.as_object().ok_or_else(|| {
        LoadError::invalid(
            path,
            format!("an object is required, found {}", crate::expr::type_name(v)),
        )
    })
}

pub(crate) fn check_keys(
    m: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<(), LoadError> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(LoadError::invalid(
                &format!("{path}/{}", escape(k)),
                format!(
                    "unknown property `{k}` (expected one of: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Escapes a JSON-pointer segment.
pub(crate) fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

pub(crate) fn expr_err(path: &str, e: ExprError) -> LoadError {
    LoadError::invalid(path, e.to_string())
}

/// Compiles a field typed as a runtime expression.
pub(crate) fn loose(v: &Value, path: &str, scope: &VarNames) -> Result<Template, LoadError> {
    Template::compile_loose(v, scope).map_err(|e| expr_err(path, e))
}

/// Compiles a value that may embed `${ }` expressions.
pub(crate) fn template(v: &Value, path: &str, scope: &VarNames) -> Result<Template, LoadError> {
    Template::compile(v, scope).map_err(|e| expr_err(path, e))
}

#[cfg(test)]
mod tests;
