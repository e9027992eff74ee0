//! Between the wire (`airt.registry.v1`) and the domain model.

use airt_kit::json::{from_proto_struct, from_proto_value, to_proto_struct, to_proto_value};
use airt_kit::vocabulary::{OperationType, RiskLevel};
use airt_proto::registry::v1 as pb;

use crate::domain::spec::{
    CompensationDraft, CompensationStrategy, MetadataDraft, ParameterDraft, ParameterType,
    RiskDraft, SideEffectScope, SideEffectsDraft,
};
use crate::domain::{CapabilitySpec, Lifecycle, SpecDraft};
use crate::store::StoredCapability;

pub fn lifecycle_from_proto(value: i32) -> Option<Lifecycle> {
    match pb::CapabilityLifecycle::try_from(value).ok()? {
        pb::CapabilityLifecycle::Unspecified => None,
        pb::CapabilityLifecycle::Active => Some(Lifecycle::Active),
        pb::CapabilityLifecycle::Deprecated => Some(Lifecycle::Deprecated),
        pb::CapabilityLifecycle::Frozen => Some(Lifecycle::Frozen),
    }
}

pub fn lifecycle_to_proto(lifecycle: Lifecycle) -> pb::CapabilityLifecycle {
    match lifecycle {
        Lifecycle::Active => pb::CapabilityLifecycle::Active,
        Lifecycle::Deprecated => pb::CapabilityLifecycle::Deprecated,
        Lifecycle::Frozen => pb::CapabilityLifecycle::Frozen,
    }
}

fn scope_from_proto(value: i32) -> Option<SideEffectScope> {
    match pb::SideEffectScope::try_from(value).ok()? {
        pb::SideEffectScope::Unspecified => None,
        pb::SideEffectScope::Local => Some(SideEffectScope::Local),
        pb::SideEffectScope::Network => Some(SideEffectScope::Network),
        pb::SideEffectScope::External => Some(SideEffectScope::External),
    }
}

fn scope_to_proto(scope: SideEffectScope) -> pb::SideEffectScope {
    match scope {
        SideEffectScope::Local => pb::SideEffectScope::Local,
        SideEffectScope::Network => pb::SideEffectScope::Network,
        SideEffectScope::External => pb::SideEffectScope::External,
    }
}

fn strategy_from_proto(value: i32) -> Option<CompensationStrategy> {
    match pb::CompensationStrategy::try_from(value).ok()? {
        pb::CompensationStrategy::Unspecified => None,
        pb::CompensationStrategy::Automatic => Some(CompensationStrategy::Automatic),
        pb::CompensationStrategy::Manual => Some(CompensationStrategy::Manual),
        pb::CompensationStrategy::None => Some(CompensationStrategy::None),
    }
}

fn strategy_to_proto(strategy: CompensationStrategy) -> pb::CompensationStrategy {
    match strategy {
        CompensationStrategy::Automatic => pb::CompensationStrategy::Automatic,
        CompensationStrategy::Manual => pb::CompensationStrategy::Manual,
        CompensationStrategy::None => pb::CompensationStrategy::None,
    }
}

fn parameter_type_from_proto(value: i32) -> Option<ParameterType> {
    match pb::ParameterType::try_from(value).ok()? {
        pb::ParameterType::Unspecified => None,
        pb::ParameterType::String => Some(ParameterType::String),
        pb::ParameterType::Number => Some(ParameterType::Number),
        pb::ParameterType::Integer => Some(ParameterType::Integer),
        pb::ParameterType::Boolean => Some(ParameterType::Boolean),
        pb::ParameterType::Object => Some(ParameterType::Object),
        pb::ParameterType::Array => Some(ParameterType::Array),
    }
}

fn parameter_type_to_proto(param_type: ParameterType) -> pb::ParameterType {
    match param_type {
        ParameterType::String => pb::ParameterType::String,
        ParameterType::Number => pb::ParameterType::Number,
        ParameterType::Integer => pb::ParameterType::Integer,
        ParameterType::Boolean => pb::ParameterType::Boolean,
        ParameterType::Object => pb::ParameterType::Object,
        ParameterType::Array => pb::ParameterType::Array,
    }
}

