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
/// Every comparison and every function (text the storage and event-log documents let clients order).
pub(crate) const TEXT_ALL: &[Op] =
    &[Op::Eq, Op::Ne, Op::Lt, Op::Gt, Op::Le, Op::Ge, Op::Contains, Op::StartsWith, Op::EndsWith];
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
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare { field: &'static str, kind: Kind, op: Op, value: Literal, case: Option<Case> },
}

/// `tolower(field)` or `toupper(field)`: a string field compared in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    Lower,
    Upper,
}

impl Case {
    fn of(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "tolower" => Some(Case::Lower),
            "toupper" => Some(Case::Upper),
            _ => None,
        }
    }

    fn apply(self, text: &str) -> String {
        match self {
            Case::Lower => text.to_lowercase(),
            Case::Upper => text.to_uppercase(),
        }
    }
}

/// The logical operators an endpoint takes besides `and` and parentheses (each endpoint's documentation
/// lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logic {
    /// `and` only.
    And,
    /// `and`, `or` and `not`.
    AndOrNot,
}

/// The longest filter accepted, in bytes: far more than any real client sends, little enough that a
/// filter is always cheap to parse.
pub(crate) const MAX_FILTER_BYTES: usize = 4096;
/// The deepest nesting of parentheses and `not` (the parser recurses once per level).
pub(crate) const MAX_FILTER_DEPTH: usize = 16;
/// The most conditions one filter may hold.
pub(crate) const MAX_FILTER_CONDITIONS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
}

/// Whether `c` ends a word: any Unicode whitespace (the same test that skips whitespace between tokens,
/// so that every character is either skipped, a delimiter or part of a word) or punctuation.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'')
}

fn tokenize(text: &str) -> ApiResult<Vec<Token>> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(filter_error(format!(
            "the filter is {} bytes long, more than the maximum {MAX_FILTER_BYTES}",
            text.len()
        )));
    }
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    // Every pass of this loop consumes at least one character, so it ends.
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            ',' => tokens.push(Token::Comma),
            '\'' => {
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
            first => {
                let mut word = String::from(first);
                while let Some(&c) = chars.peek() {
                    if ends_word(c) {
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

/// The value at `name` in rendered attributes, where `name` may be a path such as
/// `commonAssetAttributes/displayName` (filters) or `commonAssetAttributes.displayName` (sorting).
pub(crate) fn lookup<'a>(attributes: &'a Value, name: &str) -> Option<&'a Value> {
    name.split(['/', '.']).try_fold(attributes, |value, key| value.get(key))
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    fields: &'a [Field],
    logic: Logic,
    depth: usize,
    conditions: usize,
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

    /// Whether the next token is the keyword `word`; refuses `or` and `not` where the endpoint does
    /// not take them.
    fn keyword(&self, word: &str) -> ApiResult<bool> {
        let Some(Token::Word(next)) = self.peek() else { return Ok(false) };
        if next != word {
            return Ok(false);
        }
        if word != "and" && self.logic == Logic::And {
            return Err(filter_error(format!("the operator '{word}' is not supported")));
        }
        Ok(true)
    }

    /// Enters one more level of nesting (a parenthesis or a `not`), refusing too deep a filter before
    /// recursing.
    fn descend(&mut self) -> ApiResult<()> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(filter_error(format!("it nests more than {MAX_FILTER_DEPTH} levels deep")));
        }
        Ok(())
    }

    /// `or` binds loosest, then `and`, then `not`.
    fn expression(&mut self) -> ApiResult<Filter> {
        let mut alternatives = vec![self.conjunction()?];
        while self.keyword("or")? {
            self.position += 1;
            alternatives.push(self.conjunction()?);
        }
        Ok(if alternatives.len() == 1 { alternatives.remove(0) } else { Filter::Or(alternatives) })
    }

    fn conjunction(&mut self) -> ApiResult<Filter> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and")? {
            self.position += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Filter::And(terms) })
    }

    fn unary(&mut self) -> ApiResult<Filter> {
        if self.keyword("not")? {
            self.position += 1;
            self.descend()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.term()
    }

    fn field(&self, name: &str) -> ApiResult<Field> {
        self.fields
            .iter()
            .find(|field| field.name == name)
            .copied()
            .ok_or_else(|| filter_error(format!("the field '{name}' is not supported")))
    }

    /// A field, or `tolower(field)` / `toupper(field)`, whose first word is `word`.
    fn field_expression(&mut self, word: String) -> ApiResult<(String, Option<Case>)> {
        let Some(case) = Case::of(&word).filter(|_| self.peek() == Some(&Token::Open)) else {
            return Ok((word, None));
        };
        self.position += 1;
        let name = match self.next() {
            Some(Token::Word(name)) => name,
            _ => return Err(filter_error(format!("expected a field name in {word}(...)"))),
        };
        self.expect(Token::Close, "')'")?;
        Ok((name, Some(case)))
    }

    fn term(&mut self) -> ApiResult<Filter> {
        match self.next() {
            Some(Token::Open) => {
                self.descend()?;
                let inner = self.expression()?;
                self.expect(Token::Close, "')'")?;
                self.depth -= 1;
                Ok(inner)
            }
            Some(Token::Word(word)) if self.peek() == Some(&Token::Open) && Case::of(&word).is_none() => {
                let op = Op::function(&word)
                    .ok_or_else(|| filter_error(format!("the function '{word}' is not supported")))?;
                self.position += 1;
                let (name, case) = match self.next() {
                    Some(Token::Word(name)) => self.field_expression(name)?,
                    _ => return Err(filter_error(format!("expected a field name in {word}(...)"))),
                };
                self.expect(Token::Comma, "','")?;
                let value = self.next();
                self.expect(Token::Close, "')'")?;
                self.compare(&name, case, op, value)
            }
            Some(Token::Word(word)) => {
                let (name, case) = self.field_expression(word)?;
                let op = match self.next() {
                    Some(Token::Word(op)) => Op::comparison(&op)
                        .ok_or_else(|| filter_error(format!("the operator '{op}' is not supported")))?,
                    _ => return Err(filter_error(format!("expected an operator after '{name}'"))),
                };
                let value = self.next();
                self.compare(&name, case, op, value)
            }
            _ => Err(filter_error("expected a condition")),
        }
    }

    fn compare(&mut self, name: &str, case: Option<Case>, op: Op, value: Option<Token>) -> ApiResult<Filter> {
        self.conditions += 1;
        if self.conditions > MAX_FILTER_CONDITIONS {
            return Err(filter_error(format!("it has more than {MAX_FILTER_CONDITIONS} conditions")));
        }
        let field = self.field(name)?;
        if case.is_some() && field.kind != Kind::Str {
            return Err(filter_error(format!(
                "tolower and toupper apply to text, not to the field '{name}'"
            )));
        }
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
        Ok(Filter::Compare { field: field.name, kind: field.kind, op, value, case })
    }
}

