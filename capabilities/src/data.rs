//! `data.*`: pure transformations of JSON and bytes.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Execution, ExecutionContext, Handler, HandlerError, string};

pub(super) fn register(handlers: &mut HashMap<String, Arc<dyn Handler>>) {
    handlers.insert("data.json.query".into(), Arc::new(JsonQuery));
    handlers.insert("data.json.transform".into(), Arc::new(JsonTransform));
    handlers.insert("data.hash.sha256".into(), Arc::new(Sha256Hash));
    handlers.insert("data.base64.encode".into(), Arc::new(Base64Encode));
    handlers.insert("data.base64.decode".into(), Arc::new(Base64Decode));
}

fn check_pointer(pointer: &str) -> Result<(), HandlerError> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(HandlerError::invalid_input(format!(
            "{pointer:?} is not a JSON Pointer (RFC 6901): it must be empty or start with /"
        )))
    }
}

#[derive(Debug)]
struct JsonQuery;

#[async_trait::async_trait]
impl Handler for JsonQuery {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let data = inputs.get("data").cloned().unwrap_or(Value::Null);
        let pointer = string(inputs, "pointer")?;
        check_pointer(pointer)?;
        let found = data.pointer(pointer);
        Ok(Execution::read(
            json!({"found": found.is_some(), "value": found.cloned().unwrap_or(Value::Null)}),
        ))
    }
}

/// Applies `remove` (pointers), then `set` (pointer → value; parents must
/// exist), then `pick` (top-level keys to keep).
#[derive(Debug)]
struct JsonTransform;

#[async_trait::async_trait]
impl Handler for JsonTransform {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let mut data = inputs.get("data").cloned().unwrap_or(Value::Null);
        for pointer in inputs
            .get("remove")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let pointer = pointer
                .as_str()
                .ok_or_else(|| HandlerError::invalid_input("remove must list JSON Pointers"))?;
            check_pointer(pointer)?;
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
            if let Some(Value::Object(map)) = data.pointer_mut(parent) {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
        }
        for (pointer, value) in inputs
            .get("set")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            check_pointer(pointer)?;
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
            match data.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.insert(key.replace("~1", "/").replace("~0", "~"), value.clone());
                }
                _ => {
                    return Err(HandlerError::invalid_input(format!(
                        "set {pointer}: its parent {parent:?} is not an object"
                    )));
                }
            }
        }
        if let Some(keys) = inputs.get("pick").and_then(Value::as_array) {
            let object = data
                .as_object()
                .ok_or_else(|| HandlerError::invalid_input("pick needs an object"))?;
            let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
            data = Value::Object(
                object
                    .iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
        }
        Ok(Execution::read(json!({"result": data})))
    }
}

fn bytes_of(inputs: &Map<String, Value>) -> Result<Vec<u8>, HandlerError> {
    let data = string(inputs, "data")?;
    match inputs
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("utf8")
    {
        "utf8" => Ok(data.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| HandlerError::invalid_input(format!("data is not base64: {e}"))),
        other => Err(HandlerError::invalid_input(format!(
            "unknown encoding {other:?}: utf8 or base64"
        ))),
    }
}

#[derive(Debug)]
struct Sha256Hash;

#[async_trait::async_trait]
impl Handler for Sha256Hash {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let bytes = bytes_of(inputs)?;
        Ok(Execution::read(
            json!({"sha256": hex::encode(Sha256::digest(&bytes)), "size": bytes.len()}),
        ))
    }
}

#[derive(Debug)]
struct Base64Encode;

#[async_trait::async_trait]
impl Handler for Base64Encode {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let text = string(inputs, "text")?;
        Ok(Execution::read(
            json!({"encoded": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())}),
        ))
    }
}

#[derive(Debug)]
struct Base64Decode;

#[async_trait::async_trait]
impl Handler for Base64Decode {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let encoded = string(inputs, "encoded")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| HandlerError::invalid_input(format!("not base64: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| HandlerError::invalid_input("decoded bytes are not UTF-8 text"))?;
        Ok(Execution::read(json!({"text": text})))
    }
}
