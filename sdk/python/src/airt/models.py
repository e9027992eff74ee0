"""What the services answer, as plain Python values.

Every model keeps the protobuf message it came from in `raw` for fields the
model does not name. Enum values are their names without the prefix
(`"COMPLETED"`, not `WORKFLOW_STATUS_COMPLETED`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .values import from_struct, from_value

# Where a workflow rests: it will not change without someone acting.
FINISHED = frozenset({"COMPLETED", "FAILED", "ROLLED_BACK", "COMPENSATION_FAILED", "CANCELLED"})
RESTING = FINISHED | {"PAUSED"}


def enum_name(enum_type: Any, number: int, prefix: str) -> str:
    try:
        return enum_type.Name(number).removeprefix(prefix)
    except ValueError:
        return f"UNKNOWN_{number}"


def _time(timestamp: Any) -> datetime | None:
    if timestamp is None or (timestamp.seconds == 0 and timestamp.nanos == 0):
        return None
    return timestamp.ToDatetime(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Decision:
    """The policy's answer: `ALLOW`, `DENY` or `REQUIRE_APPROVAL`, and why."""

    decision: str
    rule_id: str
    reason: str
    escalated: bool
    policy_revision: str

    @classmethod
    def from_proto(cls, record: Any) -> Decision:
        from .policy.v1 import policy_pb2

        return cls(
            decision=enum_name(policy_pb2.Decision, record.decision, "DECISION_"),
            rule_id=record.rule_id,
            reason=record.reason,
            escalated=record.escalated,
            policy_revision=record.policy_revision,
        )


@dataclass(frozen=True)
class Step:
    name: str
    status: str
    attempt: int
    outputs: Any
    error: str
    decision: Decision | None
    approval_id: str
    raw: Any = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, step: Any) -> Step:
        from .workflow.v1 import workflow_pb2

        return cls(
            name=step.name,
            status=enum_name(workflow_pb2.StepStatus, step.status, "STEP_STATUS_"),
            attempt=step.attempt,
            outputs=from_value(step.outputs) if step.HasField("outputs") else None,
            error=step.error,
            decision=Decision.from_proto(step.decision) if step.HasField("decision") else None,
            approval_id=step.approval_id,
            raw=step,
        )


@dataclass(frozen=True)
class Workflow:
    id: str
    name: str
    status: str
    steps: list[Step]
    failure_reason: str
    failed_step: str
    trace_id: str
    raw: Any = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def step(self, name: str) -> Step:
        """The step called `name` (KeyError if there is none)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @classmethod
    def from_proto(cls, workflow: Any) -> Workflow:
        from .workflow.v1 import workflow_pb2

        return cls(
            id=workflow.workflow_id,
            name=workflow.spec.name,
            status=enum_name(workflow_pb2.WorkflowStatus, workflow.status, "WORKFLOW_STATUS_"),
            steps=[Step.from_proto(s) for s in workflow.steps],
            failure_reason=workflow.failure_reason,
            failed_step=workflow.failed_step,
            trace_id=workflow.trace_id,
            raw=workflow,
        )


@dataclass(frozen=True)
class Event:
    """One thing that happened to a workflow (see `WorkflowEvent.kind` in the
    proto for every kind and its `detail`), with the workflow as it was then."""

    sequence: int
    kind: str
    step: str
    detail: dict[str, Any]
    time: datetime | None
    workflow: Workflow


@dataclass(frozen=True)
class Approval:
    id: str
    workflow_id: str
    step: str
    status: str
    capability_id: str
    message: str
    approver_roles: list[str]
    resolved_inputs: dict[str, Any]
    decision: Decision | None
    expires_at: datetime | None
    raw: Any = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, approval: Any) -> Approval:
        from .workflow.v1 import workflow_pb2

        return cls(
            id=approval.approval_id,
            workflow_id=approval.workflow_id,
            step=approval.step_name,
            status=enum_name(workflow_pb2.ApprovalStatus, approval.status, "APPROVAL_STATUS_"),
            capability_id=approval.capability_id,
            message=approval.message,
            approver_roles=list(approval.approver_roles),
            resolved_inputs=from_struct(approval.resolved_inputs),
            decision=Decision.from_proto(approval.decision) if approval.HasField("decision") else None,
            expires_at=_time(approval.expire_time) if approval.HasField("expire_time") else None,
            raw=approval,
        )


@dataclass(frozen=True)
class Capability:
    id: str
    version: str
    risk: str
    lifecycle: str
    content_digest: str
    raw: Any = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, capability: Any) -> Capability:
        from .common.v1 import common_pb2
        from .registry.v1 import registry_pb2

        spec = capability.spec
        return cls(
            id=spec.id,
            version=spec.metadata.version,
            risk=enum_name(common_pb2.RiskLevel, spec.risk.level, "RISK_LEVEL_"),
            lifecycle=enum_name(registry_pb2.CapabilityLifecycle, spec.lifecycle, "CAPABILITY_LIFECYCLE_"),
            content_digest=capability.content_digest,
            raw=capability,
        )


@dataclass(frozen=True)
class ChainCheck:
    """What `audit.verify` found: an intact chain, or where it breaks."""

    intact: bool
    events_checked: int
    first_broken_sequence: int
    problem: str


@dataclass(frozen=True)
class PendingApproval:
    id: str
    message: str
    approver_roles: list[str]
    expires_at: datetime | None


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one governed action: `SUCCEEDED` (with `outputs`),
    `DENIED`, `FAILED`, `AWAITING_APPROVAL` (with `approval`), `REJECTED`,
    `EXPIRED`, `CANCELLED`, or `RUNNING` when the wait ran out."""

    status: str
    workflow_id: str
    outputs: Any
    error: str
    decision: Decision | None
    approval: PendingApproval | None
    created: bool
    raw: Any = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, answer: Any) -> ActionResult:
        from .workflow.v1 import workflow_pb2

        approval = None
        if answer.HasField("approval"):
            a = answer.approval
            approval = PendingApproval(a.approval_id, a.message, list(a.approver_roles),
                                       _time(a.expire_time) if a.HasField("expire_time") else None)
        return cls(
            status=enum_name(workflow_pb2.ActionStatus, answer.status, "ACTION_STATUS_"),
            workflow_id=answer.workflow_id,
            outputs=from_value(answer.outputs) if answer.HasField("outputs") else None,
            error=answer.error,
            decision=Decision.from_proto(answer.decision) if answer.HasField("decision") else None,
            approval=approval,
            # GetAction answers have no `created`.
            created=getattr(answer, "created", False),
            raw=answer,
        )
