//! Loading `catch`, `retry` and `raise` errors, inline or from `use.*`.

use serde_json::Value;

use crate::expr::{Expr, VarNames};
use crate::model::{Backoff, Catch, ErrorFilter, ErrorTemplate, RetryPolicy};

use super::{LoadError, Loader, check_keys, duration, escape, expr_err, object, template};

impl Loader<'_> {
    pub(super) fn catch(
        &mut self,
        v: &Value,
        path: &str,
        scope: &VarNames,
    ) -> Result<Catch, LoadError> {
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

    pub(super) fn error_template(
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
}

pub(super) fn error_filter(v: &Value, path: &str) -> Result<ErrorFilter, LoadError> {
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
