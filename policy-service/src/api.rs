//! `airt.policy.v1.PolicyService`: decode, check access, call the domain and
//! the store, encode.

use std::sync::Arc;

use airt_kit::Principal;
use airt_kit::auth::{principal, require_any_role};
use airt_proto::policy::v1 as pb;
use airt_proto::policy::v1::policy_service_server::PolicyService;
use tonic::{Request, Response, Status};

use crate::active::ActivePolicy;
use crate::budgets::{Purpose, settle_budget};
use crate::convert::{context_from_proto, lint_to_proto, record_to_proto, stored_to_proto};
use crate::decision_log::DecisionLog;
use crate::domain::testing::{lint, parse_test_cases, run_tests};
use crate::domain::{CompiledPolicySet, PolicyContext, parse_policy_set};
use crate::error::PolicyError;
use crate::metrics::PolicyMetrics;
use crate::store::{ActiveState, PolicyStore};

/// Roles that may change the active policy.
pub const ADMIN_ROLES: &[&str] = &["admin"];
/// Roles that may read stored policy sets (services may too).
pub const READER_ROLES: &[&str] = &["admin", "auditor"];
const MAX_BATCH: usize = 1000;
const MAX_SOURCE: usize = 1024 * 1024;
/// Capability ids a policy test call may name for the linter.
const MAX_KNOWN_IDS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct PolicyApi {
    store: PolicyStore,
    audit: airt_kit::audit::AuditLog,
    active: ActivePolicy,
    decisions: DecisionLog,
    metrics: PolicyMetrics,
}

impl PolicyApi {
    pub fn new(
        store: PolicyStore,
        audit: airt_kit::audit::AuditLog,
        active: ActivePolicy,
        decisions: DecisionLog,
        metrics: PolicyMetrics,
    ) -> Self {
        Self {
            store,
            audit,
            active,
            metrics,
            decisions,
        }
    }

    async fn state(&self) -> Result<ActiveState, PolicyError> {
        self.store.state().await
    }

    /// One decision: evaluated, its budget settled, timed (the engine
    /// only), counted and written to the decision log.
    async fn decide(
        &self,
        caller: &Principal,
        set: &CompiledPolicySet,
        ctx: &PolicyContext,
        explain: bool,
        purpose: Purpose,
    ) -> Result<crate::domain::DecisionRecord, PolicyError> {
        let started = std::time::Instant::now();
        let mut record = set.evaluate(ctx, explain);
        let elapsed = started.elapsed();
        settle_budget(&self.store, &mut record, purpose).await?;
        self.metrics.decided(&record, elapsed);
        self.decisions.record(caller, ctx, &record).await;
        // The shadow set decides too — logged and counted, never enforced,
        // never drawing on a budget.
        if let Some(shadow) = self.active.shadow() {
            let mut shadowed = shadow.evaluate(ctx, false);
            shadowed.budget = None;
            self.metrics.shadowed(&shadowed, &record);
            self.decisions
                .record_shadow(caller, ctx, &shadowed, &record)
                .await;
        }
        Ok(record)
    }
}

impl PolicyApi {
    /// `ActivatePolicySet` with `shadow`: starts (or, for an empty
    /// revision, stops) shadowing.
    async fn shadow(
        &self,
        caller: &Principal,
        req: pb::ActivatePolicySetRequest,
    ) -> Result<Response<pb::ActivatePolicySetResponse>, Status> {
        let stored = self
            .store
            .set_shadow(&req.revision, caller, &req.reason, &req.request_id)
            .await?;
        self.active.refresh(&self.store).await?;
        tracing::info!(revision = %req.revision, actor = %caller, "shadow policy set changed");
        let state = self.state().await?;
        Ok(Response::new(pb::ActivatePolicySetResponse {
            policy_set: stored.map(|stored| stored_to_proto(&stored, &state)),
        }))
    }
}

