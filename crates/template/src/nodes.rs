//! The compiled template tree. Everything text-derived is parsed here once
//! (filter chains, lookups, tag arguments) so rendering only walks it.

use crate::condition::Cond;
use crate::expression::{FilterCall, FilterExpr};

/// One node of a compiled template.
#[derive(Debug, Clone)]
pub enum Node {
    Text(Box<str>),
    Var(FilterExpr),
    /// `if`/`elif`/`else` branches; `None` condition is the `else`.
    If(Vec<(Option<Cond>, Vec<Node>)>),
    For(Box<ForNode>),
    With(Vec<(Box<str>, FilterExpr)>, Vec<Node>),
    /// Index into `Template::cycles` (named cycles share state).
    Cycle(usize),
    ResetCycle(usize),
    Firstof(Vec<FilterExpr>, Option<Box<str>>),
    Spaceless(Vec<Node>),
    Autoescape(bool, Vec<Node>),
    FilterBlock(Vec<FilterCall>, Vec<Node>),
    WidthRatio(Box<WidthRatio>),
    IfChanged(Box<IfChanged>),
    Regroup(Box<Regroup>),
    /// Django's `{% now "fmt" [as var] %}` (date-filter format).
    Now(Box<str>, Option<Box<str>>),
    /// Klaviyo's `{% today "%Y-%m-%d" [as var] %}` (strftime format).
    Today(Box<str>, Option<Box<str>>),
}

#[derive(Debug, Clone)]
pub struct ForNode {
    pub vars: Vec<Box<str>>,
    pub seq: FilterExpr,
    pub reversed: bool,
    pub body: Vec<Node>,
    pub empty: Vec<Node>,
}

#[derive(Debug, Clone)]
pub struct CycleDef {
    pub values: Vec<FilterExpr>,
    pub name: Option<Box<str>>,
    pub silent: bool,
}

#[derive(Debug, Clone)]
pub struct WidthRatio {
    pub value: FilterExpr,
    pub max: FilterExpr,
    pub width: FilterExpr,
    pub asvar: Option<Box<str>>,
}

#[derive(Debug, Clone)]
pub struct IfChanged {
    /// Unique per node, keys the per-loop "last seen" state.
    pub id: usize,
    pub vars: Vec<FilterExpr>,
    pub body: Vec<Node>,
    pub else_body: Vec<Node>,
}

#[derive(Debug, Clone)]
pub struct Regroup {
    pub target: FilterExpr,
    /// `var_name.<by-expression>`, resolved with each item bound to `var_name`.
    pub key: FilterExpr,
    pub var: Box<str>,
}
