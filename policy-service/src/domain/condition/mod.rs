//! Conditions on a decision's inputs (`when.inputs`): operators on values
//! at dotted paths, combined with `all_of`, `any_of` and `not`.
//!
//! ```yaml
//! when:
//!   inputs:
//!     amount: {gt: 500}                 # numbers, or RFC 3339 times
//!     currency: {in: [EUR, USD]}
//!     path: {glob: "prod/**"}           # normalised first: a/../prod/x is prod/x
//!     target.env: prod                  # a scalar still means equality
//!     any_of: [{url: {starts_with: "https://api."}}, {internal: true}]
//! ```
//!
//! Semantics, chosen so that no input can make a decision error:
//! - an absent path matches only `exists: false` (and a `not` around
//!   something it fails);
//! - equality (`eq`, `ne`, `in`, `not_in`) is defined between any two JSON
//!   values (different types are unequal; numbers compare by value);
//! - every other operator needs its type (a number or time for `gt`…, a
//!   string for `starts_with`, `matches`, `cidr`, `glob`, a string or an
//!   array for `contains`): any other value does not match. The linter
//!   reports such mismatches against capability parameter types.

pub mod lint;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value, json};

pub use parse::{parse_inputs, parse_test};
pub use value::{Num, at, normalise_path, same, show, type_name};

/// How deep `all_of`/`any_of`/`not` may nest.
pub const MAX_NESTING: usize = 8;
/// Longest `matches` pattern, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled size limit of one `matches` pattern.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// `gt`, `gte`, `lt`, `lte`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Order {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::Lt => "lt",
            Self::Lte => "lte",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Gte => ">=",
            Self::Lt => "<",
            Self::Lte => "<=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Self::Gt => ordering == Ordering::Greater,
            Self::Gte => ordering != Ordering::Less,
            Self::Lt => ordering == Ordering::Less,
            Self::Lte => ordering != Ordering::Greater,
        }
    }
}

/// What an ordering compares with: a number, or a time when the policy
/// wrote an RFC 3339 string.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Number(Num),
    Time(jiff::Timestamp),
}

impl Operand {
    fn compare(&self, actual: &Value) -> Option<Ordering> {
        match (self, actual) {
            (Self::Number(expected), Value::Number(n)) => Num::of(n).compare(*expected),
            (Self::Time(expected), Value::String(text)) => text
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.cmp(expected)),
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Number(Num::Int(i)) => i64::try_from(*i)
                .map(Value::from)
                .unwrap_or_else(|_| u64::try_from(*i).map_or(Value::Null, Value::from)),
            Self::Number(Num::Float(f)) => json!(f),
            Self::Time(t) => Value::String(t.to_string()),
        }
    }
}

/// A `matches` regular expression: linear time (the `regex` crate),
/// anchored to the whole value, compiled once.
#[derive(Debug, Clone)]
pub struct TextPattern {
    pub source: String,
    pub regex: regex::Regex,
}

impl PartialEq for TextPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A `glob` on slash-separated paths (`*` within a segment, `**` across).
#[derive(Debug, Clone)]
pub struct PathGlob {
    pub source: String,
    pub matcher: globset::GlobMatcher,
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A test on the value at one path (`None` when the path is absent).
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Eq(Value),
    Ne(Value),
    Order(Order, Operand),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Contains(Value),
    StartsWith(String),
    EndsWith(String),
    Matches(TextPattern),
    Exists(bool),
    Cidr(Vec<ipnet::IpNet>),
    Glob(PathGlob),
    All(Vec<Test>),
    Any(Vec<Test>),
    Not(Box<Test>),
    /// An array with at least one element passing the test.
    AnyItem(Box<Test>),
    /// An array whose every element passes the test (an empty array does).
    EveryItem(Box<Test>),
}

