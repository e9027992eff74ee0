//! The shared vocabulary of `airt.common.v1` as plain Rust types: how risky
//! an action is and what kind of action it is. Spelled the same everywhere —
//! proto (`RISK_LEVEL_HIGH`), YAML and JSON (`HIGH`), database and logs (`HIGH`).

use std::fmt;

use airt_proto::common::v1 as pb;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    Read,
    Write,
    Delete,
    Execute,
    Network,
}

impl RiskLevel {
    pub const ALL: [Self; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }

    /// `None` for UNSPECIFIED or an unknown number.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::RiskLevel::try_from(value).ok()? {
            pb::RiskLevel::Unspecified => None,
            pb::RiskLevel::Low => Some(Self::Low),
            pb::RiskLevel::Medium => Some(Self::Medium),
            pb::RiskLevel::High => Some(Self::High),
            pb::RiskLevel::Critical => Some(Self::Critical),
        }
    }

    pub fn to_proto(self) -> pb::RiskLevel {
        match self {
            Self::Low => pb::RiskLevel::Low,
            Self::Medium => pb::RiskLevel::Medium,
            Self::High => pb::RiskLevel::High,
            Self::Critical => pb::RiskLevel::Critical,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == text)
    }
}

impl OperationType {
    pub const ALL: [Self; 5] = [
        Self::Read,
        Self::Write,
        Self::Delete,
        Self::Execute,
        Self::Network,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Delete => "DELETE",
            Self::Execute => "EXECUTE",
            Self::Network => "NETWORK",
        }
    }

    /// `None` for UNSPECIFIED or an unknown number.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::OperationType::try_from(value).ok()? {
            pb::OperationType::Unspecified => None,
            pb::OperationType::Read => Some(Self::Read),
            pb::OperationType::Write => Some(Self::Write),
            pb::OperationType::Delete => Some(Self::Delete),
            pb::OperationType::Execute => Some(Self::Execute),
            pb::OperationType::Network => Some(Self::Network),
        }
    }

    pub fn to_proto(self) -> pb::OperationType {
        match self {
            Self::Read => pb::OperationType::Read,
            Self::Write => pb::OperationType::Write,
            Self::Delete => pb::OperationType::Delete,
            Self::Execute => pb::OperationType::Execute,
            Self::Network => pb::OperationType::Network,
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for OperationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest capability id accepted.
pub const MAX_CAPABILITY_ID_LEN: usize = 128;

/// Whether `id` is a capability id: lowercase dotted, at least two segments,
/// each `[a-z][a-z0-9_]*`, at most 128 characters (e.g. `crm.create_account`).
pub fn is_capability_id(id: &str) -> bool {
    let segment_ok = |s: &str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some('a'..='z'))
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
    };
    id.len() <= MAX_CAPABILITY_ID_LEN && id.split('.').count() >= 2 && id.split('.').all(segment_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_everywhere() {
        for level in RiskLevel::ALL {
            assert_eq!(RiskLevel::from_proto(level.to_proto() as i32), Some(level));
            assert_eq!(serde_json::to_value(level).expect("json"), level.as_str());
            assert_eq!(RiskLevel::parse(level.as_str()), Some(level));
            assert_eq!(
                level.to_proto().as_str_name(),
                format!("RISK_LEVEL_{level}")
            );
        }
        for op in OperationType::ALL {
            assert_eq!(OperationType::from_proto(op.to_proto() as i32), Some(op));
            assert_eq!(serde_json::to_value(op).expect("json"), op.as_str());
            assert_eq!(op.to_proto().as_str_name(), format!("OPERATION_TYPE_{op}"));
        }
        assert_eq!(RiskLevel::from_proto(0), None);
        assert_eq!(OperationType::from_proto(99), None);
    }
}
