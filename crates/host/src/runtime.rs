//! What the host hands its workflows besides their input: `$secrets`, read from `[secrets]`
//! once at start-up, and `$runtime.metadata`, which tells a workflow the host's own address so
//! it can call its sibling functions over HTTP.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::App;

/// One entry of `[secrets]`, as written. A string or a number is the value itself; a table
/// with an `env` key (and optionally `default`) or a `file` key is read from that
/// environment variable or file; any other table or array is a structured secret whose
/// members follow the same rules. `Debug` never shows a value.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretSpec(toml::Value);

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSpec(..)")
    }
}

/// Reads every secret: `env` looks variables up, `dir` is where relative `file` paths start.
/// An error names the secret (`secrets.api.token`) and what is missing, never a value.
pub fn resolve_secrets(
    specs: &BTreeMap<String, SecretSpec>,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Map<String, Value>, String> {
    specs
        .iter()
        .map(|(name, spec)| {
            let v = resolve(&spec.0, &format!("secrets.{name}"), dir, env)?;
            Ok((name.clone(), v))
        })
        .collect()
}

fn resolve(
    v: &toml::Value,
    at: &str,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => json!(n),
        toml::Value::Float(n) => json!(n),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| resolve(item, &format!("{at}[{i}]"), dir, env))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => {
            if let Some(var) = t.get("env") {
                let var = only_string(t, var, at, "env", &["env", "default"])?;
                let default = t.get("default").map(|d| {
                    d.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{at}.default must be a string"))
                });
                return match env(var) {
                    Some(value) => Ok(Value::String(value)),
                    None => match default {
                        Some(d) => Ok(Value::String(d?)),
                        None => Err(format!("{at}: the environment variable `{var}` is not set")),
                    },
                };
            }
            if let Some(file) = t.get("file") {
                let file = only_string(t, file, at, "file", &["file"])?;
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{at}: cannot read {}: {e}", path.display()))?;
                // The newline editors and `echo` leave is not part of the secret.
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                return Ok(Value::String(text.to_owned()));
            }
            Value::Object(
                t.iter()
                    .map(|(k, item)| {
                        Ok((k.clone(), resolve(item, &format!("{at}.{k}"), dir, env)?))
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
    })
}

/// The string under `key` of a source table that may hold only `allowed` keys.
fn only_string<'v>(
    t: &toml::Table,
    v: &'v toml::Value,
    at: &str,
    key: &str,
    allowed: &[&str],
) -> Result<&'v str, String> {
    if let Some(other) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "{at}: a secret read from `{key}` takes only {} (found `{other}`)",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    v.as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{at}.{key} must be a non-empty string"))
}

/// Every secret a workflow declares in `use.secrets` must be configured: a missing one is
/// found at start-up, not when an instance first reads it.
pub fn check_declared(app: &App, secrets: &Map<String, Value>) -> Result<(), String> {
    let mut names: Vec<&String> = app.workflows.keys().collect();
    names.sort();
    for name in names {
        for secret in &app.workflows[name].secrets {
            if !secrets.contains_key(secret) {
                return Err(format!(
                    "workflow `{name}` declares the secret `{secret}` in use.secrets, but baton.toml's [secrets] has no `{secret}`"
                ));
            }
        }
    }
    Ok(())
}

/// The URL the host's own routes answer on: `configured` (`[host] base_url`) if given, else
/// the bound address, with an unspecified address (`0.0.0.0`, `::`) replaced by loopback.
pub fn base_url(bound: SocketAddr, configured: Option<&str>) -> String {
    if let Some(url) = configured {
        return url.trim_end_matches('/').to_owned();
    }
    let ip = match bound.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

/// `$runtime.metadata`: `baseUrl` (the host) and `apiUrl` (the host with its route prefix,
/// so `${ $runtime.metadata.apiUrl + "/CheckZip" }` is the `CheckZip` function).
pub fn metadata(base_url: &str, route_prefix: &str) -> Value {
    let prefix = route_prefix.trim_matches('/');
    let api = if prefix.is_empty() {
        base_url.to_owned()
    } else {
        format!("{base_url}/{prefix}")
    };
    json!({"baseUrl": base_url, "apiUrl": api})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(text: &str) -> BTreeMap<String, SecretSpec> {
        #[derive(Deserialize)]
        struct File {
            secrets: BTreeMap<String, SecretSpec>,
        }
        toml::from_str::<File>(text).expect("toml").secrets
    }

    #[test]
    fn secrets_come_from_literals_variables_files_and_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token.txt"), "t0k3n\n").expect("write");
        let s = specs(
            r#"
            [secrets]
            plain = "p"
            fromEnv = { env = "API_KEY" }
            withDefault = { env = "UNSET", default = "" }
            fromFile = { file = "token.txt" }
            [secrets.checks]
            username = "ops"
            password = { env = "CHECKS_PASSWORD" }
            ports = [1, { env = "API_KEY" }]
            "#,
        );
        let env = |k: &str| match k {
            "API_KEY" => Some("k".to_owned()),
            "CHECKS_PASSWORD" => Some("pw".to_owned()),
            _ => None,
        };
        let got = resolve_secrets(&s, dir.path(), &env).expect("resolves");
        assert_eq!(
            Value::Object(got),
            json!({
                "plain": "p", "fromEnv": "k", "withDefault": "", "fromFile": "t0k3n",
                "checks": {"username": "ops", "password": "pw", "ports": [1, "k"]},
            })
        );
    }

    #[test]
    fn a_missing_source_is_named_without_any_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = |_: &str| None;
        let e = resolve_secrets(
            &specs("[secrets.api]\ntoken = { env = \"API_TOKEN\" }\n"),
            dir.path(),
            &none,
        )
        .expect_err("unset");
        assert_eq!(
            e,
            "secrets.api.token: the environment variable `API_TOKEN` is not set"
        );
        let e = resolve_secrets(
            &specs("[secrets]\nk = { file = \"nope\" }\n"),
            dir.path(),
            &none,
        )
        .expect_err("no file");
        assert!(e.starts_with("secrets.k: cannot read "), "{e}");
        let e = resolve_secrets(
            &specs("[secrets]\nk = { env = \"A\", file = \"b\" }\n"),
            dir.path(),
            &none,
        )
        .expect_err("two sources");
        assert!(
            e.contains("takes only `env` and `default` (found `file`)"),
            "{e}"
        );
        let shown = format!("{:?}", specs("[secrets]\nk = \"hunter2\"\n"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn the_base_url_is_the_bound_address_with_loopback_for_any() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(
            base_url(at("127.0.0.1:7071"), None),
            "http://127.0.0.1:7071"
        );
        assert_eq!(base_url(at("0.0.0.0:80"), None), "http://127.0.0.1:80");
        assert_eq!(base_url(at("[::]:8080"), None), "http://[::1]:8080");
        assert_eq!(
            base_url(at("0.0.0.0:80"), Some("https://fn.example.com/")),
            "https://fn.example.com"
        );
        assert_eq!(
            metadata("http://h:1", "/api/"),
            json!({"baseUrl": "http://h:1", "apiUrl": "http://h:1/api"})
        );
        assert_eq!(metadata("http://h:1", "")["apiUrl"], "http://h:1");
    }
}