impl Test {
    pub fn holds(&self, actual: Option<&Value>) -> bool {
        match self {
            Self::Exists(expected) => actual.is_some() == *expected,
            Self::All(tests) => tests.iter().all(|t| t.holds(actual)),
            Self::Any(tests) => tests.iter().any(|t| t.holds(actual)),
            Self::Not(test) => !test.holds(actual),
            _ => actual.is_some_and(|value| self.holds_on(value)),
        }
    }

    /// A leaf test on a present value.
    fn holds_on(&self, actual: &Value) -> bool {
        match self {
            Self::Eq(expected) => same(actual, expected),
            Self::Ne(expected) => !same(actual, expected),
            Self::Order(order, operand) => operand.compare(actual).is_some_and(|o| order.holds(o)),
            Self::In(values) => values.iter().any(|v| same(actual, v)),
            Self::NotIn(values) => !values.iter().any(|v| same(actual, v)),
            Self::Contains(expected) => match (actual, expected) {
                (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
                (Value::Array(items), _) => items.iter().any(|item| same(item, expected)),
                _ => false,
            },
            Self::StartsWith(prefix) => actual.as_str().is_some_and(|s| s.starts_with(prefix)),
            Self::EndsWith(suffix) => actual.as_str().is_some_and(|s| s.ends_with(suffix)),
            Self::Matches(pattern) => actual.as_str().is_some_and(|s| pattern.regex.is_match(s)),
            Self::Cidr(ranges) => actual
                .as_str()
                .and_then(|s| s.parse::<IpAddr>().ok())
                .map(|ip| ip.to_canonical())
                .is_some_and(|ip| ranges.iter().any(|range| range.contains(&ip))),
            Self::Glob(glob) => actual
                .as_str()
                .is_some_and(|s| glob.matcher.is_match(normalise_path(s))),
            Self::AnyItem(test) => actual
                .as_array()
                .is_some_and(|items| items.iter().any(|item| test.holds(Some(item)))),
            Self::EveryItem(test) => actual
                .as_array()
                .is_some_and(|items| items.iter().all(|item| test.holds(Some(item)))),
            Self::Exists(_) | Self::All(_) | Self::Any(_) | Self::Not(_) => {
                self.holds(Some(actual))
            }
        }
    }

    /// The policy's own spelling, canonical (used for the revision hash).
    pub fn to_json(&self) -> Value {
        let list = |tests: &[Test]| Value::Array(tests.iter().map(Test::to_json).collect());
        match self {
            Self::Eq(v) => json!({"eq": v}),
            Self::Ne(v) => json!({"ne": v}),
            Self::Order(order, operand) => json!({order.name(): operand.to_json()}),
            Self::In(values) => json!({"in": values}),
            Self::NotIn(values) => json!({"not_in": values}),
            Self::Contains(v) => json!({"contains": v}),
            Self::StartsWith(s) => json!({"starts_with": s}),
            Self::EndsWith(s) => json!({"ends_with": s}),
            Self::Matches(p) => json!({"matches": p.source}),
            Self::Exists(b) => json!({"exists": b}),
            Self::Cidr(ranges) => {
                json!({"cidr": ranges.iter().map(ToString::to_string).collect::<Vec<_>>()})
            }
            Self::Glob(g) => json!({"glob": g.source}),
            Self::All(tests) => json!({"all_of": list(tests)}),
            Self::Any(tests) => json!({"any_of": list(tests)}),
            Self::Not(test) => json!({"not": test.to_json()}),
            Self::AnyItem(test) => json!({"any_item": test.to_json()}),
            Self::EveryItem(test) => json!({"every_item": test.to_json()}),
        }
    }

    /// What the test requires, for explanations: `> 500`, `one of [..]`.
    pub fn describe(&self) -> String {
        let values = |values: &[Value]| {
            values
                .iter()
                .map(|v| show(Some(v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let tests = |tests: &[Test], joiner: &str| {
            tests
                .iter()
                .map(Test::describe)
                .collect::<Vec<_>>()
                .join(joiner)
        };
        match self {
            Self::Eq(v) => format!("must be {}", show(Some(v))),
            Self::Ne(v) => format!("must not be {}", show(Some(v))),
            Self::Order(order, operand) => {
                format!("must be {} {}", order.symbol(), operand.to_json())
            }
            Self::In(v) => format!("must be one of [{}]", values(v)),
            Self::NotIn(v) => format!("must be none of [{}]", values(v)),
            Self::Contains(v) => format!("must contain {}", show(Some(v))),
            Self::StartsWith(s) => format!("must start with {s:?}"),
            Self::EndsWith(s) => format!("must end with {s:?}"),
            Self::Matches(p) => format!("must match /{}/", p.source),
            Self::Exists(true) => "must be present".into(),
            Self::Exists(false) => "must be absent".into(),
            Self::Cidr(r) => format!(
                "must be an address in [{}]",
                r.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Glob(g) => format!("must be a path matching {:?}", g.source),
            Self::All(t) => tests(t, " and "),
            Self::Any(t) => format!("either {}", tests(t, " or ")),
            Self::Not(t) => format!("not: {}", t.describe()),
            Self::AnyItem(t) => format!("must be an array with an item that {}", t.describe()),
            Self::EveryItem(t) => format!("must be an array whose every item {}", t.describe()),
        }
    }
}

/// A condition on the inputs: a test at a path, or a combination.
#[derive(Debug, Clone, PartialEq)]
pub enum InputCondition {
    Path { path: Vec<String>, test: Test },
    All(Vec<InputCondition>),
    Any(Vec<InputCondition>),
    Not(Box<InputCondition>),
}

impl InputCondition {
    pub fn holds(&self, inputs: &Map<String, Value>) -> bool {
        match self {
            Self::Path { path, test } => test.holds(at(inputs, path)),
            Self::All(all) => all.iter().all(|c| c.holds(inputs)),
            Self::Any(any) => any.iter().any(|c| c.holds(inputs)),
            Self::Not(inner) => !inner.holds(inputs),
        }
    }

    /// Why the condition fails for `inputs` (expected against actual), or
    /// `None` when it holds.
    pub fn failure(&self, inputs: &Map<String, Value>) -> Option<String> {
        if self.holds(inputs) {
            return None;
        }
        Some(match self {
            Self::Path { path, test } => format!(
                "input {} is {} but {}",
                path.join("."),
                show(at(inputs, path)),
                test.describe()
            ),
            Self::All(all) => all
                .iter()
                .find_map(|c| c.failure(inputs))
                .unwrap_or_default(),
            Self::Any(any) => format!(
                "none of any_of holds: {}",
                any.iter()
                    .filter_map(|c| c.failure(inputs))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Self::Not(inner) => format!("not: {} holds", inner.to_json()),
        })
    }

    /// The canonical spelling. A plain equality keeps the `[path, value]`
    /// form of policy sets written before operators existed, so their
    /// revisions do not change.
    pub fn to_json(&self) -> Value {
        let list = |all: &[InputCondition]| {
            Value::Array(all.iter().map(InputCondition::to_json).collect())
        };
        match self {
            Self::Path {
                path,
                test: Test::Eq(value),
            } => json!([path, value]),
            Self::Path { path, test } => json!({"path": path, "test": test.to_json()}),
            Self::All(all) => json!({"all_of": list(all)}),
            Self::Any(any) => json!({"any_of": list(any)}),
            Self::Not(inner) => json!({"not": inner.to_json()}),
        }
    }

    /// Every path test inside, with whether it sits under a `not` or an
    /// `any_of` (where it is not simply required).
    pub fn visit<'a>(&'a self, required: bool, out: &mut Vec<(&'a [String], &'a Test, bool)>) {
        match self {
            Self::Path { path, test } => out.push((path, test, required)),
            Self::All(all) => all.iter().for_each(|c| c.visit(required, out)),
            Self::Any(any) => any.iter().for_each(|c| c.visit(false, out)),
            Self::Not(inner) => inner.visit(false, out),
        }
    }
}

impl Serialize for InputCondition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}
