"""Schemathesis hooks for scripts/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

- `error_is_problem_json`: every answer of 400 or more is
  `application/problem+json` with the RFC 9457 members the API promises
  (`type`, `title`, `status` equal to the HTTP status, and a stable `code`).
- `upstream_failure_names_connection`: a 5xx is only ever an upstream's
  failure (502/504, `upstream_*`, naming the connection), and only from an
  operation whose documented responses include 502 or 504 (see there why).
- Records that exist: scripts/fuzz/seed.py writes to $FUZZ_SEEDS, per upstream
  (a "flavour": Stages, Alarm.com, Total Connect), the values to give path,
  query and top-level body fields of a name (a Stages connection with working
  credentials, a pushed site with its link, device and billing records; an
  Alarm.com entry on adc-sim with an ISP account, an import and its service
  plans; a Total Connect entry). Each generated case of a reading or acting
  operation is sent as generated or with one flavour's values throughout
  (map_case, flatmap_case), so the fuzzing gets past the 404s and the
  wrong-provider 409s to 2xx. Operations that would break the seeded records for the rest of
  the run (deleting, changing a connection or its credentials) never get
  them, even from schemathesis' own pool of ids seen in answers (before_call).
- Request bodies never name an outside URL (before_call).
- Callbacks to the seeded connections are authenticated as their sender
  would: Stages' with the inbound credential (HTTP Basic), Alarm.com's and
  Alarm.net's signed with the connection's inbound secret (Standard Webhooks:
  `webhook-id`, `webhook-timestamp`, `webhook-signature`), so their handlers
  are fuzzed past the 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid

import schemathesis
from hypothesis import strategies as st

_DATA: dict = {}
if os.environ.get("FUZZ_SEEDS"):
    with open(os.environ["FUZZ_SEEDS"]) as fh:
        _DATA = json.load(fh)
_FLAVOURS: dict[str, dict] = _DATA.get("flavours", {})
_URLS: dict[str, str] = _DATA.get("urls", {})
_CALLBACKS: dict[str, dict] = _DATA.get("callbacks", {})


def _strings(value) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, str)]


# Every seeded id, to keep away from the operations that would break it.
_SEEDED = {v for f in _FLAVOURS.values() for value in f.values() for v in _strings(value)}

# (method, path suffix) of operations that keep random ids.
_KEEP_RANDOM = ("credentials/dealer", "credentials/me", "inbound-credentials:rotate")


def _seedable_op(op) -> bool:
    method = op.method.upper()
    if method == "DELETE":
        return False
    if method in ("PATCH", "PUT") and op.path in ("/v1/connections/{connection_id}",):
        return False
    return not any(op.path.endswith(s) for s in _KEEP_RANDOM)


def _pick(seed, current, *, as_text: bool):
    """The seeded value for a field that was generated as `current`: the
    candidate of the same JSON type (path and query values are text). A null,
    a boolean or a container stays as generated."""
    candidates = seed if isinstance(seed, list) else [seed]
    if as_text:
        want = str
    elif isinstance(current, bool) or not isinstance(current, (int, str)):
        return current
    else:
        want = type(current)
    for c in candidates:
        if type(c) is want:
            return c
    return current


def _seeded(values: dict, container, *, as_text: bool):
    if not isinstance(container, dict) or not container:
        return container
    out = dict(container)
    for name, current in container.items():
        if name in values:
            out[name] = _pick(values[name], current, as_text=as_text)
    return out


def _mode(case, location: str) -> str:
    """How the case's generator meant a location: "positive" or "negative"."""
    meta = case.meta
    for loc, info in (getattr(meta, "components", None) or {}).items():
        if str(getattr(loc, "value", loc)) == location:
            return str(getattr(info.mode, "value", info.mode))
    return "positive"


def _fingerprint(case) -> str:
    body = case.body
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode()
    elif not isinstance(body, (dict, list, str, int, float, bool, type(None))):
        body = None  # no body
    return json.dumps([case.method, case.path, case.path_parameters, case.query, body],
                      sort_keys=True, default=str)


def _variants(case):
    """The case as generated, then each flavour's different version of its
    path, query and body (locations the case means to be invalid are left as
    generated), with the flavour's values; None when nothing is seeded."""
    if not _FLAVOURS or not _seedable_op(case.operation):
        return None
    seed_path = _mode(case, "path") == "positive"
    seed_query = _mode(case, "query") == "positive"
    seed_body = _mode(case, "body") == "positive"
    original = (case.path_parameters, case.query, case.body)
    variants = [original]
    flavours: list[dict] = [{}]
    for values in _FLAVOURS.values():
        variant = (
            _seeded(values, original[0], as_text=True) if seed_path else original[0],
            _seeded(values, original[1], as_text=True) if seed_query else original[1],
            _seeded(values, original[2], as_text=False) if seed_body else original[2],
        )
        if variant not in variants:
            variants.append(variant)
            flavours.append(values)
    if len(variants) == 1:
        return None
    return variants, flavours, seed_body, case.headers, _fingerprint(case)


