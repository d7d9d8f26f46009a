//! The OData subset NetBackup clients send in `filter=` and the `sort=` parameter.
//!
//! Supported: `eq ne lt gt le ge`, `and`, parentheses, `contains(f,'x')`, `startswith(f,'x')`,
//! `endswith(f,'x')`; literals are quoted strings (`''` escapes a quote), integers, `true`/`false`, and
//! datetimes, quoted or not, with 0 to 9 fraction digits. Each endpoint lists its fields and the
//! operators each allows; anything else is a 400 that names the field or operator.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The type of a filterable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Str,
    Time,
    Bool,
}

/// A comparison or function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Contains,
    StartsWith,
    EndsWith,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Gt => "gt",
            Op::Le => "le",
            Op::Ge => "ge",
            Op::Contains => "contains",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
        }
    }

    fn comparison(word: &str) -> Option<Self> {
        Some(match word {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "gt" => Op::Gt,
            "le" => Op::Le,
            "ge" => Op::Ge,
            _ => return None,
        })
    }

    fn function(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "contains" => Op::Contains,
            "startswith" => Op::StartsWith,
            "endswith" => Op::EndsWith,
            _ => return None,
        })
    }
}

/// Operator sets used by the field tables.
pub(crate) const ORDERED: &[Op] = &[Op::Eq, Op::Ne, Op::Lt, Op::Gt, Op::Le, Op::Ge];
pub(crate) const EQ_NE: &[Op] = &[Op::Eq, Op::Ne];
pub(crate) const EQ: &[Op] = &[Op::Eq];
pub(crate) const TEXT: &[Op] = &[Op::Eq, Op::Ne, Op::Contains, Op::StartsWith, Op::EndsWith];
pub(crate) const FUNCTIONS: &[Op] = &[Op::Contains, Op::StartsWith, Op::EndsWith];
pub(crate) const RANGE: &[Op] = &[Op::Ge, Op::Le];

/// A filterable field of an endpoint: its name, type and allowed operators.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) ops: &'static [Op],
}

/// A literal of the filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Int(i64),
    Str(String),
    Time(DateTime<Utc>),
    Bool(bool),
}

/// A parsed filter.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    And(Vec<Filter>),
    Compare { field: &'static str, kind: Kind, op: Op, value: Literal },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> ApiResult<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => value.push(c),
                        None => return Err(filter_error("an unterminated string literal")),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

fn filter_error(what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid filter: {what}.")).detail(format!("filter: {what}"))
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|time| time.with_timezone(&Utc))
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    fields: &'a [Field],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn expect(&mut self, wanted: Token, what: &str) -> ApiResult<()> {
        match self.next() {
            Some(token) if token == wanted => Ok(()),
            _ => Err(filter_error(format!("expected {what}"))),
        }
    }

    fn expression(&mut self) -> ApiResult<Filter> {
        let mut terms = vec![self.term()?];
        while let Some(Token::Word(word)) = self.peek() {
            match word.as_str() {
                "and" => {
                    self.position += 1;
                    terms.push(self.term()?);
                }
                "or" | "not" => return Err(filter_error(format!("the operator '{word}' is not supported"))),
                _ => return Err(filter_error(format!("unexpected '{word}'"))),
            }
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Filter::And(terms) })
    }

    fn field(&self, name: &str) -> ApiResult<Field> {
        self.fields
            .iter()
            .find(|field| field.name == name)
            .copied()
            .ok_or_else(|| filter_error(format!("the field '{name}' is not supported")))
    }

    fn term(&mut self) -> ApiResult<Filter> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.expression()?;
                self.expect(Token::Close, "')'")?;
                Ok(inner)
            }
            Some(Token::Word(word)) if self.peek() == Some(&Token::Open) => {
                let op = Op::function(&word)
                    .ok_or_else(|| filter_error(format!("the function '{word}' is not supported")))?;
                self.position += 1;
                let name = match self.next() {
                    Some(Token::Word(name)) => name,
                    _ => return Err(filter_error(format!("expected a field name in {word}(...)"))),
                };
                self.expect(Token::Comma, "','")?;
                let value = self.next();
                self.expect(Token::Close, "')'")?;
                self.compare(&name, op, value)
            }
            Some(Token::Word(name)) => {
                let op = match self.next() {
                    Some(Token::Word(op)) => Op::comparison(&op)
                        .ok_or_else(|| filter_error(format!("the operator '{op}' is not supported")))?,
                    _ => return Err(filter_error(format!("expected an operator after '{name}'"))),
                };
                let value = self.next();
                self.compare(&name, op, value)
            }
            _ => Err(filter_error("expected a condition")),
        }
    }

    fn compare(&self, name: &str, op: Op, value: Option<Token>) -> ApiResult<Filter> {
        let field = self.field(name)?;
        if !field.ops.contains(&op) {
            return Err(filter_error(format!(
                "the operator '{}' is not supported for the field '{name}'",
                op.name()
            )));
        }
        let bad_value =
            |text: &str| filter_error(format!("'{text}' is not a valid value for the field '{name}'"));
        let value = match (field.kind, value) {
            (Kind::Str, Some(Token::Quoted(text))) => Literal::Str(text),
            (Kind::Str, Some(Token::Word(text))) if text.parse::<i64>().is_ok() => Literal::Str(text),
            (Kind::Int, Some(Token::Word(text) | Token::Quoted(text))) => {
                Literal::Int(text.parse().map_err(|_| bad_value(&text))?)
            }
            (Kind::Time, Some(Token::Word(text) | Token::Quoted(text))) => {
                Literal::Time(parse_time(&text).ok_or_else(|| bad_value(&text))?)
            }
            (Kind::Bool, Some(Token::Word(text) | Token::Quoted(text))) => match text.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                _ => return Err(bad_value(&text)),
            },
            (Kind::Str, Some(Token::Word(text))) => return Err(bad_value(&text)),
            _ => return Err(filter_error(format!("expected a value for the field '{name}'"))),
        };
        Ok(Filter::Compare { field: field.name, kind: field.kind, op, value })
    }
}

