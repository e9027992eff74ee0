//! Tokens from an identity provider: RS256 and ES256 keys published in a
//! JWKS document served over HTTP, generated at test time; rotation picked
//! up on an unknown `kid`, fetches bounded, unknown keys, `alg: none` and
//! shared-secret algorithms refused, configurable claims.

use std::time::Duration;

use airt_kit::auth::{AuthSettings, Authenticator, ClaimNames, JwksSettings, JwtKey, JwtSettings};
use airt_kit::testing::bearer;
use airt_kit::testing::http::Recorder;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use tonic::Code;

const ISSUER: &str = "https://idp.example/realms/agents";

/// A signing key and its public half as a JWK.
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &str) -> SigningKey {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let private = rsa::RsaPrivateKey::new(&mut rand08::thread_rng(), 2048).expect("RSA key");
    let der = private.to_pkcs1_der().expect("PKCS#1");
    SigningKey {
        kid: kid.into(),
        algorithm: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        }),
    }
}

fn ec_key(kid: &str) -> SigningKey {
    let (pem, x, y) = airt_kit::testing::tls::p256_key();
    SigningKey {
        kid: kid.into(),
        algorithm: Algorithm::ES256,
        encoding: EncodingKey::from_ec_pem(&pem).expect("EC key"),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        }),
    }
}

impl SigningKey {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).expect("sign")
    }
}

fn claims(sub: &str, groups: &[&str]) -> Value {
    json!({
        "sub": sub,
        "groups": groups,
        "iss": ISSUER,
        "aud": "airt",
        "exp": get_current_timestamp() + 600,
    })
}

fn publish(provider: &Recorder, keys: &[&SigningKey]) {
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    provider.serve_body("/certs", set.to_string());
}

fn authenticator(provider: &Recorder, min_refresh: Duration) -> Authenticator {
    Authenticator::new(&AuthSettings::Jwt(JwtSettings {
        key: JwtKey::Jwks(JwksSettings {
            url: provider.url("/certs"),
            max_age: Duration::from_secs(3600),
            min_refresh,
        }),
        issuer: ISSUER.into(),
        audience: "airt".into(),
        leeway_secs: 0,
        claims: ClaimNames {
            principal: "sub".into(),
            roles: "groups".into(),
        },
    }))
    .expect("JWKS settings")
}

