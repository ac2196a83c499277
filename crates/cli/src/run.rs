//! `baton run`: one instance in-process.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use baton_core::Format;
use baton_core::interp::Status;
use baton_engine::outbound::AddressPolicy;
use baton_engine::{HttpOptions, Runner};
use serde_json::Value;

use crate::{files, problem};

pub fn run(
    file: &Path,
    input: Option<&str>,
    secrets: Option<&Path>,
    allow: Vec<ipnet::IpNet>,
) -> ExitCode {
    let wf = match files::load_workflow(file) {
        Ok(wf) => wf,
        Err(e) => {
            problem::print(&problem::from_load(&e));
            return ExitCode::from(2);
        }
    };
    let input = match read_input(input) {
        Ok(v) => v,
        Err(p) => {
            problem::print(&p);
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            problem::print(&problem::usage("Cannot start the runtime", e));
            return ExitCode::from(2);
        }
    };
    let secrets = match secrets
        .map(|p| read_input(Some(&p.to_string_lossy())))
        .transpose()
    {
        Ok(None) => serde_json::Map::new(),
        Ok(Some(Value::Object(m))) => m,
        Ok(Some(_)) => {
            problem::print(&problem::usage(
                "Bad secrets",
                "--secrets must hold a JSON object of secrets by name",
            ));
            return ExitCode::from(2);
        }
        Err(p) => {
            problem::print(&p);
            return ExitCode::from(2);
        }
    };
    let http = HttpOptions {
        policy: AddressPolicy::allowing(allow),
        ..HttpOptions::default()
    };
    let runner = match Runner::builder().secrets(secrets).http(http).build() {
        Ok(r) => r,
        Err(e) => {
            problem::print(&problem::usage("Cannot start the engine", e));
            return ExitCode::from(2);
        }
    };
    let outcome = rt.block_on(runner.run(&wf, input));
    match (outcome.status, outcome.output, outcome.error) {
        (Status::Completed, Some(output), _) => {
            // A closed pipe (`| head`) is not the workflow's failure.
            let text = serde_json::to_string_pretty(&output).unwrap_or_else(|_| output.to_string());
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        (_, _, Some(error)) => {
            problem::print(&problem::from_fault(&error));
            ExitCode::from(1)
        }
        (status, _, None) => {
            problem::print(&problem::usage(
                "The workflow did not complete",
                status.as_str(),
            ));
            ExitCode::from(1)
        }
    }
}

fn read_input(input: Option<&str>) -> Result<Value, Value> {
    let (text, name) = match input {
        None => return Ok(Value::Object(Default::default())),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| problem::usage("Cannot read the input", e))?;
            (s, "-".to_owned())
        }
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| problem::usage("Cannot read the input", format!("{path}: {e}")))?,
            path.to_owned(),
        ),
    };
    let format = if name == "-" {
        Format::Json
    } else {
        Format::from_path(&name)
    };
    let format = if format == Format::Json || text.trim_start().starts_with(['{', '[']) {
        Format::Json
    } else {
        format
    };
    baton_core::load::parse_text(&text, format)
        .map_err(|e| problem::usage("The input is not valid JSON", e.in_file(name)))
}
