"""Schemathesis hooks for the schema fuzzing test of the MINOOTS REST API.

A few rules of the API depend on the moment of the request or on two fields at once, which
JSON Schema cannot state; the document gives them in the field's `description`. Positive
cases (the ones the fuzzer expects the server to accept) that break one of these rules are
not sent. Negative cases are never filtered, and nothing else is.
"""

import json
import re
from datetime import datetime, timedelta, timezone

import schemathesis

# A `fireAt` may lie from 5 s in the past to 10 years (3660 days) ahead; one hour of margin
# on each side keeps a case valid while it is sent.
MARGIN = timedelta(hours=1)
HORIZON = timedelta(days=3660)
# Metadata and webhook bodies / file contents are bounded as serialized JSON.
MAX_METADATA_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_BACKOFF_MS = 3_600_000
DEFAULT_INITIAL_BACKOFF_MS = 1_000


def _time(text):
    try:
        t = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo is not None else None


def _json_size(value):
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _timer_request_is_valid(body, now):
    at = body.get("fireAt")
    if isinstance(at, str):
        t = _time(at)
        if t is None or not (now + MARGIN <= t <= now + HORIZON - MARGIN):
            return False
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and _json_size(metadata) > MAX_METADATA_BYTES:
        return False
    bundle = body.get("actionBundle") or {}
    for action in bundle.get("actions") or []:
        # The demo server enables neither command nor file actions.
        if action.get("type") in ("command", "file"):
            return False
        if action.get("body") is not None and _json_size(action["body"]) > MAX_BODY_BYTES:
            return False
    policy = bundle.get("retryPolicy") or {}
    initial = policy.get("initialBackoffMs") or DEFAULT_INITIAL_BACKOFF_MS
    maximum = policy.get("maxBackoffMs") or DEFAULT_MAX_BACKOFF_MS
    return initial <= maximum


_UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
DAY_MS = 86_400_000


def _duration_ms(value):
    """Milliseconds of a duration in the forms the schema generates (an integer, or compact
    text like 1h30m); None for a form this hook does not read (ISO 8601)."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    parts = re.findall(r"([0-9]+)(ms|w|d|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def _schedule_fields_are_valid(body, now):
    """The rules of a schedule's fields that stand alone (catch-up window, jitter,
    metadata and actions)."""
    misfire = body.get("misfire") or {}
    for value, limit in ((misfire.get("window"), 366 * DAY_MS), (body.get("jitter"), DAY_MS)):
        if value is not None:
            ms = _duration_ms(value)
            if ms is None or ms > limit:
                return False
    return _timer_request_is_valid({k: body.get(k) for k in ("metadata", "actionBundle")}, now)


def _schedule_request_is_valid(body, now):
    """The rules of a schedule spec that the schema cannot state. A cron expression's
    grammar is not re-implemented here: positive cases with a cron are not sent (the
    grammar has its own tests); `every` cases are."""
    if body.get("cron") is not None or body.get("every") is None:
        return False
    if body.get("timezone") not in (None, "UTC"):
        return False
    every = _duration_ms(body["every"])
    phase = _duration_ms(body.get("phase") or 0)
    if every is None or phase is None or every <= 0 or every > 366 * DAY_MS:
        return False
    if every % 1000 or phase % 1000 or phase >= every:
        return False
    start, end = _time(body.get("startAt") or ""), _time(body.get("endAt") or "")
    if body.get("startAt") is not None and start is None:
        return False
    if body.get("endAt") is not None:
        # The end must follow the start and now, and leave room for a slot.
        base = start if start is not None and start > now else now
        if end is None or end < base + MARGIN + timedelta(milliseconds=every):
            return False
    return _schedule_fields_are_valid(body, now)


def _versions_agree(case):
    """The version comes in the body or in If-Match ("3"); when both are sent they must
    agree. An empty If-Match names no version, as if it were absent."""
    header = (case.headers or {}).get("If-Match") or None
    version = case.body.get("version")
    if header is None and version is None:
        return False
    return header is None or version is None or header == f'"{version}"'


def _fire_range_is_valid(query):
    """A timer list's fire-time range, when both bounds are given, must not be empty:
    fireBefore later than fireAfter."""
    after, before = _time((query or {}).get("fireAfter") or ""), _time((query or {}).get("fireBefore") or "")
    return after is None or before is None or before > after


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    if (case.method.upper(), case.operation.path) == ("GET", "/timers"):
        return _fire_range_is_valid(case.query)
    if not isinstance(case.body, dict):
        return True
    now = datetime.now(timezone.utc)
    where = (case.method.upper(), case.operation.path)
    if where == ("POST", "/timers"):
        # The Idempotency-Key header and the body's idempotencyKey, when both are sent,
        # must be equal.
        header = (case.headers or {}).get("Idempotency-Key")
        key = case.body.get("idempotencyKey")
        if header is not None and key is not None and header != key:
            return False
        return _timer_request_is_valid(case.body, now)
    if where in (("POST", "/schedules/preview"), ("POST", "/schedules")):
        return _schedule_request_is_valid(case.body, now)
    if where == ("PATCH", "/timers/{id}"):
        return _versions_agree(case) and _timer_request_is_valid(case.body, now)
    if where == ("PATCH", "/schedules/{id}"):
        return _versions_agree(case) and _schedule_fields_are_valid(case.body, now)
    if where == ("POST", "/admin/keys"):
        at = case.body.get("expiresAt")
        if isinstance(at, str):
            t = _time(at)
            return t is not None and t >= now + MARGIN
    return True


# The fields of a schedule that depend on each other: the recurrence, its zone, phase and
# bounds.
_RECURRENCE_FIELDS = ("cron", "every", "phase", "timezone", "startAt", "endAt")


@schemathesis.hook
def map_case(context, case):
    """A PATCH merges with the stored schedule, which the fuzzer does not know. A positive
    case keeps its recurrence fields only when they make a valid spec by themselves (then
    the stored ones they leave out are removed); otherwise it leaves the stored `every`
    in force and clears the fields that depend on it. Either way the merged spec is valid
    whatever was stored."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    if (case.method.upper(), case.operation.path) != ("PATCH", "/schedules/{id}"):
        return case
    body = case.body
    if body.get("every") is not None and _schedule_request_is_valid(body, datetime.now(timezone.utc)):
        for key in _RECURRENCE_FIELDS:
            body.setdefault(key, None)
        body["cron"] = None
    else:
        body.pop("cron", None)
        body.pop("every", None)
        for key in ("phase", "timezone", "startAt", "endAt"):
            body[key] = None
    return case
