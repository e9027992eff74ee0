//! The authenticated caller.

use std::fmt;

use airt_proto::common::v1 as pb;
use unicode_normalization::UnicodeNormalization;

/// Longest `type:id` accepted, in bytes.
pub const MAX_PRINCIPAL_LEN: usize = 256;

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
#[error(
    "principal must be written `type:id` (type of letters, digits, - and _; id without whitespace, control or invisible characters; at most 256 bytes), got {0:?}"
)]
pub struct InvalidPrincipal(pub String);

impl Principal {
    pub fn new(kind: impl Into<String>, id: impl Into<String>, roles: Vec<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            roles,
        }
    }

    /// Parses `type:id`; the id may itself contain `:`. The result is
    /// canonical, so principals compare exactly: the type is lower-cased,
    /// the id is in Unicode NFC, and whitespace, control and invisible
    /// (zero-width, bidirectional) characters are refused rather than
    /// stripped — `user:alice\u{200b}` is no principal, not another alice.
    pub fn parse(text: &str, roles: Vec<String>) -> Result<Self, InvalidPrincipal> {
        let invalid = || InvalidPrincipal(text.to_owned());
        if text.len() > MAX_PRINCIPAL_LEN {
            return Err(invalid());
        }
        let (kind, id) = text.split_once(':').ok_or_else(invalid)?;
        let valid_kind = !kind.is_empty()
            && kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let valid_id = !id.is_empty() && !id.chars().any(|c| c.is_whitespace() || invisible(c));
        if !valid_kind || !valid_id {
            return Err(invalid());
        }
        Ok(Self::new(
            kind.to_ascii_lowercase(),
            id.nfc().collect::<String>(),
            roles,
        ))
    }

    /// Whether two principals are the same person for separation of duties
    /// (self-approval): equal ignoring case, since identity providers
    /// commonly treat `Alice` and `alice` as one account.
    pub fn same_person(&self, other: &str) -> bool {
        self.to_string().to_lowercase() == other.nfc().collect::<String>().to_lowercase()
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

/// Control, format (zero-width, bidirectional overrides, BOM) and other
/// characters that render as nothing.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}')
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
        let long = format!("user:{}", "a".repeat(MAX_PRINCIPAL_LEN));
        for bad in [
            "alice",
            ":alice",
            "user:",
            "user:al ice",
            "",
            "user:alice\u{200b}",
            "user:\u{202e}ecila",
            "user:alice\u{0}",
            "us er:alice",
            "user\u{200b}:alice",
            &long,
        ] {
            assert!(Principal::parse(bad, vec![]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn principals_are_canonical() {
        let upper = Principal::parse("User:alice", vec![]).expect("valid");
        assert_eq!(upper.to_string(), "user:alice");
        // "é" precomposed and as e + combining acute are one principal.
        let composed = Principal::parse("user:jos\u{e9}", vec![]).expect("valid");
        let decomposed = Principal::parse("user:jose\u{301}", vec![]).expect("valid");
        assert_eq!(composed, decomposed);
        assert!(upper.same_person("user:Alice"));
        assert!(upper.same_person("USER:ALICE"));
        assert!(!upper.same_person("user:bob"));
    }
}
