"""Drives the MINOOTS MCP server with the official Python MCP SDK, as an agent would.

Usage:
  mcp_client.py stdio [--scenario S] [--foreign-id ID] [--fast-schedules] -- COMMAND ARGS...
  mcp_client.py http URL --api-key KEY [--scenario S] [--foreign-id ID] [--fast-schedules]

Scenario `timers` (the default): initialize, list tools, create a 1 s timer and wait for
it, cancel another, a bad duration, another tenant's timer id, sleep; then schedules:
create one, list, get, its run records, a preview of the same spec, a bad cron, an unknown
id, and with --fast-schedules (a tier allowing 1 s intervals) a schedule every second
whose first fired run is read back with its timer. Scenario `schedule-control`: pause,
resume, trigger (and wait for the run's timer) and delete a schedule.

Prints one JSON line with what it saw; the Rust test asserts on that line. Exits 1 with a
message when a step cannot run at all.
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


UNKNOWN_SCHEDULE = "00000000-0000-4000-8000-000000000000"
START_AT = "2099-01-01T00:00:00Z"
# How long a fast schedule's first fired run may take to show in its records.
FAST_RUN_LIMIT_SECONDS = 30


def result(r):
    """A tool result as the Rust test reads it."""
    return {"isError": r.isError, "text": text_of(r), "structured": r.structuredContent}


async def must(session, name, arguments):
    r = await call(session, name, arguments)
    if r.isError:
        raise SystemExit(f"{name} failed: {text_of(r)}")
    return r.structuredContent


async def schedule_basics(session, fast):
    out = {}
    # Slots from 2099 on: none is dispatched while the test runs, so the schedule's
    # records and nextRunAt stay as created.
    spec = {"cron": "0 0 9 * * MON-FRI", "timezone": "Europe/Paris", "startAt": START_AT}
    created = await must(session, "create_schedule", {
        "name": "mcp-weekday-nine", **spec, "labels": {"via": "mcp"}, "maxRuns": 5,
        "overlap": "bufferOne", "misfire": {"policy": "none"},
        "webhookUrl": "http://127.0.0.1:9/never-called",
    })
    out["scheduleCreated"] = created
    listed = await must(session, "list_schedules", {"limit": 10})
    out["scheduleList"] = listed
    out["scheduleGot"] = result(await call(session, "get_schedule", {"id": created["id"]}))
    out["scheduleRuns"] = result(await call(session, "list_schedule_runs", {"id": created["id"], "limit": 5}))
    preview = await must(session, "preview_schedule", {**spec, "count": 1})
    out["previewFirstAt"] = preview["runs"][0]["at"]
    out["badCron"] = result(await call(session, "create_schedule", {"cron": "0 61 * * *", "name": "bad"}))
    out["unknownSchedule"] = result(await call(session, "get_schedule", {"id": UNKNOWN_SCHEDULE}))
    if fast:
        every = await must(session, "create_schedule", {"name": "mcp-every-second", "every": "1s"})
        out["fastCreated"] = every
        deadline = time.monotonic() + FAST_RUN_LIMIT_SECONDS
        fired = None
        while fired is None and time.monotonic() < deadline:
            page = await must(session, "list_schedule_runs", {"id": every["id"], "limit": 10})
            fired = next((r for r in page["runs"] if r["status"] == "fired"), None)
            if fired is None:
                await asyncio.sleep(0.5)
        out["fastRun"] = fired
        if fired is not None:
            out["fastRunTimer"] = await must(session, "get_timer", {"id": fired["timerId"]})
    return out


async def schedule_control(session):
    out = {}
    await session.initialize()
    created = await must(session, "create_schedule", {"name": "mcp-control", "every": "1m"})
    sid = created["id"]
    out["created"] = created
    out["paused"] = result(await call(session, "pause_schedule", {"id": sid}))
    out["gotPaused"] = result(await call(session, "get_schedule", {"id": sid}))
    out["resumed"] = result(await call(session, "resume_schedule", {"id": sid}))
    out["triggered"] = result(await call(session, "trigger_schedule", {"id": sid}))
    triggered = out["triggered"]["structured"] or {}
    if not out["triggered"]["isError"] and "id" in triggered:
        out["triggeredWaited"] = result(await call(session, "wait_for_timer", {"id": triggered["id"], "timeout": "30s"}))
    out["pauseUnknown"] = result(await call(session, "pause_schedule", {"id": UNKNOWN_SCHEDULE}))
    out["deleted"] = result(await call(session, "delete_schedule", {"id": sid}))
    out["gotDeleted"] = result(await call(session, "get_schedule", {"id": sid}))
    out["deletedAgain"] = result(await call(session, "delete_schedule", {"id": sid}))
    listed = await must(session, "list_schedules", {})
    out["listedAfterDelete"] = [s["id"] for s in listed["schedules"]]
    return out


async def run(session, args):
    if args.scenario == "schedule-control":
        return await schedule_control(session)
    out = await scenario(session, args.foreign_id)
    out.update(await schedule_basics(session, args.fast_schedules))
    return out


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["stdio", "http"])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--api-key")
    parser.add_argument("--foreign-id")
    parser.add_argument("--scenario", choices=["timers", "schedule-control"], default="timers")
    parser.add_argument("--fast-schedules", action="store_true")
    argv = sys.argv[1:]
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(command) - (1 if command else 0)])

    if args.mode == "stdio":
        params = StdioServerParameters(command=command[0], args=command[1:])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await run(session, args)
    else:
        client = create_mcp_http_client(headers={"X-API-Key": args.api_key})
        async with client:
            async with streamable_http_client(args.url, http_client=client) as (read, write, _):
                async with ClientSession(read, write) as session:
                    out = await run(session, args)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
