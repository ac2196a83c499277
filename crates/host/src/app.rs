//! An app: `baton.toml`, `workflows/*.yaml|json` and `schemas/*.json`, from a folder or from
//! the copy of the sample app embedded in the binary.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_core::{Format, LoadError, Resolver, Workflow, load_str};
use include_dir::{Dir, include_dir};
use serde_json::Value;

use crate::config::{AuthLevel, Config, ConfigError, Durability, Mode};

static SAMPLE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../examples/person-validation");

/// Why an app could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Workflow(#[from] LoadError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{file}: {message}")]
    Binding { file: String, message: String },
}

/// Where an app's files come from.
trait Source {
    fn read(&self, rel: &str) -> Option<String>;
    fn list(&self, dir: &str) -> Vec<String>;
    fn describe(&self, rel: &str) -> String;
}

struct Folder(PathBuf);

impl Source for Folder {
    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.0.join(rel)).ok()
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.0.join(dir)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().to_str().map(|n| format!("{dir}/{n}")))
            .collect();
        names.sort();
        names
    }

    fn describe(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

struct Embedded(&'static Dir<'static>);

impl Source for Embedded {
    fn read(&self, rel: &str) -> Option<String> {
        self.0
            .get_file(rel)
            .and_then(|f| f.contents_utf8())
            .map(str::to_owned)
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let Some(d) = self.0.get_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = d
            .files()
            .filter_map(|f| f.path().to_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    fn describe(&self, rel: &str) -> String {
        format!("<embedded sample>/{rel}")
    }
}

/// Resolves schema references relative to the referring workflow (`../schemas/x.json`).
struct SourceResolver<'a> {
    source: &'a dyn Source,
    base: String,
    /// Every resource read, in order: part of what the workflow's behaviour depends on.
    read: RefCell<Vec<(String, String)>>,
}

impl Resolver for SourceResolver<'_> {
    fn resolve(&self, uri: &str) -> Result<Value, String> {
        if uri.contains("://") && !uri.starts_with("file://") {
            return Err(format!(
                "`{uri}` is remote; Baton loads resources from the app folder only"
            ));
        }
        let rel = normalize(&format!(
            "{}/{}",
            self.base,
            uri.trim_start_matches("file://")
        ))
        .ok_or_else(|| format!("`{uri}` points outside the app folder"))?;
        let text = self
            .source
            .read(&rel)
            .ok_or_else(|| format!("`{uri}` not found ({})", self.source.describe(&rel)))?;
        self.read.borrow_mut().push((rel.clone(), text.clone()));
        baton_core::load::parse_text(&text, Format::from_path(&rel)).map_err(|e| e.to_string())
    }
}

/// Joins `a/b/../c` into `a/c`; `None` if it climbs out of the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// A function: a trigger bound to a workflow.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// The route segment (`/api/<route>`).
    pub route: String,
    /// Upper-case methods.
    pub methods: Vec<String>,
    pub auth: AuthLevel,
    pub mode: Mode,
    pub durability: Durability,
    pub wait: baton_core::Duration,
    /// Seconds a 202 from the trigger asks callers to wait before polling.
    pub retry_after: u64,
    /// Triggered by this queue's messages instead of HTTP (no route is served).
    pub queue: Option<String>,
    /// With `queue`: how many messages are handled at once.
    pub concurrency: usize,
    pub workflow: Arc<Workflow>,
}

impl Function {
    /// True when its instances are kept in the store.
    pub fn is_durable(&self) -> bool {
        self.durability == Durability::Durable
    }
}

/// A loaded app.
#[derive(Debug, Clone)]
pub struct App {
    pub config: Config,
    /// Where it came from, for messages.
    pub origin: String,
    /// Where relative paths in `baton.toml` (`[secrets]` files) start: the app folder, or the
    /// working directory for the embedded sample.
    pub dir: PathBuf,
    /// Workflows by `document.name`.
    pub workflows: HashMap<String, Arc<Workflow>>,
    /// What each workflow (by `document.name`) was loaded from: its file's text followed by
    /// every schema it references, each preceded by its path. Durable instances are pinned to
    /// a hash of it.
    pub sources: HashMap<String, String>,
    /// Functions in name order.
    pub functions: Vec<Function>,
}

impl App {
    /// The person-validation sample app embedded in the binary.
    pub fn sample() -> Result<Self, AppError> {
        Self::load(
            &Embedded(&SAMPLE),
            "the embedded sample app".to_owned(),
            PathBuf::from("."),
        )
    }

    /// An app folder.
    pub fn from_dir(dir: &Path) -> Result<Self, AppError> {
        if !dir.is_dir() {
            return Err(AppError::Io {
                path: dir.display().to_string(),
                message: "not a folder".to_owned(),
            });
        }
        Self::load(
            &Folder(dir.to_path_buf()),
            dir.display().to_string(),
            dir.to_path_buf(),
        )
    }