def _use(case, found, index: int, consistent: bool, key: str):
    """Sends `case` as variant `index`: new containers, never the generated
    ones changed in place, and only where they differ (schemathesis
    revalidates what a hook changes)."""
    variants, flavours, seed_body, headers, _ = found
    for name, current, new in zip(("path_parameters", "query", "body"), (case.path_parameters, case.query, case.body),
                                  variants[index]):
        if new is not current:
            setattr(case, name, new)
    if headers is not case.headers:
        case.headers = headers
    if index == 0:
        return case
    if headers is not None and "Idempotency-Key" in headers and _mode(case, "header") == "positive":
        # The document gives the header no constraints, so a "positive" case
        # may carry an empty or overlong key and meet a 400 first (or reuse
        # one with another body: 422). A seeded case gets a valid key.
        case.headers = {**headers, "Idempotency-Key": key}
    if case.headers and "If-Match" in case.headers and _mode(case, "header") == "positive":
        # A generated If-Match never matches the record's ETag, so every
        # seeded case carrying one would stop at 412 and never reach 2xx.
        case.headers = {k: v for k, v in case.headers.items() if k != "If-Match"}
    if isinstance(case.query, dict) and "page_token" in case.query and _mode(case, "query") == "positive":
        # Likewise a generated page token is never one the service gave out (422).
        case.query = {k: v for k, v in case.query.items() if k != "page_token"}
    fix = _CONSISTENT.get((case.method.upper(), case.operation.path))
    if fix and consistent and seed_body and isinstance(case.body, dict):
        case.body = fix(dict(case.body), flavours[index])
    return case


def _phase(case) -> str:
    meta = case.meta
    return str(getattr(getattr(meta, "phase", None), "name", "")) if meta is not None else ""


