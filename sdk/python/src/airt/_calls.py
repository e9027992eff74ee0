"""Every call of the SDK as data: which stub, which method, the request, and
how to read the answer. The blocking client (`airt.Client`) and the asyncio
client (`airt.aio.Client`) both run these, so they cannot drift apart."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .models import ActionResult, Approval, Capability, ChainCheck, Decision, Event, Workflow
from .values import from_struct, to_struct

DEFAULTS = {"registry": "127.0.0.1:50051", "policy": "127.0.0.1:50052", "workflow": "127.0.0.1:50053"}


@dataclass(frozen=True)
class Call:
    stub: str  # registry, policy, workflow, approvals, or audit:<service>
    method: str
    request: Any
    read: Callable[[Any], Any]


@dataclass(frozen=True)
class Settings:
    """Where the services are and who calls them."""

    addresses: dict[str, str]
    metadata: tuple[tuple[str, str], ...]
    principal: str | None
    roles: list[str]
    ca: bytes | None
    timeout: float

    @classmethod
    def of(cls, registry: str, policy: str, workflow: str, token: str | None, principal: str | None,
           roles: Sequence[str] | str | None, ca: bytes | None, timeout: float) -> Settings:
        role_list = [r.strip() for r in roles.split(",") if r.strip()] if isinstance(roles, str) else list(roles or [])
        metadata = []
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        if principal:
            metadata += [("x-airt-principal", principal), ("x-airt-roles", ",".join(role_list))]
        addresses = {"registry": registry, "policy": policy, "workflow": workflow}
        return cls(addresses, tuple(metadata), principal, role_list, ca, timeout)


def env_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """The `airt` CLI's variables as client arguments, `overrides` on top."""
    env = os.environ
    settings: dict[str, Any] = {
        "registry": env.get("AIRT_REGISTRY_ADDR", DEFAULTS["registry"]),
        "policy": env.get("AIRT_POLICY_ADDR", DEFAULTS["policy"]),
        "workflow": env.get("AIRT_WORKFLOW_ADDR", DEFAULTS["workflow"]),
        "token": env.get("AIRT_TOKEN") or None,
        "principal": env.get("AIRT_PRINCIPAL") or None,
        "roles": env.get("AIRT_ROLES", ""),
    }
    if env.get("AIRT_TLS_CA"):
        with open(env["AIRT_TLS_CA"], "rb") as pem:
            settings["ca"] = pem.read()
    settings.update(overrides)
    return settings


def target(address: str) -> tuple[str, bool]:
    """`(host:port, tls)` of `host:port`, `http://host:port` or `https://host:port`."""
    if address.startswith("https://"):
        return address.removeprefix("https://"), True
    return address.removeprefix("http://"), False


def spec_text(spec: str | dict[str, Any]) -> str:
    """A spec given as YAML/JSON text, or as a mapping (sent as JSON, which is YAML)."""
    return spec if isinstance(spec, str) else json.dumps(spec)


def _registry():
    from .registry.v1 import registry_pb2

    return registry_pb2


def _policy():
    from .policy.v1 import policy_pb2

    return policy_pb2


def _workflow():
    from .workflow.v1 import workflow_pb2

    return workflow_pb2


def register(spec: str | dict[str, Any], validate_only: bool) -> Call:
    request = _registry().RegisterCapabilityRequest(spec_text=spec_text(spec), validate_only=validate_only)
    return Call("registry", "RegisterCapability", request, lambda r: Capability.from_proto(r.capability))


def get_capability(capability_id: str, version: str) -> Call:
    request = _registry().GetCapabilityRequest(capability_id=capability_id, version=version)
    return Call("registry", "GetCapability", request, lambda r: Capability.from_proto(r.capability))


def list_capabilities(page_size: int) -> Callable[[str], Call]:
    def page(token: str) -> Call:
        request = _registry().ListCapabilitiesRequest(page_size=page_size, page_token=token)
        return Call("registry", "ListCapabilities", request,
                    lambda r: ([Capability.from_proto(c) for c in r.capabilities], r.next_page_token))
    return page


def put_policy(source_yaml: str, activate: bool, description: str) -> Call:
    request = _policy().PutPolicySetRequest(source_yaml=source_yaml, activate=activate, description=description)
    return Call("policy", "PutPolicySet", request, lambda r: r.policy_set.revision)


