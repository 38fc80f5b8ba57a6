//! Walks the node tree into one output `String`. Variables are resolved by
//! borrowing from the context; scopes are a flat binding stack so entering
//! `with`/`for` costs no allocation per iteration.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::condition::{CmpOp, Cond};
use crate::context::Context;
use crate::date::{self, When};
use crate::error::RenderError;
use crate::expression::{FilterCall, FilterExpr, Lookup, Operand, VarPath};
use crate::filters::{self, Env};
use crate::nodes::{ForNode, IfChanged, Node, Regroup, WidthRatio};
use crate::text::{escape_into, is_space};
use crate::value::Safe;
use crate::value::{small_get, write_float_localized, Dict, List, Value};
use crate::Template;
use serde_json::{Map, Value as Json};

enum Saved<'r> {
    Values(Vec<Value<'r>>),
    Text(String),
}

pub(crate) struct Renderer<'r> {
    tpl: &'r Template,
    ctx: &'r Context<'r>,
    scopes: Vec<(&'r str, Value<'r>)>,
    marks: Vec<usize>,
    autoescape: bool,
    cycle_pos: Vec<usize>,
    ifchanged: HashMap<(usize, u64), Saved<'r>>,
    loop_ids: Vec<u64>,
    next_loop_id: u64,
    steps: u64,
    depth: usize,
}

fn borrow_lit<'r>(l: &'r Value<'static>) -> Value<'r> {
    match l {
        Value::Str(s, safe) => Value::Str(Cow::Borrowed(s.as_ref()), *safe),
        other => other.clone(),
    }
}

/// Errors that an `if` operator must not swallow (limits, missing clock).
fn is_fatal(e: &RenderError) -> bool {
    matches!(
        e,
        RenderError::OutputTooLarge(_)
            | RenderError::TooManySteps(_)
            | RenderError::TooDeep(_)
            | RenderError::NoClock
    )
}

