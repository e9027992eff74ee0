//! From a submitted draft to a validated spec: structural checks, then the
//! Risk Consistency Check. Every violation is reported, not just the first.
//!
//! The Risk Consistency Check, in this order:
//! 1. `side_effects.reversible == false` ⇒ `risk.level` is HIGH or CRITICAL.
//! 2. `operation_type == DELETE` ⇒ `risk.level` is HIGH or CRITICAL (even if reversible).
//! 3. `compensation.supported == false` and `reversible == false` ⇒ `risk.level` is CRITICAL.

use std::collections::HashSet;

use airt_kit::status::FieldViolation;
use airt_kit::vocabulary::{OperationType, RiskLevel};
use serde_json::Value;

use super::Lifecycle;
use super::spec::{
    CapabilitySpec, Compensation, CompensationStrategy, Metadata, Parameter, Risk, SideEffects,
    SpecDraft,
};

/// Prefix of every Risk Consistency Check violation.
pub const RISK_CHECK_PREFIX: &str = "Risk Consistency Check Failed: ";

pub use airt_kit::vocabulary::{MAX_CAPABILITY_ID_LEN as MAX_ID_LEN, is_capability_id};

fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | 'A'..='Z' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Violations(Vec<FieldViolation>);

impl Violations {
    fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(
            format!("spec.{}", field.into()),
            description,
        ));
    }
    fn required<T>(&mut self, value: Option<T>, field: &str) -> Option<T> {
        if value.is_none() {
            self.add(field, "is required");
        }
        value
    }
}

/// A valid capability id and a name.
fn check_id_and_name(v: &mut Violations, draft: &SpecDraft) {
    if draft.id.is_empty() {
        v.add("id", "is required");
    } else if !is_capability_id(&draft.id) {
        v.add(
            "id",
            format!(
                "{:?} is not a capability id: lowercase dotted segments [a-z][a-z0-9_]*, at least two, at most {MAX_ID_LEN} characters (e.g. crm.create_account)",
                draft.id
            ),
        );
    }
    if draft.name.trim().is_empty() {
        v.add("name", "is required");
    }
}

/// A semantic version and non-empty tags.
fn check_metadata(v: &mut Violations, metadata: &super::spec::MetadataDraft) {
    if metadata.version.is_empty() {
        v.add(
            "metadata.version",
            "is required (semantic version, e.g. 1.0.0)",
        );
    } else if semver::Version::parse(&metadata.version).is_err() {
        v.add(
            "metadata.version",
            format!(
                "{:?} is not a semantic version (e.g. 1.0.0)",
                metadata.version
            ),
        );
    }
    for (i, tag) in metadata.tags.iter().enumerate() {
        if tag.trim().is_empty() {
            v.add(format!("metadata.tags[{i}]"), "must not be empty");
        }
    }
}

/// Validates a draft; returns the spec and its initial lifecycle (ACTIVE
/// unless the draft says otherwise), or every violation.
pub fn validate(draft: &SpecDraft) -> Result<(CapabilitySpec, Lifecycle), Vec<FieldViolation>> {
    let mut v = Violations(Vec::new());

    check_id_and_name(&mut v, draft);
    let operation_type = v.required(draft.operation_type, "operation_type");

    let risk = v.required(draft.risk.as_ref(), "risk");
    let level = risk.and_then(|r| v.required(r.level, "risk.level"));

    let side_effects = v.required(draft.side_effects.as_ref(), "side_effects");
    let reversible = side_effects.and_then(|s| v.required(s.reversible, "side_effects.reversible"));
    let scope = side_effects.and_then(|s| v.required(s.scope, "side_effects.scope"));

    let compensation = v.required(draft.compensation.as_ref(), "compensation");
    let supported = compensation.and_then(|c| v.required(c.supported, "compensation.supported"));
    let strategy = compensation.and_then(|c| v.required(c.strategy, "compensation.strategy"));
    let undo_capability = compensation.map_or("", |c| c.capability_id.as_str());
    check_compensation(
        &mut v,
        &draft.id,
        &draft.handler,
        supported,
        strategy,
        undo_capability,
    );

    let parameters = check_parameters(&mut v, draft);

    let returns = draft
        .returns
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if !returns.is_object() {
        v.add("returns", "must be a JSON schema object");
    }

    let metadata = v.required(draft.metadata.as_ref(), "metadata");
    if let Some(metadata) = metadata {
        check_metadata(&mut v, metadata);
    }

    check_handler(&mut v, &draft.handler);

    if let Some(level) = level {
        check_risk_consistency(&mut v, level, operation_type, reversible, supported);
    }

    match (
        operation_type,
        risk,
        level,
        reversible,
        scope,
        supported,
        strategy,
        metadata,
    ) {
        (
            Some(operation_type),
            Some(risk),
            Some(level),
            Some(reversible),
            Some(scope),
            Some(supported),
            Some(strategy),
            Some(metadata),
        ) if v.0.is_empty() => {
            let spec = CapabilitySpec {
                id: draft.id.clone(),
                name: draft.name.clone(),
                description: draft.description.clone(),
                operation_type,
                risk: Risk {
                    level,
                    justification: risk.justification.clone(),
                    requires_approval: risk.requires_approval,
                },
                side_effects: SideEffects {
                    reversible,
                    scope,
                    description: side_effects
                        .map(|s| s.description.clone())
                        .unwrap_or_default(),
                },
                compensation: Compensation {
                    supported,
                    strategy,
                    capability_id: undo_capability.to_owned(),
                },
                parameters,
                returns,
                metadata: Metadata {
                    version: metadata.version.clone(),
                    author: metadata.author.clone(),
                    tags: metadata.tags.clone(),
                    deprecated: metadata.deprecated,
                },
                handler: draft.handler.clone(),
            };
            Ok((spec, draft.lifecycle.unwrap_or(Lifecycle::Active)))
        }
        _ => Err(v.0),
    }
}

