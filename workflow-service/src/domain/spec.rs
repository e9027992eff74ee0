//! The workflow spec (SPEC §5) and its validation at submit.
//!
//! A [`WorkflowDraft`] is what a user submitted (YAML/JSON text or the proto
//! message); [`validate_workflow`] turns it into a [`WorkflowSpec`] or
//! reports every problem at once as field violations: unique step names,
//! known `depends_on`, no cycles, templates that refer to `initial_state` or
//! to steps this step depends on (directly or transitively), capability id
//! syntax, approval config exactly on HUMAN_APPROVAL steps, retry, timeout and
//! option bounds. Nothing is accepted that the engine does not enforce.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use airt_kit::config::parse_duration;
use airt_kit::status::FieldViolation;
use airt_kit::vocabulary::is_capability_id;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template::{placeholders, placeholders_in, root_of};

/// Most steps a workflow may have.
pub const MAX_STEPS: usize = 1000;
/// Highest `max_parallel` accepted.
pub const MAX_PARALLEL: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepType {
    Action,
    HumanApproval,
}

// ---- drafts --------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataDraft {
    pub owner: String,
    pub environment: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptionsDraft {
    pub auto_rollback: Option<bool>,
    pub preflight: Option<bool>,
    pub max_duration: Option<String>,
    pub max_parallel: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryDraft {
    pub max_attempts: Option<i64>,
    pub initial_backoff: Option<String>,
    pub multiplier: Option<f64>,
    pub max_backoff: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompensationDraft {
    pub capability: String,
    pub inputs: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalDraft {
    pub approver_roles: Vec<String>,
    pub timeout: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepDraft {
    pub name: String,
    #[serde(rename = "type")]
    pub step_type: Option<StepType>,
    pub agent: String,
    pub capability: String,
    pub inputs: Map<String, Value>,
    pub depends_on: Vec<String>,
    pub compensation: Option<CompensationDraft>,
    pub retry: Option<RetryDraft>,
    pub timeout: Option<String>,
    pub approval: Option<ApprovalDraft>,
}

/// A workflow as submitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkflowDraft {
    pub name: String,
    pub version: String,
    pub description: String,
    pub metadata: MetadataDraft,
    pub initial_state: Map<String, Value>,
    pub options: OptionsDraft,
    pub steps: Vec<StepDraft>,
}

impl WorkflowDraft {
    /// Parses the YAML (or JSON) form; unknown fields are refused with line
    /// and column.
    pub fn from_text(text: &str) -> Result<Self, FieldViolation> {
        airt_kit::limits::parse_yaml(text)
            .map_err(|description| FieldViolation::new("spec_text", description))
    }
}

// ---- the validated spec --------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub multiplier: f64,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepCompensation {
    pub capability: String,
    pub inputs: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalConfig {
    pub approver_roles: Vec<String>,
    pub timeout: Option<Duration>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub name: String,
    pub step_type: StepType,
    pub agent: String,
    /// Empty for HUMAN_APPROVAL steps.
    pub capability: String,
    pub inputs: Map<String, Value>,
    pub depends_on: Vec<String>,
    pub compensation: Option<StepCompensation>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub approval: Option<ApprovalConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowOptions {
    pub auto_rollback: bool,
    pub preflight: bool,
    pub max_duration: Option<Duration>,
    pub max_parallel: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSpec {
    pub name: String,
    pub version: String,
    pub description: String,
    pub owner: String,
    pub environment: String,
    pub tags: Vec<String>,
    pub initial_state: Map<String, Value>,
    pub options: WorkflowOptions,
    /// In a topological order (every step after its dependencies), ties
    /// broken by submission order.
    pub steps: Vec<StepSpec>,
}

struct Problems(Vec<FieldViolation>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(
            format!("spec.{}", field.into()),
            description,
        ));
    }

    fn duration(&mut self, field: String, text: &Option<String>) -> Option<Duration> {
        let text = text.as_ref()?;
        match parse_duration(text) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.add(field, "must be longer than zero");
                None
            }
            Err(e) => {
                self.add(field, e);
                None
            }
        }
    }
}

fn valid_step_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Validates a draft: the spec (steps in topological order) or every problem.
pub fn validate_workflow(draft: &WorkflowDraft) -> Result<WorkflowSpec, Vec<FieldViolation>> {
    let mut p = Problems(Vec::new());
    let options = check_header(draft, &mut p);
    let index = check_names(draft, &mut p);
    let order = topological_order(draft, &index, &mut p);
    let ancestors = ancestors(draft, &index, &order);
    let steps: Vec<StepSpec> = draft
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            // Templates may use initial_state and the steps this one depends on.
            let reachable = ancestors
                .get(step.name.as_str())
                .cloned()
                .unwrap_or_default();
            let scope = TemplateScope {
                draft,
                index: &index,
                reachable: &reachable,
            };
            check_step(i, step, &scope, &mut p)
        })
        .collect();
    if !p.0.is_empty() {
        return Err(p.0);
    }
    let ordered = order.iter().map(|&i| steps[i].clone()).collect();
    Ok(WorkflowSpec {
        name: draft.name.clone(),
        version: draft.version.clone(),
        description: draft.description.clone(),
        owner: draft.metadata.owner.clone(),
        environment: draft.metadata.environment.clone(),
        tags: draft.metadata.tags.clone(),
        initial_state: draft.initial_state.clone(),
        options,
        steps: ordered,
    })
}

