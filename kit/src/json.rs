//! Canonical JSON (the bytes that are hashed for audit chains and digests) and
//! conversions between `serde_json::Value` and `google.protobuf.Struct`/`Value`.

use prost_types::{ListValue, Struct, Value as ProtoValue, value::Kind};
use serde_json::{Map, Number, Value};

/// Compact JSON with object keys sorted recursively, so that equal values
/// always produce identical bytes whatever map implementation built them.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `serde_json::Value` → `google.protobuf.Value`.
pub fn to_proto_value(value: &Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_proto_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_proto_struct(map)),
    };
    ProtoValue { kind: Some(kind) }
}

/// A JSON object → `google.protobuf.Struct`.
pub fn to_proto_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), to_proto_value(v)))
            .collect(),
    }
}

/// `google.protobuf.Value` → `serde_json::Value`. Whole numbers become
/// integers (protobuf has only doubles), so `3` stays `3`, not `3.0`.
pub fn from_proto_value(value: &ProtoValue) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(from_proto_value).collect())
        }
        Some(Kind::StructValue(s)) => Value::Object(from_proto_struct(s)),
    }
}

/// `google.protobuf.Struct` → JSON object.
pub fn from_proto_struct(s: &Struct) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), from_proto_value(v)))
        .collect()
}

fn number(n: f64) -> Value {
    // 2^53: beyond it f64 no longer represents every integer exactly.
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_recursively_and_is_compact() {
        let value = json!({"b": 1, "a": {"z": [3, {"y": true, "x": null}], "c": "é\"q"}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":"é\"q","z":[3,{"x":null,"y":true}]},"b":1}"#
        );
    }

    #[test]
    fn struct_round_trip_keeps_integers_integers() {
        let value = json!({"n": 3, "f": 1.5, "s": "x", "l": [true, null], "o": {"k": -7}});
        let proto = to_proto_value(&value);
        assert_eq!(from_proto_value(&proto), value);
    }
}
