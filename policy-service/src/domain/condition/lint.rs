//! What the linter finds in input conditions: conditions no input can
//! satisfy (contradictions, regular expressions that match nothing) and
//! conditions that do not fit a capability's parameter types.

use std::collections::HashMap;

use serde_json::Value;

use super::{InputCondition, Operand, Order, Test, type_name};

/// A capability parameter's type, as the registry declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

impl ParamType {
    /// `STRING`, `PARAMETER_TYPE_STRING` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        let upper = text.to_ascii_uppercase();
        Some(match upper.trim_start_matches("PARAMETER_TYPE_") {
            "STRING" => Self::String,
            "NUMBER" => Self::Number,
            "INTEGER" => Self::Integer,
            "BOOLEAN" => Self::Boolean,
            "OBJECT" => Self::Object,
            "ARRAY" => Self::Array,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }

    fn admits(self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) => true,
            (Self::String, Value::String(_))
            | (Self::Boolean, Value::Bool(_))
            | (Self::Object, Value::Object(_))
            | (Self::Array, Value::Array(_))
            | (Self::Number, Value::Number(_)) => true,
            (Self::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            _ => false,
        }
    }
}

/// Problems of one test against a parameter's type: `None` when it fits.
fn type_problem(test: &Test, param: ParamType) -> Option<String> {
    let needs = |wanted: &[ParamType], what: &str| {
        (!wanted.contains(&param))
            .then(|| format!("{what} never matches a parameter of type {}", param.name()))
    };
    let value_fits = |value: &Value, op: &str| {
        (!param.admits(value)).then(|| {
            format!(
                "{op} {} ({}) never matches a parameter of type {}",
                super::show(Some(value)),
                type_name(value),
                param.name()
            )
        })
    };
    match test {
        Test::Eq(v) => value_fits(v, "eq"),
        Test::Ne(v) => value_fits(v, "ne"),
        Test::In(values) | Test::NotIn(values) => values.iter().find_map(|v| value_fits(v, "in")),
        Test::Order(order, Operand::Number(_)) => needs(
            &[ParamType::Number, ParamType::Integer],
            &format!("{} on a number", order.name()),
        ),
        Test::Order(order, Operand::Time(_)) => {
            needs(&[ParamType::String], &format!("{} on a time", order.name()))
        }
        Test::Contains(Value::String(_)) => {
            needs(&[ParamType::String, ParamType::Array], "contains")
        }
        Test::Contains(_) => needs(&[ParamType::Array], "contains"),
        Test::StartsWith(_) => needs(&[ParamType::String], "starts_with"),
        Test::EndsWith(_) => needs(&[ParamType::String], "ends_with"),
        Test::Matches(_) => needs(&[ParamType::String], "matches"),
        Test::Cidr(_) => needs(&[ParamType::String], "cidr"),
        Test::Glob(_) => needs(&[ParamType::String], "glob"),
        Test::Exists(_) => None,
        Test::All(tests) | Test::Any(tests) => tests.iter().find_map(|t| type_problem(t, param)),
        Test::Not(test) => type_problem(test, param),
        Test::AnyItem(_) => needs(&[ParamType::Array], "any_item"),
        Test::EveryItem(_) => needs(&[ParamType::Array], "every_item"),
    }
}

/// Conditions that do not fit the parameters of a capability: an unknown
/// parameter, a path into a scalar, an operator on the wrong type.
pub fn parameter_mismatches(
    conditions: &[InputCondition],
    capability: &str,
    parameters: &HashMap<String, ParamType>,
) -> Vec<String> {
    let mut tests = Vec::new();
    conditions.iter().for_each(|c| c.visit(true, &mut tests));
    let mut findings = Vec::new();
    for (path, test, _) in tests {
        let Some(first) = path.first() else { continue };
        let shown = path.join(".");
        let Some(&param) = parameters.get(first) else {
            findings.push(format!(
                "input {shown}: capability {capability} has no parameter {first:?}"
            ));
            continue;
        };
        if path.len() > 1 {
            if !matches!(param, ParamType::Object | ParamType::Array) {
                findings.push(format!(
                    "input {shown}: parameter {first:?} of {capability} is a {}, it has no fields",
                    param.name()
                ));
            }
            continue;
        }
        if let Some(problem) = type_problem(test, param) {
            findings.push(format!("input {shown} of {capability}: {problem}"));
        }
    }
    findings
}

/// The tests a path must pass (under the top-level `all`), leaves only.
fn required_by_path(conditions: &[InputCondition]) -> Vec<(String, Vec<&Test>)> {
    let mut visited = Vec::new();
    conditions.iter().for_each(|c| c.visit(true, &mut visited));
    let mut by_path: Vec<(String, Vec<&Test>)> = Vec::new();
    for (path, test, required) in visited {
        if !required {
            continue;
        }
        let key = path.join(".");
        let leaves = match by_path.iter_mut().find(|(p, _)| *p == key) {
            Some((_, leaves)) => leaves,
            None => {
                by_path.push((key, Vec::new()));
                &mut by_path.last_mut().expect("just pushed").1
            }
        };
        flatten(test, leaves);
    }
    by_path
}

fn flatten<'a>(test: &'a Test, out: &mut Vec<&'a Test>) {
    match test {
        Test::All(tests) => tests.iter().for_each(|t| flatten(t, out)),
        other => out.push(other),
    }
}

