//! `airt token`: mints an HS256 bearer token the services accept, e.g. the
//! workflow service's own (`--subject service:workflow --roles registrar`).

use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The principal, `type:id` (e.g. `user:alice`, `service:workflow`).
    #[arg(long)]
    subject: String,
    /// Comma-separated roles.
    #[arg(long, value_delimiter = ',', default_value = "")]
    roles: Vec<String>,
    /// Lifetime, e.g. `1h`, `30d`.
    #[arg(long, default_value = "1h", value_parser = airt_kit::config::parse_duration)]
    ttl: Duration,
    /// The services' `--jwt-hs256-secret`.
    #[arg(long, env = "AIRT_JWT_HS256_SECRET", hide_env_values = true)]
    secret: Option<airt_kit::config::Secret>,
    /// A file holding it (keeps the secret off the command line).
    #[arg(long, env = "AIRT_JWT_HS256_SECRET_FILE")]
    secret_file: Option<std::path::PathBuf>,
    #[arg(long, env = "AIRT_JWT_ISSUER", default_value = "airt")]
    issuer: String,
    #[arg(long, env = "AIRT_JWT_AUDIENCE", default_value = "airt")]
    audience: String,
}

#[derive(Debug, serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    roles: Vec<&'a str>,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

pub fn run(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    // The canonical form: what the services will compare.
    let subject = airt_kit::Principal::parse(&args.subject, Vec::new())
        .map_err(|e| anyhow::anyhow!("--subject: {e}"))?
        .to_string();
    let secret = airt_kit::config::Secret::from_value_or_file(
        "secret",
        args.secret.as_ref(),
        args.secret_file.as_deref(),
    )?
    .ok_or_else(|| anyhow::anyhow!("give --secret or --secret-file"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = Claims {
        sub: &subject,
        roles: args
            .roles
            .iter()
            .map(String::as_str)
            .filter(|r| !r.is_empty())
            .collect(),
        iss: &args.issuer,
        aud: &args.audience,
        iat: now,
        exp: now + args.ttl.as_secs(),
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
    )?;
    out!("{token}");
    Ok(ExitCode::SUCCESS)
}
