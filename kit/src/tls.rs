//! TLS for the gRPC listeners and for the clients of `https://` addresses
//! (rustls; TLS 1.2 and 1.3).
//!
//! Plaintext stays the default: local use, and inside a service mesh whose
//! sidecars already speak mutual TLS. A server given `--tls-cert` and
//! `--tls-key` serves TLS only; with `--tls-client-ca` too, it also requires
//! every client to present a certificate that CA signed (mTLS) — the
//! caller's identity still comes from its token. A client connects with
//! TLS when an address is `https://…`, verifying the server against
//! `--tls-ca` (only that bundle) or else the system's roots, and presents
//! `--tls-client-cert`/`--tls-client-key` when given. The admin listener
//! stays plain HTTP (probes and scrapes come from the node or the mesh).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

/// Makes ring the process's rustls crypto provider (once; a provider
/// already installed is kept). HTTP clients (reqwest) are built without a
/// provider of their own, so this runs before any of them is built.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// The largest certificate or key file read (a CA bundle of the whole web
/// PKI is ~250 KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// How long a client may take to finish a TLS handshake before its
/// connection is closed (handshakes run beside each other, so a slow one
/// delays nobody else; the bound keeps idle ones from piling up).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS flags of a service's gRPC listener.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM certificate chain the gRPC listener presents; with `--tls-key`,
    /// the listener serves TLS only (default: plaintext).
    #[arg(long, env = "AIRT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "AIRT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: every client must present a certificate it signed
    /// (mutual TLS).
    #[arg(long, env = "AIRT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// TLS flags of a client (the workflow service's connections to the
/// registry and policy services, the CLI): used for `https://` addresses.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// PEM CA bundle that verifies the servers of `https://` addresses
    /// (default: the system's trusted roots).
    #[arg(long, env = "AIRT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate presented to servers that require one (mTLS).
    #[arg(long, env = "AIRT_TLS_CLIENT_CERT", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,

    /// PEM private key of `--tls-client-cert`.
    #[arg(long, env = "AIRT_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

/// A listener's certificate, key and optional client CA, as PEM.
#[derive(Clone)]
pub struct ServerTls {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("key", &"<redacted>")
            .field("mutual", &self.client_ca.is_some())
            .finish()
    }
}

impl ServerTls {
    /// From PEM text; checked now, so a bad certificate or key stops the
    /// service at start-up rather than at its first connection.
    pub fn from_pem(
        cert: Vec<u8>,
        key: Vec<u8>,
        client_ca: Option<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let tls = Self {
            cert,
            key,
            client_ca,
        };
        tonic::transport::Server::builder()
            .tls_config(tls.config())
            .context("the TLS certificate, key or client CA cannot be used")?;
        Ok(tls)
    }

    /// The listener's TLS from its flags: `None` without `--tls-cert`.
    pub fn load(args: &ServerTlsArgs) -> anyhow::Result<Option<Self>> {
        let (cert, key) = match (&args.tls_cert, &args.tls_key) {
            (None, None) if args.tls_client_ca.is_some() => {
                anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key")
            }
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (read_pem(cert)?, read_pem(key)?),
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let client_ca = args.tls_client_ca.as_deref().map(read_pem).transpose()?;
        Self::from_pem(cert, key, client_ca).map(Some)
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// The listener's tonic configuration.
    pub fn config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }
}

/// What a client trusts and presents on `https://` connections.
#[derive(Clone, Default)]
pub struct ClientTls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &if self.ca.is_some() { "file" } else { "system" })
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// From PEM text: a CA bundle (`None`: the system's roots) and a client
    /// certificate with its key.
    pub fn from_pem(ca: Option<Vec<u8>>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        Self { ca, identity }
    }

    pub fn load(args: &ClientTlsArgs) -> anyhow::Result<Self> {
        let ca = args.tls_ca.as_deref().map(read_pem).transpose()?;
        let identity = match (&args.tls_client_cert, &args.tls_client_key) {
            (Some(cert), Some(key)) => Some((read_pem(cert)?, read_pem(key)?)),
            (None, None) => None,
            _ => anyhow::bail!("--tls-client-cert and --tls-client-key go together"),
        };
        Ok(Self { ca, identity })
    }

    /// An endpoint for `address`: plaintext for `http://`, TLS for
    /// `https://` (the server's name or IP address checked against its
    /// certificate); any other scheme is refused.
    pub fn endpoint(&self, address: &str) -> anyhow::Result<Endpoint> {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .with_context(|| format!("invalid address {address:?}"))?;
        match endpoint.uri().scheme_str() {
            Some("http") => Ok(endpoint),
            Some("https") => endpoint
                .tls_config(self.config())
                .with_context(|| format!("TLS for {address}")),
            _ => anyhow::bail!("address {address:?} must start with http:// or https://"),
        }
    }

    /// An endpoint for `address` that connects to `at` (one of the
    /// addresses its host resolved to): the request's authority and, over
    /// TLS, the name checked against the server's certificate stay the
    /// host's.
    pub fn endpoint_at(&self, address: &str, at: std::net::SocketAddr) -> anyhow::Result<Endpoint> {
        let named = self.endpoint(address)?;
        let uri = named.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("http");
        let endpoint = Endpoint::from_shared(format!("{scheme}://{at}"))
            .with_context(|| format!("invalid address {at}"))?
            .origin(uri.clone());
        if scheme != "https" {
            return Ok(endpoint);
        }
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        endpoint
            .tls_config(self.config().domain_name(host))
            .with_context(|| format!("TLS for {address}"))
    }

    fn config(&self) -> ClientTlsConfig {
        let config = match &self.ca {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

/// Reads a PEM file of at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut pem = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut pem)
        .with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        pem.len() as u64 <= MAX_PEM_BYTES,
        "{} is larger than {MAX_PEM_BYTES} bytes",
        path.display()
    );
    anyhow::ensure!(
        pem.windows(11).any(|w| w == b"-----BEGIN "),
        "{} holds no PEM block",
        path.display()
    );
    Ok(pem)
}
