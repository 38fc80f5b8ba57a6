//! The `{% if %}` expression language: Django's "smart if" Pratt parser
//! with its binding powers (or 6, and 7, not 8, in 9, comparisons 10).

use crate::expression::{parse_filter_expr, FilterExpr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub enum Cond {
    Lit(FilterExpr),
    Or(Box<Cond>, Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Cmp(CmpOp, Box<Cond>, Box<Cond>),
}

#[derive(Debug, Clone)]
enum Tok<'s> {
    Op(&'static str),
    Lit(&'s str),
    End,
}

fn op_of(s: &str) -> Option<&'static str> {
    Some(match s {
        "or" => "or",
        "and" => "and",
        "not" => "not",
        "in" => "in",
        "not in" => "not in",
        "is" => "is",
        "is not" => "is not",
        "==" => "==",
        "!=" => "!=",
        ">" => ">",
        ">=" => ">=",
        "<" => "<",
        "<=" => "<=",
        _ => return None,
    })
}

fn lbp(t: &Tok<'_>) -> u8 {
    match t {
        Tok::Op("or") => 6,
        Tok::Op("and") => 7,
        Tok::Op("not") => 8,
        Tok::Op("in") | Tok::Op("not in") => 9,
        Tok::Op(_) => 10,
        _ => 0,
    }
}

struct IfParser<'s> {
    toks: Vec<Tok<'s>>,
    pos: usize,
    depth: usize,
    max_depth: usize,
}

/// Parse the bits after `if`/`elif`.
pub fn parse_condition(bits: &[&str], max_depth: usize) -> Result<Cond, String> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bits.len() {
        let t = bits[i];
        if t == "is" && bits.get(i + 1) == Some(&"not") {
            toks.push(Tok::Op("is not"));
            i += 2;
            continue;
        }
        if t == "not" && bits.get(i + 1) == Some(&"in") {
            toks.push(Tok::Op("not in"));
            i += 2;
            continue;
        }
        toks.push(match op_of(t) {
            Some(op) => Tok::Op(op),
            None => Tok::Lit(t),
        });
        i += 1;
    }
    let mut p = IfParser {
        toks,
        pos: 0,
        depth: 0,
        max_depth,
    };
    let c = p.expression(0)?;
    if let Some(t) = p.toks.get(p.pos) {
        return Err(format!("Unused '{}' at end of if expression.", display(t)));
    }
    Ok(c)
}

fn display(t: &Tok<'_>) -> String {
    match t {
        Tok::Op(o) => o.to_string(),
        Tok::Lit(l) => l.to_string(),
        Tok::End => "end".into(),
    }
}

impl<'s> IfParser<'s> {
    fn next(&mut self) -> Tok<'s> {
        let t = self.toks.get(self.pos).cloned().unwrap_or(Tok::End);
        self.pos += 1;
        t
    }
    fn peek(&self) -> Tok<'s> {
        self.toks.get(self.pos).cloned().unwrap_or(Tok::End)
    }

    fn expression(&mut self, rbp: u8) -> Result<Cond, String> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err("if expression nested too deeply".into());
        }
        let t = self.next();
        let mut left = self.nud(t)?;
        while rbp < lbp(&self.peek()) {
            let t = self.next();
            left = self.led(t, left)?;
        }
        self.depth -= 1;
        Ok(left)
    }

    fn nud(&mut self, t: Tok<'s>) -> Result<Cond, String> {
        match t {
            Tok::Lit(s) => Ok(Cond::Lit(parse_filter_expr(s)?)),
            Tok::Op("not") => Ok(Cond::Not(Box::new(self.expression(8)?))),
            Tok::Op(o) => Err(format!("Not expecting '{o}' in this position in if tag.")),
            Tok::End => Err("Unexpected end of expression in if tag.".into()),
        }
    }

    fn led(&mut self, t: Tok<'s>, left: Cond) -> Result<Cond, String> {
        let Tok::Op(op) = t else {
            return Err(format!(
                "Not expecting '{}' as infix operator in if tag.",
                display(&t)
            ));
        };
        let bp = lbp(&t);
        if op == "not" {
            return Err("Not expecting 'not' as infix operator in if tag.".into());
        }
        let right = Box::new(self.expression(bp)?);
        let left = Box::new(left);
        Ok(match op {
            "or" => Cond::Or(left, right),
            "and" => Cond::And(left, right),
            _ => Cond::Cmp(
                match op {
                    "==" => CmpOp::Eq,
                    "!=" => CmpOp::Ne,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    ">=" => CmpOp::Ge,
                    "in" => CmpOp::In,
                    "not in" => CmpOp::NotIn,
                    "is" => CmpOp::Is,
                    _ => CmpOp::IsNot,
                },
                left,
                right,
            ),
        })
    }
}