/// Name, version, step count, options, and whether what is stored can be
/// served back (bounded in size and depth).
fn check_header(draft: &WorkflowDraft, p: &mut Problems) -> WorkflowOptions {
    use airt_kit::limits::{MAX_STORED_BYTES, MAX_STORED_DEPTH, check_storable};
    if draft.name.trim().is_empty() {
        p.add("name", "is required");
    }
    if !draft.version.is_empty() && semver_like(&draft.version).is_none() {
        p.add(
            "version",
            format!("{:?} is not a semantic version (e.g. 1.0.0)", draft.version),
        );
    }
    if draft.steps.is_empty() {
        p.add("steps", "a workflow needs at least one step");
    }
    if draft.steps.len() > MAX_STEPS {
        p.add("steps", format!("at most {MAX_STEPS} steps"));
    }
    let max_parallel = match draft.options.max_parallel {
        None => 4,
        Some(n) if (1..=i64::from(MAX_PARALLEL)).contains(&n) => n as u32,
        Some(n) => {
            p.add(
                "options.max_parallel",
                format!("{n} is outside 1..={MAX_PARALLEL}"),
            );
            4
        }
    };
    let state = Value::Object(draft.initial_state.clone());
    if let Err(why) = check_storable(&state, MAX_STORED_BYTES, MAX_STORED_DEPTH) {
        p.add("initial_state", why);
    }
    for (i, step) in draft.steps.iter().enumerate() {
        let inputs = Value::Object(step.inputs.clone());
        if let Err(why) = check_storable(&inputs, MAX_STORED_BYTES, MAX_STORED_DEPTH) {
            p.add(format!("steps[{i}].inputs"), why);
        }
    }
    WorkflowOptions {
        auto_rollback: draft.options.auto_rollback.unwrap_or(true),
        preflight: draft.options.preflight.unwrap_or(true),
        max_duration: p.duration("options.max_duration".into(), &draft.options.max_duration),
        max_parallel,
    }
}

/// Step names (valid, unique, not state keys) and dependencies (known, not
/// itself, not twice); the index of each valid name.
fn check_names<'d>(draft: &'d WorkflowDraft, p: &mut Problems) -> HashMap<&'d str, usize> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in draft.steps.iter().enumerate() {
        if !valid_step_name(&step.name) {
            p.add(
                format!("steps[{i}].name"),
                format!("{:?}: step names are [a-z0-9_]+ (at most 64)", step.name),
            );
        } else if index.insert(step.name.as_str(), i).is_some() {
            p.add(
                format!("steps[{i}].name"),
                format!("duplicate step name {:?}", step.name),
            );
        }
        if draft.initial_state.contains_key(&step.name) {
            p.add(
                format!("steps[{i}].name"),
                format!(
                    "{:?} is also an initial_state key; templates would be ambiguous",
                    step.name
                ),
            );
        }
    }
    for (i, step) in draft.steps.iter().enumerate() {
        let mut seen = HashSet::new();
        for dep in &step.depends_on {
            let problem = if dep == &step.name {
                "a step cannot depend on itself".to_owned()
            } else if !index.contains_key(dep.as_str()) {
                format!("unknown step {dep:?}")
            } else if !seen.insert(dep) {
                format!("{dep:?} listed twice")
            } else {
                continue;
            };
            p.add(format!("steps[{i}].depends_on"), problem);
        }
    }
    index
}