async fn refused(auth: &Authenticator, token: &str) -> (Code, String) {
    let status = auth
        .authenticate_call(&bearer(token))
        .await
        .expect_err("must be refused");
    (
        status.code(),
        airt_kit::status::reason_of(&status).unwrap_or_default(),
    )
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_providers_keys_are_accepted() {
    let provider = Recorder::start().await;
    let (rsa, ec) = (rsa_key("rsa-1"), ec_key("ec-1"));
    publish(&provider, &[&rsa, &ec]);
    let auth = authenticator(&provider, Duration::ZERO);
    auth.warm_up().await;

    for key in [&rsa, &ec] {
        let principal = auth
            .authenticate_call(&bearer(
                &key.sign(&claims("alice", &["approver", "finance"])),
            ))
            .await
            .unwrap_or_else(|e| panic!("{:?} token refused: {e:?}", key.algorithm));
        assert_eq!(principal.to_string(), "user:alice");
        assert!(principal.has_role("approver") && principal.has_role("finance"));
    }
    // The wrong issuer or audience is refused as before.
    let mut wrong = claims("alice", &[]);
    wrong["aud"] = json!("someone-else");
    assert_eq!(
        refused(&auth, &rsa.sign(&wrong)).await,
        (Code::Unauthenticated, "INVALID_TOKEN".into())
    );
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_unknown_keys_refused() {
    let provider = Recorder::start().await;
    let (old, new) = (ec_key("2026-10"), rsa_key("2026-11"));
    publish(&provider, &[&old]);
    let auth = authenticator(&provider, Duration::ZERO);
    auth.warm_up().await;
    assert!(
        auth.authenticate_call(&bearer(&old.sign(&claims("a", &[]))))
            .await
            .is_ok()
    );

    // The provider rotates: a token names a key the cache does not hold yet.
    publish(&provider, &[&old, &new]);
    let principal = auth
        .authenticate_call(&bearer(&new.sign(&claims("service:ci", &[]))))
        .await
        .expect("a token signed by the rotated-in key");
    assert_eq!(principal.to_string(), "service:ci");

    // A key the provider never published, even under a known kid.
    let stranger = ec_key("2026-10");
    assert_eq!(
        refused(&auth, &stranger.sign(&claims("mallory", &["admin"]))).await,
        (Code::Unauthenticated, "INVALID_TOKEN".into())
    );
    let unknown = ec_key("not-published");
    assert_eq!(
        refused(&auth, &unknown.sign(&claims("mallory", &["admin"]))).await,
        (Code::Unauthenticated, "INVALID_TOKEN".into())
    );
    // Keys the provider removed stop verifying once it is fetched again.
    publish(&provider, &[&new]);
    let _ = refused(&auth, &unknown.sign(&claims("mallory", &[]))).await;
    assert_eq!(
        refused(&auth, &old.sign(&claims("a", &[]))).await.0,
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn unknown_key_ids_fetch_the_document_at_most_once_per_interval() {
    let provider = Recorder::start().await;
    let key = ec_key("k1");
    publish(&provider, &[&key]);
    let auth = authenticator(&provider, Duration::from_secs(3600));
    auth.warm_up().await;
    assert_eq!(provider.requests("/certs").len(), 1);
    for i in 0..50 {
        let forged = ec_key(&format!("random-{i}"));
        let _ = refused(&auth, &forged.sign(&claims("mallory", &[]))).await;
    }
    assert_eq!(
        provider.requests("/certs").len(),
        1,
        "fifty unknown key ids within the interval made no more fetches"
    );
    assert!(
        auth.authenticate_call(&bearer(&key.sign(&claims("a", &[]))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn none_and_shared_secret_algorithms_are_refused() {
    let provider = Recorder::start().await;
    let key = rsa_key("k1");
    // A symmetric key in the document must never verify anything.
    let mut set = vec![key.jwk.clone()];
    set.push(json!({"kty": "oct", "kid": "shared", "k": URL_SAFE_NO_PAD.encode(b"0123456789abcdef0123456789abcdef")}));
    provider.serve_body("/certs", json!({"keys": set}).to_string());
    let auth = authenticator(&provider, Duration::ZERO);
    auth.warm_up().await;

    let payload = URL_SAFE_NO_PAD.encode(claims("mallory", &["admin"]).to_string());
    for header in [
        json!({"alg": "none", "kid": "k1"}),
        json!({"alg": "none"}),
        json!({"alg": "HS256", "kid": "shared"}),
        json!({"alg": "HS256", "kid": "k1"}),
    ] {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        for token in [
            format!("{head}.{payload}."),
            format!("{head}.{payload}.c2ln"),
        ] {
            assert_eq!(
                refused(&auth, &token).await,
                (Code::Unauthenticated, "INVALID_TOKEN".into()),
                "{header}"
            );
        }
    }
    let hs256 = encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("shared".into());
            h
        },
        &claims("mallory", &["admin"]),
        &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
    )
    .expect("sign");
    assert_eq!(refused(&auth, &hs256).await.0, Code::Unauthenticated);
    // The RSA key beside them still verifies its own tokens.
    assert!(
        auth.authenticate_call(&bearer(&key.sign(&claims("a", &[]))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unreachable_provider_answers_unavailable_not_a_guess() {
    let auth = Authenticator::new(&AuthSettings::Jwt(JwtSettings {
        key: JwtKey::Jwks(JwksSettings {
            url: "http://127.0.0.1:9/certs".into(),
            max_age: Duration::from_secs(60),
            min_refresh: Duration::ZERO,
        }),
        issuer: ISSUER.into(),
        audience: "airt".into(),
        leeway_secs: 0,
        claims: ClaimNames::default(),
    }))
    .expect("settings");
    let token = ec_key("k").sign(&claims("alice", &[]));
    assert_eq!(
        refused(&auth, &token).await,
        (Code::Unavailable, "JWKS_UNAVAILABLE".into())
    );
}
