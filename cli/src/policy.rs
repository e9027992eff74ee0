//! `airt policy put|get|list|activate|shadow|test|impact|eval`.

mod impact;

use std::path::PathBuf;
use std::process::ExitCode;

use airt_proto::policy::v1 as pb;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;

use crate::client::{ConnectionArgs, Credentials, ServiceName, describe};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = PolicyServiceClient<InterceptedService<Channel, Credentials>>;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Store a policy set from a YAML file (and activate it with --activate).
    Put {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[arg(long)]
        activate: bool,
        #[arg(long)]
        validate_only: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show the active set, or one revision.
    Get {
        #[arg(long, default_value = "")]
        revision: String,
    },
    /// List stored revisions, newest first.
    List,
    /// Activate a stored revision (roll back or forward).
    Activate {
        revision: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Evaluate a stored revision beside the active set: its decisions are
    /// logged (marked shadow) and counted, never enforced. `--off` stops.
    Shadow {
        #[arg(required_unless_present = "off")]
        revision: Option<String>,
        #[arg(long, conflicts_with = "revision")]
        off: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Run a YAML file of test cases against a policy file (or the active
    /// set); lint capability patterns against the registry's capabilities.
    Test {
        /// Test cases.
        #[arg(short = 't', long = "tests")]
        tests: PathBuf,
        /// The policy file to test (default: the active set).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Do not ask the registry for capabilities (ids and parameter types) to lint against.
        #[arg(long)]
        no_registry: bool,
    },
    /// Replay the decision log of a recent window against a candidate
    /// policy file: the decisions that would change, grouped; exits 1 when
    /// a change newly allows a HIGH or CRITICAL action.
    Impact {
        /// The candidate policy file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// How far back: 30m, 168h, 7d.
        #[arg(long, default_value = "168h", value_parser = impact::parse_window)]
        since: prost_types::Duration,
        /// Logged decisions replayed at most (0: the service's maximum).
        #[arg(long, default_value_t = 0)]
        max_decisions: i32,
    },
    /// Ask for one decision, with its explanation.
    Eval {
        /// The principal the decision is about (`type:id`).
        #[arg(long)]
        principal: String,
        #[arg(long = "principal-roles", default_value = "")]
        principal_roles: String,
        #[arg(long)]
        capability: String,
        /// LOW, MEDIUM, HIGH or CRITICAL.
        #[arg(long)]
        risk: String,
        /// READ, WRITE, DELETE, EXECUTE or NETWORK.
        #[arg(long)]
        operation: Option<String>,
        #[arg(long, default_value = "")]
        agent: String,
        #[arg(long, default_value = "")]
        environment: String,
        #[arg(long)]
        requires_approval: bool,
    },
}

fn decision_name(value: i32) -> String {
    pb::Decision::try_from(value)
        .map(|d| d.as_str_name().trim_start_matches("DECISION_").to_owned())
        .unwrap_or_default()
}

fn print_set(set: &pb::PolicySet) {
    out!(
        "{}  {:<8} rules={:<4} default={:<16} {}",
        set.revision,
        if set.active {
            "ACTIVE"
        } else if set.shadow {
            "SHADOW"
        } else {
            ""
        },
        set.rule_count,
        decision_name(set.default_decision),
        set.description
    );
}

fn print_record(record: &pb::DecisionRecord) {
    out!(
        "{} by rule {}{}: {}",
        decision_name(record.decision),
        record.rule_id,
        if record.escalated { " (escalated)" } else { "" },
        record.reason
    );
    for step in &record.explanation {
        if step.matched {
            out!("  {:<28} matched", step.rule_id);
        } else {
            out!(
                "  {:<28} {}: {}",
                step.rule_id,
                step.failed_condition,
                step.detail
            );
        }
    }
    if let Some(budget) = &record.budget {
        let scope = if budget.scope.is_empty() {
            String::new()
        } else {
            format!(" for {}", budget.scope)
        };
        let end = budget
            .window_end
            .as_ref()
            .map_or(String::new(), |t| format!("; window ends {t}"));
        out!(
            "  budget of rule {}{scope}: {} of {} used, {} left{end}",
            budget.rule_id,
            budget.used,
            budget.max,
            budget.remaining
        );
    }
    out!("  policy revision {}", record.policy_revision);
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

async fn known_capabilities_of(args: &ConnectionArgs) -> anyhow::Result<Vec<KnownCapability>> {
    let mut client = RegistryServiceClient::new(args.authenticated(ServiceName::Registry)?);
    let mut known = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_capabilities(registry::ListCapabilitiesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("registry: {}", describe(&s)))?
            .into_inner();
        known.extend(
            page.capabilities
                .into_iter()
                .filter_map(|c| c.spec)
                .map(known_capability),
        );
        if page.next_page_token.is_empty() {
            return Ok(known);
        }
        page_token = page.next_page_token;
    }
}

/// A registered capability: its id, and its parameter types unless one is
/// unspecified.
enum KnownCapability {
    Id(String),
    WithParameters(pb::KnownCapability),
}

/// For the linter to check input conditions against parameter types.
fn known_capability(spec: registry::CapabilitySpec) -> KnownCapability {
    let types: Option<std::collections::HashMap<String, String>> = spec
        .parameters
        .iter()
        .map(|p| match registry::ParameterType::try_from(p.r#type) {
            Ok(registry::ParameterType::Unspecified) | Err(_) => None,
            Ok(kind) => Some((p.name.clone(), kind.as_str_name().to_owned())),
        })
        .collect();
    match types {
        Some(parameter_types) => KnownCapability::WithParameters(pb::KnownCapability {
            capability_id: spec.id,
            parameter_types,
        }),
        None => KnownCapability::Id(spec.id),
    }
}

/// Prints a policy test report; success when every case passed.
fn print_report(report: &pb::TestPolicySetResponse) -> ExitCode {
    for result in &report.results {
        if result.passed {
            out!("PASS  {}", result.name);
        } else {
            out!("FAIL  {}: {}", result.name, result.message);
        }
    }
    out!("coverage:");
    for rule in &report.coverage {
        out!(
            "  {:<28} {} case(s){}",
            rule.rule_id,
            rule.hits,
            if rule.hits == 0 {
                "  <- never decided"
            } else {
                ""
            }
        );
    }
    for finding in &report.lint_findings {
        out!("lint: {}", finding.message);
    }
    out!(
        "{} passed, {} failed",
        report.total - report.failed,
        report.failed
    );
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The question `airt policy eval` asks.
fn eval_context(
    principal: &str,
    principal_roles: &str,
    capability: String,
    risk: &str,
    operation: Option<String>,
    (agent, environment): (String, String),
    requires_approval: bool,
) -> anyhow::Result<pb::PolicyContext> {
    let (kind, id) = principal
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--principal must be type:id"))?;
    let risk_level = airt_proto::common::v1::RiskLevel::from_str_name(&format!(
        "RISK_LEVEL_{}",
        risk.to_uppercase()
    ))
    .ok_or_else(|| anyhow::anyhow!("unknown risk level {risk:?}"))?;
    let operation_type = match operation {
        None => 0,
        Some(op) => airt_proto::common::v1::OperationType::from_str_name(&format!(
            "OPERATION_TYPE_{}",
            op.to_uppercase()
        ))
        .ok_or_else(|| anyhow::anyhow!("unknown operation {op:?}"))? as i32,
    };
    Ok(pb::PolicyContext {
        principal: Some(airt_proto::common::v1::Principal {
            r#type: kind.into(),
            id: id.into(),
            roles: principal_roles
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
        }),
        agent,
        capability_id: capability,
        risk_level: risk_level as i32,
        requires_approval,
        operation_type,
        environment,
        ..Default::default()
    })
}

/// `airt policy test`: the cases against a file or the active set.
async fn test(
    args: &ConnectionArgs,
    client: &mut Client,
    tests: &std::path::Path,
    file: Option<&std::path::Path>,
    no_registry: bool,
) -> anyhow::Result<ExitCode> {
    let target = match file {
        Some(path) => pb::test_policy_set_request::Target::SourceYaml(read(path)?),
        None => pb::test_policy_set_request::Target::Active(true),
    };
    let (mut known_capability_ids, mut known_capabilities) = (Vec::new(), Vec::new());
    if !no_registry {
        for known in known_capabilities_of(args).await? {
            match known {
                KnownCapability::Id(id) => known_capability_ids.push(id),
                KnownCapability::WithParameters(c) => known_capabilities.push(c),
            }
        }
    }
    let report = client
        .test_policy_set(pb::TestPolicySetRequest {
            target: Some(target),
            tests_yaml: read(tests)?,
            known_capability_ids,
            known_capabilities,
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!(describe(&status)))?
        .into_inner();
    if args.output != crate::output::Format::Text {
        crate::output::print(args.output, &crate::output::to_json(&report)?)?;
        let passed = report.results.iter().all(|r| r.passed);
        return Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    Ok(print_report(&report))
}

/// `airt policy put`: the stored (or valid) set and its lint findings, or
/// every problem of the file.
async fn put(
    client: &mut Client,
    file: &std::path::Path,
    (activate, validate_only): (bool, bool),
    description: String,
) -> anyhow::Result<ExitCode> {
    let response = client
        .put_policy_set(pb::PutPolicySetRequest {
            source_yaml: read(file)?,
            description,
            validate_only,
            activate,
            request_id: String::new(),
        })
        .await;
    match response {
        Ok(response) => {
            let response = response.into_inner();
            let set = response.policy_set.unwrap_or_default();
            let verdict = match (validate_only, response.created) {
                (true, _) => "valid",
                (false, true) => "stored",
                (false, false) => "already stored",
            };
            out!("{verdict}:");
            print_set(&set);
            for finding in &response.lint_findings {
                out!("  lint: {}", finding.message);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            eprintln!("{}: {}", file.display(), describe(&status));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `airt policy activate` (and `shadow`, where an empty revision stops).
async fn activate(
    client: &mut Client,
    revision: String,
    reason: String,
    shadow: bool,
) -> anyhow::Result<ExitCode> {
    let set = client
        .activate_policy_set(pb::ActivatePolicySetRequest {
            revision,
            reason,
            request_id: String::new(),
            shadow,
        })
        .await
        .map_err(|status| anyhow::anyhow!(describe(&status)))?
        .into_inner()
        .policy_set;
    match set {
        Some(set) => print_set(&set),
        None => out!("not shadowing"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: &ConnectionArgs, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    let mut client = PolicyServiceClient::new(args.authenticated(ServiceName::Policy)?);
    let fail = |status: tonic::Status| anyhow::anyhow!(describe(&status));
    match command {
        PolicyCommand::Put {
            file,
            activate,
            validate_only,
            description,
        } => put(&mut client, &file, (activate, validate_only), description).await,
        PolicyCommand::Get { revision } => {
            let set = client
                .get_policy_set(pb::GetPolicySetRequest { revision })
                .await
                .map_err(fail)?
                .into_inner()
                .policy_set
                .unwrap_or_default();
            crate::output::one(args.output, &set, |set| {
                print_set(set);
                out!("---\n{}", set.source_yaml);
            })?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::List => {
            let mut listing = crate::output::Listing::new(args.output);
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_policy_sets(pb::ListPolicySetsRequest {
                        page_size: 100,
                        page_token,
                    })
                    .await
                    .map_err(fail)?
                    .into_inner();
                for set in &page.policy_sets {
                    listing.push(set, print_set)?;
                }
                if page.next_page_token.is_empty() {
                    listing.finish()?;
                    return Ok(ExitCode::SUCCESS);
                }
                page_token = page.next_page_token;
            }
        }
        PolicyCommand::Activate { revision, reason } => {
            activate(&mut client, revision, reason, false).await
        }
        PolicyCommand::Test {
            tests,
            file,
            no_registry,
        } => test(args, &mut client, &tests, file.as_deref(), no_registry).await,
        PolicyCommand::Shadow {
            revision,
            off: _,
            reason,
        } => activate(&mut client, revision.unwrap_or_default(), reason, true).await,
        PolicyCommand::Impact {
            file,
            since,
            max_decisions,
        } => impact::impact(args, &mut client, &file, since, max_decisions).await,
        PolicyCommand::Eval {
            principal,
            principal_roles,
            capability,
            risk,
            operation,
            agent,
            environment,
            requires_approval,
        } => {
            let context = eval_context(
                &principal,
                &principal_roles,
                capability,
                &risk,
                operation,
                (agent, environment),
                requires_approval,
            )?;
            let record = client
                .evaluate(pb::EvaluateRequest {
                    context: Some(context),
                    explain: true,
                    any_inputs: false,
                    // Asking decides no action: budgets are shown, not spent.
                    purpose: pb::EvaluationPurpose::Preview as i32,
                })
                .await
                .map_err(fail)?
                .into_inner()
                .decision
                .unwrap_or_default();
            crate::output::one(args.output, &record, print_record)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
