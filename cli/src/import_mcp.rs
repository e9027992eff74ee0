//! `airt registry import-mcp URL --prefix vendor.name`: each tool of an MCP
//! server becomes a v3 capability spec (risk derived from its annotations
//! with the MCP defaults, see `capabilities::mcp_import`), validated by the
//! registry and registered — or, with `--dry-run`, only shown (and written
//! to `--out DIR` as one file per tool) for the registrar to review and edit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use airt_proto::registry::v1 as pb;
use workflow_service::capabilities::mcp::{McpCaller, StdioServers};
use workflow_service::capabilities::mcp_import;
use workflow_service::capabilities::net::NetworkPolicy;

use crate::client::describe;

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The MCP server's Streamable HTTP endpoint, e.g. `http://127.0.0.1:8000/mcp`,
    /// or `stdio:<name>` for a local server the workflow service declares
    /// with `--mcp-stdio-server <name>=<command>` (give the same command here
    /// with --command to list its tools).
    url: String,
    /// For `stdio:<name>`: the command that starts the server here, to list
    /// its tools (program and arguments, no shell).
    #[arg(long)]
    command: Option<String>,
    /// Id prefix of the capabilities (`vendor.notes` → `vendor.notes.<tool>`).
    #[arg(long)]
    prefix: String,
    /// Validate and show the specs; register nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write each spec to `DIR/<id>.yaml` (to edit, then `airt registry register -f`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Version of the imported revisions.
    #[arg(long, default_value = "1.0.0")]
    version: String,
}

type Client = pb::registry_service_client::RegistryServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        airt_kit::credentials::Credentials,
    >,
>;

pub async fn run(client: &mut Client, args: ImportArgs) -> anyhow::Result<ExitCode> {
    // The registrar's own request from this machine: no address is off limits.
    let open = NetworkPolicy::parse(&["0.0.0.0/0".into(), "::/0".into()])
        .map_err(|e| anyhow::anyhow!(e))?;
    let local = match (args.url.strip_prefix("stdio:"), &args.command) {
        (Some(name), Some(command)) => {
            StdioServers::parse(&[format!("{name}={command}")]).map_err(|e| anyhow::anyhow!(e))?
        }
        (Some(_), None) => anyhow::bail!("a stdio:<name> server needs --command to list its tools"),
        (None, Some(_)) => anyhow::bail!("--command is for stdio:<name> servers only"),
        (None, None) => StdioServers::default(),
    };
    let tools = McpCaller::new(Arc::new(open), Arc::new(local))
        .list_tools(&args.url, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the tools of {}: {}", args.url, e.message))?;
    if tools.is_empty() {
        anyhow::bail!("{} lists no tools", args.url);
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
    }
    let mut failed = false;
    for tool in &tools {
        let spec = match mcp_import::spec(tool, &args.url, &args.prefix, &args.version) {
            Ok(spec) => spec,
            Err(problem) => {
                eprintln!("skipped: {problem}");
                failed = true;
                continue;
            }
        };
        let id = spec["id"].as_str().unwrap_or_default().to_owned();
        let text = serde_norway::to_string(&spec)?;
        if let Some(dir) = &args.out {
            std::fs::write(dir.join(format!("{id}.yaml")), &text)?;
        }
        if args.dry_run {
            out!("---\n{text}");
        }
        let answer = client
            .register_capability(pb::RegisterCapabilityRequest {
                source: Some(pb::register_capability_request::Source::SpecText(text)),
                validate_only: args.dry_run,
                request_id: String::new(),
            })
            .await;
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                let spec = answer.capability.and_then(|c| c.spec).unwrap_or_default();
                let level = spec.risk.map(|r| r.level).unwrap_or_default();
                let level = airt_proto::common::v1::RiskLevel::try_from(level)
                    .map(|l| l.as_str_name().trim_start_matches("RISK_LEVEL_").to_owned())
                    .unwrap_or_default();
                let verdict = match (args.dry_run, answer.created) {
                    (true, _) => "valid",
                    (false, true) => "registered",
                    (false, false) => "already registered",
                };
                let line = format!("{verdict}: {id} {} {level} ({})", args.version, tool.name);
                if args.dry_run {
                    eprintln!("{line}")
                } else {
                    out!("{line}")
                }
            }
            Err(status) => {
                eprintln!("refused: {id} ({}): {}", tool.name, describe(&status));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