/// Services (the workflow service) and admins may ask about anyone; any
/// other principal only about itself.
fn may_evaluate(caller: &Principal, ctx: &PolicyContext) -> Result<(), Status> {
    if caller.kind == "service" || caller.has_role("admin") || caller.to_string() == ctx.principal {
        return Ok(());
    }
    Err(airt_kit::status::error(
        tonic::Code::PermissionDenied,
        "NOT_YOUR_DECISION",
        format!(
            "{caller} may only evaluate its own requests (context principal is {})",
            ctx.principal
        ),
    ))
}

fn reader(caller: &Principal) -> Result<(), Status> {
    if caller.kind == "service" {
        return Ok(());
    }
    require_any_role(caller, READER_ROLES)
}

/// The start (µs since the epoch) and size of a replay: the decision log
/// holds other principals' requests, so only readers may replay it; the
/// window is 1 s to 400 days.
fn impact_window(
    caller: &Principal,
    since: &prost_types::Duration,
    max: i32,
) -> Result<(i64, usize), Status> {
    reader(caller)?;
    const MAX_WINDOW_SECS: i64 = 400 * 86_400;
    if since.seconds < 1 || since.seconds > MAX_WINDOW_SECS || since.nanos < 0 {
        return Err(
            PolicyError::invalid("impact_since", "must be between 1 s and 400 days").into(),
        );
    }
    let max = match usize::try_from(max) {
        Ok(0) => crate::impact::MAX_REPLAY,
        Ok(n) => n.min(crate::impact::MAX_REPLAY),
        Err(_) => {
            return Err(
                PolicyError::invalid("impact_max_decisions", "must not be negative").into(),
            );
        }
    };
    Ok((
        airt_kit::clock::now_micros() - since.seconds * 1_000_000,
        max,
    ))
}

