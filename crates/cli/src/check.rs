//! `baton check`: load documents without running them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::files;

pub fn check(path: &Path) -> ExitCode {
    let files = match workflow_files(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    if files.is_empty() {
        eprintln!(
            "{}: no workflow files (*.yaml, *.yml, *.json) found",
            path.display()
        );
        return ExitCode::from(2);
    }
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for f in &files {
        match files::load_workflow(f) {
            Ok(wf) => println!(
                "ok      {}  ({}, {} tasks)",
                f.display(),
                wf.label(),
                wf.tasks().count()
            ),
            Err(e) => {
                failed += 1;
                let _ = writeln!(out, "FAILED  {e}");
            }
        }
    }
    let _ = writeln!(out, "{} checked, {} failed", files.len(), failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn workflow_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = if path.join("workflows").is_dir() {
        path.join("workflows")
    } else {
        path.to_path_buf()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}
