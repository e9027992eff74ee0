"""The MCP gateway against the real binaries, with the official Python MCP SDK.

    mcp_gateway.py GATEWAY_URL WORKSPACE NOTES_URL CALLS_FILE AIRT [AIRT ARGS...]

Expects: the three services and `mcp-gateway` (development identities,
`--approval-wait` of a few seconds), the example notes server
(examples/mcp/notes_server.py) recording its calls to CALLS_FILE, and the
`airt` command (with its service addresses) for what people do: put the
policy, import the notes server, approve, read the audit log. Exits non-zero
on the first failed check.
"""

import asyncio
import json
import os
import subprocess
import sys

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

GATEWAY, WORKSPACE, NOTES, CALLS = sys.argv[1:5]
AIRT = sys.argv[5:]


def airt(*args: str, who: tuple[str, str] = ("user:root", "admin")) -> str:
    command = [*AIRT, "--as", who[0], "--roles", who[1], *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def calls(tool: str) -> list[dict]:
    if not os.path.exists(CALLS):
        return []
    with open(CALLS, encoding="utf-8") as lines:
        return [c for c in map(json.loads, lines) if c["tool"] == tool]


def client(principal: str, roles: str) -> Client:
    http = create_mcp_http_client(headers={"x-airt-principal": principal, "x-airt-roles": roles})
    return Client(streamable_http_client(GATEWAY, http_client=http))


def text(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "text", None))


async def listing_follows_the_registry_and_the_policy() -> None:
    async with client("user:alice", "writer") as alice:
        # Importing the notes server changes the registry: listeners hear it.
        async with alice.listen(tools_list_changed=True) as changes:
            airt("registry", "import-mcp", NOTES, "--prefix", "demo.notes", who=("user:reg", "registrar"))
            await asyncio.wait_for(anext(aiter(changes)), timeout=20)
        print("ok: tools/list_changed after import-mcp")
        tools = {t.name: t for t in (await alice.list_tools()).tools}
        for hidden in ("io.fs.delete", "demo.notes.delete_note"):
            assert hidden not in tools, f"{hidden} is denied to alice whatever the inputs, yet listed"
        for shown in ("io.fs.write_file", "io.fs.read_file", "io.fs.copy", "demo.notes.add_note",
                      "demo.notes.list_notes", "airt_action_status"):
            assert shown in tools, f"{shown} is not listed for alice: {sorted(tools)}"
        write = tools["io.fs.write_file"]
        schema = write.input_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False, schema
        assert schema["properties"]["path"]["type"] == "string", schema
        assert schema["properties"]["content"]["type"] == "string", schema
        assert "path" in schema["required"], schema
        assert write.annotations.read_only_hint is False and write.annotations.destructive_hint is False
        assert write.annotations.open_world_hint is False
        read = tools["io.fs.read_file"].annotations
        assert read.read_only_hint is True and read.idempotent_hint is True, read
        add = tools["demo.notes.add_note"]
        assert add.annotations.destructive_hint is True and add.annotations.open_world_hint is True
        assert "risk CRITICAL" in add.description and "must approve" in add.description, add.description
        assert "approve every call" in tools["io.fs.copy"].description
    print("ok: tools/list has JSON Schemas and annotations; denied tools are hidden")
    async with client("user:bob", "") as bob:
        names = {t.name for t in (await bob.list_tools()).tools}
        assert "io.fs.read_file" in names and "io.fs.write_file" not in names, sorted(names)
    print("ok: another principal sees its own list")
    for capability, level in (("demo.notes.list_notes", "LOW"), ("demo.notes.add_note", "CRITICAL"),
                              ("demo.notes.delete_note", "CRITICAL")):
        spec = json.loads(airt("-o", "json", "registry", "get", capability))["spec"]
        assert spec["risk"]["level"] == f"RISK_LEVEL_{level}", (capability, spec["risk"])
        assert spec["handler"] == f"mcp:{NOTES}#{capability.rsplit('.', 1)[1]}", spec["handler"]
    print("ok: imported tools carry the derived risk (LOW read, CRITICAL writes and deletes)")