/// Parses and compiles a policy set on the blocking pool.
async fn compile(source: String) -> Result<CompiledPolicySet, Status> {
    if source.len() > MAX_SOURCE {
        return Err(PolicyError::invalid(
            "source_yaml",
            format!("is larger than {MAX_SOURCE} bytes"),
        )
        .into());
    }
    airt_kit::limits::off_runtime(move || {
        let set = parse_policy_set(&source).map_err(|e| PolicyError::InvalidPolicySet(e.0))?;
        Ok(CompiledPolicySet::compile(set))
    })
    .await?
    .map_err(|e: PolicyError| e.into())
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn evaluate(
        &self,
        request: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::EvaluateResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let context = req
            .context
            .ok_or_else(|| PolicyError::invalid("context", "is required"))?;
        let ctx = context_from_proto("context", context).map_err(PolicyError::InvalidRequest)?;
        may_evaluate(&caller, &ctx)?;
        let set = self.active.current();
        let record = if req.any_inputs {
            set.evaluate_any_inputs(&ctx)
        } else {
            let purpose = Purpose::of(&caller, req.purpose);
            self.decide(&caller, &set, &ctx, req.explain, purpose)
                .await?
        };
        Ok(Response::new(pb::EvaluateResponse {
            decision: Some(record_to_proto(&record)),
        }))
    }

    async fn batch_evaluate(
        &self,
        request: Request<pb::BatchEvaluateRequest>,
    ) -> Result<Response<pb::BatchEvaluateResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        if req.contexts.len() > MAX_BATCH {
            return Err(PolicyError::invalid(
                "contexts",
                format!("at most {MAX_BATCH} contexts per call"),
            )
            .into());
        }
        let mut contexts = Vec::with_capacity(req.contexts.len());
        let mut problems = Vec::new();
        for (i, context) in req.contexts.into_iter().enumerate() {
            match context_from_proto(&format!("contexts[{i}]"), context) {
                Ok(ctx) => contexts.push(ctx),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::InvalidRequest(problems).into());
        }
        for ctx in &contexts {
            may_evaluate(&caller, ctx)?;
        }
        // One snapshot of the active set for the whole batch.
        let set = self.active.current();
        let mut decisions = Vec::with_capacity(contexts.len());
        for ctx in &contexts {
            if req.any_inputs {
                decisions.push(record_to_proto(&set.evaluate_any_inputs(ctx)));
                continue;
            }
            let purpose = Purpose::of(&caller, req.purpose);
            let record = self
                .decide(&caller, &set, ctx, req.explain, purpose)
                .await?;
            decisions.push(record_to_proto(&record));
        }
        Ok(Response::new(pb::BatchEvaluateResponse { decisions }))
    }

    async fn put_policy_set(
        &self,
        request: Request<pb::PutPolicySetRequest>,
    ) -> Result<Response<pb::PutPolicySetResponse>, Status> {
        let caller = principal(&request)?;
        require_any_role(&caller, ADMIN_ROLES)?;
        let req = request.into_inner();
        let set = Arc::new(compile(req.source_yaml.clone()).await?);
        let lint_findings = lint(set.rules(), &[]).iter().map(lint_to_proto).collect();
        if req.validate_only {
            return Ok(Response::new(pb::PutPolicySetResponse {
                policy_set: Some(pb::PolicySet {
                    revision: set.revision().to_owned(),
                    source_yaml: req.source_yaml,
                    description: req.description,
                    rule_count: i32::try_from(set.rules().len()).unwrap_or(i32::MAX),
                    escalate_high_risk: set.set().escalate_high_risk,
                    default_decision: crate::convert::decision_to_proto(set.set().default) as i32,
                    ..Default::default()
                }),
                created: false,
                lint_findings,
            }));
        }
        let (stored, created) = self
            .store
            .put(
                &set,
                &req.source_yaml,
                &req.description,
                &caller,
                req.activate,
                &req.request_id,
            )
            .await?;
        let state = self.store.state().await?;
        if req.activate {
            self.active.install(set, state.activation_seq);
            tracing::info!(revision = %stored.revision, actor = %caller, "policy set activated");
        }
        Ok(Response::new(pb::PutPolicySetResponse {
            policy_set: Some(stored_to_proto(&stored, &state)),
            created,
            lint_findings,
        }))
    }

    async fn get_policy_set(
        &self,
        request: Request<pb::GetPolicySetRequest>,
    ) -> Result<Response<pb::GetPolicySetResponse>, Status> {
        reader(&principal(&request)?)?;
        let req = request.into_inner();
        let state = self.state().await?;
        let revision = if req.revision.is_empty() {
            if state.active_revision.is_empty() {
                return Err(PolicyError::NoActiveSet.into());
            }
            state.active_revision.clone()
        } else {
            req.revision
        };
        let stored = self
            .store
            .get(&revision)
            .await?
            .ok_or(PolicyError::NotFound(revision))?;
        Ok(Response::new(pb::GetPolicySetResponse {
            policy_set: Some(stored_to_proto(&stored, &state)),
        }))
    }

    async fn list_policy_sets(
        &self,
        request: Request<pb::ListPolicySetsRequest>,
    ) -> Result<Response<pb::ListPolicySetsResponse>, Status> {
        reader(&principal(&request)?)?;
        let req = request.into_inner();
        let limit = match req.page_size {
            0 => 50,
            n if n < 0 => {
                return Err(PolicyError::invalid("page_size", "must not be negative").into());
            }
            n => i64::from(n.min(500)),
        };
        let before = match req.page_token.as_str() {
            "" => 0,
            token => token
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| PolicyError::invalid("page_token", "malformed page token"))?,
        };
        let state = self.state().await?;
        let page = self.store.list(before, limit).await?;
        let next_page_token = match page.last() {
            Some(last) if page.len() as i64 == limit => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListPolicySetsResponse {
            policy_sets: page.iter().map(|s| stored_to_proto(s, &state)).collect(),
            next_page_token,
        }))
    }

    async fn activate_policy_set(
        &self,
        request: Request<pb::ActivatePolicySetRequest>,
    ) -> Result<Response<pb::ActivatePolicySetResponse>, Status> {
        let caller = principal(&request)?;
        require_any_role(&caller, ADMIN_ROLES)?;
        let req = request.into_inner();
        if req.shadow {
            return self.shadow(&caller, req).await;
        }
        if req.revision.is_empty() {
            return Err(PolicyError::invalid("revision", "is required").into());
        }
        let stored = self
            .store
            .activate(&req.revision, &caller, &req.reason, &req.request_id)
            .await?;
        // Load what the store now says is active (this activation, or a
        // newer one from another replica).
        self.active.refresh(&self.store).await?;
        tracing::info!(revision = %stored.revision, actor = %caller, "policy set activated");
        let state = self.state().await?;
        Ok(Response::new(pb::ActivatePolicySetResponse {
            policy_set: Some(stored_to_proto(&stored, &state)),
        }))
    }

    async fn test_policy_set(
        &self,
        request: Request<pb::TestPolicySetRequest>,
    ) -> Result<Response<pb::TestPolicySetResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let impact_window = req
            .impact_since
            .map(|since| impact_window(&caller, &since, req.impact_max_decisions))
            .transpose()?;
        let set: Arc<CompiledPolicySet> = match req.target {
            Some(pb::test_policy_set_request::Target::SourceYaml(source)) => {
                Arc::new(compile(source).await?)
            }
            Some(pb::test_policy_set_request::Target::Revision(revision)) => {
                let stored = self
                    .store
                    .get(&revision)
                    .await?
                    .ok_or(PolicyError::NotFound(revision))?;
                Arc::new(compile(stored.source_yaml).await?)
            }
            Some(pb::test_policy_set_request::Target::Active(true)) => self.active.current(),
            Some(pb::test_policy_set_request::Target::Active(false)) | None => {
                return Err(PolicyError::invalid(
                    "target",
                    "is required: revision, source_yaml or active",
                )
                .into());
            }
        };
        if req.tests_yaml.len() > MAX_SOURCE {
            return Err(PolicyError::invalid(
                "tests_yaml",
                format!("is larger than {MAX_SOURCE} bytes"),
            )
            .into());
        }
        let known = crate::convert::known_capabilities(
            req.known_capability_ids,
            req.known_capabilities,
            MAX_KNOWN_IDS,
        )
        .map_err(PolicyError::InvalidRequest)?;
        let tested = set.clone();
        let tests_yaml = req.tests_yaml;
        let report = airt_kit::limits::off_runtime(move || {
            let cases = if tests_yaml.trim().is_empty() {
                Vec::new()
            } else {
                parse_test_cases(&tests_yaml, jiff::Timestamp::now())
                    .map_err(PolicyError::InvalidRequest)?
            };
            Ok(run_tests(&tested, &cases, &known))
        })
        .await?
        .map_err(|e: PolicyError| Status::from(e))?;
        let impact = match impact_window {
            Some((since_us, max)) => {
                let (replayed, truncated) =
                    crate::impact::replay_log(&self.audit, set.clone(), since_us, max).await?;
                Some(crate::convert::impact_to_proto(
                    &replayed, truncated, since_us,
                ))
            }
            None => None,
        };
        let failed = report.failed();
        Ok(Response::new(pb::TestPolicySetResponse {
            impact,
            passed: failed == 0,
            total: i32::try_from(report.results.len()).unwrap_or(i32::MAX),
            failed: i32::try_from(failed).unwrap_or(i32::MAX),
            results: report
                .results
                .iter()
                .map(|r| pb::PolicyTestResult {
                    name: r.name.clone(),
                    passed: r.passed,
                    expected_decision: crate::convert::decision_to_proto(r.expected_decision)
                        as i32,
                    expected_rule_id: r.expected_rule.clone().unwrap_or_default(),
                    actual: Some(record_to_proto(&r.actual)),
                    message: r.message.clone(),
                })
                .collect(),
            coverage: report
                .coverage
                .iter()
                .map(|(rule_id, hits)| pb::RuleCoverage {
                    rule_id: rule_id.clone(),
                    hits: i32::try_from(*hits).unwrap_or(i32::MAX),
                })
                .collect(),
            lint_findings: report.lint.iter().map(lint_to_proto).collect(),
            policy_revision: set.revision().to_owned(),
        }))
    }
}