impl Filter {
    /// Parses `text` against the fields an endpoint allows.
    pub(crate) fn parse(text: &str, fields: &[Field]) -> ApiResult<Self> {
        let mut parser = Parser { tokens: tokenize(text)?, position: 0, fields };
        if parser.tokens.is_empty() {
            return Err(filter_error("the filter is empty"));
        }
        let filter = parser.expression()?;
        if parser.position < parser.tokens.len() {
            return Err(filter_error("unexpected text after the end of the filter"));
        }
        Ok(filter)
    }

    /// Whether the rendered `attributes` of a record match.
    pub(crate) fn matches(&self, attributes: &Value) -> bool {
        match self {
            Filter::And(terms) => terms.iter().all(|term| term.matches(attributes)),
            Filter::Compare { field, kind, op, value } => {
                let Some(actual) = attributes.get(*field).filter(|v| !v.is_null()) else {
                    return *op == Op::Ne;
                };
                compare(*kind, *op, actual, value)
            }
        }
    }

    /// Whether the filter constrains `field` anywhere.
    pub(crate) fn mentions(&self, name: &str) -> bool {
        match self {
            Filter::And(terms) => terms.iter().any(|term| term.mentions(name)),
            Filter::Compare { field, .. } => *field == name,
        }
    }
}

fn compare(kind: Kind, op: Op, actual: &Value, wanted: &Literal) -> bool {
    let ordering = match (kind, wanted) {
        (Kind::Str, Literal::Str(wanted)) => {
            let actual = match actual {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            match op {
                Op::Contains => return actual.contains(wanted.as_str()),
                Op::StartsWith => return actual.starts_with(wanted.as_str()),
                Op::EndsWith => return actual.ends_with(wanted.as_str()),
                _ => actual.as_str().cmp(wanted.as_str()),
            }
        }
        (Kind::Int, Literal::Int(wanted)) => match actual.as_i64() {
            Some(actual) => actual.cmp(wanted),
            None => return false,
        },
        (Kind::Time, Literal::Time(wanted)) => match actual.as_str().and_then(parse_time) {
            Some(actual) => actual.cmp(wanted),
            None => return false,
        },
        (Kind::Bool, Literal::Bool(wanted)) => match actual.as_bool() {
            Some(actual) => actual.cmp(wanted),
            None => return false,
        },
        _ => return false,
    };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Lt => ordering == Ordering::Less,
        Op::Gt => ordering == Ordering::Greater,
        Op::Le => ordering != Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Contains | Op::StartsWith | Op::EndsWith => false,
    }
}

/// A `sort=` parameter: a field, ascending unless prefixed with `-`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sort {
    pub(crate) field: &'static str,
    pub(crate) descending: bool,
}

impl Sort {
    /// Parses `sort`, allowing the listed fields; `default` when absent.
    pub(crate) fn parse(text: Option<&str>, fields: &[Field], default: Sort) -> ApiResult<Sort> {
        let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else { return Ok(default) };
        let (descending, name) = match text.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let field = fields.iter().find(|field| field.name == name).ok_or_else(|| {
            ApiError::bad_attribute("sort", format!("sorting on '{name}' is not supported"))
        })?;
        Ok(Sort { field: field.name, descending })
    }