def evaluate(settings: Settings, capability_id: str, risk: str, principal: str | None, roles: Sequence[str],
             operation: str, inputs: dict[str, Any] | None, agent: str, environment: str) -> Call:
    from .common.v1 import common_pb2

    kind, _, ident = (principal or settings.principal or "user:anonymous").partition(":")
    context = _policy().PolicyContext(
        principal=common_pb2.Principal(type=kind, id=ident, roles=list(roles or settings.roles)),
        capability_id=capability_id,
        risk_level=common_pb2.RiskLevel.Value(f"RISK_LEVEL_{risk.upper()}"),
        inputs=to_struct(inputs or {}),
        agent=agent,
        environment=environment,
    )
    if operation:
        context.operation_type = common_pb2.OperationType.Value(f"OPERATION_TYPE_{operation.upper()}")
    request = _policy().EvaluateRequest(context=context)
    return Call("policy", "Evaluate", request, lambda r: Decision.from_proto(r.decision))


def submit(spec: str | dict[str, Any], request_id: str | None) -> Call:
    request = _workflow().SubmitWorkflowRequest(spec_text=spec_text(spec), request_id=request_id or "")
    return Call("workflow", "SubmitWorkflow", request, lambda r: Workflow.from_proto(r.workflow))


def execute_action(capability_id: str, inputs: dict[str, Any] | None, request_id: str | None, agent: str,
                   wait: float | None) -> Call:
    from google.protobuf import duration_pb2

    request = _workflow().ExecuteActionRequest(capability_id=capability_id, inputs=to_struct(inputs or {}),
                                               request_id=request_id or "", agent=agent)
    if wait is not None:
        request.wait.CopyFrom(duration_pb2.Duration(seconds=int(wait), nanos=int((wait % 1) * 1e9)))
    return Call("workflow", "ExecuteAction", request, ActionResult.from_proto)


def get_action(workflow_id: str, wait: float | None) -> Call:
    from google.protobuf import duration_pb2

    request = _workflow().GetActionRequest(workflow_id=workflow_id)
    if wait is not None:
        request.wait.CopyFrom(duration_pb2.Duration(seconds=int(wait), nanos=int((wait % 1) * 1e9)))
    return Call("workflow", "GetAction", request, ActionResult.from_proto)


def get_workflow(workflow_id: str) -> Call:
    request = _workflow().GetWorkflowRequest(workflow_id=workflow_id)
    return Call("workflow", "GetWorkflow", request, lambda r: Workflow.from_proto(r.workflow))


def list_workflows(status: str | None, name: str, page_size: int) -> Callable[[str], Call]:
    pb = _workflow()
    wanted = pb.WorkflowStatus.Value(f"WORKFLOW_STATUS_{status.upper()}") if status else 0

    def page(token: str) -> Call:
        request = pb.ListWorkflowsRequest(page_size=page_size, page_token=token, status=wanted, name=name)
        return Call("workflow", "ListWorkflows", request,
                    lambda r: ([Workflow.from_proto(w) for w in r.workflows], r.next_page_token))
    return page


def watch_request(workflow_id: str, after_sequence: int) -> Any:
    return _workflow().WatchWorkflowRequest(workflow_id=workflow_id, after_sequence=after_sequence)


def cancel(workflow_id: str, rollback: bool, reason: str) -> Call:
    request = _workflow().CancelWorkflowRequest(workflow_id=workflow_id, rollback=rollback, reason=reason)
    return Call("workflow", "CancelWorkflow", request, lambda r: Workflow.from_proto(r.workflow))


def list_approvals(status: str, workflow_id: str, page_size: int) -> Callable[[str], Call]:
    pb = _workflow()
    wanted = 0 if status.upper() == "ALL" else pb.ApprovalStatus.Value(f"APPROVAL_STATUS_{status.upper()}")

    def page(token: str) -> Call:
        request = pb.ListApprovalsRequest(status=wanted, workflow_id=workflow_id, page_size=page_size, page_token=token)
        return Call("approvals", "ListApprovals", request,
                    lambda r: ([Approval.from_proto(a) for a in r.approvals], r.next_page_token))
    return page


def get_approval(approval_id: str) -> Call:
    request = _workflow().GetApprovalRequest(approval_id=approval_id)
    return Call("approvals", "GetApproval", request, lambda r: Approval.from_proto(r.approval))


