//! The authenticated caller.

use std::fmt;

use airt_proto::common::v1 as pb;

/// Who is calling, written `type:id` (`user:alice`, `agent:planner-7`,
/// `service:workflow`), with the roles its identity provider granted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub kind: String,
    pub id: String,
    pub roles: Vec<String>,
}

/// Why a `type:id` string is not a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principal must be written `type:id` with non-empty parts and no whitespace, got {0:?}")]
pub struct InvalidPrincipal(pub String);

impl Principal {
    pub fn new(kind: impl Into<String>, id: impl Into<String>, roles: Vec<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            roles,
        }
    }

    /// Parses `type:id`; the id may itself contain `:`.
    pub fn parse(text: &str, roles: Vec<String>) -> Result<Self, InvalidPrincipal> {
        let invalid = || InvalidPrincipal(text.to_owned());
        let (kind, id) = text.split_once(':').ok_or_else(invalid)?;
        let valid_part = |s: &str| !s.is_empty() && !s.chars().any(char::is_whitespace);
        if !valid_part(kind) || !valid_part(id) {
            return Err(invalid());
        }
        Ok(Self::new(kind, id, roles))
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        roles.iter().any(|role| self.has_role(role))
    }

    pub fn to_proto(&self) -> pb::Principal {
        pb::Principal {
            r#type: self.kind.clone(),
            id: self.id.clone(),
            roles: self.roles.clone(),
        }
    }

    pub fn from_proto(p: &pb::Principal) -> Self {
        Self::new(p.r#type.clone(), p.id.clone(), p.roles.clone())
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_and_id() {
        let p = Principal::parse("agent:planner-7", vec!["oncall".into()]).expect("valid");
        assert_eq!((p.kind.as_str(), p.id.as_str()), ("agent", "planner-7"));
        assert_eq!(p.to_string(), "agent:planner-7");
        assert!(p.has_role("oncall") && !p.has_role("admin"));
        assert_eq!(
            Principal::parse("svc:a:b", vec![]).expect("valid").id,
            "a:b"
        );
    }

    #[test]
    fn rejects_malformed_principals() {
        for bad in ["alice", ":alice", "user:", "user:al ice", ""] {
            assert!(Principal::parse(bad, vec![]).is_err(), "{bad:?} accepted");
        }
    }
}
