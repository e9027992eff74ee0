//! Verification keys from an identity provider's JWKS document (Okta,
//! Entra ID, Keycloak, Auth0): RS256/RS384/RS512, ES256/ES384 and EdDSA.
//!
//! The document is fetched at start-up, again when a token names a key id
//! the cache does not hold (the provider rotated its keys), and when the
//! cache is older than `max_age`. However many unknown key ids arrive, it
//! is fetched at most once per `min_refresh`, one fetch at a time, with a
//! 5 s timeout and a 256 KiB bound on the answer. A failed fetch keeps the
//! keys already known (a provider outage does not lock everyone out);
//! until a first fetch succeeds, calls answer UNAVAILABLE.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The largest JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The most keys kept from one document.
const MAX_KEYS: usize = 64;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The signature algorithms a JWKS key may verify (never a shared secret,
/// never `none`).
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Where the keys are and how often they are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// `https://…` (or `http://` for a provider on this host or network).
    pub url: String,
    /// Keys older than this are fetched again.
    pub max_age: Duration,
    /// At most one fetch per this interval.
    pub min_refresh: Duration,
}

/// One verification key from the document.
struct Key {
    key: DecodingKey,
    /// The `alg` the document pins the key to, if it names one.
    algorithm: Option<Algorithm>,
}

#[derive(Default)]
struct Snapshot {
    keys: HashMap<String, Arc<Key>>,
    fetched: Option<Instant>,
}

/// Why no key verifies a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// No document was ever fetched (the provider is unreachable).
    Unavailable(String),
    /// The document has no key with this id (or none fits the algorithm).
    Unknown(String),
}

/// The cached key set of one provider.
pub struct Jwks {
    settings: JwksSettings,
    client: reqwest::Client,
    snapshot: RwLock<Snapshot>,
    /// One fetch at a time; holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    last_error: RwLock<Option<String>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.settings.url)
            .finish()
    }
}

impl Jwks {
    pub fn new(settings: JwksSettings) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| anyhow::anyhow!("invalid JWKS URL {:?}: {e}", settings.url))?;
        anyhow::ensure!(
            matches!(url.scheme(), "https" | "http"),
            "the JWKS URL must be https:// (or http://)"
        );
        crate::tls::install_crypto();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self {
            settings,
            client,
            snapshot: RwLock::new(Snapshot::default()),
            fetching: tokio::sync::Mutex::new(None),
            last_error: RwLock::new(None),
        })
    }

    /// The key for a token's `kid` and `alg`, fetching the document again
    /// when the key is unknown or the cache is stale (within the rate bound).
    pub async fn key(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.fresh(kid, algorithm) {
            return Ok(key);
        }
        self.refresh().await;
        self.cached(kid, algorithm)
    }

    /// The key from a cache younger than `max_age`; `None` when only a
    /// fetch can answer (unknown key, stale or empty cache).
    pub fn fresh(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<DecodingKey> {
        let fresh = self.snapshot.read().is_ok_and(|s| {
            s.fetched
                .is_some_and(|at| at.elapsed() < self.settings.max_age)
        });
        fresh.then(|| self.cached(kid, algorithm).ok()).flatten()
    }

    /// The key from the cache only.
    pub fn cached(&self, kid: Option<&str>, algorithm: Algorithm) -> Result<DecodingKey, KeyError> {
        let snapshot = self
            .snapshot
            .read()
            .map_err(|_| KeyError::Unavailable("key cache poisoned".into()))?;
        if snapshot.fetched.is_none() {
            let why = self
                .last_error
                .read()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "not fetched yet".into());
            return Err(KeyError::Unavailable(why));
        }
        let found = match kid {
            Some(kid) => snapshot.keys.get(kid),
            // Without `kid`, only a document with a single key is unambiguous.
            None if snapshot.keys.len() == 1 => snapshot.keys.values().next(),
            None => None,
        };
        let unknown = || KeyError::Unknown(kid.unwrap_or("(none)").to_owned());
        let key = found.ok_or_else(unknown)?;
        if key.algorithm.is_some_and(|pinned| pinned != algorithm) {
            return Err(unknown());
        }
        Ok(key.key.clone())
    }

    /// Fetches the document unless another fetch is running or one started
    /// less than `min_refresh` ago.
    pub async fn refresh(&self) {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.settings.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                if let Ok(mut snapshot) = self.snapshot.write() {
                    *snapshot = Snapshot {
                        keys,
                        fetched: Some(Instant::now()),
                    };
                }
                if let Ok(mut error) = self.last_error.write() {
                    *error = None;
                }
            }
            Err(error) => {
                tracing::warn!(url = %self.settings.url, %error, "JWKS fetch failed; the keys already known stay in use");
                if let Ok(mut last_error) = self.last_error.write() {
                    *last_error = Some(error);
                }
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, String> {
        let mut response = self
            .client
            .get(&self.settings.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.settings.url))?;
        if !response.status().is_success() {
            return Err(format!(
                "{} answered {}",
                self.settings.url,
                response.status()
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "the JWKS document exceeds {MAX_DOCUMENT_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        // serde_json bounds nesting itself (128 levels).
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("not a JWKS document: {e}"))?;
        Ok(usable_keys(&set))
    }
}

/// The document's asymmetric signature keys by id (keys without an id get
/// their position); symmetric, encryption-only and malformed keys are
/// skipped.
fn usable_keys(set: &JwkSet) -> HashMap<String, Arc<Key>> {
    use jsonwebtoken::jwk::PublicKeyUse;
    let mut keys = HashMap::new();
    for (index, jwk) in set.keys.iter().enumerate().take(MAX_KEYS) {
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
            || matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
        {
            continue;
        }
        let algorithm = match jwk.common.key_algorithm {
            None => None,
            Some(pinned) => match pinned.to_string().parse::<Algorithm>() {
                Ok(algorithm) if ALGORITHMS.contains(&algorithm) => Some(algorithm),
                _ => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let id = jwk
            .common
            .key_id
            .clone()
            .unwrap_or_else(|| format!("#{index}"));
        keys.insert(id, Arc::new(Key { key, algorithm }));
    }
    keys
}
