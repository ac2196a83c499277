//! Reading workflow files and the resources they refer to.

use std::path::{Path, PathBuf};

use baton_core::{Format, LoadError, Resolver, Workflow, load_str};
use serde_json::Value;

/// Resolves `resource.endpoint` URIs to files relative to the workflow's folder (or the app's
/// `schemas/` folder). Remote URIs are refused: loading never reaches the network.
#[derive(Debug)]
pub struct FileResolver {
    base: PathBuf,
}

impl FileResolver {
    pub fn new(base: &Path) -> Self {
        Self {
            base: base.to_path_buf(),
        }
    }
}

impl Resolver for FileResolver {
    fn resolve(&self, uri: &str) -> Result<Value, String> {
        if uri.contains("://") && !uri.starts_with("file://") {
            return Err(format!(
                "`{uri}` is remote; Baton loads resources from the app folder only"
            ));
        }
        let rel = uri.trim_start_matches("file://");
        let candidates = [self.base.join(rel), self.base.join("..").join(rel)];
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            format!(
                "`{uri}` not found next to the workflow ({})",
                self.base.display()
            )
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let format = Format::from_path(&path.to_string_lossy());
        baton_core::load::parse_text(&text, format).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Why a workflow file could not be loaded.
#[derive(Debug)]
pub enum LoadFailure {
    /// The file could not be read at all (missing, a folder, no permission).
    Unreadable { file: String, reason: String },
    /// The file was read; its text is not a workflow Baton runs.
    Invalid(LoadError),
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadFailure::Unreadable { file, reason } => {
                write!(f, "{file}: cannot read the file: {reason}")
            }
            LoadFailure::Invalid(e) => e.fmt(f),
        }
    }
}

/// Loads a workflow file; errors name the file.
pub fn load_workflow(path: &Path) -> Result<Workflow, LoadFailure> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadFailure::Unreadable {
        file: name.clone(),
        reason: e.to_string(),
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&text, Format::from_path(&name), &FileResolver::new(&base))
        .map_err(|e| LoadFailure::Invalid(e.in_file(name)))
}
