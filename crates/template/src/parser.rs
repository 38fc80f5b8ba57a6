//! Turns tokens into the node tree, tag by tag, with Django's argument
//! rules and error messages. Nesting depth is bounded so hostile input
//! cannot overflow the stack.

use std::collections::HashMap;

use crate::condition::parse_condition;
use crate::error::TemplateError;
use crate::expression::{parse_filter_expr, smart_split, FilterExpr};
use crate::lexer::{line_col, tokenize, Token, TokenKind};
use crate::nodes::{CycleDef, ForNode, IfChanged, Node, Regroup, WidthRatio};

/// Output of a successful parse.
pub struct Parsed {
    pub nodes: Vec<Node>,
    pub cycles: Vec<CycleDef>,
    pub ifchanged_count: usize,
}

pub struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token<'s>>,
    pos: usize,
    depth: usize,
    max_depth: usize,
    cycles: Vec<CycleDef>,
    named_cycles: HashMap<String, usize>,
    last_cycle: Option<usize>,
    ifchanged_count: usize,
    block_names: Vec<String>,
    /// Opening tags still waiting for their end tag (for error messages).
    open: Vec<(String, usize)>,
}

type PResult<T> = Result<T, TemplateError>;

impl<'s> Parser<'s> {
    pub fn new(src: &'s str, max_depth: usize) -> Self {
        Parser {
            src,
            tokens: tokenize(src),
            pos: 0,
            depth: 0,
            max_depth,
            cycles: Vec::new(),
            named_cycles: HashMap::new(),
            last_cycle: None,
            ifchanged_count: 0,
            block_names: Vec::new(),
            open: Vec::new(),
        }
    }

