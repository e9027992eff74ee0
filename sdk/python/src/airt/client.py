"""The blocking client: `airt.Client` (see `airt.aio.Client` for asyncio)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import grpc

from . import _calls as calls
from . import errors
from .models import RESTING, ActionResult, Approval, Capability, ChainCheck, Decision, Event, Workflow


def _channel(address: str, ca: bytes | None) -> grpc.Channel:
    host, tls = calls.target(address)
    if tls:
        return grpc.secure_channel(host, grpc.ssl_channel_credentials(root_certificates=ca))
    return grpc.insecure_channel(host)


class _Part:
    def __init__(self, client: Client):
        self._client = client

    def _run(self, call: calls.Call) -> Any:
        return self._client._run(call)

    def _pages(self, page: Callable[[str], calls.Call]) -> Iterator[Any]:
        token = ""
        while True:
            items, token = self._run(page(token))
            yield from items
            if not token:
                return


class Registry(_Part):
    def register(self, spec: str | dict[str, Any], *, validate_only: bool = False) -> Capability:
        """Registers a capability spec (YAML/JSON text or a mapping); the same
        content again is a no-op that answers the stored capability."""
        return self._run(calls.register(spec, validate_only))

    def get(self, capability_id: str, version: str = "") -> Capability:
        return self._run(calls.get_capability(capability_id, version))

    def list(self, page_size: int = 100) -> Iterator[Capability]:
        """Every capability's current revision, page after page."""
        return self._pages(calls.list_capabilities(page_size))


class Policy(_Part):
    def put(self, source_yaml: str, *, activate: bool = True, description: str = "") -> str:
        """Stores a policy set (and activates it unless `activate=False`); its revision."""
        return self._run(calls.put_policy(source_yaml, activate, description))

    def evaluate(self, capability_id: str, *, risk: str = "LOW", principal: str | None = None,
                 roles: Sequence[str] = (), operation: str = "", inputs: dict[str, Any] | None = None,
                 agent: str = "", environment: str = "") -> Decision:
        """What the active policy decides for this action (a question: nothing runs)."""
        return self._run(calls.evaluate(self._client._settings, capability_id, risk, principal, roles,
                                        operation, inputs, agent, environment))


class Workflows(_Part):
    def submit(self, spec: str | dict[str, Any], request_id: str | None = None) -> Workflow:
        """Submits a workflow; with a `request_id`, a retry returns the same
        workflow (and a different spec under it raises `AlreadyExists`)."""
        return self._run(calls.submit(spec, request_id))

    def get(self, workflow_id: str) -> Workflow:
        return self._run(calls.get_workflow(workflow_id))

    def list(self, *, status: str | None = None, name: str = "", page_size: int = 100) -> Iterator[Workflow]:
        """The caller's workflows (everyone's for admins), newest first, page after page."""
        return self._pages(calls.list_workflows(status, name, page_size))

    def watch(self, workflow_id: str, after_sequence: int = 0, *, reconnects: int = 5) -> Iterator[Event]:
        """Every event after `after_sequence`, in order, each once, until the
        workflow finishes or pauses. A dropped connection (UNAVAILABLE) is
        reopened after the last event received, up to `reconnects` times in a row."""
        stub = self._client._stubs["workflow"]
        last, failures = after_sequence, 0
        while True:
            try:
                for message in stub.WatchWorkflow(calls.watch_request(workflow_id, last),
                                                  metadata=self._client._settings.metadata):
                    failures = 0
                    workflow, events = calls.watch_message(message)
                    for event in events:
                        last = event.sequence
                        yield event
                    if workflow.status in RESTING:
                        return
                return
            except grpc.RpcError as error:
                failure, failures = errors.from_rpc_error(error), failures + 1
                if not isinstance(failure, errors.Unavailable) or failures > reconnects:
                    raise failure from None
                time.sleep(calls.backoff(failures))

    def wait(self, workflow_id: str, until: Iterable[str] = RESTING, timeout: float = 60.0) -> Workflow:
        """The workflow once its status is one of `until` (default: it finished
        or paused); `DeadlineExceeded` after `timeout` seconds."""
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
        return self._run(calls.cancel(workflow_id, rollback, reason))


class Actions(_Part):
    def execute(self, capability_id: str, inputs: dict[str, Any] | None = None, *, request_id: str | None = None,
                agent: str = "", wait: float | None = None) -> ActionResult:
        """Runs one capability as a governed action (policy, approval, audit, as
        a workflow step); waits at most `wait` seconds (default 10, at most 60)
        for its outcome. The same `request_id` answers with the same action."""
        return self._run(calls.execute_action(capability_id, inputs, request_id, agent, wait))

    def get(self, workflow_id: str, *, wait: float | None = None) -> ActionResult:
        """Where an action stands by its `workflow_id`, waiting at most `wait`
        seconds (default 0, at most 60) for it to finish or pause."""
        return self._run(calls.get_action(workflow_id, wait))


class Approvals(_Part):
    def list(self, status: str = "PENDING", workflow_id: str = "", page_size: int = 100) -> Iterator[Approval]:
        """The approvals the caller may see (as approver, submitter or admin), oldest first."""
        return self._pages(calls.list_approvals(status, workflow_id, page_size))

    def get(self, approval_id: str) -> Approval:
        return self._run(calls.get_approval(approval_id))

    def approve(self, approval_id: str, comment: str = "") -> Approval:
        return self._run(calls.decide(approval_id, comment, approve=True))

    def reject(self, approval_id: str, comment: str = "") -> Approval:
        return self._run(calls.decide(approval_id, comment, approve=False))


class Audit(_Part):
    def verify(self, service: str = "workflow") -> ChainCheck:
        """Asks `service` (`registry`, `policy` or `workflow`) to check its hash chain."""
        return self._run(calls.verify_chain(service))

    def export(self, service: str = "workflow", after_sequence: int = 0) -> Iterator[str]:
        """The service's events after `after_sequence` as JSON Lines (the hashed
        bytes plus `prev_hash` and `hash`): `airt.chain.verify_export` checks them offline."""
        calls.verify_chain(service)  # the same check of the service name
        stream = self._client._stubs[f"audit:{service}"].ExportAuditEvents(
            calls.export_request(after_sequence), metadata=self._client._settings.metadata)
        try:
            for message in stream:
                yield message.json_line
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None


class Client(calls.ClientBase):
    """The registry, policy and workflow services of one deployment.

    Identity: a bearer `token`, or (development mode only) a `principal`
    such as `user:alice` with `roles`. Addresses are `host:port` or
    `http://host:port` (plaintext) or `https://host:port` (TLS, verified
    against the PEM bytes in `ca` or the system's roots)."""

    registry: Registry
    policy: Policy
    workflows: Workflows
    actions: Actions
    approvals: Approvals
    audit: Audit
    _parts = {"registry": Registry, "policy": Policy, "workflows": Workflows, "actions": Actions,
              "approvals": Approvals, "audit": Audit}
    _open = staticmethod(_channel)

    def _run(self, call: calls.Call) -> Any:
        method = getattr(self._stubs[call.stub], call.method)
        try:
            answer = method(call.request, metadata=self._settings.metadata, timeout=self._settings.timeout)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None
        return call.read(answer)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
