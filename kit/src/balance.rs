//! Spreading a client's calls over every replica of a dependency.
//!
//! HTTP/2 multiplexes every call over one connection, so behind a
//! Kubernetes Service (one virtual IP) every call of a client would go to
//! whichever pod its connection reached. A dependency address may instead
//! name a host that resolves to every replica (a headless Service) or list
//! several addresses separated by commas: the channel then keeps one
//! connection per resolved address and spreads calls over them
//! (power-of-two-choices on outstanding calls). Every `interval` the names
//! are resolved again and each address is probed with a TCP connect:
//! new replicas join, vanished or unreachable ones leave. When no address
//! answers, all resolved ones stay, so calls fail fast (and are retried by
//! their caller) instead of waiting for an empty set.
//!
//! One address whose host is an IP literal is a plain channel, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

use crate::tls::ClientTls;

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The most addresses one dependency is spread over.
const MAX_ENDPOINTS: usize = 64;

/// One configured address: its text, host and port.
#[derive(Debug, Clone)]
struct Target {
    address: String,
    host: String,
    port: u16,
}

impl Target {
    fn parse(address: &str, tls: &ClientTls) -> anyhow::Result<Self> {
        let endpoint = tls.endpoint(address)?;
        let uri = endpoint.uri();
        let host = uri
            .host()
            .with_context(|| format!("address {address:?} names no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        Ok(Self {
            address: address.to_owned(),
            host,
            port,
        })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// A lazily connecting channel to `addresses` (one address, or several
/// separated by commas), each endpoint shaped by `configure` (timeouts,
/// keepalive). Balanced channels are resolved once before this returns,
/// then every `interval` in the background for as long as the channel
/// lives.
pub async fn channel(
    addresses: &str,
    tls: &ClientTls,
    configure: fn(Endpoint) -> Endpoint,
    interval: Duration,
) -> anyhow::Result<Channel> {
    let targets = addresses
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| Target::parse(a, tls))
        .collect::<anyhow::Result<Vec<_>>>()?;
    match targets.as_slice() {
        [] => anyhow::bail!("no address given"),
        [one] if one.ip().is_some() => Ok(configure(tls.endpoint(&one.address)?).connect_lazy()),
        _ => {
            let (channel, changes) = Channel::balance_channel::<SocketAddr>(MAX_ENDPOINTS);
            let mut resolver = Resolver {
                targets,
                tls: tls.clone(),
                configure,
                current: BTreeSet::new(),
                resolved: BTreeMap::new(),
            };
            resolver.update(&changes).await?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = changes.closed() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                    if resolver.update(&changes).await.is_err() {
                        return;
                    }
                }
            });
            Ok(channel)
        }
    }
}

/// Keeps a balanced channel's endpoints in line with what the targets
/// resolve to and which of those answer.
struct Resolver {
    targets: Vec<Target>,
    tls: ClientTls,
    configure: fn(Endpoint) -> Endpoint,
    /// The addresses the channel holds now.
    current: BTreeSet<SocketAddr>,
    /// The last successful resolution of each target (a failed lookup keeps it).
    resolved: BTreeMap<usize, Vec<SocketAddr>>,
}

impl Resolver {
    async fn update(
        &mut self,
        changes: &tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
    ) -> anyhow::Result<()> {
        let mut candidates: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        for (index, target) in self.targets.iter().enumerate() {
            if let Some(addresses) = resolve(target).await {
                self.resolved.insert(index, addresses);
            }
            for address in self.resolved.get(&index).into_iter().flatten() {
                candidates.entry(*address).or_insert(index);
            }
        }
        let candidates: Vec<(SocketAddr, usize)> =
            candidates.into_iter().take(MAX_ENDPOINTS).collect();
        let answers =
            futures::future::join_all(candidates.iter().map(|(address, _)| answers(*address)))
                .await;
        let mut wanted: BTreeMap<SocketAddr, usize> = candidates
            .iter()
            .zip(&answers)
            .filter(|(_, up)| **up)
            .map(|(candidate, _)| *candidate)
            .collect();
        if wanted.is_empty() {
            wanted = candidates.into_iter().collect();
        }
        for gone in self
            .current
            .clone()
            .difference(&wanted.keys().copied().collect())
        {
            tracing::info!(target = %self.describe(), address = %gone, "dependency endpoint left");
            changes.send(Change::Remove(*gone)).await?;
            self.current.remove(gone);
        }
        for (address, index) in wanted {
            if self.current.contains(&address) {
                continue;
            }
            let endpoint = self
                .tls
                .endpoint_at(&self.targets[index].address, address)?;
            tracing::info!(target = %self.describe(), %address, "dependency endpoint joined");
            changes
                .send(Change::Insert(address, (self.configure)(endpoint)))
                .await?;
            self.current.insert(address);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.targets
            .iter()
            .map(|t| t.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The addresses `target` resolves to now; `None` when the lookup failed.
async fn resolve(target: &Target) -> Option<Vec<SocketAddr>> {
    if let Some(ip) = target.ip() {
        return Some(vec![SocketAddr::new(ip, target.port)]);
    }
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addresses)) => Some(addresses.collect()),
        Ok(Err(error)) => {
            tracing::warn!(host = %target.host, %error, "cannot resolve a dependency; keeping its last addresses");
            None
        }
        Err(_) => {
            tracing::warn!(host = %target.host, "resolving a dependency timed out; keeping its last addresses");
            None
        }
    }
}

/// Whether something accepts TCP connections at `address`.
async fn answers(address: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await,
        Ok(Ok(_))
    )
}