    pub fn parse_template(mut self) -> PResult<Parsed> {
        let (nodes, _) = self.parse(&[])?;
        Ok(Parsed {
            nodes,
            cycles: self.cycles,
            ifchanged_count: self.ifchanged_count,
        })
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> TemplateError {
        let (line, column) = line_col(self.src, offset);
        TemplateError {
            line,
            column,
            message: message.into(),
        }
    }

    /// Parse until a block tag whose command is in `until`; return the nodes
    /// and that terminating token (consumed).
    fn parse(&mut self, until: &[&str]) -> PResult<(Vec<Node>, Option<Token<'s>>)> {
        self.depth += 1;
        if self.depth > self.max_depth {
            let off = self.tokens.get(self.pos).map_or(0, |t| t.offset);
            return Err(self.err_at(
                off,
                format!("template nesting deeper than {}", self.max_depth),
            ));
        }
        let mut nodes = Vec::new();
        while self.pos < self.tokens.len() {
            let tok = self.tokens[self.pos].clone();
            self.pos += 1;
            match tok.kind {
                TokenKind::Text => push_text(&mut nodes, tok.content),
                TokenKind::Comment => {}
                TokenKind::Var => {
                    if tok.content.is_empty() {
                        return Err(self.err_at(tok.offset, "Empty variable tag"));
                    }
                    let fe =
                        parse_filter_expr(tok.content).map_err(|m| self.err_at(tok.offset, m))?;
                    nodes.push(Node::Var(fe));
                }
                TokenKind::Block => {
                    let Some(command) = tok.content.split_whitespace().next() else {
                        return Err(self.err_at(tok.offset, "Empty block tag"));
                    };
                    if until.contains(&command) {
                        self.depth -= 1;
                        return Ok((nodes, Some(tok)));
                    }
                    self.open.push((command.to_string(), tok.offset));
                    let node = self.tag(command, &tok, until)?;
                    self.open.pop();
                    if let Some(n) = node {
                        nodes.push(n);
                    }
                }
            }
        }
        if !until.is_empty() {
            let (cmd, off) = self.open.last().cloned().unwrap_or_default();
            return Err(self.err_at(
                off,
                format!(
                    "Unclosed tag '{cmd}'. Looking for one of: {}.",
                    until.join(", ")
                ),
            ));
        }
        self.depth -= 1;
        Ok((nodes, None))
    }

    /// Parse until one of `until`, requiring the end token to exist.
    fn parse_block(&mut self, until: &[&str]) -> PResult<(Vec<Node>, Token<'s>)> {
        let (nodes, end) = self.parse(until)?;
        match end {
            Some(t) => Ok((nodes, t)),
            None => Err(self.err_at(self.src.len(), "Unexpected end of template")),
        }
    }

    fn compile(&self, tok: &Token<'_>, s: &str) -> PResult<FilterExpr> {
        parse_filter_expr(s).map_err(|m| self.err_at(tok.offset, m))
    }

    fn tag(&mut self, command: &str, tok: &Token<'s>, until: &[&str]) -> PResult<Option<Node>> {
        let bits = smart_split(tok.content);
        let e = |p: &Self, m: String| p.err_at(tok.offset, m);
        Ok(Some(match command {
            "if" => {
                let mut branches = Vec::new();
                let cond = parse_condition(&bits[1..], self.max_depth).map_err(|m| e(self, m))?;
                let (body, mut end) = self.parse_block(&["elif", "else", "endif"])?;
                branches.push((Some(cond), body));
                while end.content.starts_with("elif") {
                    let b = smart_split(end.content);
                    let cond = parse_condition(&b[1..], self.max_depth)
                        .map_err(|m| self.err_at(end.offset, m))?;
                    let (body, next) = self.parse_block(&["elif", "else", "endif"])?;
                    branches.push((Some(cond), body));
                    end = next;
                }
                if end.content == "else" {
                    let (body, next) = self.parse_block(&["endif"])?;
                    branches.push((None, body));
                    end = next;
                }
                if end.content != "endif" {
                    return Err(self.err_at(
                        end.offset,
                        format!("Malformed template tag: \"{}\"", end.content),
                    ));
                }
                Node::If(branches)
            }
            "for" => {
                if bits.len() < 4 {
                    return Err(e(
                        self,
                        format!(
                            "'for' statements should have at least four words: {}",
                            tok.content
                        ),
                    ));
                }
                let reversed = bits[bits.len() - 1] == "reversed";
                let in_index = if reversed {
                    bits.len() - 3
                } else {
                    bits.len() - 2
                };
                if bits[in_index] != "in" {
                    return Err(e(
                        self,
                        format!(
                            "'for' statements should use the format 'for x in y': {}",
                            tok.content
                        ),
                    ));
                }
                let joined = bits[1..in_index].join(" ");
                let mut vars = Vec::new();
                for v in joined.split(',') {
                    let v = v.trim_matches(' ');
                    if v.is_empty() || v.contains([' ', '"', '\'', '|']) {
                        return Err(e(
                            self,
                            format!("'for' tag received an invalid argument: {}", tok.content),
                        ));
                    }
                    vars.push(v.into());
                }
                let seq = self.compile(tok, bits[in_index + 1])?;
                let (body, end) = self.parse_block(&["empty", "endfor"])?;
                let empty = if end.content == "empty" {
                    self.parse_block(&["endfor"])?.0
                } else {
                    Vec::new()
                };
                Node::For(Box::new(ForNode {
                    vars,
                    seq,
                    reversed,
                    body,
                    empty,
                }))
            }
            "with" => {
                let rest: Vec<&str> = bits[1..].to_vec();
                let (pairs, leftover) = self.token_kwargs(tok, &rest, true)?;
                if pairs.is_empty() {
                    return Err(e(
                        self,
                        "'with' expected at least one variable assignment".into(),
                    ));
                }
                if let Some(l) = leftover {
                    return Err(e(self, format!("'with' received an invalid token: '{l}'")));
                }
                let (body, _) = self.parse_block(&["endwith"])?;
                Node::With(pairs, body)
            }
            "comment" => {
                // Skip everything up to the matching `endcomment`.
                while self.pos < self.tokens.len() {
                    let t = &self.tokens[self.pos];
                    self.pos += 1;
                    if t.kind == TokenKind::Block && t.content == "endcomment" {
                        return Ok(None);
                    }
                }
                return Err(e(
                    self,
                    "Unclosed tag 'comment'. Looking for one of: endcomment.".into(),
                ));
            }
            "verbatim" => {
                let (body, _) = self.parse_block(&["endverbatim"])?;
                let mut text = String::new();
                for n in body {
                    if let Node::Text(t) = n {
                        text.push_str(&t);
                    }
                }
                Node::Text(text.into())
            }
            "cycle" => self.cycle(tok, &bits)?,
            "resetcycle" => {
                let id = match bits.len() {
                    1 => self
                        .last_cycle
                        .ok_or_else(|| e(self, "No cycles in template.".into()))?,
                    2 => *self.named_cycles.get(bits[1]).ok_or_else(|| {
                        e(self, format!("Named cycle '{}' does not exist.", bits[1]))
                    })?,
                    _ => {
                        return Err(e(
                            self,
                            "'resetcycle' tag accepts at most one argument.".into(),
                        ))
                    }
                };
                Node::ResetCycle(id)
            }
            "firstof" => {
                let mut args = bits[1..].to_vec();
                if args.is_empty() {
                    return Err(e(
                        self,
                        "'firstof' statement requires at least one argument".into(),
                    ));
                }
                let mut asvar = None;
                if args.len() >= 2 && args[args.len() - 2] == "as" {
                    asvar = Some(args[args.len() - 1].into());
                    args.truncate(args.len() - 2);
                }
                let vals = args
                    .iter()
                    .map(|a| self.compile(tok, a))
                    .collect::<PResult<Vec<_>>>()?;
                Node::Firstof(vals, asvar)
            }
            "spaceless" => Node::Spaceless(self.parse_block(&["endspaceless"])?.0),
            "autoescape" => {
                let args: Vec<&str> = tok.content.split_whitespace().collect();
                if args.len() != 2 {
                    return Err(e(
                        self,
                        "'autoescape' tag requires exactly one argument.".into(),
                    ));
                }
                let on = match args[1] {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(e(
                            self,
                            "'autoescape' argument should be 'on' or 'off'".into(),
                        ))
                    }
                };
                Node::Autoescape(on, self.parse_block(&["endautoescape"])?.0)
            }
            "filter" => {
                let rest = tok
                    .content
                    .split_once(char::is_whitespace)
                    .map(|(_, r)| r.trim_start())
                    .unwrap_or("");
                if rest.is_empty() {
                    return Err(e(self, "'filter' tag requires an argument".into()));
                }
                let fe = self.compile(tok, &format!("var|{rest}"))?;
                for f in &fe.filters {
                    if matches!(&*f.name, "escape" | "safe") {
                        return Err(e(
                            self,
                            format!("\"filter {}\" is not permitted.  Use the \"autoescape\" tag instead.", f.name),
                        ));
                    }
                }
                let (body, _) = self.parse_block(&["endfilter"])?;
                Node::FilterBlock(fe.filters, body)
            }
            "templatetag" => {
                if bits.len() != 2 {
                    return Err(e(self, "'templatetag' statement takes one argument".into()));
                }
                let s = match bits[1] {
                    "openblock" => "{%",
                    "closeblock" => "%}",
                    "openvariable" => "{{",
                    "closevariable" => "}}",
                    "openbrace" => "{",
                    "closebrace" => "}",
                    "opencomment" => "{#",
                    "closecomment" => "#}",
                    other => {
                        return Err(e(self, format!("Invalid templatetag argument: '{other}'.")))
                    }
                };
                Node::Text(s.into())
            }
            "widthratio" => {
                let asvar = match bits.len() {
                    4 => None,
                    6 => {
                        if bits[4] != "as" {
                            return Err(e(
                                self,
                                "Invalid syntax in widthratio tag. Expecting 'as' keyword".into(),
                            ));
                        }
                        Some(bits[5].into())
                    }
                    _ => return Err(e(self, "widthratio takes at least three arguments".into())),
                };
                Node::WidthRatio(Box::new(WidthRatio {
                    value: self.compile(tok, bits[1])?,
                    max: self.compile(tok, bits[2])?,
                    width: self.compile(tok, bits[3])?,
                    asvar,
                }))
            }
            "ifchanged" => {
                let vars = bits[1..]
                    .iter()
                    .map(|b| self.compile(tok, b))
                    .collect::<PResult<Vec<_>>>()?;
                let (body, end) = self.parse_block(&["else", "endifchanged"])?;
                let else_body = if end.content == "else" {
                    self.parse_block(&["endifchanged"])?.0
                } else {
                    Vec::new()
                };
                let id = self.ifchanged_count;
                self.ifchanged_count += 1;
                Node::IfChanged(Box::new(IfChanged {
                    id,
                    vars,
                    body,
                    else_body,
                }))
            }
            "regroup" => {
                if bits.len() != 6 {
                    return Err(e(self, "'regroup' tag takes five arguments".into()));
                }
                if bits[2] != "by" {
                    return Err(e(
                        self,
                        "second argument to 'regroup' tag must be 'by'".into(),
                    ));
                }
                if bits[4] != "as" {
                    return Err(e(
                        self,
                        "next-to-last argument to 'regroup' tag must be 'as'".into(),
                    ));
                }
                Node::Regroup(Box::new(Regroup {
                    target: self.compile(tok, bits[1])?,
                    key: self.compile(tok, &format!("{}.{}", bits[5], bits[3]))?,
                    var: bits[5].into(),
                }))
            }
            "now" | "today" => {
                let mut b = bits.clone();
                let mut asvar = None;
                if b.len() == 4 && b[2] == "as" {
                    asvar = Some(b[3].into());
                    b.truncate(2);
                }
                if b.len() != 2 {
                    return Err(e(self, format!("'{command}' statement takes one argument")));
                }
                // Python's `bits[1][1:-1]`: drop the first and last character.
                let mut chars = b[1].chars();
                chars.next();
                chars.next_back();
                let fmt: Box<str> = chars.as_str().into();
                if command == "now" {
                    Node::Now(fmt, asvar)
                } else if asvar.is_none() {
                    // Klaviyo requires the binding: {% today "%Y-%m-%d" as today %}.
                    return Err(e(self, "'today' requires 'as <variable>'".into()));
                } else {
                    Node::Today(fmt, asvar)
                }
            }
            "current_year" => Node::Now("Y".into(), None),
            "block" => {
                // Without inheritance a block just renders its content in a
                // new scope; names must be unique like Django requires.
                let parts: Vec<&str> = tok.content.split_whitespace().collect();
                if parts.len() != 2 {
                    return Err(e(self, "'block' tag takes only one argument".into()));
                }
                let name = parts[1].to_string();
                if self.block_names.contains(&name) {
                    return Err(e(
                        self,
                        format!("'block' tag with name '{name}' appears more than once"),
                    ));
                }
                self.block_names.push(name.clone());
                let (body, end) = self.parse_block(&["endblock"])?;
                if end.content != "endblock" && end.content != format!("endblock {name}") {
                    return Err(
                        self.err_at(end.offset, format!("Invalid block tag: '{}'", end.content))
                    );
                }
                Node::With(Vec::new(), body)
            }
            _ => {
                let msg = if until.is_empty() {
                    format!("Invalid block tag: '{command}'. Did you forget to register or load this tag?")
                } else {
                    format!(
                        "Invalid block tag: '{command}', expected {}. Did you forget to register or load this tag?",
                        until.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(" or ")
                    )
                };
                return Err(e(self, msg));
            }
        }))
    }

