//! Equivalent policy sets for three engines, and a request corpus.
//!
//! A set of N rules is generated deterministically: the first 20% DENY, the
//! next 20% REQUIRE_APPROVAL, the rest ALLOW, default DENY. With that order,
//! first-match-wins equals Cedar's "forbid beats permit" (approval permits
//! carry `@decision("REQUIRE_APPROVAL")`) and a Rego `else` chain
//! (deny → approval → allow → DENY). Capability ids have two segments
//! (`nsK.vJ`) so `nsK.*` means the same everywhere: a prefix in ours, `like
//! "nsK.*"` in Cedar, `startswith(_, "nsK.")` in Rego. Escalation is off in
//! our sets because the others have no such notion. Two rules in five also
//! carry a condition on the request's inputs: a numeric comparison
//! (`amount > N`, `amount <= N`), membership of a string in a set
//! (`currency in [...]`), or a pattern on a path (`matches "dirK/.*"` in
//! ours, `like "dirK/*"` in Cedar, `regex.match` in Rego).

use std::fmt::Write as _;

pub mod workflows;

/// The service binaries' allocator: the benches run services in-process,
/// and they must allocate as the shipped binaries do (the system allocator
/// cost `Evaluate` 10–15% of its decisions/s). Every binary here links this
/// library, so this is their allocator too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A tiny deterministic generator (SplitMix64), so every run and every
/// engine sees the same sets and requests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const RISKS: [&str; 4] = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];
pub const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
const DIRECTORIES: u64 = 10;

/// A condition on the request's inputs.
#[derive(Debug, Clone)]
pub enum InputCondition {
    AmountAbove(i64),
    AmountAtMost(i64),
    CurrencyIn(Vec<&'static str>),
    PathUnder(u64),
}

impl InputCondition {
    fn generate(rng: &mut Rng) -> Self {
        match rng.below(4) {
            0 => Self::AmountAbove(rng.below(1000) as i64),
            1 => Self::AmountAtMost(rng.below(1000) as i64),
            2 => {
                let mut chosen: Vec<&'static str> = CURRENCIES
                    .iter()
                    .copied()
                    .filter(|_| rng.below(2) == 0)
                    .collect();
                if chosen.is_empty() {
                    chosen.push(CURRENCIES[rng.below(4) as usize]);
                }
                Self::CurrencyIn(chosen)
            }
            _ => Self::PathUnder(rng.below(DIRECTORIES)),
        }
    }

