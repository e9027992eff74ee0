//! JSON values as conditions see them: numbers compared by value (an
//! integer and a float of the same value are equal, huge integers compare
//! exactly), dotted paths, and paths normalised before a glob looks at them.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// A number as compared: exact for every integer JSON can carry, IEEE for
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub fn of(number: &Number) -> Self {
        if let Some(i) = number.as_i64() {
            Self::Int(i128::from(i))
        } else if let Some(u) = number.as_u64() {
            Self::Int(i128::from(u))
        } else {
            Self::Float(number.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// `None` only when a float is NaN (JSON never carries one).
    pub fn compare(self, other: Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(&b)),
            (Self::Float(a), Self::Float(b)) => a.partial_cmp(&b),
            (Self::Int(a), Self::Float(b)) => int_vs_float(a, b),
            (Self::Float(a), Self::Int(b)) => int_vs_float(b, a).map(Ordering::reverse),
        }
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Compares an integer with a float without rounding the integer.
fn int_vs_float(int: i128, float: f64) -> Option<Ordering> {
    if float.is_nan() {
        return None;
    }
    // 2^127 is exactly representable; every i128 is below it.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if float >= LIMIT {
        return Some(Ordering::Less);
    }
    if float < -LIMIT {
        return Some(Ordering::Greater);
    }
    let whole = float.trunc();
    // In range, so the cast is exact for the integral part.
    #[allow(clippy::cast_possible_truncation)]
    let whole_int = whole as i128;
    Some(match int.cmp(&whole_int) {
        Ordering::Equal if float > whole => Ordering::Less,
        Ordering::Equal if float < whole => Ordering::Greater,
        other => other,
    })
}

/// JSON equality with numbers compared by value (`1 == 1.0`).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            Num::of(x).compare(Num::of(y)) == Some(Ordering::Equal)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| same(value, other)))
        }
        _ => a == b,
    }
}

/// The value at a dotted path: object keys, or array positions for
/// segments that are numbers.
pub fn at<'a>(inputs: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = inputs.get(first)?;
    for segment in rest {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The JSON type's name, for explanations and the linter.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value shown in an explanation: JSON, cut to a readable length.
pub fn show(value: Option<&Value>) -> String {
    const MAX: usize = 120;
    let Some(value) = value else {
        return "absent".into();
    };
    let text = value.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A slash-separated path with `.` and empty segments dropped and `..`
/// applied lexically, so `staging/../prod/db` is `prod/db`: a glob sees the
/// path the action would reach, not its spelling. `..` above the start is
/// kept (it matches no glob that does not name it).
pub fn normalise_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value_and_exactly() {
        assert!(same(&json!(1), &json!(1.0)));
        assert!(same(&json!([1, {"a": 2.0}]), &json!([1.0, {"a": 2}])));
        assert!(!same(&json!(1), &json!("1")));
        let big = Num::of(&serde_json::from_str::<Number>("18446744073709551615").expect("u64"));
        let almost = Num::of(&serde_json::from_str::<Number>("18446744073709551614").expect("u64"));
        assert_eq!(big.compare(almost), Some(Ordering::Greater));
        // 2^64 as a float is above u64::MAX as an integer.
        assert_eq!(
            big.compare(Num::Float(18_446_744_073_709_551_616.0)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Num::Int(3).compare(Num::Float(2.5)),
            Some(Ordering::Greater)
        );
        assert_eq!(Num::Int(-3).compare(Num::Float(-2.5)), Some(Ordering::Less));
        assert_eq!(
            Num::Float(1e300).compare(Num::Int(1)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            Num::Int(i128::from(i64::MIN)).compare(Num::Float(-1e300)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let inputs = json!({"a": {"b": [10, {"c": "x"}]}});
        let inputs = inputs.as_object().expect("object");
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(at(inputs, &path("a.b.0")), Some(&json!(10)));
        assert_eq!(at(inputs, &path("a.b.1.c")), Some(&json!("x")));
        assert_eq!(at(inputs, &path("a.b.2")), None);
        assert_eq!(at(inputs, &path("a.b.x")), None);
        assert_eq!(at(inputs, &path("a.b.0.c")), None);
    }

    #[test]
    fn paths_are_normalised_lexically() {
        assert_eq!(normalise_path("staging/../prod/db"), "prod/db");
        assert_eq!(normalise_path("./prod//x/."), "prod/x");
        assert_eq!(normalise_path("../prod"), "../prod");
        assert_eq!(normalise_path("a/../../prod"), "../prod");
        assert_eq!(normalise_path("/../etc/passwd"), "/etc/passwd");
        assert_eq!(normalise_path("/a/b/../c"), "/a/c");
    }
}
