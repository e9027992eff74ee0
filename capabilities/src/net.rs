//! `net.http.*`: HTTP calls behind an SSRF guard.
//!
//! A target is refused unless it is public, or its host name or address is
//! allow-listed in configuration. Loopback, private (RFC 1918, unique-local),
//! carrier-grade NAT, link-local (including 169.254.169.254), multicast,
//! broadcast, unspecified and IPv4-mapped forms of those are refused.
//! Addresses are checked *after* resolution, by the resolver the HTTP client
//! connects through, so a public-looking name that resolves to a private
//! address is refused too; every redirect is checked again the same way.
//! Responses are capped in size and every call has a deadline.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use base64::Engine as _;
use ipnet::IpNet;
use reqwest::Url;
use serde_json::{Map, Value, json};

use super::{ErrorKind, Execution, ExecutionContext, Handler, HandlerError, string};

/// Default cap on response bodies.
pub const DEFAULT_MAX_RESPONSE: u64 = 1024 * 1024;
/// Marks errors raised by the guard inside the HTTP client.
pub(crate) const REFUSED: &str = "refused by the network sandbox";

/// Which otherwise-refused targets are allowed.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Host names or IP literals, matched exactly (case-insensitive).
    pub allow_hosts: Vec<String>,
    /// Address ranges, matched against resolved addresses.
    pub allow_cidrs: Vec<IpNet>,
}

impl NetworkPolicy {
    /// Parses a comma-separated allow-list: CIDRs (`127.0.0.0/8`) and hosts.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry.contains('/') {
                policy.allow_cidrs.push(
                    entry
                        .parse()
                        .map_err(|e| format!("{entry:?} is not a CIDR: {e}"))?,
                );
            } else {
                policy.allow_hosts.push(entry.to_ascii_lowercase());
            }
        }
        Ok(policy)
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.allow_hosts.contains(&host)
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow_cidrs.iter().any(|net| net.contains(&ip))
    }

    /// Checks a URL before connecting: scheme, and IP-literal hosts (names
    /// are checked when they are resolved).
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url}: only http and https are allowed"));
        }
        let host = url.host_str().ok_or_else(|| format!("{url}: no host"))?;
        if self.host_allowed(host) {
            return Ok(());
        }
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            && !self.address_allowed(ip)
        {
            return Err(format!("{url}: {ip} is an internal address ({REFUSED})"));
        }
        Ok(())
    }
}

/// Whether an address is not a public unicast one: loopback, private,
/// shared (CGNAT), link-local, multicast, broadcast, unspecified,
/// documentation, benchmarking (198.18.0.0/15), reserved (240.0.0.0/4),
/// IETF protocol assignments, and — for IPv6 — unique-local, link- and
/// site-local, documentation, discard-only, IPv4-mapped addresses (judged by
/// the IPv4 address they carry), and the forms that reach an IPv4 address
/// through a translator or tunnel (compatible `::a.b.c.d`, NAT64
/// `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo
/// `2001::/32`), refused outright. From the IANA special-purpose address
/// registries.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            // Forms that carry an IPv4 address and reach it through a
            // translator or tunnel: refused outright (an allow-listed CIDR
            // still opens them). IPv4-compatible `::a.b.c.d` (deprecated),
            // NAT64 `64:ff9b::/96`, 6to4 `2002::/16`.
            let compatible = s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified();
            if compatible || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[0] == 0x2002 {
                return true;
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x3fff && s[1] < 0x1000) // documentation (2024)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || (s[0] == 0x2001 && s[1] < 0x200) // IETF protocol assignments
                || (s[0] == 0x0064 && s[1] == 0xff9b) // local-use NAT64
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard only
        }
    }
}

/// The resolver the HTTP client connects through: refuses a name if any of
/// its addresses is internal (unless allow-listed).
#[derive(Debug)]
struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.host_allowed(&host)
                && let Some(internal) = addrs.iter().find(|a| !policy.address_allowed(a.ip()))
            {
                return Err(format!(
                    "{host} resolves to internal address {} ({REFUSED})",
                    internal.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Builds the HTTP client every `net.http.*` handler shares.
pub fn client(policy: Arc<NetworkPolicy>) -> reqwest::Client {
    let redirect_policy = policy.clone();
    airt_kit::tls::install_crypto();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("more than 5 redirects");
            }
            match redirect_policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(reason) => attempt.error(format!("redirect to {reason}")),
            }
        }))
        .build()
        // Never an unguarded client instead: the configuration is fixed, so
        // this fails only if the TLS provider is missing (a build defect).
        .expect("the guarded HTTP client builds")
}

