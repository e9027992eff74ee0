"""An MCP server to import as governed capabilities: a small notes store.

    python examples/mcp/notes_server.py --port 8765 [--calls calls.jsonl]   # Streamable HTTP at /mcp
    python examples/mcp/notes_server.py --stdio [--calls calls.jsonl]       # over stdin/stdout

Its tools carry the annotations `airt registry import-mcp` derives the risk
from: `list_notes` is read-only (LOW), `add_note` writes without destroying
(CRITICAL: nothing undoes it), `delete_note` declares nothing and so is
treated as destructive (CRITICAL DELETE). Every call is appended to
`--calls` (one JSON line each), so a test can tell what reached it.
"""

import argparse
import json

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8765)
parser.add_argument("--calls", default=None, help="file recording every tool call")
parser.add_argument("--stdio", action="store_true", help="serve over stdin/stdout")
args = parser.parse_args()

server = MCPServer("notes", version="1.0.0")
notes: dict[str, str] = {}


def record(tool: str, arguments: dict) -> None:
    if args.calls:
        with open(args.calls, "a", encoding="utf-8") as calls:
            calls.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False))
def list_notes() -> dict:
    """The titles of every note."""
    record("list_notes", {})
    return {"titles": sorted(notes)}


@server.tool(annotations=ToolAnnotations(destructiveHint=False, openWorldHint=False))
def add_note(title: str, text: str) -> dict:
    """Adds (or replaces) a note."""
    record("add_note", {"title": title, "text": text})
    notes[title] = text
    return {"title": title, "count": len(notes)}


@server.tool()
def delete_note(title: str) -> dict:
    """Deletes a note."""
    record("delete_note", {"title": title})
    return {"deleted": notes.pop(title, None) is not None}


if __name__ == "__main__":
    if args.stdio:
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)
