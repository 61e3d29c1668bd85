"""Schemathesis hooks for scripts/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

- `error_is_problem_json`: every answer of 400 or more is
  `application/problem+json` with the RFC 9457 members the API promises
  (`type`, `title`, `status` equal to the HTTP status, and a stable `code`).
- Path parameters: half of the generated cases of reading and acting
  operations use ids that exist (a Stages connection with working credentials,
  a pushed site with its link, device and billing records; written by
  scripts/fuzz/seed.py to $FUZZ_SEEDS), so the fuzzing reaches past the 404s.
  Operations that would break the seeded records for the rest of the run
  (deleting, changing a connection or its credentials) never get them, even
  from schemathesis' own pool of ids seen in answers (before_call).
- Request bodies never name an outside URL (before_call).
- Stages callbacks to the seeded connection carry its inbound credential
  (HTTP Basic), so the callback handler is fuzzed past its 401.
"""

from __future__ import annotations

import json
import os
import uuid

import schemathesis
from hypothesis import strategies as st

_SEEDS: dict[str, str] = {}
if os.environ.get("FUZZ_SEEDS"):
    with open(os.environ["FUZZ_SEEDS"]) as fh:
        _SEEDS = json.load(fh)

# (method, path suffix) of operations that keep random ids.
_KEEP_RANDOM = ("credentials/dealer", "credentials/me", "inbound-credentials:rotate")


def _seedable(ctx) -> bool:
    op = getattr(ctx, "operation", None)
    return op is not None and _seedable_op(op)


def _seedable_op(op) -> bool:
    method = op.method.upper()
    if method == "DELETE":
        return False
    if method in ("PATCH", "PUT") and op.path in ("/v1/connections/{connection_id}",):
        return False
    return not any(op.path.endswith(s) for s in _KEEP_RANDOM)


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):
    if not path_parameters or not _SEEDS or not _seedable(ctx):
        return st.just(path_parameters)
    seeded = dict(path_parameters)
    changed = False
    for name in path_parameters:
        if name in _SEEDS:
            seeded[name] = _SEEDS[name]
            changed = True
    if not changed:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, seeded])


# Fields of request bodies the service calls out to: a connection's endpoint
# goes to the Stages simulator, any other URL to a closed loopback port, so the
# service under test never sends anything off this machine (fuzz.sh also points
# its HTTP proxy at a closed loopback port).
_LOOPBACK = "http://127.0.0.1:9/fuzz"


def _keep_local(body) -> None:
    if not isinstance(body, dict):
        return
    if isinstance(body.get("endpoint"), str):
        body["endpoint"] = _SEEDS.get("stages_url", _LOOPBACK)
    if isinstance(body.get("url"), str):
        body["url"] = _LOOPBACK


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """The last word before a request leaves, whichever phase made it (the
    resource pool of schemathesis reuses ids from earlier answers too): no
    outside URLs, and the seeded records are not deleted or unconfigured."""
    _keep_local(case.body)
    if (
        case.operation.path == "/v1/webhooks/stages/{connection_id}"
        and (case.path_parameters or {}).get("connection_id") == _SEEDS.get("connection_id")
        and "inbound_secret" in _SEEDS
    ):
        # Stages' callbacks to the seeded connection carry its inbound credential
        # (requests' auth replaces the bearer header given on the command line).
        kwargs["auth"] = (_SEEDS["inbound_username"], _SEEDS["inbound_secret"])
    if _SEEDS and case.path_parameters and not _seedable_op(case.operation):
        seeded = set(_SEEDS.values())
        for name, value in list(case.path_parameters.items()):
            if value in seeded:
                case.path_parameters[name] = str(uuid.uuid4())


@schemathesis.check
def upstream_failure_names_connection(ctx, response, case):
    """A 5xx is only ever an upstream's failure: 502/504, code upstream_*, naming the connection."""
    if response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    code = body.get("code", "") if isinstance(body, dict) else ""
    detail = body.get("detail", "") if isinstance(body, dict) else ""
    if response.status_code not in (502, 504) or not str(code).startswith("upstream") or "connection" not in str(detail):
        raise AssertionError(
            f"{response.status_code} is not an upstream failure naming its connection: {response.content[:300]!r}"
        )
    return None


@schemathesis.check
def error_is_problem_json(ctx, response, case):
    """Every error is application/problem+json with type, title, status and code."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.lower().startswith("application/problem+json"):
        raise AssertionError(
            f"{response.status_code} answered with Content-Type {content_type!r}, not application/problem+json"
        )
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"{response.status_code}: the problem body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise AssertionError(f"{response.status_code}: the problem body is not an object")
    missing = [k for k in ("type", "title", "status", "code") if k not in body]
    if missing:
        raise AssertionError(f"{response.status_code}: the problem lacks {', '.join(missing)}")
    if body["status"] != response.status_code:
        raise AssertionError(f"problem status {body['status']} differs from the HTTP status {response.status_code}")
    return None
