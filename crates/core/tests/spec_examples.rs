//! Every example of the specification either loads or is rejected, by name, as unsupported.

#![allow(clippy::expect_used, clippy::unwrap_used)] // helpers of tests may fail loudly

use std::path::PathBuf;

use baton_core::{Format, LoadErrorKind, NoResolver, load_str};

fn examples_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/serverless-workflow/examples");
    dir.is_dir().then_some(dir)
}

#[test]
fn every_spec_example_loads_or_is_rejected_by_name() {
    let Some(dir) = examples_dir() else {
        eprintln!(
            "SKIPPED: ../shared/serverless-workflow/examples is absent; spec examples were NOT checked"
        );
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("readable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() > 50,
        "expected the spec's examples, found {}",
        files.len()
    );
    let (mut loaded, mut rejected) = (0, 0);
    let mut wrong = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(f).expect("readable");
        match load_str(&text, Format::from_path(&name), &NoResolver) {
            Ok(_) => loaded += 1,
            Err(e) if e.kind == LoadErrorKind::Unsupported && !e.path.is_empty() => {
                rejected += 1;
                println!("{}", e.in_file(name));
            }
            Err(e) => wrong.push(e.in_file(name).to_string()),
        }
    }
    println!(
        "{loaded} loaded, {rejected} rejected as unsupported, of {}",
        files.len()
    );
    assert!(
        wrong.is_empty(),
        "examples that failed for another reason:\n{}",
        wrong.join("\n")
    );
}