impl Filter {
    /// Parses `text` against the fields an endpoint allows, with `and` and parentheses only.
    pub(crate) fn parse(text: &str, fields: &[Field]) -> ApiResult<Self> {
        Self::parse_with(text, fields, Logic::And)
    }

    /// Parses `text` against the fields and logical operators an endpoint allows. The text is at most
    /// [`MAX_FILTER_BYTES`] long, nests at most [`MAX_FILTER_DEPTH`] levels and holds at most
    /// [`MAX_FILTER_CONDITIONS`] conditions; anything else is a 400 naming what is wrong.
    pub(crate) fn parse_with(text: &str, fields: &[Field], logic: Logic) -> ApiResult<Self> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err(filter_error("the filter is empty"));
        }
        let mut parser = Parser { tokens, position: 0, fields, logic, depth: 0, conditions: 0 };
        let filter = parser.expression()?;
        if let Some(token) = parser.peek() {
            let what = match token {
                Token::Word(word) => format!("unexpected '{word}'"),
                _ => "unexpected text after the end of the filter".to_owned(),
            };
            return Err(filter_error(what));
        }
        Ok(filter)
    }

    /// Whether the rendered `attributes` of a record match.
    pub(crate) fn matches(&self, attributes: &Value) -> bool {
        match self {
            Filter::And(terms) => terms.iter().all(|term| term.matches(attributes)),
            Filter::Or(terms) => terms.iter().any(|term| term.matches(attributes)),
            Filter::Not(inner) => !inner.matches(attributes),
            Filter::Compare { field, kind, op, value, case } => {
                let Some(actual) = lookup(attributes, field).filter(|v| !v.is_null()) else {
                    return *op == Op::Ne;
                };
                match (case, actual) {
                    (Some(case), Value::String(text)) => {
                        compare(*kind, *op, &Value::String(case.apply(text)), value)
                    }
                    _ => compare(*kind, *op, actual, value),
                }
            }
        }
    }

    /// Whether the filter constrains `field` anywhere.
    pub(crate) fn mentions(&self, name: &str) -> bool {
        match self {
            Filter::And(terms) | Filter::Or(terms) => terms.iter().any(|term| term.mentions(name)),
            Filter::Not(inner) => inner.mentions(name),
            Filter::Compare { field, .. } => *field == name,
        }
    }

    /// The string a top-level `eq` condition on `name` asks for (`None` when the filter has none, or
    /// only inside `or` / `not`).
    pub(crate) fn equals(&self, name: &str) -> Option<&str> {
        match self {
            Filter::And(terms) => terms.iter().find_map(|term| term.equals(name)),
            Filter::Compare { field, op: Op::Eq, value: Literal::Str(value), case: None, .. }
                if *field == name =>
            {
                Some(value)
            }
            _ => None,
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

/// The most keys one `sort=` list may have.
pub(crate) const MAX_SORT_KEYS: usize = 8;

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

    /// Parses a comma-separated `sort=` list such as `name,-storageCategory` (at most
    /// [`MAX_SORT_KEYS`] keys), allowing the listed fields; `default` when absent.
    pub(crate) fn parse_list(text: Option<&str>, fields: &[Field], default: &[Sort]) -> ApiResult<Vec<Sort>> {
        let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(default.to_vec());
        };
        let keys: Vec<&str> = text.split(',').map(str::trim).collect();
        if keys.len() > MAX_SORT_KEYS {
            return Err(ApiError::bad_attribute("sort", format!("at most {MAX_SORT_KEYS} sort fields")));
        }
        let first = default.first().copied().unwrap_or(Sort { field: "", descending: false });
        keys.into_iter().map(|key| Sort::parse(Some(key), fields, first)).collect()
    }

    /// Orders two rendered records by every key in turn.
    pub(crate) fn compare_all(keys: &[Sort], a: &Value, b: &Value) -> Ordering {
        keys.iter().map(|key| key.compare(a, b)).find(|ordering| ordering.is_ne()).unwrap_or(Ordering::Equal)
    }

    /// Orders two rendered records (missing values first).
    pub(crate) fn compare(&self, a: &Value, b: &Value) -> Ordering {
        let ordering = compare_values(lookup(a, self.field), lookup(b, self.field));
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

    /// U+0085 (NEL) and every other Unicode whitespace separate tokens like a space: once the tokenizer
    /// skipped only ASCII whitespace while words ended at any whitespace, and a lone U+0085 looped forever
    /// pushing empty words.
    #[test]
    fn every_unicode_whitespace_separates_tokens() {
        let spaces: Vec<char> =
            (0..=0x10_FFFF_u32).filter_map(char::from_u32).filter(|c| c.is_whitespace()).collect();
        assert!(spaces.contains(&'\u{85}') && spaces.contains(&'\u{2028}') && spaces.contains(&'\u{3000}'));
        for space in spaces {
            let error = Filter::parse(&space.to_string(), FIELDS).unwrap_err();
            assert!(error.message.contains("empty"), "{space:?}: {}", error.message);
            let text = format!("jobType{space}eq{space}'BACKUP'{space}and{space}jobId{space}gt{space}1000");
            assert!(Filter::parse(&text, FIELDS).unwrap().matches(&record()), "{space:?}");
        }
    }

    #[test]
    fn odd_characters_are_refused_not_looped_on() {
        for text in [
            "\u{0}",
            "\u{85}\u{85}(",
            "jobId\u{200b}eq 1",
            "\u{feff}",
            "jobId eq 1)",
            "((",
            "'",
            ",",
            "\u{85}'x",
        ] {
            assert_eq!(Filter::parse(text, FIELDS).unwrap_err().status.as_u16(), 400, "{text:?}");
        }
    }

    #[test]
    fn limits_length_depth_and_conditions() {
        let long = format!("clientName eq '{}'", "x".repeat(MAX_FILTER_BYTES));
        assert!(Filter::parse(&long, FIELDS).unwrap_err().message.contains("maximum"));
        // Deeper than the limit but within the length: refused before the recursion could exhaust the stack.
        let deep = format!("{}jobId eq 1{}", "(".repeat(2000), ")".repeat(2000));
        assert!(Filter::parse(&deep, FIELDS).unwrap_err().message.contains("levels deep"));
        let nots = format!("{}jobId eq 1", "not ".repeat(1000));
        assert!(Filter::parse_with(&nots, FIELDS, Logic::AndOrNot)
            .unwrap_err()
            .message
            .contains("levels deep"));
        let nested = format!("{}jobId eq 1234{}", "(".repeat(MAX_FILTER_DEPTH), ")".repeat(MAX_FILTER_DEPTH));
        assert!(Filter::parse(&nested, FIELDS).unwrap().matches(&record()));
        let many = vec!["jobId gt 1"; MAX_FILTER_CONDITIONS + 1].join(" and ");
        assert!(Filter::parse(&many, FIELDS).unwrap_err().message.contains("conditions"));
        let enough = vec!["jobId gt 1"; MAX_FILTER_CONDITIONS].join(" and ");
        assert!(Filter::parse(&enough, FIELDS).unwrap().matches(&record()));
    }

    #[test]
    fn or_and_not_where_the_endpoint_takes_them() {
        let check =
            |text: &str| Filter::parse_with(text, FIELDS, Logic::AndOrNot).unwrap().matches(&record());
        assert!(check("jobId eq 1 or jobId eq 1234"));
        assert!(!check("jobId eq 1 or jobId eq 2"));
        assert!(check("not jobId eq 1"));
        assert!(check("not (jobId eq 1 or jobType eq 'RESTORE') and jobId gt 5"));
        assert!(!check("jobType eq 'RESTORE' or jobId eq 1 and jobId eq 1234"), "and binds tighter than or");
        assert!(check("jobType eq 'BACKUP' or jobId eq 1 and jobId eq 2"));
        assert!(Filter::parse("not jobId eq 1", FIELDS).unwrap_err().message.contains("'not'"));
    }

    #[test]
    fn tolower_and_toupper_compare_text_in_one_case() {
        assert!(check("tolower(jobType) eq 'backup'"));
        assert!(check("toupper(clientName) eq 'CLIENT01.EXAMPLE.COM'"));
        assert!(check("contains(tolower(clientName), 'client01')"));
        assert!(!check("contains(toupper(clientName), 'client01')"));
        assert!(Filter::parse("tolower(jobId) eq 'x'", FIELDS).unwrap_err().message.contains("text"));
        assert!(Filter::parse("tolower(jobType eq 'x'", FIELDS).is_err());
    }

    #[test]
    fn fields_may_be_paths() {
        let fields = [Field { name: "commonAssetAttributes/displayName", kind: Kind::Str, ops: TEXT }];
        let asset = json!({"commonAssetAttributes": {"displayName": "vm-app01"}});
        let filter = Filter::parse("contains(commonAssetAttributes/displayName, 'app')", &fields).unwrap();
        assert!(filter.matches(&asset));
        assert_eq!(
            Filter::parse("commonAssetAttributes/displayName eq 'vm-app01'", &fields)
                .unwrap()
                .equals("commonAssetAttributes/displayName"),
            Some("vm-app01")
        );
    }

    #[test]
    fn quotes_escape_by_doubling() {
        let filter = Filter::parse("clientName eq 'o''brien'", FIELDS).unwrap();
        assert!(filter.matches(&json!({"clientName": "o'brien"})));
    }

    #[test]
    fn sorts_by_a_list_of_fields() {
        let keys = Sort::parse_list(Some("jobType,-jobId"), FIELDS, &[]).unwrap();
        let (a, b, c) = (
            json!({"jobType": "A", "jobId": 1}),
            json!({"jobType": "A", "jobId": 2}),
            json!({"jobType": "B", "jobId": 3}),
        );
        assert_eq!(Sort::compare_all(&keys, &a, &b), Ordering::Greater);
        assert_eq!(Sort::compare_all(&keys, &b, &c), Ordering::Less);
        assert!(Sort::parse_list(Some(&["jobId"; MAX_SORT_KEYS + 1].join(",")), FIELDS, &[]).is_err());
        assert!(Sort::parse_list(Some("jobId,nope"), FIELDS, &[]).is_err());
    }

    #[test]
    fn sorts_by_field() {
        let sort = Sort::parse(Some("-jobId"), FIELDS, Sort { field: "jobId", descending: false }).unwrap();
        assert!(sort.descending);
        assert_eq!(sort.compare(&json!({"jobId": 1}), &json!({"jobId": 2})), Ordering::Greater);
        assert!(Sort::parse(Some("bogus"), FIELDS, sort).is_err());
    }
}