pub(super) fn register(
    handlers: &mut HashMap<String, Arc<dyn Handler>>,
    policy: Arc<NetworkPolicy>,
) {
    let client = client(policy.clone());
    for (name, method) in [
        ("net.http.get", reqwest::Method::GET),
        ("net.http.post", reqwest::Method::POST),
        ("net.http.put", reqwest::Method::PUT),
    ] {
        handlers.insert(
            name.into(),
            Arc::new(HttpCall {
                method,
                client: client.clone(),
                policy: policy.clone(),
            }),
        );
    }
}

#[derive(Debug)]
struct HttpCall {
    method: reqwest::Method,
    client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
}

fn error_text(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl HttpCall {
    fn idempotent(&self) -> bool {
        self.method == reqwest::Method::GET
    }

    fn classify(&self, error: &reqwest::Error) -> HandlerError {
        let text = error_text(error);
        if text.contains(REFUSED) {
            HandlerError::sandbox(text)
        } else if error.is_timeout() {
            HandlerError::new(ErrorKind::Timeout, text).retryable(self.idempotent())
        } else if error.is_connect() {
            // Nothing was sent, so even a POST may be retried.
            HandlerError::new(ErrorKind::Transient, text)
        } else {
            HandlerError::new(ErrorKind::Transient, text).retryable(self.idempotent())
        }
    }
}

#[async_trait::async_trait]
impl Handler for HttpCall {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let url: Url = string(inputs, "url")?
            .parse()
            .map_err(|e| HandlerError::invalid_input(format!("url: {e}")))?;
        self.policy.check_url(&url).map_err(HandlerError::sandbox)?;
        // The caller may ask for less than the server's ceiling, never more.
        let max_bytes = inputs
            .get("max_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_RESPONSE)
            .min(DEFAULT_MAX_RESPONSE);
        let requested = Duration::from_millis(
            inputs
                .get("timeout_ms")
                .and_then(Value::as_u64)
                .unwrap_or(30_000),
        );
        let timeout = requested.min(ctx.deadline.saturating_duration_since(Instant::now()));
        if timeout.is_zero() {
            return Err(HandlerError::new(
                ErrorKind::Timeout,
                "the step deadline has passed",
            ));
        }
        let mut request = self
            .client
            .request(self.method.clone(), url.clone())
            .timeout(timeout);
        for (name, value) in inputs
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let value = value.as_str().ok_or_else(|| {
                HandlerError::invalid_input(format!("header {name} must be a string"))
            })?;
            request = request.header(name.as_str(), value);
        }
        if !self.idempotent() {
            // Lets the remote side recognise a retried call.
            request = request.header("Idempotency-Key", ctx.idempotency_key.as_str());
            if let Some(body) = inputs.get("json") {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_string());
            } else if let Some(body) = inputs.get("body").and_then(Value::as_str) {
                request = request.body(body.to_owned());
            }
        }
        let mut response = request.send().await.map_err(|e| self.classify(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(&e))? {
            if body.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(HandlerError::new(
                    ErrorKind::ActionFailed,
                    format!("response from {url} is larger than max_bytes {max_bytes}"),
                )
                .with_details(json!({"status": status.as_u16(), "max_bytes": max_bytes})));
            }
            body.extend_from_slice(&chunk);
        }
        let size = body.len();
        let (text, encoding) = match String::from_utf8(body) {
            Ok(text) => (text, "utf8"),
            Err(raw) => (
                base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()),
                "base64",
            ),
        };
        if !status.is_success() {
            let excerpt: String = text.chars().take(512).collect();
            let retryable =
                status.as_u16() == 429 || (status.is_server_error() && self.idempotent());
            return Err(HandlerError::new(
                ErrorKind::ActionFailed,
                format!("{} {url} answered {status}", self.method),
            )
            .retryable(retryable)
            .with_details(json!({"status": status.as_u16(), "body_excerpt": excerpt})));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Execution::read(json!({
            "status": status.as_u16(),
            "url": response.url().as_str(),
            "content_type": content_type,
            "body": text,
            "encoding": encoding,
            "size": size,
        })))
    }
}