def _choose(case, found, salt: str = ""):
    """Variant, consistency and idempotency key by a hash of the case: spread
    evenly over the variants whatever values hypothesis favours, and the
    same for the same case and salt (hypothesis replays a case exactly)."""
    digest = int(hashlib.sha256((found[4] + salt).encode()).hexdigest(), 16)
    n = len(found[0])
    return _use(case, found, digest % n, digest // n % 4 != 0, f"fuzz-{digest % 16**32:032x}")


@schemathesis.hook
def map_case(ctx, case):
    """The examples and coverage phases (which make most of the cases, and
    where only map hooks apply): each case is sent as generated or as one
    flavour's version, chosen by a hash of the case. The fuzzing phase
    chooses in flatmap_case instead, and the stateful phase keeps the ids its
    links carry."""
    if _phase(case) in ("fuzzing", "stateful"):
        return case
    found = _variants(case)
    return case if found is None else _choose(case, found)


@schemathesis.hook
def flatmap_case(ctx, case):
    """The fuzzing phase: the hash takes a salt hypothesis draws, so the same
    generated values are tried with more than one flavour."""
    if _phase(case) != "fuzzing":
        return st.just(case)
    found = _variants(case)
    if found is None:
        return st.just(case)
    return st.integers(0, 2**32).map(lambda salt: _choose(case, found, str(salt)))


# Bodies whose rules the document cannot state: which fields go with which
# `type` or `action` (all are optional there), or lengths, so hardly any
# generated one is accepted. Most seeded cases of these operations are made
# to agree with them (map_case, flatmap_case); the rest still test the refusal.
_PAYMENT = {"payment_id": "fuzz-payment-1", "amount_cents": 4999, "currency": "USD"}
_PAYMENT_METHOD = {"kind": "card", "last4": "4242", "expires": "12/2030"}


def _consistent_notice(body: dict, values: dict) -> dict:
    """An Alarm.com billing notification: `payment_received` carries
    `payment`, `payment_method_changed` its `payment_method`."""
    if body.get("type") == "payment_received":
        body.pop("payment_method", None)
        if not isinstance(body.get("payment"), dict):
            body["payment"] = dict(_PAYMENT)
    elif body.get("type") == "payment_method_changed":
        body.pop("payment", None)
        if not isinstance(body.get("payment_method"), dict):
            body["payment_method"] = dict(_PAYMENT_METHOD)
    return body


def _consistent_isp_account(body: dict, values: dict) -> dict:
    """An ISP account: `link` names only the Alarm.com customer to link;
    `create_customer` anything but that (the seeded billing customer has an
    email, so no login name is needed); `create_commitment` stays as generated."""
    customer = _pick(values.get("customer_id"), 0, as_text=False)
    if body.get("action") == "link" and isinstance(customer, int):
        return {"action": "link", "billing_customer_id": body.get("billing_customer_id"), "customer_id": customer}
    if body.get("action") == "create_customer":
        for name in ("customer_id", "builder_program_id"):
            body.pop(name, None)
        for name, kind in (("login_name", str), ("package_id", int), ("site_id", str)):
            if name in body and (not isinstance(body[name], kind) or isinstance(body[name], bool) or not body[name]):
                body.pop(name)
    return body


def _consistent_alarmnet(body: dict, values: dict) -> dict:
    """An Alarm.net callback: an event type and a panel account of 1 to 100
    printable characters (the document states no length)."""
    for name, default in (("event_type", "arming"), ("account_id", "fuzz-panel-1")):
        value = body.get(name)
        if not (isinstance(value, str) and 0 < len(value) <= 100 and value.isprintable()):
            body[name] = default
    return body


_CONSISTENT = {
    ("POST", "/v1/webhooks/alarmnet/{connection_id}"): _consistent_alarmnet,
    ("POST", "/v1/webhooks/alarm-com/{connection_id}"): _consistent_notice,
    ("POST", "/v1/connections/{connection_id}/isp-accounts"): _consistent_isp_account,
}


# Fields of request bodies the service calls out to: a connection's endpoint
# goes to the simulator of its provider (Stages for anything else), any other
# URL to a closed loopback port, so the service under test never sends
# anything off this machine (fuzz.sh also points its HTTP proxy at a closed
# loopback port).
_LOOPBACK = "http://127.0.0.1:9/fuzz"


def _keep_local(body) -> None:
    if not isinstance(body, dict):
        return
    if isinstance(body.get("endpoint"), str):
        provider = body.get("provider")
        body["endpoint"] = _URLS.get(provider if isinstance(provider, str) and provider in _URLS else "stages", _LOOPBACK)
    if isinstance(body.get("url"), str):
        body["url"] = _LOOPBACK


# Signed callbacks: path -> the flavour whose connection signs them.
_SIGNED = {
    "/v1/webhooks/alarm-com/{connection_id}": "alarm_com",
    "/v1/webhooks/alarmnet/{connection_id}": "total_connect",
}
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _sign(case, kwargs, secret: str) -> None:
    """Standard Webhooks headers over the exact bytes sent: HMAC-SHA256 of
    `{id}.{timestamp}.{body}` keyed with the secret, as `v1,<base64>`."""
    if not isinstance(case.body, (dict, list, str, int, float)) or isinstance(case.body, bool):
        return
    try:
        body = json.dumps(case.body, allow_nan=False).encode()
    except ValueError:
        return
    event_id = f"fuzz-{uuid.uuid4()}"
    timestamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256)
    case.headers["webhook-id"] = event_id
    case.headers["webhook-timestamp"] = timestamp
    case.headers["webhook-signature"] = "v1," + base64.b64encode(mac.digest()).decode()
    kwargs["data"] = body


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """The last word before a request leaves, whichever phase made it (the
    resource pool of schemathesis reuses ids from earlier answers too): no
    outside URLs, the seeded records are not deleted or unconfigured, and
    callbacks to the seeded connections carry their sender's credentials."""
    _keep_local(case.body)
    path = case.operation.path
    connection = (case.path_parameters or {}).get("connection_id")
    stages = _CALLBACKS.get("stages")
    if path == "/v1/webhooks/stages/{connection_id}" and stages and connection == stages["connection_id"]:
        # requests' auth replaces the bearer header given on the command line.
        kwargs["auth"] = (stages["username"], stages["secret"])
    signer = _CALLBACKS.get(_SIGNED.get(path, ""))
    if signer and connection == signer["connection_id"] and case.headers is not None:
        # Only cases that carry the three headers: the ones generated without
        # some of them still test the refusal.
        if all(h in case.headers for h in _SIGNATURE_HEADERS):
            _sign(case, kwargs, signer["secret"])
    if _SEEDED and case.path_parameters and not _seedable_op(case.operation):
        for name, value in list(case.path_parameters.items()):
            if value in _SEEDED:
                case.path_parameters[name] = str(uuid.uuid4())


def calls_upstream(operation) -> bool:
    """Whether the operation calls an upstream (Stages, Alarm.com), read from
    the served document the run is fuzzing: its documented responses include
    502 or 504. Read from the document, not listed here, so the set cannot go
    stale: an operation that starts calling an upstream must document its 502
    (the API promises upstream failures as 502/504 naming the connection), and
    until it does, every 502 it answers fails this check. Either status counts
    for both: any call that can fail upstream can also time out."""
    responses = (operation.definition.raw or {}).get("responses") or {}
    return any(str(status) in ("502", "504") for status in responses)


@schemathesis.check
def upstream_failure_names_connection(ctx, response, case):
    """A 5xx is only ever an upstream's failure: 502/504, code upstream_*,
    naming the connection, from an operation that calls an upstream.
    (schemathesis.toml lets not_a_server_error pass 502 and 504 on every
    operation, since its settings cannot read the document; this check narrows
    them to the operations that call an upstream.)"""
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
    if not calls_upstream(case.operation):
        raise AssertionError(
            f"{response.status_code} from {case.operation.method.upper()} {case.operation.path}, which does not "
            f"call an upstream (its documented responses have no 502 or 504): {response.content[:300]!r}"
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
