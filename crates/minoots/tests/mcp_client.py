"""Drives the MINOOTS MCP server with the official Python MCP SDK, as an agent would.

Usage:
  mcp_client.py stdio --foreign-id ID -- COMMAND ARGS...
  mcp_client.py http URL --api-key KEY --foreign-id ID

Runs the scenario (initialize, list tools, create a 1 s timer and wait for it, cancel
another, a bad duration, another tenant's timer id, sleep) and prints one JSON line with
what it saw; the Rust test asserts on that line. Exits 1 with a message when a step
cannot run at all.
"""

import argparse
import asyncio
import json
import sys
import time
from datetime import timedelta

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

CALL_TIMEOUT = timedelta(seconds=120)


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def call(session, name, arguments, progress=None):
    return await session.call_tool(
        name, arguments, read_timeout_seconds=CALL_TIMEOUT, progress_callback=progress
    )


async def scenario(session, foreign_id):
    out = {}
    init = await session.initialize()
    out["serverName"] = init.serverInfo.name
    tools = await session.list_tools()
    out["tools"] = sorted(t.name for t in tools.tools)
    out["toolsWithSchemas"] = sum(
        1 for t in tools.tools if t.inputSchema.get("type") == "object" and t.description
    )

    created = await call(session, "create_timer", {"name": "mcp-one-second", "duration": "1s", "labels": {"via": "mcp"}})
    if created.isError:
        raise SystemExit(f"create_timer failed: {text_of(created)}")
    out["createdStatus"] = created.structuredContent["status"]
    out["createdTextIsJson"] = json.loads(text_of(created))["id"] == created.structuredContent["id"]
    timer_id = created.structuredContent["id"]
    out["createdId"] = timer_id

    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "total": total, "message": message})

    waited = await call(session, "wait_for_timer", {"id": timer_id, "timeout": "60s"}, on_progress)
    if waited.isError:
        raise SystemExit(f"wait_for_timer failed: {text_of(waited)}")
    out["waitedStatus"] = waited.structuredContent["status"]
    out["waitedFiredAt"] = waited.structuredContent.get("firedAt")
    out["progress"] = progress

    got = await call(session, "get_timer", {"id": timer_id})
    out["getStatus"] = None if got.isError else got.structuredContent["status"]
    listed = await call(session, "list_timers", {"label": "via:mcp", "limit": 10})
    out["listedIds"] = [] if listed.isError else [t["id"] for t in listed.structuredContent["timers"]]
    deliveries = await call(session, "list_deliveries", {"id": timer_id})
    out["deliveriesIsError"] = deliveries.isError

    other = await call(session, "create_timer", {"name": "mcp-to-cancel", "duration": "1h"})
    if other.isError:
        raise SystemExit(f"create_timer (1h) failed: {text_of(other)}")
    cancelled = await call(session, "cancel_timer", {"id": other.structuredContent["id"], "reason": "not needed"})
    out["cancelled"] = {
        "isError": cancelled.isError,
        "status": (cancelled.structuredContent or {}).get("status"),
        "cancelReason": (cancelled.structuredContent or {}).get("cancelReason"),
    }
    again = await call(session, "cancel_timer", {"id": other.structuredContent["id"]})
    out["cancelAgain"] = {"isError": again.isError, "text": text_of(again)}

    bad = await call(session, "create_timer", {"duration": "soon"})
    out["badDuration"] = {"isError": bad.isError, "text": text_of(bad)}
    unknown = await call(session, "create_timer", {"duration": "1s", "colour": "red"})
    out["unknownArgument"] = {"isError": unknown.isError, "text": text_of(unknown)}

    foreign = await call(session, "get_timer", {"id": foreign_id})
    out["foreign"] = {"isError": foreign.isError, "text": text_of(foreign)}
    foreign_cancel = await call(session, "cancel_timer", {"id": foreign_id})
    out["foreignCancel"] = {"isError": foreign_cancel.isError, "text": text_of(foreign_cancel)}

    started = time.monotonic()
    slept = await call(session, "sleep", {"duration": "1s"})
    out["sleep"] = {
        "isError": slept.isError,
        "status": (slept.structuredContent or {}).get("status"),
        "seconds": round(time.monotonic() - started, 3),
    }
    return out


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["stdio", "http"])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--api-key")
    parser.add_argument("--foreign-id", required=True)
    argv = sys.argv[1:]
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(command) - (1 if command else 0)])

    if args.mode == "stdio":
        params = StdioServerParameters(command=command[0], args=command[1:])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await scenario(session, args.foreign_id)
    else:
        client = create_mcp_http_client(headers={"X-API-Key": args.api_key})
        async with client:
            async with streamable_http_client(args.url, http_client=client) as (read, write, _):
                async with ClientSession(read, write) as session:
                    out = await scenario(session, args.foreign_id)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
