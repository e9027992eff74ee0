"""`airt.aio.Client`: the same flow with coroutines and async iterators."""

import asyncio

import pytest

import airt
from airt import errors


def test_the_asyncio_client_runs_the_approval_flow(admin, unique):
    spec = {"name": f"aio-{unique}", "steps": [
        {"name": "write", "capability": "io.fs.write_file", "inputs": {"path": f"aio-{unique}.md", "content": "x"}},
        {"name": "ok", "type": "HUMAN_APPROVAL", "depends_on": ["write"],
         "approval": {"approver_roles": ["reviewer"], "message": "ok?"}},
    ]}

    async def flow():
        async with airt.aio.Client.from_env(principal="user:alice") as alice:
            run = await alice.workflows.submit(spec)
            events = [event async for event in alice.workflows.watch(run.id)]
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert events[-1].workflow.status == "PAUSED"
            bob = alice.as_principal("user:bob", roles=["reviewer"])
            approvals = [a async for a in bob.approvals.list(workflow_id=run.id)]
            assert [a.message for a in approvals] == ["ok?"]
            await bob.approvals.approve(approvals[0].id, "fine")
            await bob.close()
            done = await alice.workflows.wait(run.id, until=airt.FINISHED, timeout=30)
            assert done.status == "COMPLETED" and done.step("write").attempt == 1
            listed = [w.id async for w in alice.workflows.list(name=f"aio-{unique}", page_size=1)]
            assert listed == [run.id]
            auditor = alice.as_principal("user:carol", roles=["auditor"])
            assert (await auditor.audit.verify("workflow")).intact
            await auditor.close()

    asyncio.run(flow())


def test_asyncio_errors_are_typed_too():
    async def nowhere():
        async with airt.aio.Client(workflow="127.0.0.1:9", principal="user:alice", timeout=2) as client:
            await client.workflows.get("anything")

    with pytest.raises(errors.Unavailable):
        asyncio.run(nowhere())
