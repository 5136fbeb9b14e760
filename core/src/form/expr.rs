//! The form expression language: parsed once, evaluated safely.
//!
//! A small subset in the spirit of XLSForm:
//! - literals: `12`, `3.5`, `'text'`, `"text"`, `true`, `false`, `null`;
//! - `.` is the current field's value, `${name}` another field's;
//! - operators, loosest first: `or`; `and`; `=` `!=`; `<` `<=` `>` `>=`; `+` `-`; `*` `div` `mod`; unary `-`;
//! - functions: see [`FUNCTIONS`].
//!
//! There is no eval and no recursion on evaluation beyond the parsed tree's
//! depth, which is bounded, so hostile expressions cannot panic or blow the stack.

use chrono::{Datelike, NaiveDate};

use crate::error::{Error, Result};
use crate::identity::{Cccd, Sex};

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 48;

/// Functions the language knows, with their arity (min, max).
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("not", 1, 1),
    ("if", 3, 3),
    ("string-length", 1, 1),
    ("concat", 0, 16),
    ("coalesce", 2, 2),
    ("number", 1, 1),
    ("int", 1, 1),
    ("today", 0, 0),
    ("age", 1, 1),
    ("selected", 2, 2),
    ("count-selected", 1, 1),
    ("is-digits", 1, 1),
    ("cccd-valid", 1, 1),
    ("cccd-matches", 3, 3),
    ("count", 1, 1),
    ("count-value", 3, 3),
    ("is-member-id", 1, 1),
];

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (an empty answer).
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string (dates are ISO `YYYY-MM-DD` strings).
    Str(String),
    /// The choices of a select_multiple.
    List(Vec<String>),
}

