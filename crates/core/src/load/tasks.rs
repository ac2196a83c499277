//! Loading task lists and each kind of task.

use serde_json::{Map, Value};

use crate::expr::{Expr, VarNames};
use crate::model::{
    Authentication, Backoff, Catch, EndpointUri, ErrorFilter, ErrorTemplate, EventTemplate,
    ForLoop, HttpCall, HttpOutput, ListId, ListenSpec, ListenStrategy, RetryPolicy, SwitchCase,
    Task, TaskBase, TaskId, TaskKind, Then,
};

use super::{LoadError, Loader, check_keys, duration, escape, expr_err, loose, object, template};

const BASE_KEYS: [&str; 7] = [
    "if", "input", "output", "export", "timeout", "then", "metadata",
];
const KINDS: [&str; 12] = [
    "for", "try", "call", "fork", "emit", "listen", "raise", "run", "set", "switch", "wait", "do",
];

impl Loader<'_> {
    /// Loads a task list (`[{name: task}, …]`) and returns its id.
    pub(crate) fn task_list(
        &mut self,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<ListId, LoadError> {
        let items = v.as_array().ok_or_else(|| {
            LoadError::invalid(
                path,
                "a task list (an array of single-key objects) is required",
            )
        })?;
        if items.is_empty() {
            return Err(LoadError::invalid(
                path,
                "a task list needs at least one task",
            ));
        }
        let id = ListId(self.lists.len() as u32);
        self.lists.push(Vec::new());
        let mut ids = Vec::with_capacity(items.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}/{i}");
            let m = object(item, &item_path)?;
            let mut it = m.iter();
            let (Some((name, def)), None) = (it.next(), it.next()) else {
                return Err(LoadError::invalid(
                    &item_path,
                    "each task item has exactly one key, the task's name",
                ));
            };
            if names.contains(&name.as_str()) {
                return Err(LoadError::invalid(
                    &item_path,
                    format!("task name `{name}` is used twice in this list"),
                ));
            }
            names.push(name);
            ids.push(self.task(name, def, &format!("{item_path}/{}", escape(name)), scope)?);
        }
        // Named `then` targets must be siblings.
        for (i, tid) in ids.iter().enumerate() {
            let task = &self.tasks[tid.0 as usize];
            let mut targets: Vec<&str> = Vec::new();
            if let Then::Goto(t) = &task.base.then {
                targets.push(t);
            }
            if let TaskKind::Switch(cases) = &task.kind {
                targets.extend(cases.iter().filter_map(|c| match &c.then {
                    Then::Goto(t) => Some(t.as_str()),
                    _ => None,
                }));
            }
            for t in targets {
                if !names.contains(&t) {
                    return Err(LoadError::invalid(
                        &task.reference,
                        format!(
                            "`then: {t}` names no task of this list (tasks: {})",
                            names.join(", ")
                        ),
                    ));
                }
            }
            let _ = i;
        }
        self.lists[id.0 as usize] = ids;
        Ok(id)
    }

    fn task(
        &mut self,
        name: &str,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<TaskId, LoadError> {
        let m = object(v, path)?;
        let kind = KINDS.iter().find(|k| m.contains_key(**k)).ok_or_else(|| {
            LoadError::invalid(
                path,
                format!(
                    "no task type: expected one of {} (found {})",
                    KINDS.join(", "),
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let base = self.base(m, path, scope)?;
        let kind = match *kind {
            "do" => {
                check(m, path, &["do"])?;
                TaskKind::Do(self.task_list(&m["do"], &format!("{path}/do"), scope)?)
            }
            "set" => {
                check(m, path, &["set"])?;
                let p = format!("{path}/set");
                match &m["set"] {
                    Value::Object(_) => TaskKind::Set(template(&m["set"], &p, scope)?),
                    Value::String(_) => TaskKind::Set(loose(&m["set"], &p, scope)?),
                    _ => {
                        return Err(LoadError::invalid(
                            &p,
                            "`set` takes an object or an expression",
                        ));
                    }
                }
            }
            "switch" => {
                check(m, path, &["switch"])?;
                TaskKind::Switch(self.switch(&m["switch"], &format!("{path}/switch"), scope)?)
            }
            "for" => {
                check(m, path, &["for", "while", "do"])?;
                TaskKind::For(Box::new(self.for_loop(m, path, scope)?))
            }
            "fork" => {
                check(m, path, &["fork"])?;
                let p = format!("{path}/fork");
                let f = object(&m["fork"], &p)?;
                check_keys(f, &p, &["branches", "compete"])?;
                let branches = f
                    .get("branches")
                    .ok_or_else(|| LoadError::invalid(&p, "`branches` is required"))?;
                let compete = match f.get("compete") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(LoadError::invalid(
                            &format!("{p}/compete"),
                            "a boolean is required",
                        ));
                    }
                };
                TaskKind::Fork {
                    branches: self.task_list(branches, &format!("{p}/branches"), scope)?,
                    compete,
                }
            }
            "try" => {
                check(m, path, &["try", "catch"])?;
                let body = self.task_list(&m["try"], &format!("{path}/try"), scope)?;
                let catch = match m.get("catch") {
                    Some(c) => self.catch(c, &format!("{path}/catch"), scope)?,
                    None => return Err(LoadError::invalid(path, "`try` needs a `catch`")),
                };
                TaskKind::Try {
                    body,
                    catch: Box::new(catch),
                }
            }
            "wait" => {
                check(m, path, &["wait"])?;
                TaskKind::Wait(duration(&m["wait"], &format!("{path}/wait"))?)
            }
            "raise" => {
                check(m, path, &["raise"])?;
                let p = format!("{path}/raise");
                let r = object(&m["raise"], &p)?;
                check_keys(r, &p, &["error"])?;
                let e = r
                    .get("error")
                    .ok_or_else(|| LoadError::invalid(&p, "`error` is required"))?;
                TaskKind::Raise(Box::new(self.error_template(
                    e,
                    &format!("{p}/error"),
                    scope,
                )?))
            }
            "call" => {
                check(m, path, &["call", "with"])?;
                self.call(m, path, scope)?
            }
            "emit" => {
                check(m, path, &["emit"])?;
                let p = format!("{path}/emit");
                let e = object(&m["emit"], &p)?;
                check_keys(e, &p, &["event"])?;
                let ev = object(
                    e.get("event")
                        .ok_or_else(|| LoadError::invalid(&p, "`event` is required"))?,
                    &format!("{p}/event"),
                )?;
                check_keys(ev, &format!("{p}/event"), &["with"])?;
                let with = ev.get("with").ok_or_else(|| {
                    LoadError::invalid(&format!("{p}/event"), "`with` is required")
                })?;
                let wm = object(with, &format!("{p}/event/with"))?;
                for req in ["source", "type"] {
                    if !wm.contains_key(req) {
                        return Err(LoadError::invalid(
                            &format!("{p}/event/with"),
                            format!("`{req}` is required"),
                        ));
                    }
                }
                TaskKind::Emit(EventTemplate {
                    with: template(with, &format!("{p}/event/with"), scope)?,
                })
            }
            "listen" => {
                check(m, path, &["listen", "foreach"])?;
                if m.contains_key("foreach") {
                    return Err(LoadError::unsupported(
                        &format!("{path}/foreach"),
                        "`listen.foreach` (event streams)",
                    ));
                }
                TaskKind::Listen(self.listen(&m["listen"], &format!("{path}/listen"), scope)?)
            }
            "run" => {
                let p = format!("{path}/run");
                let what = m["run"]
                    .as_object()
                    .and_then(|r| {
                        ["container", "script", "shell", "workflow"]
                            .into_iter()
                            .find(|k| r.contains_key(*k))
                    })
                    .unwrap_or("run");
                return Err(LoadError::unsupported(
                    &format!("{p}/{what}"),
                    format!("`run: {what}` tasks"),
                ));
            }
            _ => unreachable!("KINDS is exhaustive"),
        };
        let id = TaskId(self.tasks.len() as u32);
        self.tasks.push(Task {
            name: name.to_owned(),
            reference: path.to_owned(),
            base,
            kind,
        });
        Ok(id)
    }

    fn base(
        &self,
        m: &Map<String, Value>,
        path: &str,
        scope: &VarNames,
    ) -> Result<TaskBase, LoadError> {
        let if_ = match m.get("if") {
            None => None,
            Some(Value::String(s)) => Some(
                Expr::compile_loose(s, scope).map_err(|e| expr_err(&format!("{path}/if"), e))?,
            ),
            Some(_) => {
                return Err(LoadError::invalid(
                    &format!("{path}/if"),
                    "`if` is a runtime expression (a string)",
                ));
            }
        };
        Ok(TaskBase {
            if_,
            input: self.data_in(m.get("input"), &format!("{path}/input"), scope)?,
            output: self.data_out(m.get("output"), &format!("{path}/output"), scope, "as")?,
            export: self.data_out(m.get("export"), &format!("{path}/export"), scope, "as")?,
            timeout: self.timeout(m.get("timeout"), &format!("{path}/timeout"))?,
            then: match m.get("then") {
                None => Then::Continue,
                Some(v) => then(v, &format!("{path}/then"))?,
            },
        })
    }

    fn switch(
        &self,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<Vec<SwitchCase>, LoadError> {
        let items = v
            .as_array()
            .ok_or_else(|| LoadError::invalid(path, "`switch` takes a list of cases"))?;
        let mut cases = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}/{i}");
            let m = object(item, &ip)?;
            let mut it = m.iter();
            let (Some((name, def)), None) = (it.next(), it.next()) else {
                return Err(LoadError::invalid(
                    &ip,
                    "each case has exactly one key, its name",
                ));
            };
            let cp = format!("{ip}/{}", escape(name));
            let c = object(def, &cp)?;
            check_keys(c, &cp, &["when", "then"])?;
            let when = match c.get("when") {
                None => None,
                Some(Value::String(s)) => Some(
                    Expr::compile_loose(s, scope)
                        .map_err(|e| expr_err(&format!("{cp}/when"), e))?,
                ),
                Some(_) => {
                    return Err(LoadError::invalid(
                        &format!("{cp}/when"),
                        "`when` is a runtime expression",
                    ));
                }
            };
            let then = then(
                c.get("then")
                    .ok_or_else(|| LoadError::invalid(&cp, "`then` is required"))?,
                &format!("{cp}/then"),
            )?;
            cases.push(SwitchCase {
                name: name.clone(),
                when,
                then,
            });
        }
        Ok(cases)
    }

    fn for_loop(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        scope: &VarNames,
    ) -> Result<ForLoop, LoadError> {
        let fp = format!("{path}/for");
        let f = object(&m["for"], &fp)?;
        check_keys(f, &fp, &["each", "in", "at"])?;
        let name = |k: &str, default: &str| -> Result<String, LoadError> {
            match f.get(k) {
                None => Ok(default.to_owned()),
                Some(Value::String(s)) => Ok(s.trim_start_matches('$').to_owned()),
                Some(_) => Err(LoadError::invalid(
                    &format!("{fp}/{k}"),
                    "a variable name is required",
                )),
            }
        };
        let each = name("each", "item")?;
        let at = name("at", "index")?;
        let in_ = match f.get("in") {
            Some(Value::String(s)) => {
                Expr::compile_loose(s, scope).map_err(|e| expr_err(&format!("{fp}/in"), e))?
            }
            _ => {
                return Err(LoadError::invalid(
                    &format!("{fp}/in"),
                    "`in` is a runtime expression",
                ));
            }
        };
        let inner = scope.with([each.as_str(), at.as_str()]);
        let while_ = match m.get("while") {
            None => None,
            Some(Value::String(s)) => Some(
                Expr::compile_loose(s, &inner)
                    .map_err(|e| expr_err(&format!("{path}/while"), e))?,
            ),
            Some(_) => {
                return Err(LoadError::invalid(
                    &format!("{path}/while"),
                    "`while` is a runtime expression",
                ));
            }
        };
        let body = m
            .get("do")
            .ok_or_else(|| LoadError::invalid(path, "`for` needs a `do` list"))?;
        let body = self.task_list(body, &format!("{path}/do"), &inner)?;
        Ok(ForLoop {
            each,
            at,
            in_,
            while_,
            body,
        })
    }

    fn catch(&mut self, v: &Value, path: &str, scope: &VarNames) -> Result<Catch, LoadError> {
        let m = object(v, path)?;
        check_keys(
            m,
            path,
            &["errors", "as", "when", "exceptWhen", "retry", "do"],
        )?;
        let as_ = match m.get("as") {
            None => "error".to_owned(),
            Some(Value::String(s)) => s.trim_start_matches('$').to_owned(),
            Some(_) => {
                return Err(LoadError::invalid(
                    &format!("{path}/as"),
                    "a variable name is required",
                ));
            }
        };
        let inner = scope.with([as_.as_str()]);
        let filter = match m.get("errors") {
            None => ErrorFilter::default(),
            Some(e) => error_filter(e, &format!("{path}/errors"))?,
        };
        let cond = |k: &str| -> Result<Option<Expr>, LoadError> {
            match m.get(k) {
                None => Ok(None),
                Some(Value::String(s)) => Expr::compile_loose(s, &inner)
                    .map(Some)
                    .map_err(|e| expr_err(&format!("{path}/{k}"), e)),
                Some(_) => Err(LoadError::invalid(
                    &format!("{path}/{k}"),
                    "a runtime expression is required",
                )),
            }
        };
        let when = cond("when")?;
        let except_when = cond("exceptWhen")?;
        let retry = m
            .get("retry")
            .map(|r| self.retry(r, &format!("{path}/retry"), &inner))
            .transpose()?;
        let body = m
            .get("do")
            .map(|d| self.task_list(d, &format!("{path}/do"), &inner))
            .transpose()?;
        Ok(Catch {
            filter,
            as_,
            when,
            except_when,
            retry,
            body,
        })
    }

    fn retry(&self, v: &Value, path: &str, scope: &VarNames) -> Result<RetryPolicy, LoadError> {
        let (def, path) = match v {
            Value::String(name) => (
                self.retries.get(name).ok_or_else(|| {
                    LoadError::invalid(
                        path,
                        format!("no retry policy named `{name}` in `use.retries`"),
                    )
                })?,
                format!("/use/retries/{}", escape(name)),
            ),
            other => (other, path.to_owned()),
        };
        let path = path.as_str();
        let m = object(def, path)?;
        check_keys(
            m,
            path,
            &["when", "exceptWhen", "delay", "backoff", "limit", "jitter"],
        )?;
        let cond = |k: &str| -> Result<Option<Expr>, LoadError> {
            match m.get(k) {
                None => Ok(None),
                Some(Value::String(s)) => Expr::compile_loose(s, scope)
                    .map(Some)
                    .map_err(|e| expr_err(&format!("{path}/{k}"), e)),
                Some(_) => Err(LoadError::invalid(
                    &format!("{path}/{k}"),
                    "a runtime expression is required",
                )),
            }
        };
        let mut policy = RetryPolicy {
            when: cond("when")?,
            except_when: cond("exceptWhen")?,
            ..RetryPolicy::default()
        };
        if let Some(d) = m.get("delay") {
            policy.delay = duration(d, &format!("{path}/delay"))?;
        }
        if let Some(b) = m.get("backoff") {
            let bp = format!("{path}/backoff");
            let bm = object(b, &bp)?;
            check_keys(bm, &bp, &["constant", "linear", "exponential"])?;
            if bm.len() != 1 {
                return Err(LoadError::invalid(
                    &bp,
                    "exactly one of `constant`, `linear`, `exponential`",
                ));
            }
            policy.backoff = if bm.contains_key("linear") {
                Backoff::Linear
            } else if bm.contains_key("exponential") {
                Backoff::Exponential
            } else {
                Backoff::Constant
            };
        }
        if let Some(l) = m.get("limit") {
            let lp = format!("{path}/limit");
            let lm = object(l, &lp)?;
            check_keys(lm, &lp, &["attempt", "duration"])?;
            if let Some(a) = lm.get("attempt") {
                let ap = format!("{lp}/attempt");
                let am = object(a, &ap)?;
                check_keys(am, &ap, &["count", "duration"])?;
                if let Some(c) = am.get("count") {
                    let c = c
                        .as_u64()
                        .and_then(|c| u32::try_from(c).ok())
                        .ok_or_else(|| {
                            LoadError::invalid(
                                &format!("{ap}/count"),
                                "a non-negative integer is required",
                            )
                        })?;
                    policy.max_retries = Some(c);
                }
                if let Some(d) = am.get("duration") {
                    policy.attempt_timeout = Some(duration(d, &format!("{ap}/duration"))?);
                }
            }
            if let Some(d) = lm.get("duration") {
                policy.total = Some(duration(d, &format!("{lp}/duration"))?);
            }
        }
        if let Some(j) = m.get("jitter") {
            let jp = format!("{path}/jitter");
            let jm = object(j, &jp)?;
            check_keys(jm, &jp, &["from", "to"])?;
            let get = |k: &str| {
                jm.get(k)
                    .ok_or_else(|| LoadError::invalid(&jp, format!("`{k}` is required")))
                    .and_then(|d| duration(d, &format!("{jp}/{k}")))
            };
            let (from, to) = (get("from")?, get("to")?);
            if from > to {
                return Err(LoadError::invalid(
                    &jp,
                    "`from` must not be longer than `to`",
                ));
            }
            policy.jitter = Some((from, to));
        }
        Ok(policy)
    }

    fn error_template(
        &self,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<ErrorTemplate, LoadError> {
        let (def, path) = match v {
            Value::String(name) => (
                self.errors.get(name).ok_or_else(|| {
                    LoadError::invalid(path, format!("no error named `{name}` in `use.errors`"))
                })?,
                format!("/use/errors/{}", escape(name)),
            ),
            other => (other, path.to_owned()),
        };
        let path = path.as_str();
        let m = object(def, path)?;
        check_keys(m, path, &["type", "status", "instance", "title", "detail"])?;
        let req = |k: &str| {
            m.get(k)
                .ok_or_else(|| LoadError::invalid(path, format!("`{k}` is required")))
        };
        let opt = |k: &str| {
            m.get(k)
                .map(|v| template(v, &format!("{path}/{k}"), scope))
                .transpose()
        };
        Ok(ErrorTemplate {
            type_: template(req("type")?, &format!("{path}/type"), scope)?,
            status: template(req("status")?, &format!("{path}/status"), scope)?,
            instance: opt("instance")?,
            title: opt("title")?,
            detail: opt("detail")?,
        })
    }

    fn call(
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
                Ok(TaskKind::CallHttp(Box::new(self.http(w, &wp, scope)?)))
            }
            "grpc" | "openapi" | "asyncapi" | "a2a" | "mcp" => Err(LoadError::unsupported(
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
        let ep = format!("{path}/endpoint");
        let (uri, auth) = match endpoint {
            Value::String(s) => (s.clone(), None),
            Value::Object(e) => {
                check_keys(e, &ep, &["uri", "authentication"])?;
                let uri = e
                    .get("uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| LoadError::invalid(&ep, "`uri` is required"))?;
                (uri.to_owned(), e.get("authentication"))
            }
            _ => return Err(LoadError::invalid(&ep, "an endpoint is a URI or an object")),
        };
        let endpoint = if crate::expr::strip_braces(&uri).is_some() {
            EndpointUri::Expr(template(&Value::String(uri), &format!("{ep}/uri"), scope)?)
        } else {
            EndpointUri::Template(uri)
        };
        let authentication = auth
            .map(|a| self.authentication(a, &format!("{ep}/authentication"), scope))
            .transpose()?;
        let output = match w.get("output").map(|o| o.as_str()) {
            None | Some(Some("content")) => HttpOutput::Content,
            Some(Some("response")) => HttpOutput::Response,
            Some(Some("raw")) => HttpOutput::Raw,
            Some(_) => {
                return Err(LoadError::invalid(
                    &format!("{path}/output"),
                    "`output` is `content`, `response` or `raw`",
                ));
            }
        };
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
        })
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
                return Err(LoadError::unsupported(
                    &format!("{bp}/use"),
                    "authentication from secrets (`use`)",
                ));
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
                return Err(LoadError::unsupported(
                    &format!("{bp}/use"),
                    "authentication from secrets (`use`)",
                ));
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

    fn listen(&self, v: &Value, path: &str, scope: &VarNames) -> Result<ListenSpec, LoadError> {
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

fn check(m: &Map<String, Value>, path: &str, own: &[&str]) -> Result<(), LoadError> {
    let allowed: Vec<&str> = BASE_KEYS.iter().chain(own.iter()).copied().collect();
    check_keys(m, path, &allowed)
}

fn then(v: &Value, path: &str) -> Result<Then, LoadError> {
    match v.as_str() {
        Some("continue") => Ok(Then::Continue),
        Some("exit") => Ok(Then::Exit),
        Some("end") => Ok(Then::End),
        Some(name) => Ok(Then::Goto(name.to_owned())),
        None => Err(LoadError::invalid(
            path,
            "`then` is `continue`, `exit`, `end` or a task name",
        )),
    }
}

fn error_filter(v: &Value, path: &str) -> Result<ErrorFilter, LoadError> {
    let m = object(v, path)?;
    check_keys(m, path, &["with"])?;
    let Some(with) = m.get("with") else {
        return Ok(ErrorFilter::default());
    };
    let wp = format!("{path}/with");
    let w = object(with, &wp)?;
    check_keys(
        w,
        &wp,
        &["type", "status", "instance", "title", "details", "detail"],
    )?;
    let s = |k: &str| w.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(ErrorFilter {
        type_: s("type"),
        status: match w.get("status") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| {
                        LoadError::invalid(&format!("{wp}/status"), "an HTTP status is required")
                    })?,
            ),
        },
        instance: s("instance"),
        title: s("title"),
        detail: s("details").or_else(|| s("detail")),
    })
}