    fn cycle(&mut self, tok: &Token<'s>, bits: &[&str]) -> PResult<Node> {
        let e = |p: &Self, m: String| p.err_at(tok.offset, m);
        if bits.len() < 2 {
            return Err(e(
                self,
                "'cycle' tag requires at least two arguments".into(),
            ));
        }
        if bits.len() == 2 {
            let name = bits[1];
            return match self.named_cycles.get(name) {
                Some(&id) => Ok(Node::Cycle(id)),
                None => Err(e(self, format!("Named cycle '{name}' does not exist"))),
            };
        }
        let mut args = bits.to_vec();
        let mut as_form = false;
        let mut silent = false;
        if args.len() > 4 {
            if args[args.len() - 3] == "as" {
                if args[args.len() - 1] != "silent" {
                    return Err(e(
                        self,
                        format!(
                            "Only 'silent' flag is allowed after cycle's name, not '{}'.",
                            args[args.len() - 1]
                        ),
                    ));
                }
                as_form = true;
                silent = true;
                args.pop();
            } else if args[args.len() - 2] == "as" {
                as_form = true;
            }
        }
        let (values, name) = if as_form {
            let name = args[args.len() - 1];
            (&args[1..args.len() - 2], Some(name))
        } else {
            (&args[1..], None)
        };
        let values = values
            .iter()
            .map(|v| self.compile(tok, v))
            .collect::<PResult<Vec<_>>>()?;
        let id = self.cycles.len();
        self.cycles.push(CycleDef {
            values,
            name: name.map(Into::into),
            silent,
        });
        if let Some(n) = name {
            self.named_cycles.insert(n.to_string(), id);
        }
        self.last_cycle = Some(id);
        Ok(Node::Cycle(id))
    }

