//! Who calls through the gateway over HTTP: a bearer token is verified like
//! the services verify it and forwarded unchanged; development headers are
//! never forwarded in token mode.

use airt_kit::auth::{AuthSettings, Authenticator, ClaimNames, JwtKey, JwtSettings};
use http::{HeaderMap, HeaderValue};
use mcp_gateway::caller::authenticate;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-gateway";

fn authenticator() -> Authenticator {
    Authenticator::new(&AuthSettings::Jwt(JwtSettings {
        key: JwtKey::Hs256(SECRET.to_vec()),
        issuer: "airt".into(),
        audience: "airt".into(),
        leeway_secs: 30,
        claims: ClaimNames::default(),
    }))
    .expect("authenticator")
}

fn token(secret: &[u8]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 600;
    let claims = serde_json::json!({"sub": "user:alice", "roles": ["writer"], "iss": "airt", "aud": "airt", "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("token")
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_str(value).expect("header"));
    }
    headers
}

#[tokio::test]
async fn a_verified_token_is_forwarded_and_nothing_else() {
    let token = token(SECRET);
    let caller = authenticate(
        &authenticator(),
        &headers(&[
            ("authorization", &format!("Bearer {token}")),
            ("x-airt-principal", "user:root"),
            ("x-airt-roles", "admin"),
            ("x-airt-agent", "planner-7"),
        ]),
    )
    .await
    .expect("a valid token");
    assert_eq!(caller.principal.to_string(), "user:alice");
    assert!(caller.principal.has_role("writer") && !caller.principal.has_role("admin"));
    assert_eq!(caller.agent, "planner-7");
    let mut request = tonic::Request::new(());
    caller.credentials.apply(&mut request);
    assert_eq!(
        request.metadata().get("authorization").expect("forwarded"),
        format!("Bearer {token}").as_str()
    );
    assert!(
        request.metadata().get("x-airt-principal").is_none(),
        "dev headers forwarded"
    );
}

#[tokio::test]
async fn forged_missing_and_oversized_identities_are_refused() {
    let forged = token(b"another-secret-another-secret-another");
    for bad in [
        headers(&[("authorization", &format!("Bearer {forged}"))]),
        headers(&[]),
        headers(&[("x-airt-principal", "user:root"), ("x-airt-roles", "admin")]),
    ] {
        let refused = authenticate(&authenticator(), &bad)
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    }
    let long_agent = "a".repeat(300);
    let refused = authenticate(
        &authenticator(),
        &headers(&[
            ("authorization", &format!("Bearer {}", token(SECRET))),
            ("x-airt-agent", &long_agent),
        ]),
    )
    .await
    .expect_err("agent too long");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}
