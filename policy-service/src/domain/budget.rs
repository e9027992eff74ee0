//! Budgets: a rule may allow at most `max` actions per window.
//!
//! ```yaml
//! - id: email-budget
//!   when: {capability: email.send}
//!   decision: ALLOW
//!   budget: {max: 20, per: 1h, by: [agent], over_budget: REQUIRE_APPROVAL}
//! ```
//!
//! Windows are fixed: aligned to multiples of `per` since the Unix epoch
//! (an hourly budget resets on the hour, UTC). Within one window the count
//! never exceeds `max`; two adjacent windows may together allow up to
//! `2 × max` within one `per` around their boundary. The count lives in the
//! policy database, so every replica sees one count; the engine only says
//! which budget a decision draws on, and the service counts.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::context::{Decision, PolicyContext};

/// Longest window: 31 days.
pub const MAX_PER_SECS: u64 = 31 * 24 * 3600;
/// Largest `max`.
pub const MAX_BUDGET: u64 = 1_000_000_000;

/// What a budget is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    Principal,
    Agent,
    Capability,
    Workflow,
}

impl BudgetScope {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "principal" => Self::Principal,
            "agent" => Self::Agent,
            "capability" => Self::Capability,
            "workflow" => Self::Workflow,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Principal => "principal",
            Self::Agent => "agent",
            Self::Capability => "capability",
            Self::Workflow => "workflow",
        }
    }

    fn value(self, ctx: &PolicyContext) -> &str {
        match self {
            Self::Principal => &ctx.principal,
            Self::Agent => &ctx.agent,
            Self::Capability => &ctx.capability_id,
            Self::Workflow => &ctx.workflow_id,
        }
    }
}

/// A budget as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetDoc {
    max: u64,
    per: String,
    #[serde(default)]
    by: Vec<String>,
    #[serde(default)]
    over_budget: Option<String>,
}

/// A compiled budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub max: u32,
    pub per_secs: u64,
    pub by: Vec<BudgetScope>,
    pub over_budget: Decision,
}

/// `90s`, `30m`, `1h`, `7d`.
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    number.checked_mul(scale)
}

