"""The asyncio client: `airt.aio.Client`, the same surface as `airt.Client`
with coroutines and async iterators.

    async with airt.aio.Client.from_env() as client:
        run = await client.workflows.submit(spec)
        async for event in client.workflows.watch(run.id):
            print(event.sequence, event.kind)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import grpc
import grpc.aio

from . import _calls as calls
from . import errors
from .models import RESTING, ActionResult, Approval, Capability, ChainCheck, Decision, Event, Workflow

__all__ = ["Client"]


def _channel(address: str, ca: bytes | None) -> grpc.aio.Channel:
    host, tls = calls.target(address)
    if tls:
        return grpc.aio.secure_channel(host, grpc.ssl_channel_credentials(root_certificates=ca))
    return grpc.aio.insecure_channel(host)


class _Part:
    def __init__(self, client: Client):
        self._client = client

    async def _run(self, call: calls.Call) -> Any:
        return await self._client._run(call)

    async def _pages(self, page: Callable[[str], calls.Call]) -> AsyncIterator[Any]:
        token = ""
        while True:
            items, token = await self._run(page(token))
            for item in items:
                yield item
            if not token:
                return


class Registry(_Part):
    async def register(self, spec: str | dict[str, Any], *, validate_only: bool = False) -> Capability:
        return await self._run(calls.register(spec, validate_only))

    async def get(self, capability_id: str, version: str = "") -> Capability:
        return await self._run(calls.get_capability(capability_id, version))

    def list(self, page_size: int = 100) -> AsyncIterator[Capability]:
        return self._pages(calls.list_capabilities(page_size))


class Policy(_Part):
    async def put(self, source_yaml: str, *, activate: bool = True, description: str = "") -> str:
        return await self._run(calls.put_policy(source_yaml, activate, description))

    async def evaluate(self, capability_id: str, *, risk: str = "LOW", principal: str | None = None,
                       roles: Sequence[str] = (), operation: str = "", inputs: dict[str, Any] | None = None,
                       agent: str = "", environment: str = "") -> Decision:
        return await self._run(calls.evaluate(self._client._settings, capability_id, risk, principal, roles,
                                              operation, inputs, agent, environment))


class Workflows(_Part):
    async def submit(self, spec: str | dict[str, Any], request_id: str | None = None) -> Workflow:
        return await self._run(calls.submit(spec, request_id))

    async def get(self, workflow_id: str) -> Workflow:
        return await self._run(calls.get_workflow(workflow_id))

    def list(self, *, status: str | None = None, name: str = "", page_size: int = 100) -> AsyncIterator[Workflow]:
        return self._pages(calls.list_workflows(status, name, page_size))

    async def watch(self, workflow_id: str, after_sequence: int = 0, *, reconnects: int = 5) -> AsyncIterator[Event]:
        """As `airt.Client.workflows.watch`: in order, each once, resumed after UNAVAILABLE."""
        stub = self._client._stubs["workflow"]
        last, failures = after_sequence, 0
        while True:
            try:
                stream = stub.WatchWorkflow(calls.watch_request(workflow_id, last),
                                            metadata=self._client._settings.metadata)
                async for message in stream:
                    failures = 0
                    workflow, events = calls.watch_message(message)
                    for event in events:
                        last = event.sequence
                        yield event
                    if workflow.status in RESTING:
                        stream.cancel()
                        return
                return
            except grpc.RpcError as error:
                failure, failures = errors.from_rpc_error(error), failures + 1
                if not isinstance(failure, errors.Unavailable) or failures > reconnects:
                    raise failure from None
                await asyncio.sleep(calls.backoff(failures))

    async def wait(self, workflow_id: str, until: Iterable[str] = RESTING, timeout: float = 60.0) -> Workflow:
        wanted = {s.upper() for s in until}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            workflow = await self.get(workflow_id)
            if workflow.status in wanted:
                return workflow
            if loop.time() >= deadline:
                raise errors.DeadlineExceeded(f"workflow {workflow_id} is {workflow.status} after {timeout} s")
            await asyncio.sleep(0.05)

    async def cancel(self, workflow_id: str, *, rollback: bool = False, reason: str = "") -> Workflow:
        return await self._run(calls.cancel(workflow_id, rollback, reason))


class Actions(_Part):
    async def execute(self, capability_id: str, inputs: dict[str, Any] | None = None, *, request_id: str | None = None,
                      agent: str = "", wait: float | None = None) -> ActionResult:
        return await self._run(calls.execute_action(capability_id, inputs, request_id, agent, wait))

    async def get(self, workflow_id: str, *, wait: float | None = None) -> ActionResult:
        return await self._run(calls.get_action(workflow_id, wait))


class Approvals(_Part):
    def list(self, status: str = "PENDING", workflow_id: str = "", page_size: int = 100) -> AsyncIterator[Approval]:
        return self._pages(calls.list_approvals(status, workflow_id, page_size))

    async def get(self, approval_id: str) -> Approval:
        return await self._run(calls.get_approval(approval_id))

    async def approve(self, approval_id: str, comment: str = "") -> Approval:
        return await self._run(calls.decide(approval_id, comment, approve=True))

    async def reject(self, approval_id: str, comment: str = "") -> Approval:
        return await self._run(calls.decide(approval_id, comment, approve=False))


class Audit(_Part):
    async def verify(self, service: str = "workflow") -> ChainCheck:
        return await self._run(calls.verify_chain(service))

    async def export(self, service: str = "workflow", after_sequence: int = 0) -> AsyncIterator[str]:
        calls.verify_chain(service)  # the same check of the service name
        stream = self._client._stubs[f"audit:{service}"].ExportAuditEvents(
            calls.export_request(after_sequence), metadata=self._client._settings.metadata)
        try:
            async for message in stream:
                yield message.json_line
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None


class Client(calls.ClientBase):
    """`airt.Client` for asyncio: create it inside a running event loop."""

    registry: Registry
    policy: Policy
    workflows: Workflows
    actions: Actions
    approvals: Approvals
    audit: Audit
    _parts = {"registry": Registry, "policy": Policy, "workflows": Workflows, "actions": Actions,
              "approvals": Approvals, "audit": Audit}
    _open = staticmethod(_channel)

    async def _run(self, call: calls.Call) -> Any:
        method = getattr(self._stubs[call.stub], call.method)
        try:
            answer = await method(call.request, metadata=self._settings.metadata, timeout=self._settings.timeout)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None
        return call.read(answer)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