async def calls_are_governed_actions() -> None:
    async with client("user:alice", "writer") as alice:
        done = await alice.call_tool("io.fs.write_file", {"path": "mcp-hello.txt", "content": "hi"})
        assert not done.is_error, text(done)
        with open(os.path.join(WORKSPACE, "mcp-hello.txt"), encoding="utf-8") as f:
            assert f.read() == "hi"
        assert done.structured_content["size"] == 2, done.structured_content
        print("ok: an allowed write ran and created the file")

        denied = await alice.call_tool("io.fs.delete", {"path": "mcp-hello.txt"})
        assert denied.is_error and "no-deletes" in text(denied), text(denied)
        assert os.path.exists(os.path.join(WORKSPACE, "mcp-hello.txt")), "a denied delete deleted"
        denied = await alice.call_tool("demo.notes.delete_note", {"title": "x"})
        assert denied.is_error and "no-deletes" in text(denied), text(denied)
        assert calls("delete_note") == [], "a denied call reached the upstream server"
        print("ok: denied calls are tool errors naming the rule; nothing ran, nothing reached upstream")

        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        meta = {"io.airt/request_id": "ci-add-note-1"}
        arguments = {"title": "launch", "text": "Tuesday"}
        pending = await alice.call_tool("demo.notes.add_note", arguments, progress_callback=on_progress, meta=meta)
        details = pending.structured_content
        assert pending.is_error and details["status"] == "AWAITING_APPROVAL", text(pending)
        assert progress, "no progress notification while waiting for the approval"
        assert calls("add_note") == [], "the tool ran before its approval"
        print(f"ok: a call needing approval answered pending ({details['approval_id']}) after progress")

        airt("approvals", "approve", details["approval_id"], "--comment", "fine", who=("user:bob", "approver"))
        status = await alice.call_tool("airt_action_status", {"action_id": details["action_id"], "wait_seconds": 30})
        assert status.structured_content["status"] == "SUCCEEDED", text(status)
        assert len(calls("add_note")) == 1, calls("add_note")
        again = await alice.call_tool("demo.notes.add_note", arguments, meta=meta)
        assert not again.is_error, text(again)
        assert again.meta["io.airt/action_id"] == details["action_id"], again.meta
        assert len(calls("add_note")) == 1, "the same request id ran the tool twice"
        print("ok: approved, airt_action_status gave the result, the same request id never ran it again")

    audit = [json.loads(line) for line in airt("audit", "export", "--service", "workflow").splitlines()]
    submitted = [e for e in audit if e["action"] == "workflow.submitted" and e["resource_id"] == details["action_id"]]
    assert [e["actor"] for e in submitted] == ["user:alice"], submitted
    print("ok: the audit chain names the caller, not the gateway")


async def a_local_stdio_server_is_imported_by_name() -> None:
    # The workflow service declares `notes` (--mcp-stdio-server notes=...);
    # the registrar lists its tools with the same command, here.
    command = f"{sys.executable} examples/mcp/notes_server.py --stdio --calls {CALLS}"
    airt("registry", "import-mcp", "stdio:notes", "--command", command, "--prefix", "demo.local",
         who=("user:reg", "registrar"))
    spec = json.loads(airt("-o", "json", "registry", "get", "demo.local.list_notes"))["spec"]
    assert spec["handler"] == "mcp:stdio:notes#list_notes", spec["handler"]
    before = len(calls("list_notes"))
    async with client("user:alice", "writer") as alice:
        listed = await alice.call_tool("demo.local.list_notes", {})
        assert not listed.is_error, text(listed)
        denied = await alice.call_tool("demo.local.delete_note", {"title": "x"})
        assert denied.is_error, text(denied)
    assert len(calls("list_notes")) == before + 1, calls("list_notes")
    assert calls("delete_note") == [], "a denied call reached the local server"
    print("ok: a declared local (stdio) MCP server was imported and called after an ALLOW; a DENY never reached it")


def a_workflow_step_reaches_the_imported_tool() -> None:
    before = len(calls("list_notes"))
    out = airt("run", "examples/mcp/list_notes.yaml", "--watch", who=("user:alice", ""))
    assert "COMPLETED" in out, out
    assert len(calls("list_notes")) == before + 1, calls("list_notes")
    print("ok: a workflow step ran the imported tool after an ALLOW")


async def stdio_serves_the_same_tools() -> None:
    params = StdioServerParameters(
        command=AIRT[0], args=[*AIRT[1:], "--as", "user:alice", "--roles", "writer", "mcp", "stdio"]
    )
    async with Client(params) as over_stdio, client("user:alice", "writer") as over_http:
        stdio_names = {t.name for t in (await over_stdio.list_tools()).tools}
        http_names = {t.name for t in (await over_http.list_tools()).tools}
        assert stdio_names == http_names, stdio_names ^ http_names
        read = await over_stdio.call_tool("io.fs.read_file", {"path": "mcp-hello.txt"})
        assert not read.is_error and read.structured_content["content"] == "hi", text(read)
    print("ok: airt mcp stdio lists the same tools and calls them as the CLI's caller")


async def main() -> None:
    airt("policy", "put", "-f", "examples/mcp/policy.yaml", "--activate")
    await listing_follows_the_registry_and_the_policy()
    await calls_are_governed_actions()
    a_workflow_step_reaches_the_imported_tool()
    await a_local_stdio_server_is_imported_by_name()
    await stdio_serves_the_same_tools()
    print("MCP gateway: every check passed")


asyncio.run(main())