    /// Django's `token_kwargs` (with the legacy `value as name` form).
    #[allow(clippy::type_complexity)]
    fn token_kwargs(
        &self,
        tok: &Token<'_>,
        bits: &[&str],
        legacy: bool,
    ) -> PResult<(Vec<(Box<str>, FilterExpr)>, Option<String>)> {
        let mut out: Vec<(Box<str>, FilterExpr)> = Vec::new();
        let kw = |s: &str| -> Option<(String, String)> {
            let n: usize = s
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .map(char::len_utf8)
                .sum();
            if n > 0 && s[n..].starts_with('=') && s.len() > n + 1 {
                Some((s[..n].to_string(), s[n + 1..].to_string()))
            } else {
                None
            }
        };
        let Some(first) = bits.first() else {
            return Ok((out, None));
        };
        let kwarg_format = kw(first).is_some();
        if !kwarg_format && (!legacy || bits.len() < 3 || bits[1] != "as") {
            return Ok((out, bits.first().map(|s| s.to_string())));
        }
        let mut i = 0;
        let insert = |out: &mut Vec<(Box<str>, FilterExpr)>, k: &str, v: FilterExpr| {
            if let Some(slot) = out.iter_mut().find(|(name, _)| &**name == k) {
                slot.1 = v;
            } else {
                out.push((k.into(), v));
            }
        };
        while i < bits.len() {
            if kwarg_format {
                let Some((k, v)) = kw(bits[i]) else {
                    break;
                };
                let fe = self.compile(tok, &v)?;
                insert(&mut out, &k, fe);
                i += 1;
            } else {
                if bits.len() - i < 3 || bits[i + 1] != "as" {
                    break;
                }
                let fe = self.compile(tok, bits[i])?;
                insert(&mut out, bits[i + 2], fe);
                i += 3;
                if i < bits.len() {
                    if bits[i] != "and" {
                        break;
                    }
                    i += 1;
                }
            }
        }
        Ok((out, bits.get(i).map(|s| s.to_string())))
    }
}

fn push_text(nodes: &mut Vec<Node>, text: &str) {
    nodes.push(Node::Text(text.into()));
}
