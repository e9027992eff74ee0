//! `when.inputs` as written (a YAML mapping) into [`InputCondition`]s, with
//! every problem named by its place (`when.inputs.amount.gt`).

use serde_json::{Map, Value};

use super::{
    InputCondition, MAX_NESTING, MAX_REGEX_LEN, Num, Operand, Order, PathGlob, REGEX_SIZE_LIMIT,
    Test, TextPattern,
};

/// Values an `in` / `not_in` list may hold.
pub const MAX_LIST: usize = 10_000;

const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "exists",
    "cidr",
    "glob",
    "all_of",
    "any_of",
    "not",
    "any_item",
    "every_item",
];

/// A problem: where (relative to `when.inputs`) and what.
pub type Problem = (String, String);

/// Parses a `when.inputs` mapping. Keys `all_of`, `any_of` and `not`
/// combine mappings; every other key is a dotted path.
pub fn parse_inputs(map: &Map<String, Value>) -> Result<Vec<InputCondition>, Vec<Problem>> {
    let mut problems = Vec::new();
    let conditions = inputs_map(map, "when.inputs", 0, &mut problems);
    if problems.is_empty() {
        Ok(conditions)
    } else {
        Err(problems)
    }
}

/// Parses the test on one path's value.
pub fn parse_test(value: &Value, at: &str) -> Result<Test, Vec<Problem>> {
    let mut problems = Vec::new();
    match test(value, at, 0, &mut problems) {
        Some(test) if problems.is_empty() => Ok(test),
        _ => Err(problems),
    }
}

fn too_deep(depth: usize, at: &str, problems: &mut Vec<Problem>) -> bool {
    if depth > MAX_NESTING {
        problems.push((
            at.to_owned(),
            format!("conditions nest deeper than {MAX_NESTING} levels"),
        ));
        return true;
    }
    false
}

fn inputs_map(
    map: &Map<String, Value>,
    at: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Vec<InputCondition> {
    if too_deep(depth, at, problems) {
        return Vec::new();
    }
    let mut conditions = Vec::with_capacity(map.len());
    for (key, value) in map {
        let here = format!("{at}.{key}");
        let combined = |problems: &mut Vec<Problem>| -> Vec<InputCondition> {
            match value {
                Value::Array(items) if !items.is_empty() => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Value::Object(m) => InputCondition::All(inputs_map(
                            m,
                            &format!("{here}[{i}]"),
                            depth + 1,
                            problems,
                        )),
                        _ => {
                            problems.push((
                                format!("{here}[{i}]"),
                                "expected a mapping of input paths to conditions".into(),
                            ));
                            InputCondition::All(Vec::new())
                        }
                    })
                    .collect(),
                _ => {
                    problems.push((
                        here.clone(),
                        "expected a non-empty list of mappings of input paths to conditions".into(),
                    ));
                    Vec::new()
                }
            }
        };
        match key.as_str() {
            "all_of" => conditions.push(InputCondition::All(combined(problems))),
            "any_of" => conditions.push(InputCondition::Any(combined(problems))),
            "not" => match value {
                Value::Object(m) if !m.is_empty() => {
                    conditions.push(InputCondition::Not(Box::new(InputCondition::All(
                        inputs_map(m, &here, depth + 1, problems),
                    ))))
                }
                _ => problems.push((
                    here,
                    "expected a non-empty mapping of input paths to conditions".into(),
                )),
            },
            path => {
                let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    problems.push((here, format!("{path:?} is not a dotted input path")));
                    continue;
                }
                if let Some(test) = test(value, &here, depth, problems) {
                    conditions.push(InputCondition::Path {
                        path: segments,
                        test,
                    });
                }
            }
        }
    }
    conditions
}

/// A value's test: a mapping of operators, else equality (a mapping
/// without any operator key is the equality with that object, as before
/// operators existed).
fn test(value: &Value, at: &str, depth: usize, problems: &mut Vec<Problem>) -> Option<Test> {
    if too_deep(depth, at, problems) {
        return None;
    }
    let Value::Object(map) = value else {
        return Some(Test::Eq(value.clone()));
    };
    if !map.keys().any(|k| OPERATORS.contains(&k.as_str())) {
        return Some(Test::Eq(value.clone()));
    }
    let mut tests = Vec::with_capacity(map.len());
    for (operator, operand) in map {
        let here = format!("{at}.{operator}");
        if let Some(test) = operator_test(operator, operand, &here, depth, problems) {
            tests.push(test);
        }
    }
    Some(if tests.len() == 1 {
        tests.swap_remove(0)
    } else {
        Test::All(tests)
    })
}

