//! Loading task lists and each kind of task.

use serde_json::{Map, Value};

use crate::expr::{Expr, VarNames};
use crate::model::{
    EventTemplate, ForLoop, ListId, SwitchCase, Task, TaskBase, TaskId, TaskKind, Then,
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
            name: name.into(),
            reference: path.into(),
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