/// The JSON types a leaf test admits (`None`: any).
fn admitted_types(test: &Test) -> Option<&'static [&'static str]> {
    Some(match test {
        Test::Order(_, Operand::Number(_)) => &["number"],
        Test::Order(_, Operand::Time(_))
        | Test::StartsWith(_)
        | Test::EndsWith(_)
        | Test::Matches(_)
        | Test::Cidr(_)
        | Test::Glob(_) => &["string"],
        Test::Contains(Value::String(_)) => &["string", "array"],
        Test::Contains(_) | Test::AnyItem(_) | Test::EveryItem(_) => &["array"],
        Test::Eq(v) => match v {
            Value::Null => &["null"],
            Value::Bool(_) => &["boolean"],
            Value::Number(_) => &["number"],
            Value::String(_) => &["string"],
            Value::Array(_) => &["array"],
            Value::Object(_) => &["object"],
        },
        _ => return None,
    })
}

/// Conditions no input can satisfy.
pub fn contradictions(conditions: &[InputCondition]) -> Vec<String> {
    let mut findings = Vec::new();
    let mut visited = Vec::new();
    conditions.iter().for_each(|c| c.visit(true, &mut visited));
    for (path, test, _) in &visited {
        let mut leaves = Vec::new();
        flatten_all(test, &mut leaves);
        for leaf in leaves {
            if let Test::Matches(pattern) = leaf
                && never_matches(&pattern.source)
            {
                findings.push(format!(
                    "input {}: /{}/ matches no string",
                    path.join("."),
                    pattern.source
                ));
            }
        }
    }
    for (path, leaves) in required_by_path(conditions) {
        if let Some(problem) = path_contradiction(&leaves) {
            findings.push(format!("input {path} {problem}"));
        }
    }
    findings
}

fn flatten_all<'a>(test: &'a Test, out: &mut Vec<&'a Test>) {
    match test {
        Test::All(tests) | Test::Any(tests) => tests.iter().for_each(|t| flatten_all(t, out)),
        Test::Not(inner) | Test::AnyItem(inner) | Test::EveryItem(inner) => {
            flatten_all(inner, out);
        }
        other => out.push(other),
    }
}

/// Whether a `matches` pattern (anchored, as evaluated) matches nothing.
fn never_matches(source: &str) -> bool {
    regex_syntax::parse(&format!("^(?:{source})$"))
        .is_ok_and(|hir| hir.properties().minimum_len().is_none())
}

fn path_contradiction(leaves: &[&Test]) -> Option<String> {
    let absent = leaves.iter().any(|t| matches!(t, Test::Exists(false)));
    if absent
        && leaves
            .iter()
            .any(|t| !matches!(t, Test::Exists(false) | Test::Not(_)))
    {
        return Some("must be absent and must satisfy a test only a present value passes".into());
    }
    let mut allowed: Option<Vec<&str>> = None;
    for leaf in leaves {
        if let Some(types) = admitted_types(leaf) {
            allowed = Some(match allowed {
                None => types.to_vec(),
                Some(before) => before.into_iter().filter(|t| types.contains(t)).collect(),
            });
        }
    }
    if allowed.as_ref().is_some_and(Vec::is_empty) {
        return Some(format!(
            "cannot pass every test: {}",
            leaves
                .iter()
                .map(|t| t.describe())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // A value the path must equal, or be one of, has to pass the rest.
    for (i, leaf) in leaves.iter().enumerate() {
        let candidates: &[Value] = match leaf {
            Test::Eq(v) => std::slice::from_ref(v),
            Test::In(values) => values,
            _ => continue,
        };
        let others = leaves.iter().enumerate().filter(|(j, _)| *j != i);
        if let Some((_, failing)) = others
            .clone()
            .find(|(_, other)| candidates.iter().all(|v| !other.holds(Some(v))))
        {
            return Some(format!("{} yet {}", leaf.describe(), failing.describe()));
        }
    }
    empty_range(leaves)
}

/// `gt: 10` with `lt: 5`: no number (or time) lies between.
fn empty_range(leaves: &[&Test]) -> Option<String> {
    let bounds: Vec<(Order, &Operand)> = leaves
        .iter()
        .filter_map(|t| match t {
            Test::Order(order, operand) => Some((*order, operand)),
            _ => None,
        })
        .collect();
    for (low_order, low) in bounds
        .iter()
        .filter(|(o, _)| matches!(o, Order::Gt | Order::Gte))
    {
        for (high_order, high) in bounds
            .iter()
            .filter(|(o, _)| matches!(o, Order::Lt | Order::Lte))
        {
            let ordering = match (low, high) {
                (Operand::Number(a), Operand::Number(b)) => a.compare(*b),
                (Operand::Time(a), Operand::Time(b)) => Some(a.cmp(b)),
                _ => None,
            };
            let inclusive = *low_order == Order::Gte && *high_order == Order::Lte;
            let empty = match ordering {
                Some(std::cmp::Ordering::Greater) => true,
                Some(std::cmp::Ordering::Equal) => !inclusive,
                _ => false,
            };
            if empty {
                return Some(format!(
                    "cannot be {} {} and {} {} at once",
                    low_order.name(),
                    low.to_json(),
                    high_order.name(),
                    high.to_json()
                ));
            }
        }
    }
    None
}