fn check_compensation(
    v: &mut Violations,
    own_id: &str,
    handler: &str,
    supported: Option<bool>,
    strategy: Option<CompensationStrategy>,
    undo_capability: &str,
) {
    match (supported, strategy) {
        (Some(false), Some(strategy)) if strategy != CompensationStrategy::None => v.add(
            "compensation.strategy",
            "must be NONE when compensation.supported is false",
        ),
        (Some(true), Some(CompensationStrategy::None)) => v.add(
            "compensation.strategy",
            "must be AUTOMATIC or MANUAL when compensation.supported is true",
        ),
        (Some(true), Some(CompensationStrategy::Automatic))
            if undo_capability.is_empty() && !handler.starts_with("builtin:") =>
        {
            v.add(
                "compensation.capability_id",
                "AUTOMATIC compensation needs the id of the undoing capability (only builtin: handlers have a built-in undo)",
            )
        }
        _ => {}
    }
    if !undo_capability.is_empty() {
        if !is_capability_id(undo_capability) {
            v.add(
                "compensation.capability_id",
                format!("{undo_capability:?} is not a capability id"),
            );
        } else if undo_capability == own_id {
            v.add(
                "compensation.capability_id",
                "a capability cannot compensate itself",
            );
        }
    }
}

fn check_parameters(v: &mut Violations, draft: &SpecDraft) -> Vec<Parameter> {
    let mut seen = HashSet::new();
    let mut parameters = Vec::new();
    for (i, p) in draft.parameters.iter().enumerate() {
        let field = |name: &str| format!("parameters[{i}].{name}");
        if p.name.is_empty() {
            v.add(field("name"), "is required");
        } else if !is_parameter_name(&p.name) {
            v.add(
                field("name"),
                format!("{:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", p.name),
            );
        } else if !seen.insert(p.name.as_str()) {
            v.add(
                field("name"),
                format!("duplicate parameter name {:?}", p.name),
            );
        }
        let Some(param_type) = p.param_type else {
            v.add(
                field("type"),
                "is required: one of string, number, integer, boolean, object, array",
            );
            continue;
        };
        if let Some(default) = &p.default
            && !param_type.accepts(default)
        {
            v.add(
                field("default"),
                format!("must be of type {}", param_type.as_str()),
            );
        }
        parameters.push(Parameter {
            name: p.name.clone(),
            param_type,
            description: p.description.clone(),
            required: p.required,
            default: p.default.clone(),
        });
    }
    parameters
}

fn check_handler(v: &mut Violations, handler: &str) {
    if handler.is_empty() {
        v.add(
            "handler",
            "is required: builtin:<name>, http:<url> or mcp:<url>#<tool>",
        );
    } else if let Some(name) = handler.strip_prefix("builtin:") {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.'));
        if !valid {
            v.add(
                "handler",
                format!("{handler:?}: builtin handler names are [a-z0-9_.]+"),
            );
        }
    } else if let Some(url) = handler.strip_prefix("http:") {
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.len() <= "https://".len()
        {
            v.add(
                "handler",
                format!("{handler:?}: expected http:<http or https URL>"),
            );
        }
    } else if let Some(target) = handler.strip_prefix("mcp:") {
        if let Err(problem) = check_mcp_target(target) {
            v.add("handler", format!("{handler:?}: {problem}"));
        }
    } else {
        v.add(
            "handler",
            format!(
                "{handler:?}: unknown handler kind; use builtin:<name>, http:<url> or mcp:<url>#<tool>"
            ),
        );
    }
}

