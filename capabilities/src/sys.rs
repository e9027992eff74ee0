//! `sys.info.*`: facts about the host, and only allow-listed environment
//! variables.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{CatalogueConfig, Execution, ExecutionContext, Handler, HandlerError, string};

pub(super) fn register(handlers: &mut HashMap<String, Arc<dyn Handler>>, config: &CatalogueConfig) {
    handlers.insert("sys.info.get_time".into(), Arc::new(GetTime));
    handlers.insert("sys.info.get_os".into(), Arc::new(GetOs));
    handlers.insert(
        "sys.info.get_env_var".into(),
        Arc::new(GetEnvVar {
            allow: config.env_allow_list.clone(),
        }),
    );
}

#[derive(Debug)]
struct GetTime;

#[async_trait::async_trait]
impl Handler for GetTime {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        _inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let micros = airt_kit::clock::now_micros();
        Ok(Execution::read(json!({
            "unix_ms": micros / 1000,
            "rfc3339": airt_kit::clock::timestamp_from_micros(micros).to_string(),
        })))
    }
}

#[derive(Debug)]
struct GetOs;

#[async_trait::async_trait]
impl Handler for GetOs {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        _inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        Ok(Execution::read(json!({
            "os": std::env::consts::OS,
            "family": std::env::consts::FAMILY,
            "arch": std::env::consts::ARCH,
        })))
    }
}

/// Reads a variable only if its exact name is allow-listed in configuration.
#[derive(Debug)]
struct GetEnvVar {
    allow: Vec<String>,
}

#[async_trait::async_trait]
impl Handler for GetEnvVar {
    async fn execute(
        &self,
        _ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let name = string(inputs, "name")?;
        if !self.allow.iter().any(|allowed| allowed == name) {
            return Err(HandlerError::sandbox(format!(
                "environment variable {name} is not in the allow-list"
            )));
        }
        let value = std::env::var(name).ok();
        Ok(Execution::read(
            json!({"name": name, "present": value.is_some(), "value": value}),
        ))
    }
}
