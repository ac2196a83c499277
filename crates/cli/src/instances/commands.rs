//! Each `baton instances` command: build the request, send it, print the answer.

use std::io::Write;

use reqwest::{Method, Url};
use serde_json::Value;

use super::client::{Client, Error, Pages, Paging};
use super::{Filter, InstancesCommand, Manage, Pager, args, render};

pub async fn run(client: &Client, json: bool, command: &InstancesCommand) -> Result<(), Error> {
    match command {
        InstancesCommand::List {
            filter,
            prefix_id,
            pager,
            limit,
        } => {
            let mut query = filter_query(filter);
            if let Some(p) = prefix_id {
                query.push(("instanceIdPrefix", p.clone()));
            }
            let url = client.url(&[], &query);
            let pages = fetch(client, &url, pager, *limit, |doc| doc.as_array()).await?;
            if json {
                out(&serde_json::to_string(&pages.items).unwrap_or_default());
                more_on_stderr("instances", &pages);
            } else {
                out(render::instances(&pages.items).trim_end());
                more_on_stdout("instances", &pages);
            }
        }
        InstancesCommand::Show { id, history } => {
            let query = if *history {
                vec![("showHistory", "true".to_owned())]
            } else {
                Vec::new()
            };
            let url = client.url(&[id], &query);
            let answer = client.send(Method::GET, &url, None, None).await?;
            if json {
                out(&String::from_utf8_lossy(&answer.body));
                return Ok(());
            }
            let doc = answer.json(&url)?;
            let mut text = render::status(&doc);
            if let Some(events) = doc.get("historyEvents").and_then(Value::as_array) {
                text.push_str("history:\n");
                text.push_str(&render::history(events, width()));
            }
            out(text.trim_end());
        }
        InstancesCommand::History { id, pager } => {
            let url = client.url(&[id, "history"], &[]);
            let pages = fetch(client, &url, pager, None, |doc| {
                doc.get("events").and_then(Value::as_array)
            })
            .await?;
            if json {
                let mut doc = pages.first.clone();
                if let Value::Object(m) = &mut doc {
                    m.insert("events".to_owned(), Value::Array(pages.items.clone()));
                }
                out(&doc.to_string());
                more_on_stderr("events", &pages);
            } else {
                out(render::history(&pages.items, width()).trim_end());
                more_on_stdout("events", &pages);
            }
        }
        InstancesCommand::Terminate(m) => manage(client, json, "terminate", m).await?,
        InstancesCommand::Suspend(m) => manage(client, json, "suspend", m).await?,
        InstancesCommand::Resume(m) => manage(client, json, "resume", m).await?,
        InstancesCommand::Rewind(m) => manage(client, json, "rewind", m).await?,
        InstancesCommand::Raise { id, event, data } => {
            let body = match data {
                Some(d) => d.read().map_err(Error::Usage)?,
                None => "null".to_owned(),
            };
            let url = client.url(&[id, "raiseEvent", event], &[]);
            let answer = client.send(Method::POST, &url, None, Some(body)).await?;
            if json {
                print_body(&answer.body);
            } else {
                out(&format!("{id}: event {event} accepted"));
            }
        }
        InstancesCommand::Purge { id, filter } => {
            let url = match id {
                Some(id) => client.url(&[id], &[]),
                None => client.url(&[], &filter_query(filter)),
            };
            let answer = client.send(Method::DELETE, &url, None, None).await?;
            if json {
                print_body(&answer.body);
                return Ok(());
            }
            let doc = answer.json(&url)?;
            let n = doc
                .get("instancesDeleted")
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::Unexpected {
                    url: url.to_string(),
                    what: "the answer has no instancesDeleted".to_owned(),
                })?;
            out(&deleted(n));
        }
    }
    Ok(())
}

/// terminate, suspend, resume, rewind: a POST with the reason, 202 when recorded.
async fn manage(client: &Client, json: bool, verb: &str, m: &Manage) -> Result<(), Error> {
    let query: Vec<(&str, String)> = m.reason.iter().map(|r| ("reason", r.clone())).collect();
    let url = client.url(&[&m.id, verb], &query);
    let answer = client.send(Method::POST, &url, None, None).await?;
    if json {
        print_body(&answer.body);
    } else {
        out(&accepted(&m.id, verb, m.reason.as_deref()));
    }
    Ok(())
}