    /// Orders two rendered records (missing values first).
    pub(crate) fn compare(&self, a: &Value, b: &Value) -> Ordering {
        let ordering = compare_values(a.get(self.field), b.get(self.field));
        if self.descending {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            a.as_f64().unwrap_or_default().total_cmp(&b.as_f64().unwrap_or_default())
        }
        (Some(Value::String(a)), Some(Value::String(b))) => match (parse_time(a), parse_time(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => a.cmp(b),
        },
        (Some(Value::Bool(a)), Some(Value::Bool(b))) => a.cmp(b),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(a), Some(b)) => a.to_string().cmp(&b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FIELDS: &[Field] = &[
        Field { name: "jobId", kind: Kind::Int, ops: ORDERED },
        Field { name: "jobType", kind: Kind::Str, ops: EQ_NE },
        Field { name: "clientName", kind: Kind::Str, ops: TEXT },
        Field { name: "policyName", kind: Kind::Str, ops: FUNCTIONS },
        Field { name: "startTime", kind: Kind::Time, ops: ORDERED },
        Field { name: "backupTime", kind: Kind::Time, ops: RANGE },
        Field { name: "isOptimized", kind: Kind::Bool, ops: EQ },
    ];

    fn record() -> Value {
        json!({
            "jobId": 1234,
            "jobType": "BACKUP",
            "clientName": "client01.example.com",
            "policyName": "Standard_FS",
            "startTime": "2026-11-27T04:13:30.000Z",
            "backupTime": "2026-11-27T04:13:30.000Z",
            "isOptimized": false,
        })
    }

    fn check(text: &str) -> bool {
        Filter::parse(text, FIELDS).unwrap().matches(&record())
    }

    #[test]
    fn compares_with_every_operator() {
        for (text, expected) in [
            ("jobId eq 1234", true),
            ("jobId ne 1234", false),
            ("jobId lt 1235", true),
            ("jobId gt 1234", false),
            ("jobId le 1234", true),
            ("jobId ge 1235", false),
            ("jobType eq 'BACKUP'", true),
            ("jobType ne 'BACKUP'", false),
            ("contains(clientName,'client01')", true),
            ("startswith(clientName, 'client')", true),
            ("endswith(clientName,'.com')", true),
            ("endswith(clientName,'.org')", false),
            ("contains(policyName,'FS')", true),
            ("isOptimized eq false", true),
            ("jobType eq 'BACKUP' and jobId gt 1000", true),
            ("(jobType eq 'BACKUP') and (jobId gt 2000)", false),
        ] {
            assert_eq!(check(text), expected, "{text}");
        }
    }

    #[test]
    fn reads_unquoted_datetimes_with_any_fraction() {
        assert!(check("startTime ge 2026-11-27T04:13:30Z"));
        assert!(check("startTime le 2026-11-27T04:13:30.000Z"));
        assert!(check("startTime eq 2026-11-27T04:13:30.000000Z"));
        assert!(!check("startTime gt 2026-11-27T04:13:30.000001Z"));
        assert!(check("clientName eq 'client01.example.com' and backupTime ge 2026-10-29T04:12:00.123456Z"));
        assert!(check("backupTime le '2026-11-28T00:00:00Z'"));
    }

    #[test]
    fn names_what_is_unsupported() {
        for (text, named) in [
            ("nope eq 1", "'nope'"),
            ("policyName eq 'x'", "'eq'"),
            ("jobType gt 'A'", "'gt'"),
            ("jobId eq 1 or jobId eq 2", "'or'"),
            ("jobId like 1", "'like'"),
            ("substringof(clientName,'x')", "'substringof'"),
            ("jobId eq 'abc'", "'abc'"),
            ("startTime ge yesterday", "'yesterday'"),
            ("jobType eq 'BACKUP", "unterminated"),
            ("jobId eq", "expected a value"),
            ("", "empty"),
        ] {
            let error = Filter::parse(text, FIELDS).unwrap_err();
            assert_eq!(error.status.as_u16(), 400);
            assert!(error.message.contains(named), "{text}: {}", error.message);
        }
    }

    #[test]
    fn quotes_escape_by_doubling() {
        let filter = Filter::parse("clientName eq 'o''brien'", FIELDS).unwrap();
        assert!(filter.matches(&json!({"clientName": "o'brien"})));
    }

    #[test]
    fn sorts_by_field() {
        let sort = Sort::parse(Some("-jobId"), FIELDS, Sort { field: "jobId", descending: false }).unwrap();
        assert!(sort.descending);
        assert_eq!(sort.compare(&json!({"jobId": 1}), &json!({"jobId": 2})), Ordering::Greater);
        assert!(Sort::parse(Some("bogus"), FIELDS, sort).is_err());
    }
}
