//! Loading the tasks that talk to the outside: `call` (HTTP and named functions) and `listen`.

use serde_json::{Map, Value};

use crate::expr::VarNames;
use crate::model::{
    AuthScheme, Authentication, EndpointUri, HttpCall, HttpOutput, ListenSpec, ListenStrategy,
    OpenApiCall, TaskKind,
};

use super::{LoadError, Loader, check_keys, escape, object, template};

/// A call's `metadata.asyncPattern`: on unless `false`.
fn async_pattern(m: &Map<String, Value>, path: &str) -> Result<bool, LoadError> {
    match m.get("metadata").and_then(|md| md.get("asyncPattern")) {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(LoadError::invalid(
            &format!("{path}/metadata/asyncPattern"),
            "`asyncPattern` is `true` or `false`",
        )),
    }
}

/// `output: content | response | raw`.
fn output(w: &Map<String, Value>, path: &str) -> Result<HttpOutput, LoadError> {
    match w.get("output").map(|o| o.as_str()) {
        None | Some(Some("content")) => Ok(HttpOutput::Content),
        Some(Some("response")) => Ok(HttpOutput::Response),
        Some(Some("raw")) => Ok(HttpOutput::Raw),
        Some(_) => Err(LoadError::invalid(
            &format!("{path}/output"),
            "`output` is `content`, `response` or `raw`",
        )),
    }
}