/// What a step's templates may refer to.
struct TemplateScope<'a> {
    draft: &'a WorkflowDraft,
    index: &'a HashMap<&'a str, usize>,
    /// The steps this one depends on, directly or transitively.
    reachable: &'a HashSet<&'a str>,
}

impl TemplateScope<'_> {
    /// Every placeholder of `value` names an `initial_state` key, a step
    /// this one depends on, or `also` (a compensation's own step).
    fn check(&self, p: &mut Problems, field: String, value: &Value, also: Option<&str>) {
        let paths = match placeholders(value) {
            Ok(paths) => paths,
            Err(e) => return p.add(field, e.to_string()),
        };
        for path in paths {
            let root = root_of(&path);
            let known = self.draft.initial_state.contains_key(root)
                || self.reachable.contains(root)
                || also == Some(root);
            if !known {
                let hint = if self.index.contains_key(root) {
                    " (add it to depends_on)"
                } else {
                    ""
                };
                p.add(field.clone(), format!("{{{{{path}}}}} refers to neither initial_state nor a step this step depends on{hint}"));
            }
        }
    }
}

/// One step: its kind, templates, compensation, retry, timeout and approval.
fn check_step(i: usize, step: &StepDraft, scope: &TemplateScope<'_>, p: &mut Problems) -> StepSpec {
    let at = |f: &str| format!("steps[{i}].{f}");
    let step_type = step.step_type.unwrap_or(StepType::Action);
    check_kind(step, step_type, &at, p);
    scope.check(p, at("inputs"), &Value::Object(step.inputs.clone()), None);
    let compensation = step.compensation.as_ref().map(|c| {
        if !is_capability_id(&c.capability) {
            p.add(
                at("compensation.capability"),
                format!("{:?} is not a capability id", c.capability),
            );
        }
        // A compensation may also use the outputs of its own step.
        let inputs = Value::Object(c.inputs.clone());
        scope.check(p, at("compensation.inputs"), &inputs, Some(&step.name));
        StepCompensation {
            capability: c.capability.clone(),
            inputs: c.inputs.clone(),
        }
    });
    let retry = step
        .retry
        .as_ref()
        .map_or_else(RetryPolicy::default, |r| check_retry(r, &at, p));
    let timeout = p.duration(at("timeout"), &step.timeout);
    let approval = step.approval.as_ref().map(|a| {
        if let Ok(paths) = placeholders_in(&a.message) {
            for path in paths {
                let root = root_of(&path);
                if !scope.draft.initial_state.contains_key(root) && !scope.reachable.contains(root) {
                    p.add(at("approval.message"), format!("{{{{{path}}}}} refers to neither initial_state nor a step this step depends on"));
                }
            }
        }
        if a.approver_roles.iter().any(|r| r.trim().is_empty()) {
            p.add(at("approval.approver_roles"), "roles must not be empty");
        }
        ApprovalConfig {
            approver_roles: if a.approver_roles.is_empty() { vec!["approver".to_owned()] } else { a.approver_roles.clone() },
            timeout: p.duration(at("approval.timeout"), &a.timeout),
            message: a.message.clone(),
        }
    });
    StepSpec {
        name: step.name.clone(),
        step_type,
        agent: step.agent.clone(),
        capability: step.capability.clone(),
        inputs: step.inputs.clone(),
        depends_on: step.depends_on.clone(),
        compensation,
        retry,
        timeout,
        approval,
    }
}

/// ACTION steps name a capability and take no approval config;
/// HUMAN_APPROVAL steps take one and run nothing.
fn check_kind(
    step: &StepDraft,
    step_type: StepType,
    at: &dyn Fn(&str) -> String,
    p: &mut Problems,
) {
    match step_type {
        StepType::Action => {
            if step.capability.is_empty() {
                p.add(at("capability"), "is required for ACTION steps");
            } else if !is_capability_id(&step.capability) {
                p.add(
                    at("capability"),
                    format!("{:?} is not a capability id", step.capability),
                );
            }
            if step.approval.is_some() {
                p.add(at("approval"), "only HUMAN_APPROVAL steps take an approval config (risky actions get approvals from policy)");
            }
        }
        StepType::HumanApproval => {
            if step.approval.is_none() {
                p.add(at("approval"), "is required for HUMAN_APPROVAL steps");
            }
            if !step.capability.is_empty() {
                p.add(at("capability"), "HUMAN_APPROVAL steps run no capability");
            }
            if step.compensation.is_some() {
                p.add(
                    at("compensation"),
                    "HUMAN_APPROVAL steps have nothing to compensate",
                );
            }
        }
    }
}

