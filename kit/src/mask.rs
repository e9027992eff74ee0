//! Masking secrets before inputs reach a log, a decision record or a webhook.
//!
//! A key is secret when one of its words is `password`, `passwd`, `token`,
//! `secret`, `authorization` or `apikey`, or two consecutive words are
//! `api` `key`. Words are split at non-alphanumerics and camelCase
//! boundaries and compared whole, so `access_token` and `X-Api-Key` are
//! masked but `author` and `tokenizer_name` are not.

use serde_json::{Map, Value};

/// What replaces a masked value.
pub const MASK: &str = "***";

const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "secret",
    "authorization",
    "apikey",
];

fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Whether values under `key` are secrets.
pub fn is_secret_key(key: &str) -> bool {
    let words = words(key);
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        || words
            .windows(2)
            .any(|pair| pair[0] == "api" && pair[1] == "key")
}

/// A copy of `value` with every secret value replaced by `***`, at any depth.
pub fn mask_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(mask_map(map)),
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

pub fn mask_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(key, value)| {
            let masked = if is_secret_key(key) {
                Value::String(MASK.into())
            } else {
                mask_secrets(value)
            };
            (key.clone(), masked)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_whole_words() {
        for secret in [
            "password",
            "db_password",
            "passwordHash",
            "token",
            "access_token",
            "AccessToken",
            "secret",
            "client-secret",
            "api_key",
            "X-Api-Key",
            "apiKey",
            "apikey",
            "Authorization",
        ] {
            assert!(is_secret_key(secret), "{secret}");
        }
        for plain in [
            "author",
            "authors",
            "tokenizer",
            "secretary",
            "keys",
            "api",
            "key",
            "passage",
            "authority",
        ] {
            assert!(!is_secret_key(plain), "{plain}");
        }
    }

    #[test]
    fn masking_reaches_nested_values_and_keeps_the_rest() {
        let inputs = json!({"author": "ann", "auth": {"api_key": "k", "user": "u"}, "items": [{"token": "t"}], "password": {"nested": 1}});
        assert_eq!(
            mask_secrets(&inputs),
            json!({"author": "ann", "auth": {"api_key": "***", "user": "u"}, "items": [{"token": "***"}], "password": "***"})
        );
    }
}