impl Loader<'_> {
    pub(super) fn call(
        &self,
        m: &Map<String, Value>,
        path: &str,
        scope: &VarNames,
    ) -> Result<TaskKind, LoadError> {
        let cp = format!("{path}/call");
        let function = m["call"]
            .as_str()
            .ok_or_else(|| LoadError::invalid(&cp, "`call` names a function"))?;
        let with = m.get("with");
        let wp = format!("{path}/with");
        match function {
            "http" => {
                let w = object(
                    with.ok_or_else(|| LoadError::invalid(path, "`call: http` needs `with`"))?,
                    &wp,
                )?;
                let mut call = self.http(w, &wp, scope)?;
                call.poll = async_pattern(m, path)?;
                Ok(TaskKind::CallHttp(Box::new(call)))
            }
            "openapi" => {
                let w = object(
                    with.ok_or_else(|| LoadError::invalid(path, "`call: openapi` needs `with`"))?,
                    &wp,
                )?;
                let mut call = self.openapi(w, &wp, scope)?;
                call.poll = async_pattern(m, path)?;
                Ok(TaskKind::CallOpenApi(Box::new(call)))
            }
            "grpc" | "asyncapi" | "a2a" | "mcp" => Err(LoadError::unsupported(
                &cp,
                format!("`call: {function}` (Baton calls HTTP endpoints and named functions)"),
            )),
            name => {
                if let Some(def) = self.functions.get(name) {
                    let what = def
                        .as_object()
                        .and_then(|d| {
                            d.keys()
                                .find(|k| ["call", "run"].contains(&k.as_str()))
                                .cloned()
                        })
                        .unwrap_or_else(|| "definition".to_owned());
                    return Err(LoadError::unsupported(
                        &format!("/use/functions/{}", escape(name)),
                        format!(
                            "functions defined in `use.functions` (here by `{what}`); register a native function named `{name}` instead"
                        ),
                    ));
                }
                if name.contains(':') || name.contains('@') {
                    return Err(LoadError::unsupported(
                        &cp,
                        format!("catalog function `{name}`"),
                    ));
                }
                let args = match with {
                    None => crate::expr::Template::Const(Value::Object(Map::new())),
                    Some(w) => template(w, &wp, scope)?,
                };
                Ok(TaskKind::CallFunction {
                    function: name.to_owned(),
                    args,
                })
            }
        }
    }

    fn http(
        &self,
        w: &Map<String, Value>,
        path: &str,
        scope: &VarNames,
    ) -> Result<HttpCall, LoadError> {
        check_keys(
            w,
            path,
            &[
                "method", "endpoint", "headers", "body", "query", "output", "redirect",
            ],
        )?;
        let method = w
            .get("method")
            .ok_or_else(|| LoadError::invalid(path, "`method` is required"))?;
        let endpoint = w
            .get("endpoint")
            .ok_or_else(|| LoadError::invalid(path, "`endpoint` is required"))?;
        let (endpoint, authentication) =
            self.endpoint(endpoint, &format!("{path}/endpoint"), scope)?;
        let output = output(w, path)?;
        let opt = |k: &str| {
            w.get(k)
                .map(|v| template(v, &format!("{path}/{k}"), scope))
                .transpose()
        };
        Ok(HttpCall {
            method: template(method, &format!("{path}/method"), scope)?,
            endpoint,
            headers: opt("headers")?,
            query: opt("query")?,
            body: opt("body")?,
            output,
            redirect: w.get("redirect").and_then(Value::as_bool).unwrap_or(false),
            authentication,
            poll: true,
        })
    }

    /// `call: openapi`'s `with`.
    fn openapi(
        &self,
        w: &Map<String, Value>,
        path: &str,
        scope: &VarNames,
    ) -> Result<OpenApiCall, LoadError> {
        check_keys(
            w,
            path,
            &[
                "document",
                "operationId",
                "parameters",
                "authentication",
                "output",
                "redirect",
            ],
        )?;
        let dp = format!("{path}/document");
        let doc = object(
            w.get("document")
                .ok_or_else(|| LoadError::invalid(path, "`document` is required"))?,
            &dp,
        )?;
        check_keys(doc, &dp, &["name", "endpoint"])?;
        let (endpoint, doc_auth) = self.endpoint(
            doc.get("endpoint")
                .ok_or_else(|| LoadError::invalid(&dp, "`endpoint` is required"))?,
            &format!("{dp}/endpoint"),
            scope,
        )?;
        let operation_id = match w.get("operationId") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => {
                return Err(LoadError::invalid(
                    &format!("{path}/operationId"),
                    "`operationId` names the operation to call",
                ));
            }
        };
        Ok(OpenApiCall {
            document: HttpCall {
                method: crate::expr::Template::Const(Value::String("GET".to_owned())),
                endpoint,
                headers: None,
                query: None,
                body: None,
                output: HttpOutput::Content,
                redirect: false,
                authentication: doc_auth,
                poll: false,
            },
            operation_id,
            parameters: w
                .get("parameters")
                .map(|v| template(v, &format!("{path}/parameters"), scope))
                .transpose()?,
            authentication: w
                .get("authentication")
                .map(|a| self.authentication(a, &format!("{path}/authentication"), scope))
                .transpose()?,
            output: output(w, path)?,
            redirect: w.get("redirect").and_then(Value::as_bool).unwrap_or(false),
            poll: true,
        })
    }

    /// An endpoint: a URI (template or expression), or `{uri, authentication}`.
    fn endpoint(
        &self,
        endpoint: &Value,
        ep: &str,
        scope: &VarNames,
    ) -> Result<(EndpointUri, Option<Authentication>), LoadError> {
        let (uri, auth) = match endpoint {
            Value::String(s) => (s.clone(), None),
            Value::Object(e) => {
                check_keys(e, ep, &["uri", "authentication"])?;
                let uri = e
                    .get("uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| LoadError::invalid(ep, "`uri` is required"))?;
                (uri.to_owned(), e.get("authentication"))
            }
            _ => return Err(LoadError::invalid(ep, "an endpoint is a URI or an object")),
        };
        let endpoint = if crate::expr::strip_braces(&uri).is_some() {
            EndpointUri::Expr(template(&Value::String(uri), &format!("{ep}/uri"), scope)?)
        } else {
            EndpointUri::Template(uri)
        };
        let authentication = auth
            .map(|a| self.authentication(a, &format!("{ep}/authentication"), scope))
            .transpose()?;
        Ok((endpoint, authentication))
    }

    fn authentication(
        &self,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<Authentication, LoadError> {
        let m = object(v, path)?;
        if let Some(Value::String(name)) = m.get("use") {
            let def = self.authentications.get(name).ok_or_else(|| {
                LoadError::invalid(
                    &format!("{path}/use"),
                    format!("no authentication named `{name}` in `use.authentications`"),
                )
            })?;
            return self.authentication(
                def,
                &format!("/use/authentications/{}", escape(name)),
                scope,
            );
        }
        check_keys(
            m,
            path,
            &["basic", "bearer", "digest", "oauth2", "oidc", "certificate"],
        )?;
        if let Some(b) = m.get("basic") {
            let bp = format!("{path}/basic");
            let bm = object(b, &bp)?;
            if bm.contains_key("use") {
                return self.secret_auth(bm, &bp, AuthScheme::Basic);
            }
            check_keys(bm, &bp, &["username", "password"])?;
            let get = |k: &str| {
                bm.get(k)
                    .ok_or_else(|| LoadError::invalid(&bp, format!("`{k}` is required")))
                    .and_then(|v| template(v, &format!("{bp}/{k}"), scope))
            };
            return Ok(Authentication::Basic {
                username: get("username")?,
                password: get("password")?,
            });
        }
        if let Some(b) = m.get("bearer") {
            let bp = format!("{path}/bearer");
            let bm = object(b, &bp)?;
            if bm.contains_key("use") {
                return self.secret_auth(bm, &bp, AuthScheme::Bearer);
            }
            check_keys(bm, &bp, &["token"])?;
            let token = bm
                .get("token")
                .ok_or_else(|| LoadError::invalid(&bp, "`token` is required"))?;
            return Ok(Authentication::Bearer {
                token: template(token, &format!("{bp}/token"), scope)?,
            });
        }
        let scheme = m.keys().next().cloned().unwrap_or_default();
        Err(LoadError::unsupported(
            &format!("{path}/{scheme}"),
            format!("`{scheme}` authentication (Baton supports basic and bearer)"),
        ))
    }

    /// `{use: name}` in place of literal credentials: `name` must be declared in `use.secrets`.
    fn secret_auth(
        &self,
        m: &Map<String, Value>,
        path: &str,
        scheme: AuthScheme,
    ) -> Result<Authentication, LoadError> {
        check_keys(m, path, &["use"])?;
        let up = format!("{path}/use");
        let name = match m.get("use") {
            Some(Value::String(n)) if !n.is_empty() => n,
            _ => return Err(LoadError::invalid(&up, "the name of a secret is required")),
        };
        if !self.secrets.iter().any(|s| s == name) {
            return Err(LoadError::invalid(
                &up,
                format!("secret `{name}` is not declared in `use.secrets`"),
            ));
        }
        Ok(Authentication::Secret {
            scheme,
            secret: name.clone(),
        })
    }

    pub(super) fn listen(
        &self,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<ListenSpec, LoadError> {
        let m = object(v, path)?;
        check_keys(m, path, &["to", "read"])?;
        if let Some(r) = m.get("read")
            && r.as_str() != Some("data")
        {
            return Err(LoadError::unsupported(
                &format!("{path}/read"),
                format!("`read: {r}` (events are read as their data)"),
            ));
        }
        let tp = format!("{path}/to");
        let to = object(
            m.get("to")
                .ok_or_else(|| LoadError::invalid(path, "`to` is required"))?,
            &tp,
        )?;
        check_keys(to, &tp, &["all", "any", "one", "until"])?;
        if to.contains_key("until") {
            return Err(LoadError::unsupported(
                &format!("{tp}/until"),
                "`listen.to.until`",
            ));
        }
        let filters = |k: &str| -> Result<Vec<crate::expr::Template>, LoadError> {
            let arr = to[k].as_array().ok_or_else(|| {
                LoadError::invalid(&format!("{tp}/{k}"), "a list of event filters is required")
            })?;
            arr.iter()
                .enumerate()
                .map(|(i, f)| self.event_filter(f, &format!("{tp}/{k}/{i}"), scope))
                .collect()
        };
        let strategy = if to.contains_key("all") {
            ListenStrategy::All(filters("all")?)
        } else if to.contains_key("any") {
            let fs = filters("any")?;
            if fs.is_empty() {
                return Err(LoadError::unsupported(
                    &format!("{tp}/any"),
                    "`any: []` (listening to every event)",
                ));
            }
            ListenStrategy::Any(fs)
        } else if let Some(one) = to.get("one") {
            ListenStrategy::One(self.event_filter(one, &format!("{tp}/one"), scope)?)
        } else {
            return Err(LoadError::invalid(
                &tp,
                "one of `all`, `any`, `one` is required",
            ));
        };
        Ok(ListenSpec { strategy })
    }

    fn event_filter(
        &self,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<crate::expr::Template, LoadError> {
        let m = object(v, path)?;
        check_keys(m, path, &["with", "correlate"])?;
        if m.contains_key("correlate") {
            return Err(LoadError::unsupported(
                &format!("{path}/correlate"),
                "event correlation (`correlate`)",
            ));
        }
        let with = m
            .get("with")
            .ok_or_else(|| LoadError::invalid(path, "`with` is required"))?;
        template(with, &format!("{path}/with"), scope)
    }
}