async fn fetch(
    client: &Client,
    url: &Url,
    pager: &Pager,
    limit: Option<u32>,
    items: impl Fn(&Value) -> Option<&Vec<Value>>,
) -> Result<Pages, Error> {
    let paging = Paging {
        top: pager.top,
        all: pager.all,
        limit,
    };
    client
        .pages(url, paging, pager.continuation_token.clone(), items)
        .await
}

fn filter_query(f: &Filter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(s) = args::status_filter(&f.statuses) {
        q.push(("runtimeStatus", s));
    }
    if let Some(n) = &f.name {
        q.push(("name", n.clone()));
    }
    if let Some(t) = &f.from {
        q.push(("createdTimeFrom", t.clone()));
    }
    if let Some(t) = &f.to {
        q.push(("createdTimeTo", t.clone()));
    }
    q
}

/// `abc: terminate accepted (reason: done)`.
pub fn accepted(id: &str, verb: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{id}: {verb} accepted (reason: {r})"),
        None => format!("{id}: {verb} accepted"),
    }
}

pub fn deleted(n: u64) -> String {
    format!("{n} instance{} deleted", if n == 1 { "" } else { "s" })
}

fn width() -> usize {
    render::terminal_width(std::env::var("COLUMNS").ok().as_deref())
}

/// A closed pipe (`| head`) is not the command's failure.
fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// The server's body as is; management answers have none, and then nothing is printed.
fn print_body(body: &[u8]) {
    if !body.iter().all(u8::is_ascii_whitespace) {
        out(String::from_utf8_lossy(body).trim_end());
    }
}

fn more_on_stdout(what: &str, pages: &Pages) {
    if let Some(t) = &pages.continuation {
        out(&render::more(what, t));
    }
}

/// With `--json` standard output holds one document, so the hint goes to standard error.
fn more_on_stderr(what: &str, pages: &Pages) {
    if let Some(t) = &pages.continuation {
        eprintln!("{}", render::more(what, t));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::InstancesArgs;
    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstancesArgs,
    }

    fn parse(line: &[&str]) -> Result<InstancesArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("baton").chain(line.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn list_filters_become_the_api_query() {
        let a = parse(&[
            "list",
            "--status",
            "running,FAILED",
            "--status",
            "suspended",
            "--name",
            "Slow",
            "--from",
            "2026-01-02T03:04:05Z",
            "--prefix-id",
            "ab",
            "--top",
            "10",
            "--all",
        ])
        .unwrap();
        let InstancesCommand::List {
            filter,
            prefix_id,
            pager,
            limit,
        } = &a.command
        else {
            panic!("not list");
        };
        assert_eq!(
            filter_query(filter),
            [
                ("runtimeStatus", "Running,Failed,Suspended".to_owned()),
                ("name", "Slow".to_owned()),
                ("createdTimeFrom", "2026-01-02T03:04:05.000Z".to_owned()),
            ]
        );
        assert_eq!(prefix_id.as_deref(), Some("ab"));
        assert_eq!((pager.top, pager.all, *limit), (Some(10), true, None));
        assert_eq!(a.url.as_str(), "http://127.0.0.1:7071/");
        assert_eq!(a.prefix, "api");
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let a = parse(&["show", "x", "--json", "--url", "http://h:1", "--key", "k"]).unwrap();
        assert!(a.json);
        assert_eq!(a.url.as_str(), "http://h:1/");
        assert_eq!(a.key.as_deref(), Some("k"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for line in [
            &["list", "--status", "sleeping"][..],
            &["list", "--top", "0"],
            &["list", "--top", "1001"],
            &["list", "--limit", "0"],
            &["list", "--from", "last tuesday"],
            &["raise", "x", "go", "--data", "{oops"],
            &["show"],
            &["list", "--url", "localhost"],
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{line:?}: {e}");
        }
    }

    #[test]
    fn purge_takes_an_id_or_filters_but_not_both_nor_neither() {
        assert!(parse(&["purge", "x"]).is_ok());
        assert!(parse(&["purge", "--status", "completed"]).is_ok());
        assert!(parse(&["purge", "--name", "Slow", "--to", "1h"]).is_ok());
        assert!(parse(&["purge"]).is_err());
        assert!(parse(&["purge", "x", "--status", "failed"]).is_err());
    }

    #[test]
    fn confirmations_are_one_line() {
        assert_eq!(
            accepted("abc", "terminate", Some("done")),
            "abc: terminate accepted (reason: done)"
        );
        assert_eq!(accepted("abc", "resume", None), "abc: resume accepted");
        assert_eq!(deleted(1), "1 instance deleted");
        assert_eq!(deleted(0), "0 instances deleted");
    }
}
