//! Authentication: bearer JWTs (HS256, EdDSA) and the explicit development mode.

use airt_kit::Principal;
use airt_kit::auth::{AuthSettings, Authenticator, JwtKey, JwtSettings, require_any_role};
use airt_kit::testing::bearer;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const ED_PRIVATE: &[u8] = include_bytes!("fixtures/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("fixtures/ed25519_public.pem");
const OTHER_ED_PRIVATE: &[u8] = include_bytes!("fixtures/other_ed25519_private.pem");

fn settings(key: JwtKey) -> AuthSettings {
    AuthSettings::Jwt(JwtSettings {
        key,
        issuer: "https://idp.example".into(),
        audience: "airt".into(),
        leeway_secs: 0,
        claims: Default::default(),
    })
}

fn hs256() -> Authenticator {
    Authenticator::new(&settings(JwtKey::Hs256(SECRET.to_vec()))).expect("valid settings")
}

fn claims(sub: &str, roles: &[&str]) -> serde_json::Value {
    json!({
        "sub": sub,
        "roles": roles,
        "iss": "https://idp.example",
        "aud": "airt",
        "exp": get_current_timestamp() + 600,
    })
}

fn hs_token(claims: &serde_json::Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

fn unauthenticated(result: Result<Principal, tonic::Status>) -> String {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    airt_kit::status::reason_of(&status).expect("ErrorInfo reason")
}

#[test]
fn a_valid_hs256_token_yields_the_principal_with_roles() {
    let token = hs_token(&claims("agent:planner-7", &["oncall", "approver"]), SECRET);
    let principal = hs256()
        .authenticate(&bearer(&token))
        .expect("authenticated");
    assert_eq!(principal.to_string(), "agent:planner-7");
    assert_eq!(principal.roles, ["oncall", "approver"]);
    assert!(require_any_role(&principal, &["approver", "admin"]).is_ok());
    let denied = require_any_role(&principal, &["admin"]).expect_err("no admin role");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[test]
fn a_bare_subject_is_a_user() {
    let token = hs_token(&claims("alice", &[]), SECRET);
    let principal = hs256()
        .authenticate(&bearer(&token))
        .expect("authenticated");
    assert_eq!(principal.to_string(), "user:alice");
}

#[test]
fn a_missing_token_is_unauthenticated() {
    assert_eq!(
        unauthenticated(hs256().authenticate(&MetadataMap::new())),
        "MISSING_TOKEN"
    );
}

#[test]
fn a_bad_signature_is_unauthenticated() {
    let token = hs_token(
        &claims("user:alice", &["admin"]),
        b"another-secret-that-is-32-bytes-long!!",
    );
    assert_eq!(
        unauthenticated(hs256().authenticate(&bearer(&token))),
        "INVALID_TOKEN"
    );
}

#[test]
fn a_wrong_audience_or_issuer_is_unauthenticated() {
    let mut wrong_audience = claims("user:alice", &["admin"]);
    wrong_audience["aud"] = json!("someone-else");
    assert_eq!(
        unauthenticated(hs256().authenticate(&bearer(&hs_token(&wrong_audience, SECRET)))),
        "INVALID_TOKEN"
    );

    let mut wrong_issuer = claims("user:alice", &["admin"]);
    wrong_issuer["iss"] = json!("https://evil.example");
    assert_eq!(
        unauthenticated(hs256().authenticate(&bearer(&hs_token(&wrong_issuer, SECRET)))),
        "INVALID_TOKEN"
    );
}

#[test]
fn an_expired_token_is_unauthenticated() {
    let mut expired = claims("user:alice", &["admin"]);
    expired["exp"] = json!(get_current_timestamp() - 3600);
    assert_eq!(
        unauthenticated(hs256().authenticate(&bearer(&hs_token(&expired, SECRET)))),
        "INVALID_TOKEN"
    );
}

#[test]
fn a_token_not_yet_valid_is_unauthenticated() {
    let mut early = claims("user:alice", &["admin"]);
    early["nbf"] = json!(get_current_timestamp() + 3600);
    assert_eq!(
        unauthenticated(hs256().authenticate(&bearer(&hs_token(&early, SECRET)))),
        "INVALID_TOKEN"
    );
}

#[test]
fn look_alike_subjects_are_refused_and_types_are_canonical() {
    let token = hs_token(&claims("User:alice", &[]), SECRET);
    let principal = hs256()
        .authenticate(&bearer(&token))
        .expect("authenticated");
    assert_eq!(principal.to_string(), "user:alice");
    for subject in [
        "user:alice\u{200b}",
        "user:\u{202e}ecila",
        "user:al\u{0}ice",
    ] {
        let token = hs_token(&claims(subject, &[]), SECRET);
        assert_eq!(
            unauthenticated(hs256().authenticate(&bearer(&token))),
            "INVALID_TOKEN",
            "{subject:?}"
        );
    }
}

#[test]
fn a_token_without_expiry_is_unauthenticated() {
    let mut no_exp = claims("user:alice", &["admin"]);
    no_exp.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        unauthenticated(hs256().authenticate(&bearer(&hs_token(&no_exp, SECRET)))),
        "INVALID_TOKEN"
    );
}

#[test]
fn an_unsigned_or_other_algorithm_token_is_refused() {
    // An EdDSA token presented to an HS256 verifier.
    let token = encode(
        &Header::new(Algorithm::EdDSA),
        &claims("user:alice", &["admin"]),
        &EncodingKey::from_ed_pem(ED_PRIVATE).expect("key"),
    )
    .expect("encode");
    assert_eq!(
        unauthenticated(hs256().authenticate(&bearer(&token))),
        "INVALID_TOKEN"
    );
    // A malformed header value.
    let mut metadata = MetadataMap::new();
    metadata.insert(
        "authorization",
        MetadataValue::from_static("Basic dXNlcjpwdw=="),
    );
    assert_eq!(
        unauthenticated(hs256().authenticate(&metadata)),
        "INVALID_TOKEN"
    );
}

#[test]
fn eddsa_tokens_verify_with_the_public_key_only() {
    let authenticator =
        Authenticator::new(&settings(JwtKey::EdDsaPem(ED_PUBLIC.to_vec()))).expect("valid key");
    let sign = |private: &[u8]| {
        encode(
            &Header::new(Algorithm::EdDSA),
            &claims("service:workflow", &["registrar"]),
            &EncodingKey::from_ed_pem(private).expect("key"),
        )
        .expect("encode")
    };
    let principal = authenticator
        .authenticate(&bearer(&sign(ED_PRIVATE)))
        .expect("authenticated");
    assert_eq!(principal.to_string(), "service:workflow");
    assert_eq!(principal.roles, ["registrar"]);
    assert_eq!(
        unauthenticated(authenticator.authenticate(&bearer(&sign(OTHER_ED_PRIVATE)))),
        "INVALID_TOKEN"
    );
}

#[test]
fn short_hs256_secrets_are_refused_at_start_up() {
    assert!(Authenticator::new(&settings(JwtKey::Hs256(b"short".to_vec()))).is_err());
}

#[test]
fn development_mode_reads_principal_and_roles_from_metadata() {
    let dev = Authenticator::development();
    let mut metadata = MetadataMap::new();
    metadata.insert("x-airt-principal", MetadataValue::from_static("user:alice"));
    metadata.insert(
        "x-airt-roles",
        MetadataValue::from_static("admin, approver"),
    );
    let principal = dev.authenticate(&metadata).expect("authenticated");
    assert_eq!(principal.to_string(), "user:alice");
    assert_eq!(principal.roles, ["admin", "approver"]);
    assert_eq!(
        unauthenticated(dev.authenticate(&MetadataMap::new())),
        "MISSING_PRINCIPAL"
    );
}

#[test]
fn development_headers_are_ignored_when_tokens_are_required() {
    let mut metadata = MetadataMap::new();
    metadata.insert("x-airt-principal", MetadataValue::from_static("user:admin"));
    metadata.insert("x-airt-roles", MetadataValue::from_static("admin"));
    assert_eq!(
        unauthenticated(hs256().authenticate(&metadata)),
        "MISSING_TOKEN"
    );
}

#[test]
fn without_configuration_every_call_is_refused() {
    let unconfigured = Authenticator::new(&AuthSettings::default()).expect("default settings");
    let mut metadata = MetadataMap::new();
    metadata.insert("x-airt-principal", MetadataValue::from_static("user:alice"));
    assert_eq!(
        unauthenticated(unconfigured.authenticate(&metadata)),
        "AUTH_NOT_CONFIGURED"
    );
    assert!(!unconfigured.is_development());
}
