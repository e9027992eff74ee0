use std::time::Duration;

use super::*;

fn alice() -> Identity {
    Identity::Development {
        principal: "user:alice".into(),
        roles: "approver".into(),
    }
}

#[test]
fn a_sealed_session_opens_with_its_key_only() {
    let key = SessionKey::random();
    let session = Session::new(alice(), Duration::from_secs(3600));
    let cookie = session.seal(&key);
    assert_eq!(Session::open(&key, &cookie), Some(session));
    assert_eq!(Session::open(&SessionKey::random(), &cookie), None);
}

#[test]
fn any_changed_byte_voids_a_session() {
    let key = SessionKey::random();
    let cookie = Session::new(alice(), Duration::from_secs(3600)).seal(&key);
    for i in 0..cookie.len() {
        let mut bytes = cookie.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).expect("ascii");
        if forged != cookie {
            assert_eq!(Session::open(&key, &forged), None, "byte {i}");
        }
    }
}

#[test]
fn a_forged_identity_is_refused() {
    // Someone rewrites the payload to claim admin and keeps the tag.
    let key = SessionKey::random();
    let cookie = Session::new(alice(), Duration::from_secs(3600)).seal(&key);
    let tag = cookie.split_once('.').expect("sealed").1;
    let admin = Session::new(
        Identity::Development {
            principal: "user:root".into(),
            roles: "admin".into(),
        },
        Duration::from_secs(3600),
    );
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).expect("json"));
    assert_eq!(Session::open(&key, &format!("{payload}.{tag}")), None);
}

#[test]
fn an_expired_session_is_over() {
    let key = SessionKey::random();
    let mut session = Session::new(alice(), Duration::from_secs(3600));
    session.expires = now_secs() - 1;
    assert_eq!(Session::open(&key, &session.seal(&key)), None);
}

#[test]
fn garbage_and_oversized_cookies_are_refused() {
    let key = SessionKey::random();
    for cookie in ["", ".", "a.b", "no-dot", "%%%.%%%", &"A".repeat(20_000)] {
        assert_eq!(Session::open(&key, cookie), None, "{cookie:.20}");
    }
    let valid_json_no_tag = URL_SAFE_NO_PAD.encode(b"{}");
    assert_eq!(Session::open(&key, &format!("{valid_json_no_tag}.")), None);
}

#[test]
fn a_value_sealed_for_one_purpose_does_not_open_for_another() {
    let key = SessionKey::random();
    let signin = seal_signin(&key, "n1");
    assert_eq!(open_signin(&key, &signin).as_deref(), Some("n1"));
    assert_eq!(Session::open(&key, &signin), None);
    let session = Session::new(alice(), Duration::from_secs(60)).seal(&key);
    assert_eq!(open_signin(&key, &session), None);
}

#[test]
fn csrf_tokens_are_bound_to_the_nonce_and_the_key() {
    let key = SessionKey::random();
    let token = key.csrf_token("nonce-1");
    assert!(key.csrf_valid("nonce-1", &token));
    assert!(!key.csrf_valid("nonce-2", &token));
    assert!(!SessionKey::random().csrf_valid("nonce-1", &token));
    assert!(!key.csrf_valid("nonce-1", ""));
    assert!(!key.csrf_valid("nonce-1", "not base64 !"));
    assert!(!key.csrf_valid("nonce-1", &token[..token.len() - 2]));
}

#[test]
fn keys_come_from_enough_material() {
    assert!(SessionKey::from_material(b"short").is_err());
    let a = SessionKey::from_material(&[7u8; 40]).expect("long enough");
    let b = SessionKey::from_material(&[7u8; 40]).expect("long enough");
    // The same material gives the same key: replicas share sessions.
    let cookie = Session::new(alice(), Duration::from_secs(60)).seal(&a);
    assert!(Session::open(&b, &cookie).is_some());
}

#[test]
fn cookies_are_read_among_others_and_written_strict() {
    let mut headers = http::HeaderMap::new();
    headers.append(
        http::header::COOKIE,
        "a=1; airt_session=xyz; b=2".parse().unwrap(),
    );
    assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
    assert_eq!(cookie(&headers, "missing"), None);
    let set = set_cookie(SESSION_COOKIE, "v", Duration::from_secs(60), true);
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.ends_with("; Secure")
    );
    assert!(!set_cookie("x", "v", Duration::ZERO, false).contains("Secure"));
}
