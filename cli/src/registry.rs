//! `airt registry register|get|list|versions|lifecycle`.

use std::path::PathBuf;
use std::process::ExitCode;

use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;

use crate::client::{ConnectionArgs, Credentials, ServiceName, describe};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Register a capability from a YAML or JSON file (see examples/capabilities/).
    Register {
        /// The capability file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Validate only; store nothing.
        #[arg(long)]
        validate_only: bool,
    },
    /// Show a capability: its current revision, or one version.
    Get {
        capability_id: String,
        #[arg(long, default_value = "")]
        version: String,
    },
    /// List capabilities (current revision of each id).
    List {
        /// Only ids starting with this prefix, e.g. `io.fs.`.
        #[arg(long, default_value = "")]
        prefix: String,
        /// LOW, MEDIUM, HIGH or CRITICAL.
        #[arg(long)]
        risk: Option<String>,
        #[arg(long, default_value = "")]
        tag: String,
        /// ACTIVE, DEPRECATED or FROZEN.
        #[arg(long)]
        lifecycle: Option<String>,
    },
    /// Every version of a capability, newest first.
    Versions { capability_id: String },
    /// Register every built-in capability of the workflow service (idempotent).
    Seed,
    /// Turn each tool of an MCP server into a capability and register it
    /// (review first with --dry-run).
    ImportMcp(crate::import_mcp::ImportArgs),
    /// Set the lifecycle of a capability revision.
    Lifecycle {
        capability_id: String,
        /// ACTIVE, DEPRECATED or FROZEN.
        #[arg(long = "set")]
        lifecycle: String,
        #[arg(long)]
        reason: String,
        /// A specific version (default: the current one).
        #[arg(long, default_value = "")]
        version: String,
    },
}

fn risk_from_name(name: &str) -> anyhow::Result<i32> {
    pb_common_risk(name).ok_or_else(|| {
        anyhow::anyhow!("unknown risk level {name:?}: LOW, MEDIUM, HIGH or CRITICAL")
    })
}

fn pb_common_risk(name: &str) -> Option<i32> {
    airt_proto::common::v1::RiskLevel::from_str_name(&format!("RISK_LEVEL_{}", name.to_uppercase()))
        .map(|r| r as i32)
}

fn lifecycle_from_name(name: &str) -> anyhow::Result<i32> {
    pb::CapabilityLifecycle::from_str_name(&format!("CAPABILITY_LIFECYCLE_{}", name.to_uppercase()))
        .map(|l| l as i32)
        .ok_or_else(|| anyhow::anyhow!("unknown lifecycle {name:?}: ACTIVE, DEPRECATED or FROZEN"))
}

fn enum_name(prefix: &str, full: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_owned()
}

fn summary(capability: &pb::Capability) -> String {
    let Some(spec) = &capability.spec else {
        return String::from("(no spec)");
    };
    let risk = spec.risk.clone().unwrap_or_default();
    let risk_name = airt_proto::common::v1::RiskLevel::try_from(risk.level)
        .map(|r| enum_name("RISK_LEVEL_", r.as_str_name()))
        .unwrap_or_default();
    let lifecycle = pb::CapabilityLifecycle::try_from(spec.lifecycle)
        .map(|l| enum_name("CAPABILITY_LIFECYCLE_", l.as_str_name()))
        .unwrap_or_default();
    let version = spec
        .metadata
        .as_ref()
        .map(|m| m.version.as_str())
        .unwrap_or_default();
    format!(
        "{:<32} {:<10} {:<9} {:<11} {}",
        spec.id, version, risk_name, lifecycle, spec.name
    )
}