    /// The HTTP-triggered function bound to `route`, compared case-insensitively as Azure
    /// Functions does.
    pub fn function(&self, route: &str) -> Option<&Function> {
        self.functions
            .iter()
            .find(|f| f.queue.is_none() && f.route.eq_ignore_ascii_case(route))
    }

    /// Whether the host needs its store: for durable functions or for queues.
    pub fn needs_store(&self) -> bool {
        !self.config.queues.is_empty() || self.functions.iter().any(Function::is_durable)
    }

    fn load(source: &dyn Source, origin: String, dir: PathBuf) -> Result<Self, AppError> {
        let config_text = source.read("baton.toml").unwrap_or_default();
        let config = Config::parse(&config_text, &source.describe("baton.toml"))?;
        let mut workflows = HashMap::new();
        let mut sources = HashMap::new();
        for rel in source.list("workflows") {
            if !matches!(rel.rsplit('.').next(), Some("yaml" | "yml" | "json")) {
                continue;
            }
            let text = source.read(&rel).ok_or_else(|| AppError::Io {
                path: source.describe(&rel),
                message: "unreadable".to_owned(),
            })?;
            let resolver = SourceResolver {
                source,
                base: "workflows".to_owned(),
                read: RefCell::new(Vec::new()),
            };
            let wf = load_str(&text, Format::from_path(&rel), &resolver)
                .map_err(|e| e.in_file(source.describe(&rel)))?;
            let name = wf.document.name.clone();
            let mut full = text.clone();
            for (path, schema) in resolver.read.into_inner() {
                full.push_str(&format!("\n{path}\n{schema}"));
            }
            sources.insert(name.clone(), full);
            if workflows.insert(name.clone(), Arc::new(wf)).is_some() {
                return Err(AppError::Binding {
                    file: source.describe(&rel),
                    message: format!("another workflow is also named `{name}`"),
                });
            }
        }
        let mut functions = Vec::new();
        for (name, f) in &config.functions {
            let workflow =
                workflows
                    .get(&f.workflow)
                    .cloned()
                    .ok_or_else(|| AppError::Binding {
                        file: source.describe("baton.toml"),
                        message: format!(
                            "functions.{name}.workflow: no workflow is named `{}` ({})",
                            f.workflow,
                            if workflows.is_empty() {
                                "the app's workflows/ folder has none".to_owned()
                            } else {
                                format!("workflows: {}", sorted_keys(&workflows))
                            }
                        ),
                    })?;
            let route = f.route.clone().unwrap_or_else(|| name.clone());
            if functions
                .iter()
                .any(|g: &Function| g.route.eq_ignore_ascii_case(&route))
            {
                return Err(AppError::Binding {
                    file: source.describe("baton.toml"),
                    message: format!("functions.{name}: route `{route}` is bound twice"),
                });
            }
            functions.push(Function {
                name: name.clone(),
                route,
                methods: f.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                auth: f.auth,
                mode: f.mode,
                durability: f.durability(),
                wait: f.wait.0,
                retry_after: f.retry_after.0.as_millis().div_ceil(1000),
                queue: f.queue.clone(),
                concurrency: f.concurrency(),
                workflow,
            });
        }
        Ok(Self {
            config,
            origin,
            dir,
            workflows,
            sources,
            functions,
        })
    }
}

fn sorted_keys<V>(m: &HashMap<String, V>) -> String {
    let mut k: Vec<&str> = m.keys().map(String::as_str).collect();
    k.sort_unstable();
    k.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_inside_the_app() {
        assert_eq!(
            normalize("workflows/../schemas/p.json").as_deref(),
            Some("schemas/p.json")
        );
        assert_eq!(normalize("workflows/../../etc/passwd"), None);
    }

    #[test]
    fn the_embedded_sample_loads() {
        let app = App::sample().expect("sample loads");
        assert!(app.workflows.contains_key("validate"));
        assert!(
            app.function("validate").is_some(),
            "routes match case-insensitively"
        );
    }

    #[test]
    fn bindings_to_missing_workflows_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("baton.toml"),
            "[functions.F]\nworkflow = \"nope\"\n",
        )
        .expect("write");
        let e = App::from_dir(dir.path()).expect_err("unbound");
        assert!(
            e.to_string()
                .ends_with("no workflow is named `nope` (the app's workflows/ folder has none)"),
            "{e}"
        );
        std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
        std::fs::write(
            dir.path().join("workflows/yes.yaml"),
            "document: {dsl: '1.0.0', namespace: t, name: yes, version: '1.0.0'}\n\
             do:\n  - a:\n      set: {ok: true}\n",
        )
        .expect("write");
        let e = App::from_dir(dir.path()).expect_err("unbound");
        assert!(
            e.to_string()
                .ends_with("no workflow is named `nope` (workflows: yes)"),
            "{e}"
        );
    }
}