    /// Inputs `(amount, currency, path)` that satisfy the condition.
    fn satisfy(&self, rng: &mut Rng, request: &mut GeneratedRequest) {
        match self {
            Self::AmountAbove(n) => request.amount = n + 1 + rng.below(100) as i64,
            Self::AmountAtMost(n) => request.amount = n - rng.below(100) as i64,
            Self::CurrencyIn(set) => request.currency = set[rng.below(set.len() as u64) as usize],
            Self::PathUnder(dir) => request.path = format!("dir{dir}/f{}", rng.below(100)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Deny,
    Approval,
    Allow,
}

#[derive(Debug, Clone)]
pub enum CapabilityCondition {
    Exact(String),
    Namespace(String),
}

#[derive(Debug, Clone)]
pub struct GeneratedRule {
    pub id: String,
    pub effect: Effect,
    pub capability: CapabilityCondition,
    /// `agent` or `user`; `None` matches both.
    pub principal_type: Option<&'static str>,
    /// `None` matches every risk level.
    pub risks: Option<Vec<&'static str>>,
    pub input: Option<InputCondition>,
}

/// One request, in engine-neutral form.
#[derive(Debug, Clone)]
pub struct GeneratedRequest {
    pub principal_type: &'static str,
    pub principal_id: String,
    pub capability: String,
    pub risk: &'static str,
    pub amount: i64,
    pub currency: &'static str,
    pub path: String,
}

fn namespaces(rules: usize) -> u64 {
    (rules as u64 / 4).max(2)
}

pub fn generate_rules(count: usize, seed: u64) -> Vec<GeneratedRule> {
    let mut rng = Rng::new(seed);
    let ns = namespaces(count);
    (0..count)
        .map(|i| {
            let effect = if i < count / 5 {
                Effect::Deny
            } else if i < 2 * count / 5 {
                Effect::Approval
            } else {
                Effect::Allow
            };
            let namespace = rng.below(ns);
            let capability = if rng.below(10) < 7 {
                CapabilityCondition::Exact(format!("ns{namespace}.v{}", rng.below(8)))
            } else {
                CapabilityCondition::Namespace(format!("ns{namespace}"))
            };
            let principal_type = match rng.below(4) {
                0 => Some("agent"),
                1 => Some("user"),
                _ => None,
            };
            let risks = (rng.below(2) == 0).then(|| {
                let mut chosen: Vec<&'static str> = RISKS
                    .iter()
                    .copied()
                    .filter(|_| rng.below(2) == 0)
                    .collect();
                if chosen.is_empty() {
                    chosen.push(RISKS[rng.below(4) as usize]);
                }
                chosen
            });
            let input = (rng.below(5) < 2).then(|| InputCondition::generate(&mut rng));
            GeneratedRule {
                id: format!("r{i}"),
                effect,
                capability,
                principal_type,
                risks,
                input,
            }
        })
        .collect()
}

/// `count` requests: 40% name a namespace no rule mentions (so they match
/// no rule); the rest are built to satisfy one randomly chosen rule (an
/// earlier rule may decide them first).
pub fn generate_requests(
    rules: &[GeneratedRule],
    count: usize,
    seed: u64,
) -> Vec<GeneratedRequest> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let principal_id = format!("p{}", rng.below(100));
            let amount = rng.below(1000) as i64;
            let currency = CURRENCIES[rng.below(4) as usize];
            let path = format!("dir{}/f{}", rng.below(DIRECTORIES), rng.below(100));
            if rules.is_empty() || rng.below(10) < 4 {
                return GeneratedRequest {
                    principal_type: if rng.below(2) == 0 { "agent" } else { "user" },
                    principal_id,
                    capability: format!("zz{}.v{}", rng.below(50), rng.below(8)),
                    risk: RISKS[rng.below(4) as usize],
                    amount,
                    currency,
                    path,
                };
            }
            let rule = &rules[rng.below(rules.len() as u64) as usize];
            let capability = match &rule.capability {
                CapabilityCondition::Exact(id) => id.clone(),
                CapabilityCondition::Namespace(ns) => format!("{ns}.v{}", rng.below(8)),
            };
            let principal_type =
                rule.principal_type
                    .unwrap_or(if rng.below(2) == 0 { "agent" } else { "user" });
            let risk = match &rule.risks {
                Some(risks) => risks[rng.below(risks.len() as u64) as usize],
                None => RISKS[rng.below(4) as usize],
            };
            let mut request = GeneratedRequest {
                principal_type,
                principal_id,
                capability,
                risk,
                amount,
                currency,
                path,
            };
            if let Some(condition) = &rule.input {
                condition.satisfy(&mut rng, &mut request);
            }
            request
        })
        .collect()
}

/// Our YAML form.
pub fn airt_yaml(rules: &[GeneratedRule]) -> String {
    let mut out = String::from("default: DENY\nescalate_high_risk: false\nrules:\n");
    for rule in rules {
        let decision = match rule.effect {
            Effect::Deny => "DENY",
            Effect::Approval => "REQUIRE_APPROVAL",
            Effect::Allow => "ALLOW",
        };
        let capability = match &rule.capability {
            CapabilityCondition::Exact(id) => id.clone(),
            CapabilityCondition::Namespace(ns) => format!("{ns}.*"),
        };
        let _ = write!(out, "  - id: {}\n    decision: {decision}\n", rule.id);
        if let Some(kind) = rule.principal_type {
            let _ = writeln!(out, "    principal: \"{kind}:*\"");
        }
        let _ = write!(out, "    when:\n      capability: \"{capability}\"\n");
        if let Some(risks) = &rule.risks {
            let _ = writeln!(out, "      risk_level: [{}]", risks.join(", "));
        }
        match &rule.input {
            None => {}
            Some(InputCondition::AmountAbove(n)) => {
                let _ = writeln!(out, "      inputs: {{amount: {{gt: {n}}}}}");
            }
            Some(InputCondition::AmountAtMost(n)) => {
                let _ = writeln!(out, "      inputs: {{amount: {{lte: {n}}}}}");
            }
            Some(InputCondition::CurrencyIn(set)) => {
                let _ = writeln!(
                    out,
                    "      inputs: {{currency: {{in: [{}]}}}}",
                    set.join(", ")
                );
            }
            Some(InputCondition::PathUnder(dir)) => {
                let _ = writeln!(out, "      inputs: {{path: {{matches: \"dir{dir}/.*\"}}}}");
            }
        }
    }
    out
}

/// Cedar: forbid for DENY, annotated permit for approval, permit for ALLOW.
pub fn cedar_policies(rules: &[GeneratedRule]) -> String {
    let mut out = String::new();
    for rule in rules {
        let (annotation, effect) = match rule.effect {
            Effect::Deny => ("", "forbid"),
            Effect::Approval => ("@decision(\"REQUIRE_APPROVAL\") ", "permit"),
            Effect::Allow => ("", "permit"),
        };
        let principal = match rule.principal_type {
            Some("agent") => "principal is Agent",
            Some(_) => "principal is User",
            None => "principal",
        };
        let mut conditions = vec![match &rule.capability {
            CapabilityCondition::Exact(id) => format!("context.capability == \"{id}\""),
            CapabilityCondition::Namespace(ns) => format!("context.capability like \"{ns}.*\""),
        }];
        if let Some(risks) = &rule.risks {
            let any: Vec<String> = risks
                .iter()
                .map(|r| format!("context.risk == \"{r}\""))
                .collect();
            conditions.push(format!("({})", any.join(" || ")));
        }
        match &rule.input {
            None => {}
            Some(InputCondition::AmountAbove(n)) => {
                conditions.push(format!("context.amount > {n}"))
            }
            Some(InputCondition::AmountAtMost(n)) => {
                conditions.push(format!("context.amount <= {n}"));
            }
            Some(InputCondition::CurrencyIn(set)) => {
                let quoted: Vec<String> = set.iter().map(|c| format!("\"{c}\"")).collect();
                conditions.push(format!(
                    "[{}].contains(context.currency)",
                    quoted.join(", ")
                ));
            }
            Some(InputCondition::PathUnder(dir)) => {
                conditions.push(format!("context.path like \"dir{dir}/*\""));
            }
        }
        let _ = writeln!(
            out,
            "@id(\"{}\") {annotation}{effect}({principal}, action, resource) when {{ {} }};",
            rule.id,
            conditions.join(" && ")
        );
    }
    out
}

/// Rego (v1 syntax): helper rules per block, combined by an `else` chain.
pub fn rego_policy(rules: &[GeneratedRule]) -> String {
    let mut out = String::from(
        "package airt\n\nimport rego.v1\n\ndecision := \"DENY\" if deny\nelse := \"REQUIRE_APPROVAL\" if approval\nelse := \"ALLOW\" if allow\nelse := \"DENY\"\n\n",
    );
    for rule in rules {
        let head = match rule.effect {
            Effect::Deny => "deny",
            Effect::Approval => "approval",
            Effect::Allow => "allow",
        };
        let mut body = vec![match &rule.capability {
            CapabilityCondition::Exact(id) => format!("input.capability == \"{id}\""),
            CapabilityCondition::Namespace(ns) => {
                format!("startswith(input.capability, \"{ns}.\")")
            }
        }];
        if let Some(kind) = rule.principal_type {
            body.push(format!("input.principal_type == \"{kind}\""));
        }
        if let Some(risks) = &rule.risks {
            let set: Vec<String> = risks.iter().map(|r| format!("\"{r}\"")).collect();
            body.push(format!("input.risk in {{{}}}", set.join(", ")));
        }
        match &rule.input {
            None => {}
            Some(InputCondition::AmountAbove(n)) => body.push(format!("input.amount > {n}")),
            Some(InputCondition::AmountAtMost(n)) => body.push(format!("input.amount <= {n}")),
            Some(InputCondition::CurrencyIn(set)) => {
                let quoted: Vec<String> = set.iter().map(|c| format!("\"{c}\"")).collect();
                body.push(format!("input.currency in {{{}}}", quoted.join(", ")));
            }
            Some(InputCondition::PathUnder(dir)) => {
                body.push(format!("regex.match(`^dir{dir}/.*$`, input.path)"));
            }
        }
        let _ = writeln!(out, "{head} if {{\n  {}\n}}\n", body.join("\n  "));
    }
    out
}

/// CPU time used so far by process `pid` (`"self"` for this one), all its
/// threads, from `/proc/<pid>/task/*/schedstat` (nanoseconds).
pub fn cpu_time(pid: &str) -> std::time::Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    let nanos = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    std::time::Duration::from_nanos(nanos)
}
