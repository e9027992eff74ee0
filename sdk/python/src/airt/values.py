"""Plain Python values to and from `google.protobuf.Struct`/`Value`.

Protobuf carries every number as a double; a number that is a whole value
within ±2**53 comes back as an `int`, so `attempt: 1` stays `1`, not `1.0`."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

_EXACT = 2**53


def to_value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, (int, float)):
        if isinstance(value, int) and abs(value) > _EXACT:
            raise ValueError(f"{value} cannot travel exactly as a protobuf number (beyond ±2**53); send it as a string")
        out.number_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, dict):
        out.struct_value.CopyFrom(to_struct(value))
    elif isinstance(value, (list, tuple)):
        out.list_value.values.extend(to_value(v) for v in value)
    else:
        raise TypeError(f"cannot send a {type(value).__name__} as a protobuf value")
    return out


def to_struct(mapping: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"keys must be strings, not {type(key).__name__}")
        out.fields[key].CopyFrom(to_value(value))
    return out


def from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) <= _EXACT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return None


def from_struct(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    if struct is None:
        return {}
    return {key: from_value(value) for key, value in struct.fields.items()}