def decide(approval_id: str, comment: str, approve: bool) -> Call:
    pb = _workflow()
    if approve:
        request, method = pb.ApproveStepRequest(approval_id=approval_id, comment=comment), "ApproveStep"
    else:
        request, method = pb.RejectStepRequest(approval_id=approval_id, comment=comment), "RejectStep"
    return Call("approvals", method, request, lambda r: Approval.from_proto(r.approval))


def verify_chain(service: str) -> Call:
    from .audit.v1 import audit_pb2

    if service not in DEFAULTS:
        raise ValueError(f"service must be one of {sorted(DEFAULTS)}, not {service!r}")
    return Call(f"audit:{service}", "VerifyAuditChain", audit_pb2.VerifyAuditChainRequest(),
                lambda r: ChainCheck(r.intact, r.events_checked, r.first_broken_sequence, r.problem))


def export_request(after_sequence: int) -> Any:
    from .audit.v1 import audit_pb2

    return audit_pb2.ExportAuditEventsRequest(after_sequence=after_sequence)


def stubs(channels: dict[str, Any]) -> dict[str, Any]:
    """The generated stubs over `channels` (blocking or asyncio alike)."""
    from .audit.v1 import audit_pb2_grpc
    from .policy.v1 import policy_pb2_grpc
    from .registry.v1 import registry_pb2_grpc
    from .workflow.v1 import workflow_pb2_grpc

    found = {
        "registry": registry_pb2_grpc.RegistryServiceStub(channels["registry"]),
        "policy": policy_pb2_grpc.PolicyServiceStub(channels["policy"]),
        "workflow": workflow_pb2_grpc.WorkflowServiceStub(channels["workflow"]),
        "approvals": workflow_pb2_grpc.ApprovalServiceStub(channels["workflow"]),
    }
    for service, channel in channels.items():
        found[f"audit:{service}"] = audit_pb2_grpc.AuditServiceStub(channel)
    return found


def watch_message(message: Any) -> tuple[Workflow, list[Event]]:
    """A WatchWorkflow message: the workflow as it is, and its new events."""
    workflow = Workflow.from_proto(message.workflow)
    events = [
        Event(sequence=e.sequence, kind=e.kind, step=e.step_name, detail=from_struct(e.detail),
              time=e.occur_time.ToDatetime(), workflow=workflow)
        for e in message.events
    ]
    return workflow, events


def backoff(failures: int) -> float:
    """Seconds to wait before reconnect number `failures`."""
    return min(0.1 * 2**failures, 2.0)


class ClientBase:
    """What the blocking and the asyncio clients share: settings, channels
    (opened by the subclass's `_open`), stubs and the parts in `_parts`."""

    _parts: ClassVar[dict[str, type]] = {}

    def __init__(self, registry: str = DEFAULTS["registry"], policy: str = DEFAULTS["policy"],
                 workflow: str = DEFAULTS["workflow"], token: str | None = None, principal: str | None = None,
                 roles: Sequence[str] | str | None = None, *, ca: bytes | None = None, timeout: float = 30.0):
        self._settings = Settings.of(registry, policy, workflow, token, principal, roles, ca, timeout)
        self._channels = {name: self._open(address, ca) for name, address in self._settings.addresses.items()}
        self._stubs = stubs(self._channels)
        for name, part in self._parts.items():
            setattr(self, name, part(self))

    @staticmethod
    def _open(address: str, ca: bytes | None) -> Any:
        raise NotImplementedError

    @classmethod
    def from_env(cls, **overrides: Any) -> Any:
        """The same variables as the `airt` CLI: `AIRT_REGISTRY_ADDR`,
        `AIRT_POLICY_ADDR`, `AIRT_WORKFLOW_ADDR`, `AIRT_TOKEN`, `AIRT_PRINCIPAL`,
        `AIRT_ROLES`, `AIRT_TLS_CA` (a PEM file)."""
        return cls(**env_settings(overrides))

    def as_principal(self, principal: str, roles: Sequence[str] | str = ()) -> Any:
        """The same deployment, calling as someone else (development mode)."""
        s = self._settings
        return type(self)(**s.addresses, principal=principal, roles=roles, ca=s.ca, timeout=s.timeout)