fn type_name(v: &Value<'_>) -> &'static str {
    match v {
        Value::None => "NoneType",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(..) => "str",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Date(_) => "datetime.date",
        Value::DateTime(_) => "datetime.datetime",
    }
}

/// What iterating a value yields, without copying JSON arrays.
enum Items<'r> {
    List(List<'r>),
    Vec(Vec<Value<'r>>),
}

impl<'r> Items<'r> {
    fn len(&self) -> usize {
        match self {
            Items::List(l) => l.len(),
            Items::Vec(v) => v.len(),
        }
    }
    fn get(&self, i: usize) -> Value<'r> {
        match self {
            Items::List(l) => l.get(i).unwrap_or(Value::None),
            Items::Vec(v) => v.get(i).cloned().unwrap_or(Value::None),
        }
    }
}

impl<'r> Renderer<'r> {
    pub(crate) fn new(tpl: &'r Template, ctx: &'r Context<'r>) -> Self {
        Renderer {
            tpl,
            ctx,
            scopes: Vec::new(),
            marks: Vec::new(),
            autoescape: tpl.options.autoescape,
            cycle_pos: vec![0; tpl.cycles.len()],
            ifchanged: HashMap::new(),
            loop_ids: Vec::new(),
            next_loop_id: 1,
            steps: 0,
            depth: 0,
        }
    }

    fn env(&self) -> Env<'r> {
        Env {
            autoescape: self.autoescape,
            now: self.ctx.now,
            max_size: self.tpl.options.limits.max_output_bytes,
            string_if_invalid: &self.tpl.options.string_if_invalid,
        }
    }

    fn tick(&mut self, out: &str) -> Result<(), RenderError> {
        self.steps += 1;
        let limits = &self.tpl.options.limits;
        if self.steps > limits.max_steps {
            return Err(RenderError::TooManySteps(limits.max_steps));
        }
        if out.len() > limits.max_output_bytes {
            return Err(RenderError::OutputTooLarge(limits.max_output_bytes));
        }
        Ok(())
    }

    // ----- scopes -----

    fn push_scope(&mut self) {
        self.marks.push(self.scopes.len());
    }

    fn pop_scope(&mut self) {
        let m = self.marks.pop().unwrap_or(0);
        self.scopes.truncate(m);
    }

    /// `context[name] = value`: set in the innermost scope.
    fn set_current(&mut self, name: &'r str, value: Value<'r>) {
        let start = self.marks.last().copied().unwrap_or(0);
        if let Some(slot) = self.scopes[start..]
            .iter_mut()
            .rev()
            .find(|(k, _)| *k == name)
        {
            slot.1 = value;
        } else {
            self.scopes.push((name, value));
        }
    }

    /// Django's `set_upward`: overwrite the nearest binding, else set here.
    fn set_upward(&mut self, name: &'r str, value: Value<'r>) {
        if let Some(slot) = self.scopes.iter_mut().rev().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else {
            self.scopes.push((name, value));
        }
    }

    fn lookup_name(&self, name: &str) -> Option<Value<'r>> {
        if let Some((_, v)) = self.scopes.iter().rev().find(|(k, _)| *k == name) {
            return Some(v.clone());
        }
        if let Some(v) = self.ctx.get(name) {
            return Some(v);
        }
        match name {
            "True" => Some(Value::Bool(true)),
            "False" => Some(Value::Bool(false)),
            "None" => Some(Value::None),
            _ => None,
        }
    }

    /// Fast path: walk plain JSON objects/arrays by reference. None means
    /// "not a plain JSON walk" (method names, misses, typed values): the
    /// general resolver then decides.
    fn resolve_json(&self, p: &VarPath) -> Option<&'r Json> {
        enum Cur<'j> {
            Map(&'j Map<String, Json>),
            Arr(&'j [Json]),
            Leaf(&'j Json),
        }
        let first = p.parts.first()?;
        let mut cur = match self.scopes.iter().rev().find(|(k, _)| **k == *first.key) {
            Some((_, Value::Dict(Dict::Json(m)))) => Cur::Map(m),
            Some((_, Value::List(List::Json(a)))) => Cur::Arr(a),
            Some(_) => return None,
            None => Cur::Leaf(self.ctx.get_json(&first.key)??),
        };
        for part in &p.parts[1..] {
            let next = match cur {
                Cur::Map(m) | Cur::Leaf(Json::Object(m)) => small_get(m, &part.key)?,
                Cur::Arr(a) => a.get(part.index?)?,
                Cur::Leaf(Json::Array(a)) => a.get(part.index?)?,
                Cur::Leaf(_) => return None,
            };
            cur = Cur::Leaf(next);
        }
        match cur {
            Cur::Leaf(j) => Some(j),
            _ => None,
        }
    }

    #[inline(always)]
    fn resolve_path(&self, p: &VarPath) -> Result<Option<Value<'r>>, RenderError> {
        if let Some(j) = self.resolve_json(p) {
            return Ok(Some(Value::from_json(j)));
        }
        let Some(first) = p.parts.first() else {
            return Ok(None);
        };
        // Borrow the first binding (no refcount traffic for `forloop`).
        let owned;
        let head: &Value<'r> = match self.scopes.iter().rev().find(|(k, _)| **k == *first.key) {
            Some((_, v)) => v,
            None => match self.lookup_name(&first.key) {
                Some(v) => {
                    owned = v;
                    &owned
                }
                None => return Ok(None),
            },
        };
        let Some(second) = p.parts.get(1) else {
            return Ok(Some(head.clone()));
        };
        let Some(mut cur) = self.attr(head, second)? else {
            return Ok(None);
        };
        for part in &p.parts[2..] {
            match self.attr(&cur, part)? {
                Some(v) => cur = v,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// One `.bit` step: dict key, then attribute/method, then list index.
    fn attr(&self, cur: &Value<'r>, part: &Lookup) -> Result<Option<Value<'r>>, RenderError> {
        let key: &str = &part.key;
        let sii = || {
            Value::Str(
                Cow::Owned(self.tpl.options.string_if_invalid.clone()),
                Safe::No,
            )
        };
        Ok(match cur {
            Value::Dict(d) => {
                if let Some(v) = d.get(key) {
                    return Ok(Some(v));
                }
                match key {
                    "items" => Some(Value::list(
                        d.entries()
                            .into_iter()
                            .map(|(k, v)| Value::list(vec![Value::Str(k, Safe::No), v]))
                            .collect(),
                    )),
                    "keys" => Some(Value::list(
                        d.keys()
                            .into_iter()
                            .map(|k| Value::Str(k, Safe::No))
                            .collect(),
                    )),
                    "values" => Some(Value::list(
                        d.entries().into_iter().map(|(_, v)| v).collect(),
                    )),
                    "copy" => Some(Value::Dict(d.clone())),
                    "clear" | "update" => Some(Value::None),
                    "get" | "pop" | "setdefault" | "fromkeys" => Some(sii()),
                    _ => None,
                }
            }
            Value::List(l) => match key {
                "copy" => Some(Value::List(l.clone())),
                "pop" => match l.len().checked_sub(1).and_then(|i| l.get(i)) {
                    Some(v) => Some(v),
                    None => {
                        return Err(RenderError::ValueError(
                            "IndexError: pop from empty list".into(),
                        ))
                    }
                },
                "reverse" | "sort" | "clear" => Some(Value::None),
                "count" | "index" | "append" | "extend" | "insert" | "remove" => Some(sii()),
                _ => part.index.and_then(|i| l.get(i)),
            },
            Value::Str(s, _) => {
                let st = || Value::str_owned;
                let b = |x: bool| Some(Value::Bool(x));
                let nonempty = !s.is_empty();
                match key {
                    "upper" => Some(st()(s.to_uppercase())),
                    "lower" | "casefold" => Some(st()(s.to_lowercase())),
                    "title" => Some(st()(crate::text::py_title(s))),
                    "capitalize" => {
                        let mut c = s.chars();
                        Some(st()(match c.next() {
                            Some(f) => f
                                .to_uppercase()
                                .chain(c.flat_map(char::to_lowercase))
                                .collect(),
                            None => String::new(),
                        }))
                    }
                    "swapcase" => Some(st()(
                        s.chars()
                            .flat_map(|c| {
                                if c.is_uppercase() {
                                    c.to_lowercase().collect::<Vec<_>>()
                                } else {
                                    c.to_uppercase().collect::<Vec<_>>()
                                }
                            })
                            .collect(),
                    )),
                    "strip" => Some(st()(s.trim_matches(is_space).to_string())),
                    "lstrip" => Some(st()(s.trim_start_matches(is_space).to_string())),
                    "rstrip" => Some(st()(s.trim_end_matches(is_space).to_string())),
                    "split" => Some(Value::list(
                        crate::text::split_ws(s)
                            .into_iter()
                            .map(|w| st()(w.to_string()))
                            .collect(),
                    )),
                    "format" => Some(Value::Str(s.clone(), Safe::No)),
                    "isdigit" | "isdecimal" | "isnumeric" => {
                        b(nonempty && s.chars().all(|c| c.is_numeric()))
                    }
                    "isalpha" => b(nonempty && s.chars().all(char::is_alphabetic)),
                    "isalnum" => b(nonempty && s.chars().all(char::is_alphanumeric)),
                    "isspace" => b(nonempty && s.chars().all(is_space)),
                    "isascii" => b(s.is_ascii()),
                    "isupper" => {
                        b(s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase))
                    }
                    "islower" => {
                        b(s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase))
                    }
                    "count" | "find" | "index" | "rfind" | "rindex" | "startswith" | "endswith"
                    | "replace" | "join" | "center" | "ljust" | "rjust" | "zfill" | "partition"
                    | "rpartition" | "removeprefix" | "removesuffix" | "translate"
                    | "maketrans" | "format_map" | "split_at" => Some(sii()),
                    _ => part
                        .index
                        .and_then(|i| s.chars().nth(i))
                        .map(|c| Value::str_owned(c.to_string())),
                }
            }
            Value::Int(_) | Value::Bool(_) | Value::Float(_) => match key {
                "real" | "conjugate" => Some(cur.clone()),
                "imag" => Some(Value::Int(0)),
                _ => None,
            },
            Value::Date(d) => date_attr(When::Date(*d), key),
            Value::DateTime(dt) => date_attr(When::DateTime(*dt), key),
            Value::None => None,
        })
    }

    // ----- expressions -----

    fn arg_value(&self, call: &'r FilterCall) -> Result<Option<Value<'r>>, RenderError> {
        Ok(match &call.arg {
            None => None,
            Some(Operand::Literal(l)) => Some(borrow_lit(l)),
            Some(Operand::Var(p)) => Some(self.resolve_path(p)?.ok_or_else(|| {
                RenderError::VariableDoesNotExist(format!("Failed lookup for key [{}]", p.text))
            })?),
        })
    }

    fn apply_filters(
        &self,
        mut v: Value<'r>,
        calls: &'r [FilterCall],
    ) -> Result<Value<'r>, RenderError> {
        let env = self.env();
        for call in calls {
            let arg = self.arg_value(call)?;
            v = filters::apply(call.filter, v, arg, &env)?;
            match &v {
                Value::Str(s, _) => env.check_size(s.len())?,
                Value::List(l) => env.check_size(l.len())?,
                _ => {}
            }
        }
        Ok(v)
    }

    fn eval(&self, fe: &'r FilterExpr, ignore_failures: bool) -> Result<Value<'r>, RenderError> {
        let v = match &fe.base {
            Operand::Literal(l) => borrow_lit(l),
            Operand::Var(p) => match self.resolve_path(p)? {
                Some(v) => v,
                None => {
                    let sii = &self.tpl.options.string_if_invalid;
                    if ignore_failures {
                        Value::None
                    } else if !sii.is_empty() {
                        return Ok(if sii.contains("%s") {
                            Value::str_owned(sii.replacen("%s", &p.text, 1))
                        } else {
                            Value::Str(Cow::Borrowed(sii.as_str()), Safe::No)
                        });
                    } else {
                        Value::empty_str()
                    }
                }
            },
        };
        if fe.filters.is_empty() {
            return Ok(v);
        }
        self.apply_filters(v, &fe.filters)
    }

    fn eval_cond(&self, c: &'r Cond) -> Result<Value<'r>, RenderError> {
        // Inside an operator any exception means "false" (Django's smartif).
        let guard =
            |r: Result<Value<'r>, RenderError>| -> Result<Result<Value<'r>, ()>, RenderError> {
                match r {
                    Ok(v) => Ok(Ok(v)),
                    Err(e) if is_fatal(&e) => Err(e),
                    Err(_) => Ok(Err(())),
                }
            };
        Ok(match c {
            Cond::Lit(fe) => return self.eval(fe, true),
            Cond::Or(a, b) => {
                let Ok(x) = guard(self.eval_cond(a))? else {
                    return Ok(Value::Bool(false));
                };
                if x.truthy() {
                    x
                } else {
                    guard(self.eval_cond(b))?.unwrap_or(Value::Bool(false))
                }
            }
            Cond::And(a, b) => {
                let Ok(x) = guard(self.eval_cond(a))? else {
                    return Ok(Value::Bool(false));
                };
                if !x.truthy() {
                    x
                } else {
                    guard(self.eval_cond(b))?.unwrap_or(Value::Bool(false))
                }
            }
            Cond::Not(a) => match guard(self.eval_cond(a))? {
                Ok(x) => Value::Bool(!x.truthy()),
                Err(()) => Value::Bool(false),
            },
            Cond::Cmp(op, a, b) => {
                let (Ok(x), Ok(y)) = (guard(self.eval_cond(a))?, guard(self.eval_cond(b))?) else {
                    return Ok(Value::Bool(false));
                };
                Value::Bool(match op {
                    CmpOp::Eq => x.py_eq(&y),
                    CmpOp::Ne => !x.py_eq(&y),
                    CmpOp::Lt => x.py_cmp(&y).is_some_and(|o| o.is_lt()),
                    CmpOp::Le => x.py_cmp(&y).is_some_and(|o| o.is_le()),
                    CmpOp::Gt => x.py_cmp(&y).is_some_and(|o| o.is_gt()),
                    CmpOp::Ge => x.py_cmp(&y).is_some_and(|o| o.is_ge()),
                    CmpOp::In => y.py_contains(&x).unwrap_or(false),
                    CmpOp::NotIn => y.py_contains(&x).is_some_and(|b| !b),
                    CmpOp::Is => py_is(&x, &y),
                    CmpOp::IsNot => !py_is(&x, &y),
                })
            }
        })
    }

    // ----- output -----

    /// Django's `render_value_in_context`: localize, then escape if needed.
    fn write_value(&self, v: &Value<'_>, out: &mut String) -> Result<(), RenderError> {
        match v {
            Value::Str(s, safe) => {
                if self.autoescape && !safe.is_yes() {
                    escape_into(s, out);
                } else {
                    out.push_str(s);
                }
            }
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            Value::Float(f) => write_float_localized(*f, out),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::None => out.push_str("None"),
            Value::Date(d) => out.push_str(&date::format(When::Date(*d), "N j, Y")?),
            Value::DateTime(d) => out.push_str(&date::format(When::DateTime(*d), "N j, Y, P")?),
            Value::List(_) | Value::Dict(_) => {
                let mut s = String::new();
                v.write_repr(&mut s);
                if self.autoescape {
                    escape_into(&s, out);
                } else {
                    out.push_str(&s);
                }
            }
        }
        Ok(())
    }

    fn value_to_string(&self, v: &Value<'_>) -> Result<String, RenderError> {
        let mut s = String::new();
        self.write_value(v, &mut s)?;
        Ok(s)
    }

    pub(crate) fn render_nodes(
        &mut self,
        nodes: &'r [Node],
        out: &mut String,
    ) -> Result<(), RenderError> {
        self.depth += 1;
        let max_depth = self.tpl.options.limits.max_depth;
        if self.depth > max_depth {
            return Err(RenderError::TooDeep(max_depth));
        }
        for node in nodes {
            self.tick(out)?;
            self.render_node(node, out)?;
        }
        let max = self.tpl.options.limits.max_output_bytes;
        if out.len() > max {
            return Err(RenderError::OutputTooLarge(max));
        }
        self.depth -= 1;
        Ok(())
    }

    fn render_node(&mut self, node: &'r Node, out: &mut String) -> Result<(), RenderError> {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Var(fe) => {
                let v = self.eval(fe, false)?;
                self.write_value(&v, out)?;
            }
            Node::If(branches) => {
                for (cond, body) in branches {
                    let hit = match cond {
                        None => true,
                        Some(c) => match self.eval_cond(c) {
                            Ok(v) => v.truthy(),
                            Err(RenderError::VariableDoesNotExist(_)) => false,
                            Err(e) => return Err(e),
                        },
                    };
                    if hit {
                        return self.render_nodes(body, out);
                    }
                }
            }
            Node::For(f) => self.render_for(f, out)?,
            Node::With(pairs, body) => {
                let mut vals = Vec::with_capacity(pairs.len());
                for (name, fe) in pairs {
                    vals.push((&**name, self.eval(fe, false)?));
                }
                self.push_scope();
                self.scopes.extend(vals);
                let r = self.render_nodes(body, out);
                self.pop_scope();
                r?;
            }
            Node::Cycle(id) => {
                let Some(def) = self.tpl.cycles.get(*id) else {
                    return Ok(());
                };
                if def.values.is_empty() {
                    return Ok(());
                }
                let pos = self.cycle_pos[*id] % def.values.len();
                self.cycle_pos[*id] = (pos + 1) % def.values.len();
                let v = self.eval(&def.values[pos], false)?;
                if let Some(name) = &def.name {
                    self.set_upward(name, v.clone());
                }
                if !def.silent {
                    self.write_value(&v, out)?;
                }
            }
            Node::ResetCycle(id) => {
                if let Some(p) = self.cycle_pos.get_mut(*id) {
                    *p = 0;
                }
            }
            Node::Firstof(vals, asvar) => {
                let mut first = String::new();
                for fe in vals {
                    let v = self.eval(fe, true)?;
                    if v.truthy() {
                        first = self.value_to_string(&v)?;
                        break;
                    }
                }
                match asvar {
                    Some(name) => {
                        let safe = self.autoescape;
                        self.set_current(name, Value::Str(Cow::Owned(first), Safe::from(safe)));
                    }
                    None => out.push_str(&first),
                }
            }
            Node::Spaceless(body) => {
                let mut tmp = String::new();
                self.render_nodes(body, &mut tmp)?;
                out.push_str(&strip_spaces_between_tags(tmp.trim_matches(is_space)));
            }
            Node::Autoescape(on, body) => {
                let old = self.autoescape;
                self.autoescape = *on;
                let r = self.render_nodes(body, out);
                self.autoescape = old;
                r?;
            }
            Node::FilterBlock(calls, body) => {
                let mut tmp = String::new();
                self.render_nodes(body, &mut tmp)?;
                let v = self.apply_filters(Value::Str(Cow::Owned(tmp), Safe::Yes), calls)?;
                match &v {
                    Value::Str(s, _) => out.push_str(s),
                    // Django joins node output with str.join: non-strings raise.
                    other => {
                        return Err(RenderError::TypeError(format!(
                            "sequence item: expected str instance, {} found",
                            type_name(other)
                        )))
                    }
                }
            }
            Node::WidthRatio(w) => self.render_widthratio(w, out)?,
            Node::IfChanged(ic) => self.render_ifchanged(ic, out)?,
            Node::Regroup(rg) => self.render_regroup(rg)?,
            Node::Now(fmt, asvar) => {
                let now = self.ctx.now.ok_or(RenderError::NoClock)?;
                let f = date::named_format(fmt).unwrap_or(fmt);
                let s = date::format(When::DateTime(now), f)?;
                match asvar {
                    Some(name) => self.set_current(name, Value::str_owned(s)),
                    None => out.push_str(&s),
                }
            }
            Node::Today(fmt, asvar) => {
                let now = self.ctx.now.ok_or(RenderError::NoClock)?;
                let s = date::strftime(now, fmt);
                match asvar {
                    Some(name) => self.set_current(name, Value::str_owned(s)),
                    None => out.push_str(&s),
                }
            }
        }
        Ok(())
    }

    fn render_for(&mut self, f: &'r ForNode, out: &mut String) -> Result<(), RenderError> {
        let parent = self
            .lookup_name("forloop")
            .unwrap_or_else(|| Value::Dict(Dict::Owned(Arc::new(Vec::new()))));
        let seq = self.eval(&f.seq, true)?;
        let items = match seq {
            Value::None => Items::Vec(Vec::new()),
            Value::List(l) => Items::List(l),
            Value::Dict(_) | Value::Str(..) => Items::Vec(seq.py_iter().unwrap_or_default()),
            other => {
                return Err(RenderError::TypeError(format!(
                    "'{}' object is not iterable",
                    type_name(&other)
                )))
            }
        };
        let n = items.len();
        if n == 0 {
            return self.render_nodes(&f.empty, out);
        }
        self.push_scope();
        let loop_id = self.next_loop_id;
        self.next_loop_id += 1;
        self.loop_ids.push(loop_id);
        let fl: Vec<(Cow<'r, str>, Value<'r>)> = vec![
            (Cow::Borrowed("parentloop"), parent),
            (Cow::Borrowed("counter0"), Value::Int(0)),
            (Cow::Borrowed("counter"), Value::Int(1)),
            (Cow::Borrowed("revcounter"), Value::Int(n as i64)),
            (Cow::Borrowed("revcounter0"), Value::Int(n as i64 - 1)),
            (Cow::Borrowed("first"), Value::Bool(true)),
            (Cow::Borrowed("last"), Value::Bool(n == 1)),
        ];
        self.scopes
            .push(("forloop", Value::Dict(Dict::Owned(Arc::new(fl)))));
        let fl_idx = self.scopes.len() - 1;
        let unpack = f.vars.len() > 1;
        let var_idx = if unpack {
            None
        } else {
            self.scopes.push((&f.vars[0], Value::None));
            Some(self.scopes.len() - 1)
        };
        let result = (|| -> Result<(), RenderError> {
            for i in 0..n {
                self.tick(out)?;
                let idx = if f.reversed { n - 1 - i } else { i };
                let item = items.get(idx);
                if let Value::Dict(Dict::Owned(arc)) = &mut self.scopes[fl_idx].1 {
                    let d = Arc::make_mut(arc);
                    let i64n = n as i64;
                    let ii = i as i64;
                    d[1].1 = Value::Int(ii);
                    d[2].1 = Value::Int(ii + 1);
                    d[3].1 = Value::Int(i64n - ii);
                    d[4].1 = Value::Int(i64n - ii - 1);
                    d[5].1 = Value::Bool(i == 0);
                    d[6].1 = Value::Bool(i == n - 1);
                }
                match var_idx {
                    Some(vi) => {
                        self.scopes[vi].1 = item;
                        self.render_nodes(&f.body, out)?;
                    }
                    None => {
                        let parts = item.py_iter().unwrap_or_else(|| vec![item.clone()]);
                        if parts.len() != f.vars.len()
                            || item.py_len().is_none() && f.vars.len() != 1
                        {
                            return Err(RenderError::ValueError(format!(
                                "Need {} values to unpack in for loop; got {}. ",
                                f.vars.len(),
                                if item.py_len().is_none() {
                                    1
                                } else {
                                    parts.len()
                                }
                            )));
                        }
                        self.push_scope();
                        for (name, v) in f.vars.iter().zip(parts) {
                            self.set_current(name, v);
                        }
                        let r = self.render_nodes(&f.body, out);
                        self.pop_scope();
                        r?;
                    }
                }
            }
            Ok(())
        })();
        self.loop_ids.pop();
        self.pop_scope();
        result
    }

    fn render_widthratio(
        &mut self,
        w: &'r WidthRatio,
        out: &mut String,
    ) -> Result<(), RenderError> {
        let vals = (|| -> Result<(Value<'r>, Value<'r>, Value<'r>), RenderError> {
            Ok((
                self.eval(&w.value, false)?,
                self.eval(&w.max, false)?,
                self.eval(&w.width, false)?,
            ))
        })();
        let (v, m, width) = match vals {
            Ok(t) => t,
            Err(RenderError::VariableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let width = filters::django::py_int(&width).map_err(|_| {
            RenderError::TemplateSyntax("widthratio final argument must be a number".into())
        })?;
        let f = |x: &Value<'_>| filters::django::py_float(x).ok();
        let result = match (f(&v), f(&m)) {
            (Some(a), Some(b)) => {
                if b == 0.0 {
                    "0".to_string()
                } else {
                    let ratio = (a / b) * width as f64;
                    if ratio.is_finite() {
                        // Python's round(): half to even.
                        let r = ratio.round();
                        let r = if (ratio - ratio.trunc()).abs() == 0.5 {
                            2.0 * (ratio / 2.0).round()
                        } else {
                            r
                        };
                        format!("{r:.0}")
                    } else {
                        String::new()
                    }
                }
            }
            _ => String::new(),
        };
        match &w.asvar {
            Some(name) => self.set_current(name, Value::str_owned(result)),
            None => out.push_str(&result),
        }
        Ok(())
    }

    fn render_ifchanged(&mut self, ic: &'r IfChanged, out: &mut String) -> Result<(), RenderError> {
        let key = (ic.id, self.loop_ids.last().copied().unwrap_or(0));
        if ic.vars.is_empty() {
            let mut tmp = String::new();
            self.render_nodes(&ic.body, &mut tmp)?;
            let changed = !matches!(self.ifchanged.get(&key), Some(Saved::Text(t)) if *t == tmp);
            if changed {
                self.ifchanged.insert(key, Saved::Text(tmp.clone()));
                if tmp.is_empty() {
                    return self.render_nodes(&ic.body, out);
                }
                out.push_str(&tmp);
            } else {
                self.render_nodes(&ic.else_body, out)?;
            }
        } else {
            let mut vals = Vec::with_capacity(ic.vars.len());
            for fe in &ic.vars {
                vals.push(self.eval(fe, true)?);
            }
            let same = match self.ifchanged.get(&key) {
                Some(Saved::Values(old)) => {
                    old.len() == vals.len() && old.iter().zip(&vals).all(|(a, b)| a.py_eq(b))
                }
                _ => false,
            };
            if !same {
                self.ifchanged.insert(key, Saved::Values(vals));
                self.render_nodes(&ic.body, out)?;
            } else {
                self.render_nodes(&ic.else_body, out)?;
            }
        }
        Ok(())
    }

    fn render_regroup(&mut self, rg: &'r Regroup) -> Result<(), RenderError> {
        let list = self.eval(&rg.target, true)?;
        if let Value::None = list {
            self.set_current(&rg.var, Value::list(Vec::new()));
            return Ok(());
        }
        let Some(items) = list.py_iter() else {
            return Err(RenderError::TypeError(format!(
                "'{}' object is not iterable",
                type_name(&list)
            )));
        };
        let mut groups: Vec<(Value<'r>, Vec<Value<'r>>)> = Vec::new();
        for it in items {
            self.set_current(&rg.var, it.clone());
            let k = self.eval(&rg.key, true)?;
            match groups.last_mut() {
                Some((gk, members)) if gk.py_eq(&k) => members.push(it),
                _ => groups.push((k, vec![it])),
            }
        }
        let result = groups
            .into_iter()
            .map(|(k, members)| {
                Value::Dict(Dict::Owned(Arc::new(vec![
                    (Cow::Borrowed("grouper"), k),
                    (Cow::Borrowed("list"), Value::list(members)),
                ])))
            })
            .collect();
        self.set_current(&rg.var, Value::list(result));
        Ok(())
    }
}

fn py_is(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y && (-5..=256).contains(x),
        _ => false,
    }
}

fn date_attr<'r>(w: When, key: &str) -> Option<Value<'r>> {
    use chrono::{Datelike, Timelike};
    let d = match w {
        When::Date(d) => d,
        When::DateTime(dt) => dt.date(),
    };
    let t = match w {
        When::DateTime(dt) => Some(dt.time()),
        When::Date(_) => None,
    };
    Some(match key {
        "year" => Value::Int(d.year() as i64),
        "month" => Value::Int(d.month() as i64),
        "day" => Value::Int(d.day() as i64),
        "weekday" => Value::Int(d.weekday().num_days_from_monday() as i64),
        "isoweekday" => Value::Int(d.weekday().number_from_monday() as i64),
        "hour" => Value::Int(t?.hour() as i64),
        "minute" => Value::Int(t?.minute() as i64),
        "second" => Value::Int(t?.second() as i64),
        "microsecond" => Value::Int((t?.nanosecond() / 1000) as i64),
        "date" => Value::Date(d),
        "isoformat" => Value::str_owned(match w {
            When::Date(d) => d.format("%Y-%m-%d").to_string(),
            When::DateTime(dt) => dt.format("%Y-%m-%dT%H:%M:%S").to_string(),
        }),
        _ => return None,
    })
}

/// `re.sub(r">\s+<", "><", s)`.
fn strip_spaces_between_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('>') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let ws: usize = rest
            .chars()
            .take_while(|c| is_space(*c))
            .map(char::len_utf8)
            .sum();
        if ws > 0 && rest[ws..].starts_with('<') {
            rest = &rest[ws..];
        }
    }
    out.push_str(rest);
    out
}
