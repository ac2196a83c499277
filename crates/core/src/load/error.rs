//! Why a document could not be loaded.

/// What kind of problem a [`LoadError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// The text is not valid YAML or JSON.
    Syntax,
    /// The document does not follow the DSL (missing or mistyped fields, bad references,
    /// expressions that do not compile).
    Invalid,
    /// The document is valid DSL but uses a feature Baton does not run.
    Unsupported,
}

/// A load failure that names the file, the place in it and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub kind: LoadErrorKind,
    /// The file, when loading from one.
    pub file: Option<String>,
    /// Line and column (1-based), when the parser knows them.
    pub position: Option<(usize, usize)>,
    /// JSON pointer of the offending node, e.g. `/do/0/getPet/call`.
    pub path: String,
    pub message: String,
}

impl LoadError {
    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Self {
        Self::new(LoadErrorKind::Invalid, path, message)
    }

    pub(crate) fn unsupported(path: &str, message: impl Into<String>) -> Self {
        Self::new(LoadErrorKind::Unsupported, path, message)
    }

    /// An error of `kind` at `path`.
    pub fn new(kind: LoadErrorKind, path: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            file: None,
            position: None,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// Attaches the file name.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let Some((l, c)) = self.position {
                write!(f, ":{l}:{c}")?;
            }
            write!(f, ": ")?;
        } else if let Some((l, c)) = self.position {
            write!(f, "line {l}, column {c}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "at {}: ", self.path)?;
        }
        if self.kind == LoadErrorKind::Unsupported {
            write!(f, "unsupported feature: ")?;
        }
        write!(f, "{}", self.message)
    }
}