fn details(capability: &pb::Capability) -> String {
    let mut out = summary(capability);
    let Some(spec) = &capability.spec else {
        return out;
    };
    let operation = airt_proto::common::v1::OperationType::try_from(spec.operation_type)
        .map(|o| enum_name("OPERATION_TYPE_", o.as_str_name()))
        .unwrap_or_default();
    let side_effects = spec.side_effects.clone().unwrap_or_default();
    let compensation = spec.compensation.clone().unwrap_or_default();
    let strategy = pb::CompensationStrategy::try_from(compensation.strategy)
        .map(|s| enum_name("COMPENSATION_STRATEGY_", s.as_str_name()))
        .unwrap_or_default();
    let risk = spec.risk.clone().unwrap_or_default();
    out.push_str(&format!("\n  description:       {}", spec.description));
    out.push_str(&format!("\n  operation:         {operation}"));
    out.push_str(&format!(
        "\n  requires approval: {}",
        risk.requires_approval
    ));
    out.push_str(&format!(
        "\n  reversible:        {}",
        side_effects.reversible
    ));
    out.push_str(&format!(
        "\n  compensation:      {} {}{}",
        if compensation.supported {
            "supported"
        } else {
            "unsupported"
        },
        strategy,
        if compensation.capability_id.is_empty() {
            String::new()
        } else {
            format!(" via {}", compensation.capability_id)
        }
    ));
    out.push_str(&format!("\n  handler:           {}", spec.handler));
    for parameter in &spec.parameters {
        let kind = pb::ParameterType::try_from(parameter.r#type)
            .map(|t| enum_name("PARAMETER_TYPE_", t.as_str_name()).to_lowercase())
            .unwrap_or_default();
        out.push_str(&format!(
            "\n  parameter:         {} ({kind}{})",
            parameter.name,
            if parameter.required { ", required" } else { "" }
        ));
    }
    if !capability.lifecycle_reason.is_empty() {
        out.push_str(&format!(
            "\n  lifecycle reason:  {}",
            capability.lifecycle_reason
        ));
    }
    out.push_str(&format!(
        "\n  content digest:    {}",
        capability.content_digest
    ));
    out.push_str(&format!(
        "\n  registry revision: {}",
        capability.registry_revision
    ));
    out
}

type Client = RegistryServiceClient<InterceptedService<Channel, Credentials>>;

/// `airt registry register`: the verdict, or every problem of the file.
async fn register(
    client: &mut Client,
    file: &std::path::Path,
    validate_only: bool,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let response = client
        .register_capability(pb::RegisterCapabilityRequest {
            source: Some(pb::register_capability_request::Source::SpecText(text)),
            validate_only,
            request_id: String::new(),
        })
        .await;
    match response {
        Ok(response) => {
            let response = response.into_inner();
            let capability = response.capability.unwrap_or_default();
            let verdict = if validate_only {
                "valid"
            } else if response.created {
                "registered"
            } else {
                "already registered (identical content)"
            };
            out!("{verdict}: {}", summary(&capability));
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            eprintln!("{}: {}", file.display(), describe(&status));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `airt registry list`: every page, one line per capability.
async fn list(
    client: &mut Client,
    format: crate::output::Format,
    prefix: String,
    risk: Option<String>,
    tag: String,
    lifecycle: Option<String>,
) -> anyhow::Result<ExitCode> {
    let risk_level = risk
        .as_deref()
        .map(risk_from_name)
        .transpose()?
        .unwrap_or(0);
    let lifecycle = lifecycle
        .as_deref()
        .map(lifecycle_from_name)
        .transpose()?
        .unwrap_or(0);
    print_pages(format, |page_token| {
        let mut client = client.clone();
        let request = pb::ListCapabilitiesRequest {
            page_size: 500,
            page_token,
            id_prefix: prefix.clone(),
            risk_level,
            tag: tag.clone(),
            lifecycle,
        };
        async move {
            let page = client.list_capabilities(request).await?.into_inner();
            Ok((page.capabilities, page.next_page_token))
        }
    })
    .await
}

/// Prints every page `fetch` returns (given the page token), one line per
/// capability, until the last page.
async fn print_pages<F, Fut>(
    format: crate::output::Format,
    mut fetch: F,
) -> anyhow::Result<ExitCode>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<pb::Capability>, String), tonic::Status>>,
{
    let mut listing = crate::output::Listing::new(format);
    let mut page_token = String::new();
    loop {
        let (capabilities, next) = fetch(page_token)
            .await
            .map_err(|status| anyhow::anyhow!(describe(&status)))?;
        for capability in &capabilities {
            listing.push(capability, |c| out!("{}", summary(c)))?;
        }
        if next.is_empty() {
            listing.finish()?;
            return Ok(ExitCode::SUCCESS);
        }
        page_token = next;
    }
}

pub async fn run(args: &ConnectionArgs, command: RegistryCommand) -> anyhow::Result<ExitCode> {
    let mut client = RegistryServiceClient::new(args.authenticated(ServiceName::Registry)?);
    let fail = |status: tonic::Status| anyhow::anyhow!(describe(&status));
    match command {
        RegistryCommand::Register {
            file,
            validate_only,
        } => register(&mut client, &file, validate_only).await,
        RegistryCommand::ImportMcp(import) => crate::import_mcp::run(&mut client, import).await,
        RegistryCommand::Get {
            capability_id,
            version,
        } => {
            let capability = client
                .get_capability(pb::GetCapabilityRequest {
                    capability_id,
                    version,
                })
                .await
                .map_err(fail)?
                .into_inner()
                .capability
                .unwrap_or_default();
            crate::output::one(args.output, &capability, |c| out!("{}", details(c)))?;
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::List {
            prefix,
            risk,
            tag,
            lifecycle,
        } => list(&mut client, args.output, prefix, risk, tag, lifecycle).await,
        RegistryCommand::Versions { capability_id } => {
            print_pages(args.output, |page_token| {
                let mut client = client.clone();
                let request = pb::ListCapabilityVersionsRequest {
                    capability_id: capability_id.clone(),
                    page_size: 500,
                    page_token,
                };
                async move {
                    let page = client.list_capability_versions(request).await?.into_inner();
                    Ok((page.capabilities, page.next_page_token))
                }
            })
            .await
        }
        RegistryCommand::Seed => {
            use workflow_service::publish::publish_all;
            let credentials = args.credentials()?;
            let catalogue = workflow_service::capabilities::Catalogue::new(&Default::default());
            let published = publish_all(
                &catalogue,
                args.channel(ServiceName::Registry)?,
                &credentials,
            )
            .await
            .map_err(fail)?;
            out!(
                "{} built-in capabilities: {} registered, {} already registered",
                published.created + published.unchanged,
                published.created,
                published.unchanged
            );
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Lifecycle {
            capability_id,
            lifecycle,
            reason,
            version,
        } => {
            let capability = client
                .set_capability_lifecycle(pb::SetCapabilityLifecycleRequest {
                    capability_id,
                    version,
                    lifecycle: lifecycle_from_name(&lifecycle)?,
                    reason,
                    request_id: String::new(),
                })
                .await
                .map_err(fail)?
                .into_inner()
                .capability
                .unwrap_or_default();
            out!("{}", summary(&capability));
            Ok(ExitCode::SUCCESS)
        }
    }
}
