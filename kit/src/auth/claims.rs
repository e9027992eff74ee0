//! Which token claims name the caller and its roles.
//!
//! Identity providers put them in different places: `sub` and `roles`
//! (tokens minted by `airt token`), `groups` (Okta, Entra ID), or nested
//! like Keycloak's `realm_access.roles`. Roles may be a list of strings or
//! one space- or comma-separated string (as in `scope`).

use serde_json::Value;

/// The most roles a token may carry, and the longest role.
const MAX_ROLES: usize = 128;
const MAX_ROLE_LEN: usize = 256;

/// Claim names (dotted paths into the token's claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The caller: `type:id`, or a bare id meaning `user:<id>`.
    pub principal: String,
    /// The caller's roles; absent means none.
    pub roles: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            principal: "sub".into(),
            roles: "roles".into(),
        }
    }
}

fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |value, key| value.as_object()?.get(key))
}

impl ClaimNames {
    /// The principal text (`type:id`) and roles the claims carry.
    pub fn extract(&self, claims: &Value) -> Result<(String, Vec<String>), String> {
        let subject = lookup(claims, &self.principal)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the token has no string claim `{}`", self.principal))?;
        let subject = if subject.contains(':') {
            subject.to_owned()
        } else {
            format!("user:{subject}")
        };
        let roles: Vec<String> = match lookup(claims, &self.roles) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) => text
                .split([' ', ','])
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("claim `{}` holds a non-string role", self.roles))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "claim `{}` must be a list of strings or a string",
                    self.roles
                ));
            }
        };
        if roles.len() > MAX_ROLES || roles.iter().any(|r| r.len() > MAX_ROLE_LEN) {
            return Err(format!(
                "claim `{}` carries more than {MAX_ROLES} roles or a role longer than {MAX_ROLE_LEN} bytes",
                self.roles
            ));
        }
        Ok((subject, roles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_come_from_configured_and_nested_names() {
        let keycloak = ClaimNames {
            principal: "preferred_username".into(),
            roles: "realm_access.roles".into(),
        };
        let claims = json!({"sub": "f3a1", "preferred_username": "alice",
                            "realm_access": {"roles": ["approver", "finance"]}});
        assert_eq!(
            keycloak.extract(&claims),
            Ok((
                "user:alice".into(),
                vec!["approver".into(), "finance".into()]
            ))
        );
        let scopes = ClaimNames {
            principal: "sub".into(),
            roles: "scope".into(),
        };
        let claims = json!({"sub": "service:ci", "scope": "registrar approver"});
        assert_eq!(
            scopes.extract(&claims),
            Ok((
                "service:ci".into(),
                vec!["registrar".into(), "approver".into()]
            ))
        );
        assert_eq!(
            ClaimNames::default().extract(&json!({"sub": "bob"})),
            Ok(("user:bob".into(), Vec::new()))
        );
    }

    #[test]
    fn missing_or_malformed_claims_are_refused() {
        let names = ClaimNames::default();
        assert!(names.extract(&json!({"roles": []})).is_err());
        assert!(names.extract(&json!({"sub": 7})).is_err());
        assert!(names.extract(&json!({"sub": "a", "roles": [1]})).is_err());
        assert!(
            names
                .extract(&json!({"sub": "a", "roles": {"x": 1}}))
                .is_err()
        );
        let many: Vec<String> = (0..=MAX_ROLES).map(|i| format!("r{i}")).collect();
        assert!(names.extract(&json!({"sub": "a", "roles": many})).is_err());
    }
}
