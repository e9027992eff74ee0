"""One client for the three services: `airt.Client`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc

from . import errors
from .models import RESTING, Approval, Capability, ChainCheck, Decision, Event, Workflow
from .values import from_struct, to_struct

DEFAULTS = {"registry": "127.0.0.1:50051", "policy": "127.0.0.1:50052", "workflow": "127.0.0.1:50053"}


def _channel(address: str, ca: bytes | None) -> grpc.Channel:
    """`host:port` or `http://host:port` in plaintext; `https://host:port` over TLS
    (verified against `ca`, else the system's roots)."""
    if address.startswith("https://"):
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.secure_channel(address.removeprefix("https://"), credentials)
    return grpc.insecure_channel(address.removeprefix("http://"))


def _spec_text(spec: str | dict[str, Any]) -> str:
    """A spec given as YAML/JSON text, or as a mapping (sent as JSON, which is YAML)."""
    return spec if isinstance(spec, str) else json.dumps(spec)


class _Service:
    def __init__(self, client: Client, stub: Any):
        self._client = client
        self._stub = stub

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(
                request, metadata=self._client._metadata, timeout=timeout or self._client.timeout
            )
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None


class Registry(_Service):
    def register(self, spec: str | dict[str, Any], *, validate_only: bool = False) -> Capability:
        """Registers a capability spec (YAML/JSON text or a mapping); the same
        content again is a no-op that answers the stored capability."""
        from .registry.v1 import registry_pb2

        request = registry_pb2.RegisterCapabilityRequest(spec_text=_spec_text(spec), validate_only=validate_only)
        return Capability.from_proto(self._call("RegisterCapability", request).capability)

    def get(self, capability_id: str, version: str = "") -> Capability:
        from .registry.v1 import registry_pb2

        request = registry_pb2.GetCapabilityRequest(capability_id=capability_id, version=version)
        return Capability.from_proto(self._call("GetCapability", request).capability)

    def list(self, page_size: int = 100) -> Iterator[Capability]:
        """Every capability's current revision, page after page."""
        from .registry.v1 import registry_pb2

        token = ""
        while True:
            page = self._call("ListCapabilities", registry_pb2.ListCapabilitiesRequest(page_size=page_size, page_token=token))
            yield from (Capability.from_proto(c) for c in page.capabilities)
            if not page.next_page_token:
                return
            token = page.next_page_token


class Policy(_Service):
    def put(self, source_yaml: str, *, activate: bool = True, description: str = "") -> str:
        """Stores a policy set (and activates it unless `activate=False`); its revision."""
        from .policy.v1 import policy_pb2

        request = policy_pb2.PutPolicySetRequest(source_yaml=source_yaml, activate=activate, description=description)
        return self._call("PutPolicySet", request).policy_set.revision

    def evaluate(self, capability_id: str, *, risk: str = "LOW", principal: str | None = None,
                 roles: Sequence[str] = (), operation: str = "", inputs: dict[str, Any] | None = None,
                 agent: str = "", environment: str = "") -> Decision:
        """What the active policy decides for this action (asked as a
        question: nothing runs)."""
        from .common.v1 import common_pb2
        from .policy.v1 import policy_pb2

        kind, _, ident = (principal or self._client.principal or "user:anonymous").partition(":")
        context = policy_pb2.PolicyContext(
            principal=common_pb2.Principal(type=kind, id=ident, roles=list(roles or self._client.roles)),
            capability_id=capability_id,
            risk_level=common_pb2.RiskLevel.Value(f"RISK_LEVEL_{risk.upper()}"),
            inputs=to_struct(inputs or {}),
            agent=agent,
            environment=environment,
        )
        if operation:
            context.operation_type = common_pb2.OperationType.Value(f"OPERATION_TYPE_{operation.upper()}")
        answer = self._call("Evaluate", policy_pb2.EvaluateRequest(context=context))
        return Decision.from_proto(answer.decision)


class Workflows(_Service):
    def submit(self, spec: str | dict[str, Any], request_id: str | None = None) -> Workflow:
        """Submits a workflow; with a `request_id`, a retry returns the same
        workflow (and a different spec under it raises `AlreadyExists`)."""
        from .workflow.v1 import workflow_pb2

        request = workflow_pb2.SubmitWorkflowRequest(spec_text=_spec_text(spec), request_id=request_id or "")
        return Workflow.from_proto(self._call("SubmitWorkflow", request).workflow)

    def get(self, workflow_id: str) -> Workflow:
        from .workflow.v1 import workflow_pb2

        return Workflow.from_proto(self._call("GetWorkflow", workflow_pb2.GetWorkflowRequest(workflow_id=workflow_id)).workflow)

    def list(self, *, status: str | None = None, name: str = "", page_size: int = 100) -> Iterator[Workflow]:
        """The caller's workflows (everyone's for admins), newest first, page after page."""
        from .workflow.v1 import workflow_pb2

        wanted = workflow_pb2.WorkflowStatus.Value(f"WORKFLOW_STATUS_{status.upper()}") if status else 0
        token = ""
        while True:
            request = workflow_pb2.ListWorkflowsRequest(page_size=page_size, page_token=token, status=wanted, name=name)
            page = self._call("ListWorkflows", request)
            yield from (Workflow.from_proto(w) for w in page.workflows)
            if not page.next_page_token:
                return
            token = page.next_page_token

    def watch(self, workflow_id: str, after_sequence: int = 0, *, reconnects: int = 5) -> Iterator[Event]:
        """Every event after `after_sequence`, in order, each once, until the
        workflow finishes or pauses. A dropped connection (UNAVAILABLE) is
        reopened after the last event received, up to `reconnects` times in a row."""
        from .workflow.v1 import workflow_pb2

        last, failures = after_sequence, 0
        while True:
            request = workflow_pb2.WatchWorkflowRequest(workflow_id=workflow_id, after_sequence=last)
            try:
                for message in self._stub.WatchWorkflow(request, metadata=self._client._metadata):
                    failures = 0
                    workflow = Workflow.from_proto(message.workflow)
                    for event in message.events:
                        last = event.sequence
                        yield Event(
                            sequence=event.sequence, kind=event.kind, step=event.step_name,
                            detail=from_struct(event.detail), time=event.occur_time.ToDatetime(),
                            workflow=workflow,
                        )
                    if workflow.status in RESTING:
                        return
                return
            except grpc.RpcError as error:
                failure = errors.from_rpc_error(error)
                failures += 1
                if not isinstance(failure, errors.Unavailable) or failures > reconnects:
                    raise failure from None
                time.sleep(min(0.1 * 2**failures, 2.0))

    def wait(self, workflow_id: str, until: Iterable[str] = RESTING, timeout: float = 60.0) -> Workflow:
        """Waits until the workflow's status is one of `until` (default: it
        finished or paused); `DeadlineExceeded` after `timeout` seconds."""
        wanted = {s.upper() for s in until}
        deadline = time.monotonic() + timeout
        while True:
            workflow = self.get(workflow_id)
            if workflow.status in wanted:
                return workflow
            if time.monotonic() >= deadline:
                raise errors.DeadlineExceeded(f"workflow {workflow_id} is {workflow.status} after {timeout} s")
            time.sleep(0.05)

    def cancel(self, workflow_id: str, *, rollback: bool = False, reason: str = "") -> Workflow:
        from .workflow.v1 import workflow_pb2

        request = workflow_pb2.CancelWorkflowRequest(workflow_id=workflow_id, rollback=rollback, reason=reason)
        return Workflow.from_proto(self._call("CancelWorkflow", request).workflow)


class Approvals(_Service):
    def list(self, status: str = "PENDING", workflow_id: str = "", page_size: int = 100) -> Iterator[Approval]:
        """The approvals the caller may see (as approver, submitter or admin), oldest first."""
        from .workflow.v1 import workflow_pb2

        wanted = 0 if status.upper() == "ALL" else workflow_pb2.ApprovalStatus.Value(f"APPROVAL_STATUS_{status.upper()}")
        token = ""
        while True:
            request = workflow_pb2.ListApprovalsRequest(status=wanted, workflow_id=workflow_id, page_size=page_size, page_token=token)
            page = self._call("ListApprovals", request)
            yield from (Approval.from_proto(a) for a in page.approvals)
            if not page.next_page_token:
                return
            token = page.next_page_token

    def get(self, approval_id: str) -> Approval:
        from .workflow.v1 import workflow_pb2

        return Approval.from_proto(self._call("GetApproval", workflow_pb2.GetApprovalRequest(approval_id=approval_id)).approval)

    def approve(self, approval_id: str, comment: str = "") -> Approval:
        from .workflow.v1 import workflow_pb2

        request = workflow_pb2.ApproveStepRequest(approval_id=approval_id, comment=comment)
        return Approval.from_proto(self._call("ApproveStep", request).approval)

    def reject(self, approval_id: str, comment: str = "") -> Approval:
        from .workflow.v1 import workflow_pb2

        request = workflow_pb2.RejectStepRequest(approval_id=approval_id, comment=comment)
        return Approval.from_proto(self._call("RejectStep", request).approval)


class Audit:
    def __init__(self, client: Client):
        self._client = client

    def verify(self, service: str = "workflow") -> ChainCheck:
        """Asks `service` (`registry`, `policy` or `workflow`) to check its hash chain."""
        from .audit.v1 import audit_pb2, audit_pb2_grpc

        stub = audit_pb2_grpc.AuditServiceStub(self._client._channels[service])
        answer = _Service(self._client, stub)._call("VerifyAuditChain", audit_pb2.VerifyAuditChainRequest())
        return ChainCheck(answer.intact, answer.events_checked, answer.first_broken_sequence, answer.problem)


class Client:
    """The registry, policy and workflow services of one deployment.

    Identity: a bearer `token`, or (development mode only) a `principal`
    such as `user:alice` with `roles`. Addresses are `host:port` or
    `http://host:port` (plaintext) or `https://host:port` (TLS, verified
    against the PEM bytes in `ca` or the system's roots)."""

    def __init__(self, registry: str = DEFAULTS["registry"], policy: str = DEFAULTS["policy"],
                 workflow: str = DEFAULTS["workflow"], token: str | None = None, principal: str | None = None,
                 roles: Sequence[str] | str | None = None, *, ca: bytes | None = None, timeout: float = 30.0):
        from .policy.v1 import policy_pb2_grpc
        from .registry.v1 import registry_pb2_grpc
        from .workflow.v1 import workflow_pb2_grpc

        self.principal = principal
        self.roles = [r.strip() for r in roles.split(",") if r.strip()] if isinstance(roles, str) else list(roles or [])
        self.timeout = timeout
        metadata = []
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        if principal:
            metadata.append(("x-airt-principal", principal))
            metadata.append(("x-airt-roles", ",".join(self.roles)))
        self._metadata = tuple(metadata)
        self._addresses = {"registry": registry, "policy": policy, "workflow": workflow}
        self._ca = ca
        self._channels = {name: _channel(address, ca) for name, address in self._addresses.items()}
        self.registry = Registry(self, registry_pb2_grpc.RegistryServiceStub(self._channels["registry"]))
        self.policy = Policy(self, policy_pb2_grpc.PolicyServiceStub(self._channels["policy"]))
        self.workflows = Workflows(self, workflow_pb2_grpc.WorkflowServiceStub(self._channels["workflow"]))
        self.approvals = Approvals(self, workflow_pb2_grpc.ApprovalServiceStub(self._channels["workflow"]))
        self.audit = Audit(self)

    @classmethod
    def from_env(cls, **overrides: Any) -> Client:
        """The same variables as the `airt` CLI: `AIRT_REGISTRY_ADDR`,
        `AIRT_POLICY_ADDR`, `AIRT_WORKFLOW_ADDR`, `AIRT_TOKEN`, `AIRT_PRINCIPAL`,
        `AIRT_ROLES`, `AIRT_TLS_CA` (a PEM file)."""
        env = os.environ
        ca_file = env.get("AIRT_TLS_CA")
        settings: dict[str, Any] = {
            "registry": env.get("AIRT_REGISTRY_ADDR", DEFAULTS["registry"]),
            "policy": env.get("AIRT_POLICY_ADDR", DEFAULTS["policy"]),
            "workflow": env.get("AIRT_WORKFLOW_ADDR", DEFAULTS["workflow"]),
            "token": env.get("AIRT_TOKEN") or None,
            "principal": env.get("AIRT_PRINCIPAL") or None,
            "roles": env.get("AIRT_ROLES", ""),
        }
        if ca_file:
            with open(ca_file, "rb") as pem:
                settings["ca"] = pem.read()
        settings.update(overrides)
        return cls(**settings)

    def as_principal(self, principal: str, roles: Sequence[str] | str = ()) -> Client:
        """The same deployment, calling as someone else (development mode)."""
        return Client(**self._addresses, principal=principal, roles=roles, ca=self._ca, timeout=self.timeout)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
