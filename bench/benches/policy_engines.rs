//! In-process decision latency: our engine against Cedar and regorus on
//! equivalent generated sets of 10, 100 and 1,000 rules and a 10,000-request
//! corpus (40% matching no rule).
//!
//! Run: `cd bench && cargo bench --bench policy_engines`
//!
//! A conformance gate first runs every request through every engine and
//! aborts on any disagreement. Then each request is timed on its own
//! (several passes for fast engines), and p50/p99 per engine and size are
//! printed as a Markdown table. Criterion then measures the mean cost per
//! decision of each engine and size the usual way (its reports land in
//! `target/criterion/`); the percentiles come from the first part, because
//! criterion reports statistics of batch means, not per-decision tails.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use airt_bench::{
    GeneratedRequest, airt_yaml, cedar_policies, generate_requests, generate_rules, rego_policy,
};
use airt_kit::vocabulary::RiskLevel;
use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression,
};
use policy_service::domain::{CompiledPolicySet, Decision, PolicyContext, parse_policy_set};

const SIZES: [usize; 3] = [10, 100, 1000];
const REQUESTS: usize = 10_000;
/// Time spent per engine and size at most, after the first pass.
const BUDGET: Duration = Duration::from_secs(8);

struct Cedar {
    authorizer: Authorizer,
    policies: PolicySet,
    approvals: HashSet<PolicyId>,
    entities: Entities,
    requests: Vec<Request>,
}

impl Cedar {
    fn new(rules: &[airt_bench::GeneratedRule], requests: &[GeneratedRequest]) -> Self {
        let policies: PolicySet = cedar_policies(rules).parse().expect("cedar policies parse");
        let approvals = policies
            .policies()
            .filter(|p| p.annotation("decision") == Some("REQUIRE_APPROVAL"))
            .map(|p| p.id().clone())
            .collect();
        let action: EntityUid = r#"Action::"invoke""#.parse().expect("uid");
        let requests = requests
            .iter()
            .map(|r| {
                let kind = if r.principal_type == "agent" {
                    "Agent"
                } else {
                    "User"
                };
                let principal: EntityUid = format!("{kind}::\"{}\"", r.principal_id)
                    .parse()
                    .expect("uid");
                let resource: EntityUid = format!("Capability::\"{}\"", r.capability)
                    .parse()
                    .expect("uid");
                let context = Context::from_pairs([
                    (
                        "capability".to_owned(),
                        RestrictedExpression::new_string(r.capability.clone()),
                    ),
                    (
                        "risk".to_owned(),
                        RestrictedExpression::new_string(r.risk.to_owned()),
                    ),
                    (
                        "amount".to_owned(),
                        RestrictedExpression::new_long(r.amount),
                    ),
                    (
                        "currency".to_owned(),
                        RestrictedExpression::new_string(r.currency.to_owned()),
                    ),
                    (
                        "path".to_owned(),
                        RestrictedExpression::new_string(r.path.clone()),
                    ),
                ])
                .expect("context");
                Request::new(principal, action.clone(), resource, context, None).expect("request")
            })
            .collect();
        Self {
            authorizer: Authorizer::new(),
            policies,
            approvals,
            entities: Entities::empty(),
            requests,
        }
    }

    fn decide(&self, request: &Request) -> Decision {
        let response = self
            .authorizer
            .is_authorized(request, &self.policies, &self.entities);
        assert!(
            response.diagnostics().errors().next().is_none(),
            "cedar evaluation error"
        );
        match response.decision() {
            cedar_policy::Decision::Deny => Decision::Deny,
            cedar_policy::Decision::Allow => {
                if response
                    .diagnostics()
                    .reason()
                    .any(|id| self.approvals.contains(id))
                {
                    Decision::RequireApproval
                } else {
                    Decision::Allow
                }
            }
        }
    }
}

struct Rego {
    engine: regorus::Engine,
    inputs: Vec<regorus::Value>,
}

impl Rego {
    fn new(rules: &[airt_bench::GeneratedRule], requests: &[GeneratedRequest]) -> Self {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("airt.rego".into(), rego_policy(rules))
            .expect("rego parses");
        let inputs = requests
            .iter()
            .map(|r| {
                let json = serde_json::json!({"principal_type": r.principal_type, "principal_id": r.principal_id, "capability": r.capability, "risk": r.risk, "amount": r.amount, "currency": r.currency, "path": r.path});
                regorus::Value::from_json_str(&json.to_string()).expect("input")
            })
            .collect();
        Self { engine, inputs }
    }

    fn decide(&mut self, input: &regorus::Value) -> Decision {
        self.engine.set_input(input.clone());
        let value = self
            .engine
            .eval_rule("data.airt.decision".into())
            .expect("rego evaluates");
        match value.as_string().expect("string decision").as_ref() {
            "DENY" => Decision::Deny,
            "REQUIRE_APPROVAL" => Decision::RequireApproval,
            "ALLOW" => Decision::Allow,
            other => panic!("unexpected rego decision {other}"),
        }
    }
}

