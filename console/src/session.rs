//! Sessions and CSRF tokens.
//!
//! A session lives in one cookie, signed with the console's key
//! (HMAC-SHA-256): who signed in (the development principal and roles, or
//! the bearer token the services verify), when it ends, and a random nonce.
//! The console keeps no session table: any replica holding the same key
//! reads the cookie, and a changed byte makes it worthless. The cookie is
//! HttpOnly and SameSite=Strict (Secure when the console is served over
//! https), so page scripts cannot read it and other sites cannot send it.
//!
//! Every form carries a CSRF token derived from the session's nonce; a POST
//! without the right one is refused before anything is called. The sign-in
//! form, which has no session yet, is bound the same way to a short-lived
//! pre-session cookie.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use airt_kit::credentials::{Credentials, InvalidCredentials};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "airt_session";
/// The sign-in form's pre-session cookie.
pub const SIGNIN_COOKIE: &str = "airt_signin";
/// The largest cookie value read (a session with a large token fits).
const MAX_COOKIE_BYTES: usize = 8 * 1024;
/// How long a sign-in form stays valid.
pub const SIGNIN_TTL: Duration = Duration::from_secs(30 * 60);

type HmacSha256 = Hmac<Sha256>;

/// The key that signs cookies and derives CSRF tokens.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A fresh random key (sessions end when the process does).
    pub fn random() -> Self {
        Self(random_bytes())
    }

    /// The key from secret material of at least 32 bytes (e.g. a file's
    /// content): hashed, so any length past 32 counts.
    pub fn from_material(material: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            material.trim_ascii().len() >= 32,
            "a session key needs at least 32 bytes of secret material"
        );
        use sha2::Digest as _;
        Ok(Self(Sha256::digest(material.trim_ascii()).into()))
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| {
            // HMAC accepts keys of any length; 32 bytes cannot fail.
            unreachable!("HMAC-SHA-256 takes any key length")
        });
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data);
        mac
    }

    /// `data` signed for `purpose`: `<base64url data>.<base64url mac>`.
    pub fn seal(&self, purpose: &str, data: &[u8]) -> String {
        let tag = self.mac(purpose, data).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(data),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The data of a value [`SessionKey::seal`]ed for `purpose`, if its
    /// signature holds (compared in constant time).
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let (data, tag) = sealed.split_once('.')?;
        let data = URL_SAFE_NO_PAD.decode(data).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(purpose, &data).verify_slice(&tag).ok()?;
        Some(data)
    }

    /// The CSRF token of forms shown to the holder of `nonce`.
    pub fn csrf_token(&self, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("csrf", nonce.as_bytes()).finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token for `nonce` (constant time).
    pub fn csrf_valid(&self, nonce: &str, token: &str) -> bool {
        URL_SAFE_NO_PAD.decode(token).is_ok_and(|tag| {
            self.mac("csrf", nonce.as_bytes())
                .verify_slice(&tag)
                .is_ok()
        })
    }
}

/// 32 bytes from the operating system's generator.
fn random_bytes() -> [u8; 32] {
    use rand08::RngCore as _;
    let mut bytes = [0u8; 32];
    rand08::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A random nonce, as hex.
pub fn nonce() -> String {
    hex::encode(&random_bytes()[..16])
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Identity {
    /// Development mode: the principal and roles the services trust as headers.
    Development { principal: String, roles: String },
    /// A bearer token, forwarded to the services, which verify it on every call.
    Bearer {
        principal: String,
        roles: String,
        token: String,
    },
}

impl Identity {
    /// The principal, as the services name it (e.g. `user:alice`).
    pub fn principal(&self) -> &str {
        match self {
            Self::Development { principal, .. } | Self::Bearer { principal, .. } => principal,
        }
    }

    /// The roles, comma-separated (as the identity provider granted them).
    pub fn roles(&self) -> &str {
        match self {
            Self::Development { roles, .. } | Self::Bearer { roles, .. } => roles,
        }
    }

    /// What is sent to the services on the user's behalf.
    pub fn credentials(&self) -> Result<Credentials, InvalidCredentials> {
        match self {
            Self::Development { principal, roles } => Credentials::development(principal, roles),
            Self::Bearer { token, .. } => Credentials::none().with_bearer(token),
        }
    }
}

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub identity: Identity,
    /// Binds the session's CSRF tokens.
    pub nonce: String,
    /// Seconds since the Unix epoch after which the session is over.
    pub expires: u64,
}

impl Session {
    pub fn new(identity: Identity, ttl: Duration) -> Self {
        Self {
            identity,
            nonce: nonce(),
            expires: now_secs().saturating_add(ttl.as_secs()),
        }
    }

    /// The cookie value.
    pub fn seal(&self, key: &SessionKey) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        key.seal(SESSION_COOKIE, &json)
    }

    /// The session in a cookie value, if it is signed by `key` and not over.
    pub fn open(key: &SessionKey, cookie: &str) -> Option<Self> {
        let json = key.open(SESSION_COOKIE, cookie)?;
        let session: Self = serde_json::from_slice(&json).ok()?;
        (session.expires > now_secs()).then_some(session)
    }
}

/// The pre-session of a sign-in form: a nonce and its end, signed.
pub fn seal_signin(key: &SessionKey, nonce: &str) -> String {
    let expires = now_secs().saturating_add(SIGNIN_TTL.as_secs());
    key.seal(SIGNIN_COOKIE, format!("{expires}:{nonce}").as_bytes())
}

/// The nonce of a valid, unexpired pre-session cookie.
pub fn open_signin(key: &SessionKey, cookie: &str) -> Option<String> {
    let data = String::from_utf8(key.open(SIGNIN_COOKIE, cookie)?).ok()?;
    let (expires, nonce) = data.split_once(':')?;
    (expires.parse::<u64>().ok()? > now_secs()).then(|| nonce.to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, Secure when
/// asked; `max_age` zero deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