impl Budget {
    /// Compiles a rule's budget; problems are `(field, message)` relative
    /// to the rule's `budget`.
    pub fn compile(doc: BudgetDoc, decision: Decision) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        if doc.max == 0 || doc.max > MAX_BUDGET {
            problems.push((
                "budget.max".into(),
                format!("must be 1 to {MAX_BUDGET} (a rule that allows nothing is a DENY rule)"),
            ));
        }
        let per = parse_duration(&doc.per).filter(|s| (1..=MAX_PER_SECS).contains(s));
        if per.is_none() {
            problems.push((
                "budget.per".into(),
                format!(
                    "{:?}: expected a duration like 90s, 30m, 1h or 7d, at most 31d",
                    doc.per
                ),
            ));
        }
        let mut by = Vec::new();
        for name in &doc.by {
            match BudgetScope::parse(name) {
                Some(scope) if !by.contains(&scope) => by.push(scope),
                Some(_) => problems.push(("budget.by".into(), format!("{name:?} is listed twice"))),
                None => problems.push((
                    "budget.by".into(),
                    format!("{name:?}: expected principal, agent, capability or workflow"),
                )),
            }
        }
        let over_budget = match doc.over_budget.as_deref() {
            None => Decision::Deny,
            Some(text) => Decision::parse(text).unwrap_or_else(|| {
                problems.push((
                    "budget.over_budget".into(),
                    format!("{text:?}: expected DENY or REQUIRE_APPROVAL"),
                ));
                Decision::Deny
            }),
        };
        match decision {
            Decision::Deny => problems.push((
                "budget".into(),
                "a DENY rule has nothing to budget; budgets limit ALLOW or REQUIRE_APPROVAL".into(),
            )),
            _ if over_budget == Decision::Allow || over_budget == decision => problems.push((
                "budget.over_budget".into(),
                format!("must be stricter than the rule's decision {decision}"),
            )),
            _ => {}
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            max: u32::try_from(doc.max).unwrap_or(u32::MAX),
            per_secs: per.unwrap_or(1),
            by,
            over_budget,
        })
    }

    /// The budget's key for `ctx`: `principal=user:alice,agent=mailer`.
    pub fn scope(&self, ctx: &PolicyContext) -> String {
        self.by
            .iter()
            .map(|scope| format!("{}={}", scope.name(), scope.value(ctx)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The window `at` falls in: start and end, seconds since the epoch.
    pub fn window(&self, at: jiff::Timestamp) -> (i64, i64) {
        let per = i64::try_from(self.per_secs).unwrap_or(i64::MAX);
        let start = at.as_second().div_euclid(per) * per;
        (start, start.saturating_add(per))
    }
}

/// `20 per 1h`, for reasons.
fn per_text(per_secs: u64) -> String {
    match per_secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The budget one decision draws on, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetUse {
    pub rule_id: Arc<str>,
    pub scope: String,
    pub max: u32,
    pub per_secs: u64,
    pub over_budget: Decision,
    /// Seconds since the epoch.
    pub window_start: i64,
    pub window_end: i64,
    /// Counted in the window after this decision.
    pub used: u32,
    pub exceeded: bool,
    /// This decision consumed one unit.
    pub counted: bool,
}

impl BudgetUse {
    pub fn new(rule_id: Arc<str>, budget: &Budget, ctx: &PolicyContext) -> Self {
        let (window_start, window_end) = budget.window(ctx.time);
        Self {
            rule_id,
            scope: budget.scope(ctx),
            max: budget.max,
            per_secs: budget.per_secs,
            over_budget: budget.over_budget,
            window_start,
            window_end,
            used: 0,
            exceeded: false,
            counted: false,
        }
    }

    pub fn remaining(&self) -> u32 {
        self.max.saturating_sub(self.used)
    }

    /// Why the decision is the over-budget one.
    pub fn reason(&self) -> String {
        let scope = if self.scope.is_empty() {
            String::new()
        } else {
            format!(" for {}", self.scope)
        };
        let end = jiff::Timestamp::from_second(self.window_end)
            .map_or_else(|_| self.window_end.to_string(), |t| t.to_string());
        format!(
            "over budget: rule {} allows {} per {}{scope}; the window ends at {end}",
            self.rule_id,
            self.max,
            per_text(self.per_secs)
        )
    }
}

/// Settles the budget `record` draws on: `used` units counted in the
/// window after this decision, whether this decision `counted`, and
/// whether the budget was `exceeded` — then the decision becomes the
/// rule's `over_budget` one (never softer than it was).
pub fn settle(record: &mut super::DecisionRecord, used: u32, counted: bool, exceeded: bool) {
    let Some(budget) = record.budget.as_mut() else {
        return;
    };
    budget.used = used.min(budget.max);
    budget.counted = counted;
    budget.exceeded = exceeded;
    if exceeded {
        let stricter = match (record.decision, budget.over_budget) {
            (Decision::Deny, _) | (_, Decision::Deny) => Decision::Deny,
            _ => Decision::RequireApproval,
        };
        record.reason = budget.reason().into();
        record.decision = stricter;
        record.escalated = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(yaml: &str, decision: Decision) -> Result<Budget, Vec<(String, String)>> {
        Budget::compile(serde_norway::from_str(yaml).expect("yaml"), decision)
    }

    #[test]
    fn budgets_compile_with_their_problems_named() {
        let ok = budget(
            "{max: 20, per: 1h, by: [agent, principal], over_budget: require_approval}",
            Decision::Allow,
        )
        .expect("valid");
        assert_eq!(
            (ok.max, ok.per_secs, ok.over_budget),
            (20, 3600, Decision::RequireApproval)
        );
        assert_eq!(
            budget("{max: 1, per: 7d}", Decision::Allow)
                .expect("valid")
                .over_budget,
            Decision::Deny
        );
        for (yaml, decision, field) in [
            ("{max: 0, per: 1h}", Decision::Allow, "budget.max"),
            ("{max: 5, per: 1w}", Decision::Allow, "budget.per"),
            ("{max: 5, per: 32d}", Decision::Allow, "budget.per"),
            ("{max: 5, per: 0s}", Decision::Allow, "budget.per"),
            (
                "{max: 5, per: 1h, by: [tenant]}",
                Decision::Allow,
                "budget.by",
            ),
            (
                "{max: 5, per: 1h, over_budget: ALLOW}",
                Decision::Allow,
                "budget.over_budget",
            ),
            (
                "{max: 5, per: 1h, over_budget: REQUIRE_APPROVAL}",
                Decision::RequireApproval,
                "budget.over_budget",
            ),
            ("{max: 5, per: 1h}", Decision::Deny, "budget"),
        ] {
            let problems = budget(yaml, decision).expect_err(yaml);
            assert_eq!(problems[0].0, field, "{yaml}: {problems:?}");
        }
    }

    #[test]
    fn windows_are_fixed_and_aligned_to_the_epoch() {
        let hourly = budget("{max: 2, per: 1h}", Decision::Allow).expect("valid");
        let at: jiff::Timestamp = "2026-01-14T10:59:59Z".parse().expect("time");
        let (start, end) = hourly.window(at);
        assert_eq!(
            jiff::Timestamp::from_second(start).expect("t").to_string(),
            "2026-01-14T10:00:00Z"
        );
        assert_eq!(end - start, 3600);
        let next: jiff::Timestamp = "2026-01-14T11:00:00Z".parse().expect("time");
        assert_eq!(hourly.window(next).0, end);
    }

    #[test]
    fn decisions_of_budgeted_rules_carry_their_budget_and_settle_stricter() {
        use crate::domain::{CompiledPolicySet, parse_policy_set};
        let set = CompiledPolicySet::compile(
            parse_policy_set(
                "rules:\n  - {id: capped, when: {capability: a.b}, decision: ALLOW, budget: {max: 2, per: 1m, by: [principal, workflow]}}\n  - {id: rest, decision: ALLOW}\n",
            )
            .expect("valid"),
        );
        let mut ctx = PolicyContext {
            principal: "agent:x".into(),
            roles: Vec::new(),
            agent: String::new(),
            workflow_id: "wf-1".into(),
            step_name: String::new(),
            capability_id: "a.b".into(),
            risk_level: airt_kit::vocabulary::RiskLevel::High,
            requires_approval: false,
            operation_type: None,
            inputs: Default::default(),
            environment: String::new(),
            time: "2026-01-14T10:00:30Z".parse().expect("time"),
        };
        let mut record = set.evaluate(&ctx, false);
        let budget = record.budget.clone().expect("budget");
        assert_eq!(budget.scope, "principal=agent:x,workflow=wf-1");
        assert_eq!(budget.window_end - budget.window_start, 60);
        assert_eq!(
            (record.decision, record.escalated),
            (Decision::RequireApproval, true)
        );
        settle(&mut record, 2, false, true);
        assert_eq!((record.decision, record.escalated), (Decision::Deny, false));
        ctx.capability_id = "c.d".into();
        assert!(
            set.evaluate(&ctx, false).budget.is_none(),
            "rules without budgets draw on none"
        );
    }
}
