//! Outbound HTTP the operator configured (webhook deliveries): POSTs to
//! fixed URLs, no redirects, a timeout per request. Not subject to the
//! network guard, since the operator, not a caller, chose the address.

use std::time::Duration;

/// An `http`/`https` URL, or why not.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url}: only http and https are supported"));
    }
    Ok(())
}

/// A URL as shown to API callers: its origin only (`https://host/` or
/// `https://host/…`), since paths and queries often carry credentials.
pub fn display_origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let origin = parsed.origin().ascii_serialization();
            if parsed.path() == "/" && parsed.query().is_none() {
                format!("{origin}/")
            } else {
                format!("{origin}/…")
            }
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// Sends POST requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct Poster {
    client: reqwest::Client,
}

impl Poster {
    pub fn new(timeout: Duration, user_agent: &str) -> Result<Self, String> {
        airt_kit::tls::install_crypto();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// POSTs `body` with `headers`; returns the answer's HTTP status, or
    /// the whole error chain when no answer came.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<u16, String> {
        let mut request = self.client.post(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        Ok(response.status().as_u16())
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
