//! Server configuration from flags and `AIRT_*` environment variables.
//!
//! Every service binary flattens [`ServerArgs`]; each process has its own
//! environment, so the variable names are the same for all three services.
//! [`ServiceConfig`] is the resolved, plain form that `serve` takes (tests and
//! `airt up` build it directly).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::auth::AuthSettings;
pub use crate::auth::args::AuthArgs;
#[cfg(test)]
use crate::auth::{JwtKey, JwtSettings};

/// Flags shared by every service binary.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on (default 127.0.0.1 on the service's own port).
    #[arg(long, env = "AIRT_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Address of the admin listener (`/metrics`, `/livez`, `/readyz`), or
    /// `off` (default 127.0.0.1:<service admin port>).
    #[arg(long, env = "AIRT_ADMIN_LISTEN", value_parser = parse_admin_listen)]
    pub admin_listen: Option<AdminListen>,

    /// Database URL: `sqlite://PATH` or `postgres://...` (default SQLite under ./.airt/).
    #[arg(long, env = "AIRT_DATABASE_URL")]
    pub database_url: Option<String>,

    /// How long in-flight calls may finish after SIGTERM/SIGINT (e.g. `5s`, `500ms`).
    #[arg(long, env = "AIRT_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub tls: crate::tls::ServerTlsArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `--admin-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    At(SocketAddr),
    Off,
}

fn parse_admin_listen(text: &str) -> Result<AdminListen, String> {
    match text.trim() {
        "off" | "none" => Ok(AdminListen::Off),
        addr => addr.parse().map(AdminListen::At).map_err(|e| {
            format!("{addr:?} is not an address (e.g. 127.0.0.1:9453) nor `off`: {e}")
        }),
    }
}

