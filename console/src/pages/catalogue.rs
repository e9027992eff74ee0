//! What governs the actions: the capability catalogue, the policy (active
//! set and revisions) and the state of each service's audit chain.

use std::sync::Arc;

use airt_proto::audit::v1 as audit;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::error::ConsoleError;
use crate::pages::bounded_id;
use crate::user::User;
use crate::view;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    page: String,
}

/// `GET /capabilities`: every capability with its risk and lifecycle.
pub async fn capabilities(
    State(console): State<Arc<Console>>,
    user: User,
    Query(query): Query<PageQuery>,
) -> Result<Markup, ConsoleError> {
    let page = RegistryServiceClient::new(console.channels.registry.clone())
        .max_decoding_message_size(64 * 1024 * 1024)
        .list_capabilities(user.request(registry::ListCapabilitiesRequest {
            page_size: 200,
            page_token: bounded_id(&query.page, "page")?.to_owned(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let body = html! {
        div.scroll { table {
            thead { tr { th { "Capability" } th { "Risk" } th { "Operation" } th { "Undo" } th { "Lifecycle" } th { "Description" } } }
            tbody { @for c in &page.capabilities { @if let Some(spec) = &c.spec {
                @let risk = spec.risk.clone().unwrap_or_default();
                tr data-testid="capability-row" data-capability-id=(spec.id) {
                    td { code { (spec.id) } " " span.muted { (spec.metadata.as_ref().map(|m| m.version.as_str()).unwrap_or("")) } }
                    td { (view::risk(risk.level)) @if risk.requires_approval { br; span.muted { "approval" } } }
                    td { (airt_proto::common::v1::OperationType::try_from(spec.operation_type).map(|o| view::short(o.as_str_name(), "OPERATION_TYPE_")).unwrap_or_default()) }
                    td { (if spec.compensation.as_ref().is_some_and(|c| c.supported) { "undoable" } else { "irreversible" }) }
                    td { (registry::CapabilityLifecycle::try_from(spec.lifecycle).map(|l| view::short(l.as_str_name(), "CAPABILITY_LIFECYCLE_")).unwrap_or_default()) }
                    td { (spec.description) }
                }
            } } }
        } }
        @if !page.next_page_token.is_empty() {
            p { a href={ "/capabilities?page=" (page.next_page_token) } { "Next page" } }
        }
    };
    Ok(view::page(
        "Capabilities",
        Some(&user),
        console.development,
        &body,
    ))
}

/// `GET /policy`: the active policy set's source and the revisions.
pub async fn policy(
    State(console): State<Arc<Console>>,
    user: User,
) -> Result<Markup, ConsoleError> {
    let mut client = PolicyServiceClient::new(console.channels.policy.clone());
    let sets = client
        .list_policy_sets(user.request(policy::ListPolicySetsRequest {
            page_size: 50,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .policy_sets;
    let active = sets.iter().find(|s| s.active);
    let body = html! {
        @match active {
            Some(set) => {
                p { "Active revision " code data-testid="active-revision" { (set.revision) } ", "
                    (set.rule_count) " rules, default "
                    (policy::Decision::try_from(set.default_decision).map(|d| view::short(d.as_str_name(), "DECISION_")).unwrap_or_default())
                    @if set.escalate_high_risk { ", high risk escalated to approval" } "." }
                pre data-testid="policy-source" { (set.source_yaml) }
            }
            None => p { "No policy set is active: every decision is the built-in default." }
        }
        h2 { "Revisions" }
        div.scroll { table {
            thead { tr { th { "Revision" } th { "Rules" } th { "Created by" } th { "Created" } th { "Activated" } th { "Description" } } }
            tbody { @for s in &sets { tr {
                td { code { (s.revision) } @if s.active { " " strong { "active" } } }
                td { (s.rule_count) }
                td { (view::principal(s.created_by.as_ref())) }
                td { (view::time(s.create_time.as_ref())) }
                td { (view::time(s.activate_time.as_ref())) }
                td { (s.description) }
            } } }
        } }
    };
    Ok(view::page(
        "Policy",
        Some(&user),
        console.development,
        &body,
    ))
}

/// `GET /audit`: each service's chain verified now, as the signed-in user
/// (the services decide who may read their audit).
pub async fn chains(State(console): State<Arc<Console>>, user: User) -> Markup {
    let services = [
        ("registry", console.channels.registry.clone()),
        ("policy", console.channels.policy.clone()),
        ("workflow", console.channels.workflow.clone()),
    ];
    let mut rows = Vec::new();
    for (name, channel) in services {
        let answer = AuditServiceClient::new(channel)
            .verify_audit_chain(user.request(audit::VerifyAuditChainRequest::default()))
            .await;
        rows.push((name, answer.map(tonic::Response::into_inner)));
    }
    let body = html! {
        div.scroll { table {
            thead { tr { th { "Service" } th { "Chain" } th { "Events checked" } th { "Head" } th { "Problem" } } }
            tbody { @for (name, answer) in &rows { tr data-testid="chain-row" data-service=(name) {
                td { (name) }
                @match answer {
                    Ok(v) => {
                        td data-testid="chain-state" { (if v.intact { "intact" } else { "BROKEN" }) }
                        td { (v.events_checked) }
                        td { code { (v.head_hash) } }
                        td { (v.problem) @if v.first_broken_sequence > 0 { " (event " (v.first_broken_sequence) ")" } }
                    }
                    Err(status) => {
                        td data-testid="chain-state" { "not verified" }
                        td colspan="3" { (format!("{:?}", status.code())) ": " (status.message()) }
                    }
                }
            } } }
        } }
    };
    view::page("Audit chains", Some(&user), console.development, &body)
}