impl Value {
    /// Truthiness: null, false, 0, "" and [] are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Num(n) => *n != 0.0 && !n.is_nan(),
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
        }
    }

    fn as_num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn as_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            Value::Num(n) => n.to_string(),
            Value::Str(s) => s.clone(),
            Value::List(l) => l.join(" "),
        }
    }

    fn as_date(&self) -> Option<NaiveDate> {
        match self {
            Value::Str(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    node: Node,
    source: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    Current,
    Field(String),
    Neg(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Call(String, Vec<Node>),
}

/// One repeat row, as a lookup of its fields by name.
pub type RowLookup<'a> = Box<dyn Fn(&str) -> Value + 'a>;

/// What an expression can see while it is evaluated.
pub trait Scope {
    /// The current field's value (`.`).
    fn current(&self) -> Value;
    /// Another field's value (`${name}`): the current repeat row first, then the top level.
    fn field(&self, name: &str) -> Value;
    /// Rows of a repeat group, as lookups of their fields.
    fn rows(&self, repeat: &str) -> Vec<RowLookup<'_>>;
    /// Whether a member with this id exists.
    fn member_exists(&self, id: &str) -> bool;
    /// Today's date, fixed per validation run.
    fn today(&self) -> NaiveDate;
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Field(String),
    Dot,
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

fn err(offset: usize, message: impl Into<String>) -> Error {
    Error::Expression { offset, message: message.into() }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let single = match c {
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b',' => Some(Tok::Comma),
            b'+' => Some(Tok::Op("+")),
            b'-' => Some(Tok::Op("-")),
            b'*' => Some(Tok::Op("*")),
            b'=' => Some(Tok::Op("=")),
            _ => None,
        };
        if let Some(tok) = single {
            out.push((start, tok));
            i += 1;
            continue;
        }
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((start, Tok::Op("!=")));
                i += 2;
            }
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    (b'<', true) => "<=",
                    (b'<', false) => "<",
                    (_, true) => ">=",
                    _ => ">",
                };
                out.push((start, Tok::Op(op)));
                i += if eq { 2 } else { 1 };
            }
            b'\'' | b'"' => {
                let end = src[i + 1..].find(c as char).ok_or_else(|| err(start, "unterminated string"))?;
                out.push((start, Tok::Str(src[i + 1..i + 1 + end].to_string())));
                i += end + 2;
            }
            b'$' => {
                if bytes.get(i + 1) != Some(&b'{') {
                    return Err(err(start, "expected '{' after '$'"));
                }
                let end = src[i + 2..].find('}').ok_or_else(|| err(start, "unterminated ${...}"))?;
                let name = &src[i + 2..i + 2 + end];
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(err(start, format!("bad field name {name:?}")));
                }
                out.push((start, Tok::Field(name.to_string())));
                i += end + 3;
            }
            b'.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push((start, Tok::Dot));
                i += 1;
            }
            b'0'..=b'9' | b'.' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let n: f64 = src[start..i].parse().map_err(|_| err(start, "bad number"))?;
                out.push((start, Tok::Num(n)));
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-') {
                    i += 1;
                }
                out.push((start, Tok::Ident(src[start..i].to_string())));
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character {ch:?}")));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn bin_op(&self, level: usize) -> Option<BinOp> {
        let op: &str = match self.peek()? {
            Tok::Op(op) => op,
            Tok::Ident(w) => w.as_str(),
            _ => return None,
        };
        let found = match (level, op) {
            (0, "or") => BinOp::Or,
            (1, "and") => BinOp::And,
            (2, "=") => BinOp::Eq,
            (2, "!=") => BinOp::Ne,
            (3, "<") => BinOp::Lt,
            (3, "<=") => BinOp::Le,
            (3, ">") => BinOp::Gt,
            (3, ">=") => BinOp::Ge,
            (4, "+") => BinOp::Add,
            (4, "-") => BinOp::Sub,
            (5, "*") => BinOp::Mul,
            (5, "div") => BinOp::Div,
            (5, "mod") => BinOp::Mod,
            _ => return None,
        };
        Some(found)
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.offset(), "expression nested too deeply"));
        }
        Ok(())
    }

    fn binary(&mut self, level: usize) -> Result<Node> {
        if level > 5 {
            return self.unary();
        }
        self.enter()?;
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self.bin_op(level) {
            self.pos += 1;
            let right = self.binary(level + 1)?;
            left = Node::Bin(op, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node> {
        if self.peek() == Some(&Tok::Op("-")) {
            self.pos += 1;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Neg(Box::new(inner)));
        }
        self.primary()
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<()> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(err(self.offset(), format!("expected {what}")))
        }
    }

    fn primary(&mut self) -> Result<Node> {
        let offset = self.offset();
        let Some((_, tok)) = self.toks.get(self.pos).cloned() else {
            return Err(err(offset, "unexpected end of expression"));
        };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Node::Lit(Value::Num(n))),
            Tok::Str(s) => Ok(Node::Lit(Value::Str(s))),
            Tok::Field(f) => Ok(Node::Field(f)),
            Tok::Dot => Ok(Node::Current),
            Tok::LParen => {
                self.enter()?;
                let inner = self.binary(0)?;
                self.depth -= 1;
                self.expect(&Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::Ident(name) if self.peek() == Some(&Tok::LParen) => {
                self.pos += 1;
                let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(f, _, _)| *f == name) else {
                    return Err(err(offset, format!("unknown function {name}()")));
                };
                let mut args = Vec::new();
                if self.peek() != Some(&Tok::RParen) {
                    loop {
                        self.enter()?;
                        args.push(self.binary(0)?);
                        self.depth -= 1;
                        if self.peek() == Some(&Tok::Comma) {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(&Tok::RParen, "')' after arguments")?;
                if args.len() < min || args.len() > max {
                    return Err(err(offset, format!("{name}() takes {min}..={max} arguments, got {}", args.len())));
                }
                Ok(Node::Call(name, args))
            }
            Tok::Ident(word) => match word.as_str() {
                "true" => Ok(Node::Lit(Value::Bool(true))),
                "false" => Ok(Node::Lit(Value::Bool(false))),
                "null" => Ok(Node::Lit(Value::Null)),
                _ => Err(err(offset, format!("unexpected word {word:?}"))),
            },
            other => Err(err(offset, format!("unexpected {other:?}"))),
        }
    }
}

impl Expr {
    /// Parses an expression, or says where it is malformed.
    pub fn parse(source: &str) -> Result<Expr> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(err(MAX_EXPRESSION_LEN, "expression too long"));
        }
        let toks = lex(source)?;
        let mut p = Parser { toks, pos: 0, end: source.len(), depth: 0 };
        let node = p.binary(0)?;
        if p.pos != p.toks.len() {
            return Err(err(p.offset(), "unexpected trailing input"));
        }
        Ok(Expr { node, source: source.to_string() })
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `${name}` references it makes.
    pub fn field_refs(&self) -> Vec<String> {
        fn walk(n: &Node, out: &mut Vec<String>) {
            match n {
                Node::Field(f) => out.push(f.clone()),
                Node::Neg(a) => walk(a, out),
                Node::Bin(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Node::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
                Node::Lit(_) | Node::Current => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.node, &mut out);
        out
    }

    /// Evaluates in `scope`. Type mismatches give [`Value::Null`], never a panic.
    pub fn eval(&self, scope: &dyn Scope) -> Value {
        eval(&self.node, scope)
    }
}

fn compare(op: BinOp, a: &Value, b: &Value) -> Value {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => match (a.as_num(), b.as_num()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => Some(a.as_string().cmp(&b.as_string())),
        },
    };
    let res = match (op, ord) {
        (BinOp::Eq, o) => o == Some(Ordering::Equal),
        (BinOp::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (BinOp::Lt, Some(o)) => o == Ordering::Less,
        (BinOp::Le, Some(o)) => o != Ordering::Greater,
        (BinOp::Gt, Some(o)) => o == Ordering::Greater,
        (BinOp::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    };
    Value::Bool(res)
}

fn arith(op: BinOp, a: &Value, b: &Value) -> Value {
    let (Some(x), Some(y)) = (a.as_num(), b.as_num()) else {
        return Value::Null;
    };
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div if y != 0.0 => x / y,
        BinOp::Mod if y != 0.0 => x % y,
        _ => return Value::Null,
    };
    if r.is_finite() { Value::Num(r) } else { Value::Null }
}

fn age_on(dob: NaiveDate, today: NaiveDate) -> i64 {
    let mut years = i64::from(today.year() - dob.year());
    if (today.month(), today.day()) < (dob.month(), dob.day()) {
        years -= 1;
    }
    years
}

fn eval(node: &Node, scope: &dyn Scope) -> Value {
    match node {
        Node::Lit(v) => v.clone(),
        Node::Current => scope.current(),
        Node::Field(f) => scope.field(f),
        Node::Neg(a) => match eval(a, scope).as_num() {
            Some(n) => Value::Num(-n),
            None => Value::Null,
        },
        Node::Bin(BinOp::Or, a, b) => Value::Bool(eval(a, scope).truthy() || eval(b, scope).truthy()),
        Node::Bin(BinOp::And, a, b) => Value::Bool(eval(a, scope).truthy() && eval(b, scope).truthy()),
        Node::Bin(op @ (BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge), a, b) => {
            compare(*op, &eval(a, scope), &eval(b, scope))
        }
        Node::Bin(op, a, b) => arith(*op, &eval(a, scope), &eval(b, scope)),
        Node::Call(name, args) => call(name, args, scope),
    }
}

fn call(name: &str, args: &[Node], scope: &dyn Scope) -> Value {
    let arg = |i: usize| args.get(i).map_or(Value::Null, |a| eval(a, scope));
    match name {
        "not" => Value::Bool(!arg(0).truthy()),
        "if" => {
            if arg(0).truthy() {
                arg(1)
            } else {
                arg(2)
            }
        }
        "string-length" => Value::Num(arg(0).as_string().chars().count() as f64),
        "concat" => Value::Str((0..args.len()).map(|i| arg(i).as_string()).collect()),
        "coalesce" => match arg(0) {
            Value::Null => arg(1),
            Value::Str(s) if s.is_empty() => arg(1),
            v => v,
        },
        "number" => arg(0).as_num().map_or(Value::Null, Value::Num),
        "int" => arg(0).as_num().map_or(Value::Null, |n| Value::Num(n.trunc())),
        "today" => Value::Str(scope.today().format("%Y-%m-%d").to_string()),
        "age" => arg(0).as_date().map_or(Value::Null, |d| Value::Num(age_on(d, scope.today()) as f64)),
        "selected" => {
            let want = arg(1).as_string();
            Value::Bool(match arg(0) {
                Value::List(l) => l.contains(&want),
                Value::Null => false,
                v => v.as_string().split_whitespace().any(|s| s == want),
            })
        }
        "count-selected" => Value::Num(match arg(0) {
            Value::List(l) => l.len(),
            Value::Null => 0,
            v => v.as_string().split_whitespace().count(),
        } as f64),
        "is-digits" => {
            let s = arg(0).as_string();
            Value::Bool(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        }
        "cccd-valid" => Value::Bool(Cccd::parse(&arg(0).as_string()).is_ok()),
        "cccd-matches" => {
            let Ok(cccd) = Cccd::parse(&arg(0).as_string()) else {
                return Value::Bool(false);
            };
            let sex = Sex::parse(&arg(2).as_string());
            Value::Bool(cccd.check_against(arg(1).as_date(), sex).is_ok())
        }
        "count" => match args.first() {
            Some(Node::Field(f)) => Value::Num(scope.rows(f).len() as f64),
            _ => Value::Null,
        },
        "count-value" => {
            let (Value::Str(repeat), Value::Str(field)) = (arg(0), arg(1)) else {
                return Value::Null;
            };
            let want = arg(2);
            let n = scope.rows(&repeat).iter().filter(|row| compare(BinOp::Eq, &row(&field), &want).truthy()).count();
            Value::Num(n as f64)
        }
        "is-member-id" => Value::Bool(scope.member_exists(&arg(0).as_string())),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S;
    impl Scope for S {
        fn current(&self) -> Value {
            Value::Num(5.0)
        }
        fn field(&self, name: &str) -> Value {
            match name {
                "dob" => Value::Str("2010-06-15".into()),
                "sex" => Value::Str("F".into()),
                "cccd" => Value::Str("001310000001".into()),
                "langs" => Value::List(vec!["vi".into(), "en".into()]),
                _ => Value::Null,
            }
        }
        fn rows(&self, repeat: &str) -> Vec<RowLookup<'_>> {
            if repeat != "members" {
                return vec![];
            }
            vec![
                Box::new(|f: &str| if f == "relation" { Value::Str("head".into()) } else { Value::Null }),
                Box::new(|f: &str| if f == "relation" { Value::Str("child".into()) } else { Value::Null }),
            ]
        }
        fn member_exists(&self, id: &str) -> bool {
            id == "m1"
        }
        fn today(&self) -> NaiveDate {
            NaiveDate::from_ymd_opt(2026, 6, 14).unwrap()
        }
    }

    fn ev(src: &str) -> Value {
        Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}")).eval(&S)
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(ev("1 + 2 * 3"), Value::Num(7.0));
        assert_eq!(ev("(1 + 2) * 3"), Value::Num(9.0));
        assert_eq!(ev("7 div 2"), Value::Num(3.5));
        assert_eq!(ev("7 mod 2"), Value::Num(1.0));
        assert_eq!(ev("-. + 1"), Value::Num(-4.0));
        assert_eq!(ev("1 div 0"), Value::Null);
        assert_eq!(ev("'a' + 1"), Value::Null);
        assert_eq!(ev(". > 3 and . <= 5 or false"), Value::Bool(true));
        assert_eq!(ev("1 = 1 and 2 != 3"), Value::Bool(true));
        assert_eq!(ev("${missing} = null"), Value::Bool(true));
        assert_eq!(ev("${missing} < 3"), Value::Bool(false));
    }

    #[test]
    fn functions() {
        assert_eq!(ev("age(${dob})"), Value::Num(15.0));
        assert_eq!(ev("age('2010-06-14')"), Value::Num(16.0));
        assert_eq!(ev("${dob} <= today()"), Value::Bool(true));
        assert_eq!(ev("string-length('Nguyễn')"), Value::Num(6.0));
        assert_eq!(ev("concat('a', 1, true)"), Value::Str("a1true".into()));
        assert_eq!(ev("coalesce(${missing}, 'x')"), Value::Str("x".into()));
        assert_eq!(ev("if(. > 1, 'big', 'small')"), Value::Str("big".into()));
        assert_eq!(ev("selected(${langs}, 'en')"), Value::Bool(true));
        assert_eq!(ev("count-selected(${langs})"), Value::Num(2.0));
        assert_eq!(ev("is-digits('0912345678')"), Value::Bool(true));
        assert_eq!(ev("is-digits('09a')"), Value::Bool(false));
        assert_eq!(ev("cccd-valid(${cccd})"), Value::Bool(true));
        assert_eq!(ev("cccd-matches(${cccd}, ${dob}, ${sex})"), Value::Bool(true));
        assert_eq!(ev("cccd-matches(${cccd}, '2011-01-01', ${sex})"), Value::Bool(false));
        assert_eq!(ev("count(${members})"), Value::Num(2.0));
        assert_eq!(ev("count-value('members', 'relation', 'head') = 1"), Value::Bool(true));
        assert_eq!(ev("is-member-id('m1') and not(is-member-id('m2'))"), Value::Bool(true));
        assert_eq!(ev("int('12.7')"), Value::Num(12.0));
    }

    #[test]
    fn malformed_expressions_say_where() {
        let cases = [
            ("1 +", 3),
            ("(1", 2),
            ("foo(1)", 0),
            ("not(1, 2)", 0),
            ("'open", 0),
            ("${}", 0),
            ("${a b}", 0),
            ("1 2", 2),
            ("#", 0),
            ("$x", 0),
            ("banana", 0),
        ];
        for (src, at) in cases {
            match Expr::parse(src) {
                Err(Error::Expression { offset, .. }) => assert_eq!(offset, at, "{src}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(Expr::parse(&deep), Err(Error::Expression { .. })));
        let deep_fn = format!("{}1{}", "not(".repeat(200), ")".repeat(200));
        assert!(matches!(Expr::parse(&deep_fn), Err(Error::Expression { .. })));
        let negs = format!("{}1", "-".repeat(1000));
        assert!(matches!(Expr::parse(&negs), Err(Error::Expression { .. })));
        let long = "1+".repeat(3000) + "1";
        assert!(matches!(Expr::parse(&long), Err(Error::Expression { .. })));
        assert!(Expr::parse("é").is_err());
    }

    #[test]
    fn lists_field_refs() {
        let e = Expr::parse("${a} + age(${b}) > ${a}").unwrap();
        assert_eq!(e.field_refs(), vec!["a", "b", "a"]);
        assert_eq!(e.source(), "${a} + age(${b}) > ${a}");
    }
}