/// Logging flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// `text` or `json`.
    #[arg(long, env = "AIRT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Filter directives, e.g. `info` or `info,sqlx=warn`.
    #[arg(long, env = "AIRT_LOG", default_value = "info")]
    pub log: String,

    /// OTLP/gRPC collector that receives traces, e.g. `http://127.0.0.1:4317`
    /// (default: no traces exported).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A string that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    /// A secret given as a value (`--x`) or as a file (`--x-file`, its
    /// content without the trailing newline), never both. Files keep secrets
    /// out of command lines and environments, which other processes of the
    /// same user can read.
    pub fn from_value_or_file(
        name: &str,
        value: Option<&Secret>,
        file: Option<&Path>,
    ) -> anyhow::Result<Option<Secret>> {
        match (value, file) {
            (Some(_), Some(_)) => anyhow::bail!("give --{name} or --{name}-file, not both"),
            (Some(value), None) => Ok(Some(value.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --{name}-file {}", path.display()))?;
                let text = text.trim_end_matches(['\r', '\n']);
                anyhow::ensure!(
                    !text.is_empty(),
                    "--{name}-file {} is empty",
                    path.display()
                );
                Ok(Some(Secret::new(text)))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Environment variables that carry secrets; [`scrub_secret_env`] removes them.
pub const SECRET_ENV: &[&str] = &[
    "AIRT_JWT_HS256_SECRET",
    "AIRT_SERVICE_TOKEN",
    "AIRT_WEBHOOK_SECRET",
    "AIRT_TOKEN",
];

/// Removes the secret-carrying variables from this process's environment once
/// the flags have been read, so no child process inherits them and nothing
/// that lists the environment later finds them. (The kernel keeps the
/// environment the process started with in `/proc/<pid>/environ`, readable by
/// the same user: prefer the `*_FILE` forms.)
///
/// # Safety
/// Call it before any other thread exists (first thing in `main`, before the
/// async runtime starts): changing the environment races with threads that
/// read it.
#[allow(unsafe_code)]
pub unsafe fn scrub_secret_env() {
    for name in SECRET_ENV {
        // SAFETY: the caller guarantees this process has a single thread.
        unsafe { std::env::remove_var(name) };
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Fixed facts about one service: its name and default port.
#[derive(Debug, Clone, Copy)]
pub struct ServiceIdentity {
    /// Binary and log name, e.g. `registry-service`.
    pub name: &'static str,
    /// Default listening port.
    pub default_port: u16,
    /// Default port of the admin listener (metrics, liveness, readiness).
    pub default_admin_port: u16,
    /// Default SQLite file name under `./.airt/`.
    pub default_db_file: &'static str,
}

/// The resolved configuration a service runs with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    /// The admin listener, if any (`None` for embedded and test servers
    /// unless they ask for one).
    pub admin_listen: Option<SocketAddr>,
    pub database_url: String,
    pub auth: AuthSettings,
    pub shutdown_grace: Duration,
    /// TLS of the gRPC listener (`None`: plaintext).
    pub tls: Option<crate::tls::ServerTls>,
}

impl ServiceConfig {
    /// Defaults for local use: loopback, SQLite under `./.airt/`, no auth
    /// configured (authenticated calls refused).
    pub fn local(identity: &ServiceIdentity) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), identity.default_port),
            admin_listen: None,
            database_url: format!("sqlite://.airt/{}", identity.default_db_file),
            auth: AuthSettings::Unconfigured,
            shutdown_grace: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Resolves flags and environment against the service's defaults.
    pub fn from_args(identity: &ServiceIdentity, args: &ServerArgs) -> anyhow::Result<Self> {
        let mut config = Self::local(identity);
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        config.admin_listen = match args.admin_listen {
            None => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                identity.default_admin_port,
            )),
            Some(AdminListen::At(addr)) => Some(addr),
            Some(AdminListen::Off) => None,
        };
        if let Some(url) = &args.database_url {
            config.database_url = url.clone();
        }
        config.shutdown_grace = args.shutdown_grace;
        config.auth = args.auth.settings()?;
        config.tls = crate::tls::ServerTls::load(&args.tls)?;
        Ok(config)
    }

    /// The configuration as it may be logged: secrets and passwords redacted.
    pub fn redacted(&self) -> String {
        format!(
            "listen={} tls={} admin_listen={} database_url={} auth={} shutdown_grace={:?}",
            self.listen,
            match &self.tls {
                None => "off",
                Some(tls) if tls.is_mutual() => "mutual",
                Some(_) => "on",
            },
            self.admin_listen
                .map_or_else(|| "off".to_owned(), |a| a.to_string()),
            redact_url(&self.database_url),
            match &self.auth {
                AuthSettings::Unconfigured =>
                    "unconfigured (all authenticated calls refused)".to_owned(),
                AuthSettings::Development => "development (trusts x-airt-principal)".to_owned(),
                AuthSettings::Jwt(jwt) => format!(
                    "jwt key={:?} issuer={} audience={}",
                    jwt.key, jwt.issuer, jwt.audience
                ),
            },
            self.shutdown_grace,
        )
    }
}

/// Replaces the password of a URL with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h`, `1d` (a bare number means seconds).
/// The longest duration anything accepts (a year and a day): longer ones
/// are typos or attacks, and would overflow clock arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 500ms, 5s, 2m, 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => return Err(format!("invalid duration unit {other:?} in {text:?}")),
    };
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    if duration > MAX_DURATION {
        return Err(format!(
            "duration {text:?} is longer than the maximum of 366d"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_a_value_or_a_file_never_both() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").expect("write");
        let value = Secret::new("from-value");
        let read = |v: Option<&Secret>, f: Option<&std::path::PathBuf>| {
            Secret::from_value_or_file("x", v, f.map(|p| p.as_path())).map(|s| s.map(|s| s.0))
        };
        assert_eq!(
            read(Some(&value), None).expect("value"),
            Some("from-value".into())
        );
        assert_eq!(
            read(None, Some(&file)).expect("file"),
            Some("from-file".into())
        );
        assert_eq!(read(None, None).expect("none"), None);
        assert!(read(Some(&value), Some(&file)).is_err());
        let missing = dir.path().join("missing");
        assert!(read(None, Some(&missing)).is_err());
        std::fs::write(&file, "\n").expect("write");
        assert!(
            read(None, Some(&file)).is_err(),
            "an empty secret file is refused"
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(parse_duration("367d").is_err());
        assert_eq!(parse_duration("366d"), Ok(MAX_DURATION));
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/airt"),
            "postgres://app:***@db:5432/airt"
        );
        assert_eq!(redact_url("postgres://db/airt"), "postgres://db/airt");
        assert_eq!(redact_url("sqlite://.airt/x.db"), "sqlite://.airt/x.db");
    }

    #[test]
    fn secrets_never_print() {
        let config = ServiceConfig {
            auth: AuthSettings::Jwt(JwtSettings {
                key: JwtKey::Hs256(b"a-very-secret-value-of-32-bytes!!".to_vec()),
                issuer: "airt".into(),
                audience: "airt".into(),
                leeway_secs: 0,
                claims: Default::default(),
            }),
            database_url: "postgres://u:pw@h/db".into(),
            ..ServiceConfig::local(&ServiceIdentity {
                name: "x",
                default_port: 1,
                default_admin_port: 2,
                default_db_file: "x.db",
            })
        };
        let shown = format!("{} {:?}", config.redacted(), Secret::new("hunter2"));
        assert!(
            !shown.contains("very-secret") && !shown.contains("pw@") && !shown.contains("hunter2")
        );
    }

    #[test]
    fn development_mode_is_off_by_default() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        // Reads AIRT_* variables only when set; the test environment sets none.
        let cli = Cli::try_parse_from(["svc"]).expect("defaults parse");
        assert!(!cli.server.auth.auth_dev_mode);
        let identity = ServiceIdentity {
            name: "x",
            default_port: 1,
            default_admin_port: 2,
            default_db_file: "x.db",
        };
        let config = ServiceConfig::from_args(&identity, &cli.server).expect("resolves");
        assert!(matches!(config.auth, AuthSettings::Unconfigured));
        assert_eq!(config.admin_listen, Some("127.0.0.1:2".parse().unwrap()));
    }

    #[test]
    fn the_admin_listener_moves_or_turns_off() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        let identity = ServiceIdentity {
            name: "x",
            default_port: 1,
            default_admin_port: 2,
            default_db_file: "x.db",
        };
        let resolve = |flag: &str| {
            let cli = Cli::try_parse_from(["svc", "--admin-listen", flag])?;
            Ok::<_, clap::Error>(
                ServiceConfig::from_args(&identity, &cli.server)
                    .expect("resolves")
                    .admin_listen,
            )
        };
        assert_eq!(
            resolve("0.0.0.0:9999").unwrap(),
            Some("0.0.0.0:9999".parse().unwrap())
        );
        assert_eq!(resolve("off").unwrap(), None);
        assert!(resolve("localhost").is_err(), "an address or off");
    }
}