/// `mcp:<http(s) URL>#<tool>` or `mcp:stdio:<name>#<tool>` (the same rule
/// the workflow service parses with; the registry does not depend on it, so the rule is restated).
fn check_mcp_target(target: &str) -> Result<(), String> {
    let Some((url, tool)) = target.rsplit_once('#') else {
        return Err(
            "expected mcp:<http or https URL>#<tool name> or mcp:stdio:<name>#<tool name>".into(),
        );
    };
    if let Some(name) = url.strip_prefix("stdio:") {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if !valid {
            return Err("a local MCP server name is [a-z0-9_-]{1,64}".into());
        }
    } else if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.len() <= "https://".len()
    {
        return Err("the MCP server URL must be http(s), or stdio:<name>".into());
    }
    let valid_tool = !tool.is_empty()
        && tool.len() <= 128
        && tool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !valid_tool {
        return Err("a tool name is 1-128 of A-Z a-z 0-9 _ - . /".into());
    }
    Ok(())
}

fn check_risk_consistency(
    v: &mut Violations,
    level: RiskLevel,
    operation_type: Option<OperationType>,
    reversible: Option<bool>,
    supported: Option<bool>,
) {
    let high_or_critical = matches!(level, RiskLevel::High | RiskLevel::Critical);
    if reversible == Some(false) && !high_or_critical {
        v.add(
            "risk.level",
            format!("{RISK_CHECK_PREFIX}rule 1: side_effects.reversible is false, so risk.level must be HIGH or CRITICAL, not {level}"),
        );
    }
    if operation_type == Some(OperationType::Delete) && !high_or_critical {
        v.add(
            "risk.level",
            format!("{RISK_CHECK_PREFIX}rule 2: operation_type is DELETE, so risk.level must be HIGH or CRITICAL, not {level}"),
        );
    }
    if supported == Some(false) && reversible == Some(false) && level != RiskLevel::Critical {
        v.add(
            "risk.level",
            format!("{RISK_CHECK_PREFIX}rule 3: side_effects.reversible and compensation.supported are both false, so risk.level must be CRITICAL, not {level}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{
        CompensationDraft, MetadataDraft, ParameterDraft, ParameterType, RiskDraft,
        SideEffectsDraft,
    };

    /// A valid WRITE capability: reversible, MEDIUM, automatic undo.
    fn draft() -> SpecDraft {
        SpecDraft {
            id: "crm.create_account".into(),
            name: "Create account".into(),
            description: "Creates a CRM account".into(),
            operation_type: Some(OperationType::Write),
            risk: Some(RiskDraft {
                level: Some(RiskLevel::Medium),
                ..Default::default()
            }),
            side_effects: Some(SideEffectsDraft {
                reversible: Some(true),
                scope: Some(crate::domain::spec::SideEffectScope::External),
                description: String::new(),
            }),
            compensation: Some(CompensationDraft {
                supported: Some(true),
                strategy: Some(CompensationStrategy::Automatic),
                capability_id: "crm.delete_account".into(),
            }),
            parameters: vec![ParameterDraft {
                name: "customer_name".into(),
                param_type: Some(ParameterType::String),
                required: true,
                ..Default::default()
            }],
            returns: None,
            metadata: Some(MetadataDraft {
                version: "1.0.0".into(),
                ..Default::default()
            }),
            handler: "http:https://crm.example.com/accounts".into(),
            lifecycle: None,
        }
    }

    fn with(mutate: impl FnOnce(&mut SpecDraft)) -> SpecDraft {
        let mut d = draft();
        mutate(&mut d);
        d
    }

    fn set_risk(d: &mut SpecDraft, level: RiskLevel) {
        d.risk.as_mut().expect("risk").level = Some(level);
    }
    fn set_reversible(d: &mut SpecDraft, reversible: bool) {
        d.side_effects.as_mut().expect("side effects").reversible = Some(reversible);
    }
    fn no_compensation(d: &mut SpecDraft) {
        let c = d.compensation.as_mut().expect("compensation");
        c.supported = Some(false);
        c.strategy = Some(CompensationStrategy::None);
        c.capability_id.clear();
    }

    fn violations(d: &SpecDraft) -> Vec<(String, String)> {
        match validate(d) {
            Ok(_) => Vec::new(),
            Err(v) => v.into_iter().map(|v| (v.field, v.description)).collect(),
        }
    }

    fn risk_violations(d: &SpecDraft) -> Vec<String> {
        violations(d)
            .into_iter()
            .filter(|(_, description)| description.starts_with(RISK_CHECK_PREFIX))
            .map(|(field, description)| {
                assert_eq!(field, "spec.risk.level");
                description
            })
            .collect()
    }

    #[test]
    fn a_valid_spec_passes_and_defaults_to_active() {
        let (spec, lifecycle) = validate(&draft()).expect("valid");
        assert_eq!(lifecycle, Lifecycle::Active);
        assert_eq!(spec.risk.level, RiskLevel::Medium);
        assert_eq!(spec.returns, serde_json::json!({}));
    }

    #[test]
    fn rule_1_irreversible_needs_high_or_critical() {
        let rejected = with(|d| set_reversible(d, false));
        let found = risk_violations(&rejected);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("rule 1")
                && found[0].contains("HIGH or CRITICAL")
                && found[0].contains("side_effects.reversible")
        );
        // irreversible + compensable + HIGH is accepted
        assert!(
            validate(&with(|d| {
                set_reversible(d, false);
                set_risk(d, RiskLevel::High)
            }))
            .is_ok()
        );
        assert!(
            validate(&with(|d| {
                set_reversible(d, false);
                set_risk(d, RiskLevel::Critical)
            }))
            .is_ok()
        );
    }

    #[test]
    fn rule_2_delete_needs_high_or_critical_even_when_reversible() {
        let delete = |d: &mut SpecDraft| d.operation_type = Some(OperationType::Delete);
        // DELETE + reversible + MEDIUM is rejected
        let found = risk_violations(&with(delete));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("rule 2") && found[0].contains("DELETE"));
        assert!(
            validate(&with(|d| {
                delete(d);
                set_risk(d, RiskLevel::High)
            }))
            .is_ok()
        );
        assert!(
            validate(&with(|d| {
                delete(d);
                set_risk(d, RiskLevel::Low)
            }))
            .is_err()
        );
    }

    #[test]
    fn rule_3_irreversible_and_uncompensable_needs_critical() {
        // irreversible + uncompensable + HIGH is rejected by rule 3 alone
        let found = risk_violations(&with(|d| {
            set_reversible(d, false);
            no_compensation(d);
            set_risk(d, RiskLevel::High)
        }));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("rule 3") && found[0].contains("CRITICAL"));
        assert!(
            validate(&with(|d| {
                set_reversible(d, false);
                no_compensation(d);
                set_risk(d, RiskLevel::Critical)
            }))
            .is_ok()
        );
        // reversible but uncompensable is not rule 3's business
        assert!(validate(&with(no_compensation)).is_ok());
    }

    #[test]
    fn every_broken_rule_is_reported_in_order() {
        let d = with(|d| {
            d.operation_type = Some(OperationType::Delete);
            set_reversible(d, false);
            no_compensation(d);
            set_risk(d, RiskLevel::Medium);
        });
        let found = risk_violations(&d);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].contains("rule 1")
                && found[1].contains("rule 2")
                && found[2].contains("rule 3")
        );

        let d = with(|d| {
            set_reversible(d, false);
            no_compensation(d);
            set_risk(d, RiskLevel::Low)
        });
        let found = risk_violations(&d);
        assert_eq!(found.len(), 2, "rules 1 and 3: {found:?}");
    }

    #[test]
    fn ids_must_be_lowercase_dotted_with_two_segments() {
        for good in ["io.fs.read_file", "crm.create_account", "a.b", "a1.b_2"] {
            assert!(is_capability_id(good), "{good}");
        }
        let long = format!("a.{}", "b".repeat(127));
        for bad in [
            "crm",
            "Crm.create",
            "crm.Create",
            "crm..x",
            ".crm.x",
            "crm.x.",
            "1crm.x",
            "crm.x-y",
            "crm._x",
            long.as_str(),
        ] {
            assert!(!is_capability_id(bad), "{bad}");
        }
        let found = violations(&with(|d| d.id = "CRM".into()));
        assert_eq!(found[0].0, "spec.id");
    }

    #[test]
    fn versions_must_be_semver() {
        let found = violations(&with(|d| {
            d.metadata.as_mut().expect("m").version = "1.0".into()
        }));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "spec.metadata.version");
        assert!(
            validate(&with(
                |d| d.metadata.as_mut().expect("m").version = "2.1.0-rc.1+build.5".into()
            ))
            .is_ok()
        );
    }

    #[test]
    fn parameter_names_are_unique_identifiers_with_known_types() {
        let d = with(|d| {
            d.parameters.push(ParameterDraft {
                name: "customer_name".into(),
                param_type: Some(ParameterType::String),
                ..Default::default()
            });
            d.parameters.push(ParameterDraft {
                name: "bad-name".into(),
                param_type: Some(ParameterType::Integer),
                ..Default::default()
            });
            d.parameters.push(ParameterDraft {
                name: "no_type".into(),
                param_type: None,
                ..Default::default()
            });
            d.parameters.push(ParameterDraft {
                name: "count".into(),
                param_type: Some(ParameterType::Integer),
                default: Some(serde_json::json!("ten")),
                ..Default::default()
            });
        });
        let fields: Vec<String> = violations(&d).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "spec.parameters[1].name",
                "spec.parameters[2].name",
                "spec.parameters[3].type",
                "spec.parameters[4].default"
            ]
        );
    }

    #[test]
    fn compensation_strategy_must_match_support() {
        let found = violations(&with(|d| {
            d.compensation.as_mut().expect("c").supported = Some(false)
        }));
        assert_eq!(found[0].0, "spec.compensation.strategy");
        assert!(found[0].1.contains("NONE"));

        let found = violations(&with(|d| {
            d.compensation.as_mut().expect("c").strategy = Some(CompensationStrategy::None)
        }));
        assert_eq!(found[0].0, "spec.compensation.strategy");

        // AUTOMATIC needs an undoing capability unless the handler is builtin.
        let no_undo = |d: &mut SpecDraft| d.compensation.as_mut().expect("c").capability_id.clear();
        let found = violations(&with(no_undo));
        assert_eq!(found[0].0, "spec.compensation.capability_id");
        assert!(
            validate(&with(|d| {
                no_undo(d);
                d.handler = "builtin:fs.write_file".into()
            }))
            .is_ok()
        );

        let found = violations(&with(|d| {
            d.compensation.as_mut().expect("c").capability_id = "crm.create_account".into()
        }));
        assert!(found[0].1.contains("cannot compensate itself"));
    }

    #[test]
    fn handlers_are_builtin_http_or_mcp() {
        for bad in [
            "",
            "python:foo",
            "builtin:",
            "http:ftp://x",
            "http:https://",
            "mcp:http://h/mcp",
            "mcp:stdio:/bin/sh#x",
            "mcp:stdio:#x",
            "mcp:http://h/mcp#",
            "mcp:http://h/mcp#a b",
        ] {
            let found = violations(&with(|d| d.handler = bad.into()));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].0, "spec.handler");
        }
        for good in [
            "mcp:https://tools.example/mcp#add_note",
            "mcp:stdio:notes#add_note",
        ] {
            let ok = violations(&with(|d| d.handler = good.into()));
            assert!(
                ok.iter().all(|(field, _)| field != "spec.handler"),
                "{good}: {ok:?}"
            );
        }
    }

    #[test]
    fn missing_sections_and_unspecified_enums_are_each_reported() {
        let found: Vec<String> = violations(&SpecDraft::default())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            found,
            [
                "spec.id",
                "spec.name",
                "spec.operation_type",
                "spec.risk",
                "spec.side_effects",
                "spec.compensation",
                "spec.metadata",
                "spec.handler"
            ]
        );
        let found: Vec<String> = violations(&with(|d| {
            d.risk = Some(RiskDraft::default());
            d.side_effects = Some(SideEffectsDraft::default());
        }))
        .into_iter()
        .map(|(f, _)| f)
        .collect();
        assert_eq!(
            found,
            [
                "spec.risk.level",
                "spec.side_effects.reversible",
                "spec.side_effects.scope"
            ]
        );
    }

    #[test]
    fn content_digest_ignores_nothing_but_is_stable() {
        let (a, _) = validate(&draft()).expect("valid");
        let (b, _) = validate(&draft()).expect("valid");
        assert_eq!(a.content_digest(), b.content_digest());
        let (c, _) = validate(&with(|d| d.description = "changed".into())).expect("valid");
        assert_ne!(a.content_digest(), c.content_digest());
    }
}
