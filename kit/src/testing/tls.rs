//! Certificate authorities made at test time (rcgen), for TLS and mTLS tests.

use rcgen::{CertificateParams, CertifiedIssuer, KeyPair};

/// A CA that signs certificates.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority")
    }
}

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl Authority {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate, as PEM.
    pub fn pem(&self) -> Vec<u8> {
        self.issuer.pem().into_bytes()
    }

    /// A certificate for `names` (DNS names or IP addresses).
    pub fn sign(&self, names: &[&str]) -> Pair {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("certificate parameters");
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signed certificate");
        Pair {
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }

    /// A server identity for the loopback interface (`localhost`,
    /// `127.0.0.1`), requiring client certificates from `client_ca` if given.
    pub fn loopback_server(&self, client_ca: Option<&Authority>) -> crate::tls::ServerTls {
        let pair = self.sign(&["localhost", "127.0.0.1"]);
        crate::tls::ServerTls::from_pem(pair.cert, pair.key, client_ca.map(Authority::pem))
            .expect("server TLS")
    }
}

/// A fresh P-256 (ES256) key: its PKCS#8 PEM, and its public point's `x`
/// and `y` coordinates (what a JWK carries).
pub fn p256_key() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    (
        pair.serialize_pem().into_bytes(),
        point[1..33].to_vec(),
        point[33..].to_vec(),
    )
}