fn our_contexts(requests: &[GeneratedRequest]) -> Vec<PolicyContext> {
    requests
        .iter()
        .map(|r| PolicyContext {
            principal: format!("{}:{}", r.principal_type, r.principal_id),
            roles: Vec::new(),
            agent: String::new(),
            workflow_id: String::new(),
            step_name: String::new(),
            capability_id: r.capability.clone(),
            risk_level: RiskLevel::parse(r.risk).expect("risk"),
            requires_approval: false,
            operation_type: None,
            inputs: serde_json::json!({"amount": r.amount, "currency": r.currency, "path": r.path})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            environment: String::new(),
            time: jiff::Timestamp::UNIX_EPOCH,
        })
        .collect()
}

/// Times each call on its own, pass after pass, until `BUDGET` is spent
/// (at least one pass). Returns sorted nanoseconds.
fn time_each(count: usize, mut call: impl FnMut(usize) -> Decision) -> Vec<u64> {
    let mut samples = Vec::with_capacity(count);
    let started = Instant::now();
    let mut passes = 0;
    while passes < 1 || (started.elapsed() < BUDGET && passes < 30) {
        for i in 0..count {
            let t = Instant::now();
            black_box(call(black_box(i)));
            samples.push(t.elapsed().as_nanos() as u64);
        }
        passes += 1;
    }
    samples.sort_unstable();
    samples
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn show(ns: u64) -> String {
    if ns < 10_000 {
        format!("{:.2} µs", ns as f64 / 1000.0)
    } else {
        format!("{:.1} µs", ns as f64 / 1000.0)
    }
}

fn main() {
    let mut criterion = criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut table = vec![
        "| rules | engine | p50 | p99 | mean | p50 vs ours |".to_owned(),
        "|---:|---|---:|---:|---:|---:|".to_owned(),
    ];
    for size in SIZES {
        let rules = generate_rules(size, 7 + size as u64);
        let requests = generate_requests(&rules, REQUESTS, 11 + size as u64);
        let ours = CompiledPolicySet::compile(
            parse_policy_set(&airt_yaml(&rules)).expect("our yaml parses"),
        );
        let contexts = our_contexts(&requests);
        let cedar = Cedar::new(&rules, &requests);
        let mut rego = Rego::new(&rules, &requests);

        // Conformance gate: identical decisions for every request, or abort.
        let mut unmatched = 0;
        for i in 0..requests.len() {
            let record = ours.evaluate(&contexts[i], false);
            if &*record.rule_id == "default" {
                unmatched += 1;
            }
            let c = cedar.decide(&cedar.requests[i]);
            let input = rego.inputs[i].clone();
            let r = rego.decide(&input);
            assert!(
                record.decision == c && c == r,
                "engines disagree on {:?} with {size} rules: ours {:?}, cedar {c:?}, rego {r:?}",
                requests[i],
                record.decision
            );
        }
        eprintln!(
            "{size} rules: conformance gate passed on {REQUESTS} requests ({unmatched} matched no rule)"
        );

        let ours_ns = time_each(contexts.len(), |i| {
            ours.evaluate(&contexts[i], false).decision
        });
        let cedar_ns = time_each(cedar.requests.len(), |i| cedar.decide(&cedar.requests[i]));
        let inputs = rego.inputs.clone();
        let rego_ns = time_each(inputs.len(), |i| rego.decide(&inputs[i]));
        let mut group = criterion.benchmark_group(format!("decision/{size}_rules"));
        let mut next = 0usize;
        group.bench_function("airt", |b| {
            b.iter(|| {
                next = (next + 1) % contexts.len();
                ours.evaluate(black_box(&contexts[next]), false).decision
            })
        });
        group.bench_function("cedar-policy", |b| {
            b.iter(|| {
                next = (next + 1) % cedar.requests.len();
                cedar.decide(black_box(&cedar.requests[next]))
            })
        });
        group.bench_function("regorus", |b| {
            b.iter(|| {
                next = (next + 1) % inputs.len();
                rego.decide(black_box(&inputs[next]))
            })
        });
        group.finish();

        let base = percentile(&ours_ns, 0.5).max(1);
        for (name, samples) in [
            ("airt", &ours_ns),
            ("cedar-policy 4", &cedar_ns),
            ("regorus 0.14", &rego_ns),
        ] {
            let mean = samples.iter().sum::<u64>() / samples.len() as u64;
            let p50 = percentile(samples, 0.5);
            table.push(format!(
                "| {size} | {name} | {} | {} | {} | {:.1}× |",
                show(p50),
                show(percentile(samples, 0.99)),
                show(mean),
                p50 as f64 / base as f64
            ));
        }
    }
    criterion.final_summary();
    println!("\nPer-decision latency (each decision timed on its own):\n");
    for line in table {
        println!("{line}");
    }
}