fn operator_test(
    operator: &str,
    operand: &Value,
    at: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Test> {
    match operator {
        "all_of" | "any_of" => match operand {
            Value::Array(items) if !items.is_empty() => {
                let tests: Vec<Test> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| test(item, &format!("{at}[{i}]"), depth + 1, problems))
                    .collect();
                Some(if operator == "all_of" {
                    Test::All(tests)
                } else {
                    Test::Any(tests)
                })
            }
            _ => {
                problems.push((
                    at.to_owned(),
                    "expected a non-empty list of conditions".into(),
                ));
                None
            }
        },
        "not" => test(operand, at, depth + 1, problems).map(|t| Test::Not(Box::new(t))),
        "any_item" => test(operand, at, depth + 1, problems).map(|t| Test::AnyItem(Box::new(t))),
        "every_item" => {
            test(operand, at, depth + 1, problems).map(|t| Test::EveryItem(Box::new(t)))
        }
        _ => match leaf(operator, operand) {
            Ok(test) => Some(test),
            Err(message) => {
                problems.push((at.to_owned(), message));
                None
            }
        },
    }
}

/// An operator other than the combinators.
fn leaf(operator: &str, operand: &Value) -> Result<Test, String> {
    Ok(match (operator, operand) {
        ("eq", _) => Test::Eq(operand.clone()),
        ("ne", _) => Test::Ne(operand.clone()),
        ("gt" | "gte" | "lt" | "lte", _) => {
            let order = match operator {
                "gt" => Order::Gt,
                "gte" => Order::Gte,
                "lt" => Order::Lt,
                _ => Order::Lte,
            };
            Test::Order(order, ordering_operand(operand)?)
        }
        ("in" | "not_in", Value::Array(items)) if !items.is_empty() && items.len() <= MAX_LIST => {
            if operator == "in" {
                Test::In(items.clone())
            } else {
                Test::NotIn(items.clone())
            }
        }
        ("in" | "not_in", _) => return Err(format!("expected a list of 1 to {MAX_LIST} values")),
        ("contains", _) => Test::Contains(operand.clone()),
        ("starts_with", Value::String(s)) => Test::StartsWith(s.clone()),
        ("ends_with", Value::String(s)) => Test::EndsWith(s.clone()),
        ("starts_with" | "ends_with", _) => return Err("expected a string".into()),
        ("matches", Value::String(s)) => Test::Matches(regex(s)?),
        ("matches", _) => return Err("expected a regular expression (a string)".into()),
        ("exists", Value::Bool(b)) => Test::Exists(*b),
        ("exists", _) => return Err("expected true or false".into()),
        ("cidr", _) => Test::Cidr(cidr(operand)?),
        ("glob", Value::String(s)) => Test::Glob(glob(s)?),
        ("glob", _) => return Err("expected a glob (a string)".into()),
        (other, _) => {
            return Err(format!(
                "unknown operator {other:?}; expected one of {}",
                OPERATORS.join(", ")
            ));
        }
    })
}

fn ordering_operand(operand: &Value) -> Result<Operand, String> {
    match operand {
        Value::Number(n) => Ok(Operand::Number(Num::of(n))),
        Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .map(Operand::Time)
            .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}")),
        _ => Err("expected a number or an RFC 3339 time".into()),
    }
}

fn regex(source: &str) -> Result<TextPattern, String> {
    if source.len() > MAX_REGEX_LEN {
        return Err(format!("is longer than {MAX_REGEX_LEN} bytes"));
    }
    let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("not a valid regular expression: {e}"))?;
    Ok(TextPattern {
        source: source.to_owned(),
        regex,
    })
}

fn cidr(operand: &Value) -> Result<Vec<ipnet::IpNet>, String> {
    let texts: Vec<&str> = match operand {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_LIST => items
            .iter()
            .map(|v| v.as_str().ok_or("expected address ranges as strings"))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(format!(
                "expected a range like 10.0.0.0/8 or a list of 1 to {MAX_LIST}"
            ));
        }
    };
    texts
        .into_iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("{text:?} is not an address range (10.0.0.0/8, fd00::/8) or address")
                })
        })
        .collect()
}

fn glob(source: &str) -> Result<PathGlob, String> {
    if source.is_empty() || source.len() > MAX_REGEX_LEN {
        return Err(format!("expected a glob of 1 to {MAX_REGEX_LEN} bytes"));
    }
    let matcher = globset::GlobBuilder::new(source)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("not a valid glob: {e}"))?
        .compile_matcher();
    Ok(PathGlob {
        source: source.to_owned(),
        matcher,
    })
}