fn check_retry(r: &RetryDraft, at: &dyn Fn(&str) -> String, p: &mut Problems) -> RetryPolicy {
    let max_attempts = match r.max_attempts {
        None => 1,
        Some(n) if (1..=100).contains(&n) => n as u32,
        Some(n) => {
            p.add(
                at("retry.max_attempts"),
                format!("{n}: total attempts including the first, 1..=100 (1 means no retry)"),
            );
            1
        }
    };
    let multiplier = r.multiplier.unwrap_or(2.0);
    if !(1.0..=10.0).contains(&multiplier) {
        p.add(at("retry.multiplier"), "must be between 1.0 and 10.0");
    }
    let defaults = RetryPolicy::default();
    RetryPolicy {
        max_attempts,
        initial_backoff: p
            .duration(at("retry.initial_backoff"), &r.initial_backoff)
            .unwrap_or(defaults.initial_backoff),
        multiplier,
        max_backoff: p
            .duration(at("retry.max_backoff"), &r.max_backoff)
            .unwrap_or(defaults.max_backoff),
    }
}

fn semver_like(version: &str) -> Option<()> {
    let core = version.split(['-', '+']).next()?;
    let parts: Vec<&str> = core.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    .then_some(())
}

/// Kahn's algorithm, ties by submission order; reports the steps of a cycle.
fn topological_order(
    draft: &WorkflowDraft,
    index: &HashMap<&str, usize>,
    p: &mut Problems,
) -> Vec<usize> {
    let n = draft.steps.len();
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, step) in draft.steps.iter().enumerate() {
        for dep in step
            .depends_on
            .iter()
            .filter_map(|d| index.get(d.as_str()))
            .collect::<BTreeSet<_>>()
        {
            if *dep != i {
                indegree[i] += 1;
                dependents[*dep].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(&next) = ready.iter().next() {
        ready.remove(&next);
        order.push(next);
        for &d in &dependents[next] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() < n {
        let cyclic: Vec<&str> = (0..n)
            .filter(|i| !order.contains(i))
            .map(|i| draft.steps[i].name.as_str())
            .collect();
        p.add(
            "steps",
            format!("dependency cycle among [{}]", cyclic.join(", ")),
        );
        let rest: Vec<usize> = (0..n).filter(|i| !order.contains(i)).collect();
        order.extend(rest);
    }
    order
}

/// For each step, every step it depends on directly or transitively.
fn ancestors<'a>(
    draft: &'a WorkflowDraft,
    index: &HashMap<&str, usize>,
    order: &[usize],
) -> HashMap<&'a str, HashSet<&'a str>> {
    let mut result: HashMap<&str, HashSet<&str>> = HashMap::new();
    for &i in order {
        let step = &draft.steps[i];
        let mut all = HashSet::new();
        for dep in &step.depends_on {
            if index.contains_key(dep.as_str()) && dep != &step.name {
                all.insert(dep.as_str());
                if let Some(more) = result.get(dep.as_str()) {
                    all.extend(more.iter().copied());
                }
            }
        }
        result.insert(step.name.as_str(), all);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONBOARDING: &str = r#"
name: customer_onboarding
version: 1.0.0
metadata: {owner: "user:alice", environment: prod, tags: [sales]}
initial_state: {customer_name: Acme}
options: {auto_rollback: true, preflight: true, max_duration: 1h, max_parallel: 4}
steps:
  - name: director_approval
    type: HUMAN_APPROVAL
    depends_on: [create_account]
    approval: {approver_roles: [sales_director], timeout: 30m, message: "Approve {{customer_name}} ({{create_account.account_id}})"}
  - name: create_account
    agent: account_manager
    capability: crm.create_account
    inputs: {customer_name: "{{customer_name}}"}
    compensation: {capability: crm.delete_account, inputs: {account_id: "{{create_account.account_id}}"}}
    retry: {max_attempts: 3, initial_backoff: 1s, multiplier: 2.0, max_backoff: 30s}
    timeout: 300s
"#;

    fn fields(text: &str) -> Vec<String> {
        let draft = WorkflowDraft::from_text(text).expect("parses");
        validate_workflow(&draft)
            .expect_err("invalid")
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn the_spec_example_validates_with_steps_in_dependency_order() {
        let spec = validate_workflow(&WorkflowDraft::from_text(ONBOARDING).expect("parses"))
            .expect("valid");
        assert_eq!(
            spec.steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["create_account", "director_approval"]
        );
        let create = &spec.steps[0];
        assert_eq!(create.retry.max_attempts, 3);
        assert_eq!(create.timeout, Some(Duration::from_secs(300)));
        assert_eq!(
            spec.steps[1].approval.as_ref().map(|a| a.timeout),
            Some(Some(Duration::from_secs(1800)))
        );
        assert_eq!(spec.options.max_duration, Some(Duration::from_secs(3600)));
        assert!(spec.options.preflight && spec.options.auto_rollback);
    }

    #[test]
    fn defaults_are_explicit_and_zero_retries_is_not_three() {
        let spec = validate_workflow(
            &WorkflowDraft::from_text(
                "name: w\nsteps:\n  - {name: a, capability: io.fs.read_file}\n",
            )
            .expect("parses"),
        )
        .expect("valid");
        assert_eq!(spec.steps[0].retry.max_attempts, 1, "no retry unless asked");
        assert_eq!(
            (
                spec.options.max_parallel,
                spec.options.preflight,
                spec.options.auto_rollback
            ),
            (4, true, true)
        );
        assert_eq!(spec.steps[0].approval, None);
        assert_eq!(
            fields("name: w\nsteps:\n  - {name: a, capability: x.y, retry: {max_attempts: 0}}\n"),
            ["spec.steps[0].retry.max_attempts"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = fields(
            r#"
steps:
  - {name: a, capability: "Bad Id", depends_on: [ghost, a]}
  - {name: a, capability: x.y}
  - {name: "B!", capability: x.y, timeout: 5 fortnights}
  - {name: approve, type: HUMAN_APPROVAL}
  - {name: c, capability: x.y, inputs: {v: "{{missing}}", w: "{{d.out}}"}, approval: {message: hi}}
  - {name: d, capability: x.y}
"#,
        );
        assert_eq!(
            found,
            [
                "spec.name",
                "spec.steps[1].name",
                "spec.steps[2].name",
                "spec.steps[0].depends_on",
                "spec.steps[0].depends_on",
                "spec.steps[0].capability",
                "spec.steps[2].timeout",
                "spec.steps[3].approval",
                "spec.steps[4].approval",
                "spec.steps[4].inputs",
                "spec.steps[4].inputs",
            ]
        );
    }

    #[test]
    fn cycles_are_refused_with_their_steps() {
        let draft = WorkflowDraft::from_text(
            "name: w\nsteps:\n  - {name: a, capability: x.y, depends_on: [c]}\n  - {name: b, capability: x.y, depends_on: [a]}\n  - {name: c, capability: x.y, depends_on: [b]}\n  - {name: d, capability: x.y}\n",
        )
        .expect("parses");
        let problems = validate_workflow(&draft).expect_err("cycle");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].description.contains("cycle among [a, b, c]"),
            "{}",
            problems[0].description
        );
    }

    #[test]
    fn templates_may_use_transitive_dependencies_and_compensations_their_own_step() {
        let ok = "name: w\ninitial_state: {k: 1}\nsteps:\n  - {name: a, capability: x.y}\n  - {name: b, capability: x.y, depends_on: [a]}\n  - {name: c, capability: x.y, depends_on: [b], inputs: {v: '{{a.out}} {{k}}'}, compensation: {capability: x.undo, inputs: {id: '{{c.id}}'}}}\n";
        assert!(validate_workflow(&WorkflowDraft::from_text(ok).expect("parses")).is_ok());
        let problems = validate_workflow(&WorkflowDraft::from_text("name: w\nsteps:\n  - {name: a, capability: x.y}\n  - {name: b, capability: x.y, inputs: {v: '{{a.out}}'}}\n").expect("parses"))
            .expect_err("not a dependency");
        assert!(
            problems[0].description.contains("add it to depends_on"),
            "{}",
            problems[0].description
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let error = WorkflowDraft::from_text("name: w\nsteps:\n  - name: a\n    capabilty: x.y\n")
            .expect_err("typo");
        assert!(
            error.description.contains("line 4") && error.description.contains("capabilty"),
            "{}",
            error.description
        );
    }
}
