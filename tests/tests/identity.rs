//! A service verifying tokens with an identity provider's JWKS, over gRPC:
//! the provider rotates a key in after the service started and the next
//! call signed with it gets through (the keys are fetched again inside the
//! call); roles come from the configured claim; unknown keys are refused.

use std::time::Duration;

use airt_kit::auth::{AuthSettings, ClaimNames, JwksSettings, JwtKey, JwtSettings};
use airt_kit::testing::http::Recorder;
use airt_kit::testing::{TestDb, TestServer};
use airt_proto::audit::v1 as audit;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;
use tonic::Code;

struct Key {
    kid: &'static str,
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

fn ec_key(kid: &'static str) -> Key {
    let (pem, x, y) = airt_kit::testing::tls::p256_key();
    Key {
        kid,
        encoding: EncodingKey::from_ec_pem(&pem).expect("EC key"),
        jwk: json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}),
    }
}

impl Key {
    fn token(&self, groups: &[&str]) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.into());
        let claims = json!({"sub": "user:auditor", "groups": groups, "iss": "https://idp.example",
                            "aud": "airt", "exp": get_current_timestamp() + 600});
        encode(&header, &claims, &self.encoding).expect("sign")
    }
}

fn verify_chain(token: &str) -> tonic::Request<audit::VerifyAuditChainRequest> {
    let mut request = tonic::Request::new(audit::VerifyAuditChainRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

#[tokio::test]
async fn a_service_accepts_tokens_signed_by_its_identity_providers_current_keys() {
    let provider = Recorder::start().await;
    let (first, rotated, forged) = (ec_key("first"), ec_key("rotated"), ec_key("forged"));
    provider.serve_body("/certs", json!({"keys": [first.jwk]}).to_string());
    let db = TestDb::sqlite();
    let mut config = db.dev_config(&policy_service::IDENTITY);
    config.auth = AuthSettings::Jwt(JwtSettings {
        key: JwtKey::Jwks(JwksSettings {
            url: provider.url("/certs"),
            max_age: Duration::from_secs(3600),
            min_refresh: Duration::ZERO,
        }),
        issuer: "https://idp.example".into(),
        audience: "airt".into(),
        leeway_secs: 0,
        claims: ClaimNames {
            principal: "sub".into(),
            roles: "groups".into(),
        },
    });
    let server = TestServer::start(move |listener, shutdown| {
        policy_service::serve_on(config, listener, shutdown)
    })
    .await;
    let mut client = AuditServiceClient::new(server.channel().await);

    let verified = client
        .verify_audit_chain(verify_chain(&first.token(&["auditor"])))
        .await
        .expect("a token signed by the published key, with the auditor role from `groups`");
    assert!(verified.into_inner().intact);
    // Authenticated, but the roles come from the configured claim only.
    let no_role = client
        .verify_audit_chain(verify_chain(&first.token(&["reader"])))
        .await
        .expect_err("no auditor role");
    assert_eq!(no_role.code(), Code::PermissionDenied);

    provider.serve_body(
        "/certs",
        json!({"keys": [first.jwk, rotated.jwk]}).to_string(),
    );
    client
        .verify_audit_chain(verify_chain(&rotated.token(&["auditor"])))
        .await
        .expect("the key rotated in after start-up");
    let refused = client
        .verify_audit_chain(verify_chain(&forged.token(&["auditor"])))
        .await
        .expect_err("a key the provider never published");
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await.expect("stop");
}