/// A proto spec as a draft: UNSPECIFIED enums and absent messages become
/// `None`, so validation reports them as missing.
pub fn draft_from_proto(spec: pb::CapabilitySpec) -> SpecDraft {
    SpecDraft {
        id: spec.id,
        name: spec.name,
        description: spec.description,
        operation_type: OperationType::from_proto(spec.operation_type),
        risk: spec.risk.map(|r| RiskDraft {
            level: RiskLevel::from_proto(r.level),
            justification: r.justification,
            requires_approval: r.requires_approval,
        }),
        side_effects: spec.side_effects.map(|s| SideEffectsDraft {
            reversible: Some(s.reversible),
            scope: scope_from_proto(s.scope),
            description: s.description,
        }),
        compensation: spec.compensation.map(|c| CompensationDraft {
            supported: Some(c.supported),
            strategy: strategy_from_proto(c.strategy),
            capability_id: c.capability_id,
        }),
        parameters: spec
            .parameters
            .into_iter()
            .map(|p| ParameterDraft {
                name: p.name,
                param_type: parameter_type_from_proto(p.r#type),
                description: p.description,
                required: p.required,
                default: p.default_value.as_ref().map(from_proto_value),
            })
            .collect(),
        returns: spec
            .returns
            .as_ref()
            .map(|r| serde_json::Value::Object(from_proto_struct(r))),
        metadata: spec.metadata.map(|m| MetadataDraft {
            version: m.version,
            author: m.author,
            tags: m.tags,
            deprecated: m.deprecated,
        }),
        handler: spec.handler,
        lifecycle: lifecycle_from_proto(spec.lifecycle),
    }
}

pub fn spec_to_proto(spec: &CapabilitySpec, lifecycle: Lifecycle) -> pb::CapabilitySpec {
    pb::CapabilitySpec {
        id: spec.id.clone(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        operation_type: spec.operation_type.to_proto() as i32,
        risk: Some(pb::Risk {
            level: spec.risk.level.to_proto() as i32,
            justification: spec.risk.justification.clone(),
            requires_approval: spec.risk.requires_approval,
        }),
        side_effects: Some(pb::SideEffects {
            reversible: spec.side_effects.reversible,
            scope: scope_to_proto(spec.side_effects.scope) as i32,
            description: spec.side_effects.description.clone(),
        }),
        compensation: Some(pb::Compensation {
            supported: spec.compensation.supported,
            strategy: strategy_to_proto(spec.compensation.strategy) as i32,
            capability_id: spec.compensation.capability_id.clone(),
        }),
        parameters: spec
            .parameters
            .iter()
            .map(|p| pb::Parameter {
                name: p.name.clone(),
                r#type: parameter_type_to_proto(p.param_type) as i32,
                description: p.description.clone(),
                required: p.required,
                default_value: p.default.as_ref().map(to_proto_value),
            })
            .collect(),
        returns: spec.returns.as_object().map(to_proto_struct),
        metadata: Some(pb::CapabilityMetadata {
            version: spec.metadata.version.clone(),
            author: spec.metadata.author.clone(),
            tags: spec.metadata.tags.clone(),
            deprecated: spec.metadata.deprecated,
        }),
        handler: spec.handler.clone(),
        lifecycle: lifecycle_to_proto(lifecycle) as i32,
    }
}

pub fn capability_to_proto(stored: &StoredCapability) -> pb::Capability {
    let registered_by = airt_kit::Principal::parse(&stored.registered_by, Vec::new())
        .ok()
        .map(|p| p.to_proto());
    pb::Capability {
        spec: Some(spec_to_proto(&stored.spec, stored.lifecycle)),
        content_digest: stored.content_digest.clone(),
        registry_revision: stored.registry_revision,
        lifecycle_reason: stored.lifecycle_reason.clone(),
        create_time: Some(airt_kit::clock::timestamp_from_micros(stored.created_at_us)),
        update_time: Some(airt_kit::clock::timestamp_from_micros(stored.updated_at_us)),
        registered_by,
    }
}
