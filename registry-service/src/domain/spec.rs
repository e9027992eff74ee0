//! CapabilitySpec v3: what a capability is, how risky, how to undo it.
//!
//! A [`SpecDraft`] is what a user submitted (every field optional, as in a
//! YAML file or a proto message with UNSPECIFIED enums); [`super::validate`]
//! turns it into a [`CapabilitySpec`] or reports every violation at once.

use airt_kit::vocabulary::{OperationType, RiskLevel};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SideEffectScope {
    Local,
    Network,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompensationStrategy {
    Automatic,
    Manual,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

impl ParameterType {
    /// Whether a JSON value has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Boolean => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::Array => value.is_array(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub level: RiskLevel,
    pub justification: String,
    pub requires_approval: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideEffects {
    pub reversible: bool,
    pub scope: SideEffectScope,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    pub supported: bool,
    pub strategy: CompensationStrategy,
    /// Empty when the handler's built-in undo is used.
    pub capability_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "type")]
    pub param_type: ParameterType,
    pub description: String,
    pub required: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub version: String,
    pub author: String,
    pub tags: Vec<String>,
    pub deprecated: bool,
}

/// A validated, immutable capability revision (its lifecycle is state kept
/// beside it, not content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilitySpec {
    pub id: String,
    pub name: String,
    pub description: String,
    pub operation_type: OperationType,
    pub risk: Risk,
    pub side_effects: SideEffects,
    pub compensation: Compensation,
    pub parameters: Vec<Parameter>,
    /// Free-form JSON schema of the outputs (an object, possibly empty).
    pub returns: Value,
    pub metadata: Metadata,
    pub handler: String,
}

impl CapabilitySpec {
    /// Canonical JSON of the content: identical content, identical bytes.
    pub fn canonical_json(&self) -> String {
        // Serialising plain structs to a Value cannot fail.
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        airt_kit::json::canonical_json(&value)
    }

    /// Lowercase hex SHA-256 of [`Self::canonical_json`].
    pub fn content_digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

// ---- drafts: what a user submitted, before validation -------------------

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskDraft {
    pub level: Option<RiskLevel>,
    pub justification: String,
    pub requires_approval: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SideEffectsDraft {
    pub reversible: Option<bool>,
    pub scope: Option<SideEffectScope>,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompensationDraft {
    pub supported: Option<bool>,
    pub strategy: Option<CompensationStrategy>,
    pub capability_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParameterDraft {
    pub name: String,
    #[serde(rename = "type")]
    pub param_type: Option<ParameterType>,
    pub description: String,
    pub required: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataDraft {
    pub version: String,
    pub author: String,
    pub tags: Vec<String>,
    pub deprecated: bool,
}

/// A capability as submitted: a YAML/JSON file or a proto message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpecDraft {
    pub id: String,
    pub name: String,
    pub description: String,
    pub operation_type: Option<OperationType>,
    pub risk: Option<RiskDraft>,
    pub side_effects: Option<SideEffectsDraft>,
    pub compensation: Option<CompensationDraft>,
    pub parameters: Vec<ParameterDraft>,
    pub returns: Option<Value>,
    pub metadata: Option<MetadataDraft>,
    pub handler: String,
    pub lifecycle: Option<super::Lifecycle>,
}

/// Why a capability file could not be read, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Dotted path of the offending field when known, else `spec_text`.
    pub field: String,
    pub message: String,
}

impl SpecDraft {
    /// Parses the YAML (or JSON, a subset of YAML) form of a capability.
    /// Unknown fields and unknown enum values are errors with line and column.
    pub fn from_text(text: &str) -> Result<Self, ParseError> {
        airt_kit::limits::parse_yaml(text).map_err(|message| ParseError {
            field: "spec_text".to_owned(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_files_parse_and_unknown_fields_are_refused_with_a_line() {
        let draft = SpecDraft::from_text(
            "id: crm.create_account\nname: Create account\noperation_type: WRITE\nrisk: {level: MEDIUM}\n",
        )
        .expect("parses");
        assert_eq!(draft.id, "crm.create_account");
        assert_eq!(draft.operation_type, Some(OperationType::Write));
        assert_eq!(draft.risk.and_then(|r| r.level), Some(RiskLevel::Medium));

        let error = SpecDraft::from_text("id: a.b\nrisk:\n  level: MEDIUM\n  levle: HIGH\n")
            .expect_err("unknown field");
        assert!(error.message.contains("line 4"), "{error}");
        assert!(error.message.contains("levle"), "{error}");

        let error = SpecDraft::from_text("id: a.b\noperation_type: REED\n").expect_err("bad enum");
        assert!(
            error.message.contains("REED") && error.message.contains("line 2"),
            "{error}"
        );
    }

    #[test]
    fn json_is_accepted_too() {
        let draft = SpecDraft::from_text(
            r#"{"id": "a.b", "parameters": [{"name": "p", "type": "integer"}]}"#,
        )
        .expect("parses");
        assert_eq!(draft.parameters[0].param_type, Some(ParameterType::Integer));
    }
}
