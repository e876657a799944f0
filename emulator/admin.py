"""Admin HTTP endpoints on the emulator's own port (plain HTTP requests that are not upgrades).

Off unless configured: with `admin_token` every request must carry `Authorization: Bearer <token>` (401
without one, 403 with a wrong one, compared in constant time); `admin=True` serves them without a token, and
the config allows that on a loopback host only. Disabled, every admin path is 404.

    GET    /emulator/v1/health                 {"status": "ok", "sessions": N, "conversations": N}
    GET    /emulator/v1/conversations          {"conversations": [...]}   (see Conversation.snapshot;
                                               ?messages=0 leaves out the message lists)
    GET    /emulator/v1/conversations/<id>     one conversation, 404 if unknown
    DELETE /emulator/v1/conversations          forget closed conversations
    GET    /emulator/v1/sessions               live sessions {session_id, conversation_id, flavour, index}
    GET    /emulator/v1/faults                 {"faults": [...]}
    POST   /emulator/v1/faults?<rule fields>   add a rule (see faults.py); or ?json=<url-encoded JSON rule>
    DELETE /emulator/v1/faults                 remove all rules;  DELETE /emulator/v1/faults/<id>: one

websockets' HTTP parser does not accept request bodies, so POST parameters travel in the query string.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .config import EmulatorConfig
from .faults import FaultSpecError, parse_rule
from .routes import ADMIN_PREFIX

if TYPE_CHECKING:
    from .server import EmulatorServer

DISABLED = "the admin API is disabled: start the emulator with --admin-token (or --admin on a loopback host)"
_INT_FIELDS = ("code", "after_messages", "count")
_FLOAT_FIELDS = ("duration_s",)


def json_response(connection: ServerConnection, status: int, body: Any) -> Response:
    response = connection.respond(status, "")
    payload = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    headers = Headers(
        [(k, v) for k, v in response.headers.raw_items() if k.lower() not in ("content-type", "content-length")]
    )
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = str(len(payload))
    return Response(response.status_code, response.reason_phrase, headers, payload)


def authorize(config: EmulatorConfig, connection: ServerConnection, request: Request) -> Response | None:
    """None if the request may use the admin API, else the refusal to send."""
    if not config.admin_enabled:
        return json_response(connection, 404, {"error": DISABLED})
    if not config.admin_token:  # admin=True: a loopback host, no token (EmulatorConfig checks the host)
        return None
    scheme, _, given = (request.headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        refusal = json_response(connection, 401, {"error": "admin token required: send Authorization: Bearer <token>"})
        refusal.headers["WWW-Authenticate"] = 'Bearer realm="emulator-admin"'
        return refusal
    if not hmac.compare_digest(given.strip().encode(), config.admin_token.encode()):
        return json_response(connection, 403, {"error": "admin token not valid"})
    return None


def handle(server: EmulatorServer, connection: ServerConnection, request: Request) -> Response:
    parts = urlsplit(request.path)
    tail = parts.path[len(ADMIN_PREFIX) :].strip("/").split("/") if parts.path.startswith(ADMIN_PREFIX) else [""]
    method = request.method.upper()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    resource, rest = tail[0], tail[1:]
    if resource == "health" and method == "GET":
        return json_response(
            connection, 200, {"status": "ok", "sessions": len(server.sessions), "conversations": len(server.conversations)}
        )
    if resource == "conversations":
        if method == "GET" and not rest:
            include = query.get("messages", "1").lower() not in ("0", "false", "no")
            return json_response(connection, 200, {"conversations": server.list_conversations(include)})
        if method == "GET" and len(rest) == 1:
            conv = server.conversation(rest[0])
            return json_response(connection, 200 if conv else 404, conv or {"error": "unknown conversation"})
        if method == "DELETE" and not rest:
            return json_response(connection, 200, {"dropped": server.clear_conversations()})
    if resource == "sessions" and method == "GET":
        return json_response(connection, 200, {"sessions": server.sessions})
    if resource == "faults":
        if method == "GET" and not rest:
            return json_response(connection, 200, {"faults": [r.as_json() for r in server.faults.rules()]})
        if method == "POST" and not rest:
            try:
                rule = server.faults.add(parse_rule(query_spec(query)))
            except FaultSpecError as exc:
                return json_response(connection, 400, {"error": str(exc)})
            return json_response(connection, 201, rule.as_json())
        if method == "DELETE" and not rest:
            server.faults.clear()
            return json_response(connection, 200, {"faults": []})
        if method == "DELETE" and len(rest) == 1:
            found = server.faults.remove(rest[0])
            return json_response(connection, 200 if found else 404, {"removed": found})
    return json_response(connection, 404, {"error": f"no such endpoint: {method} {parts.path}"})


def query_spec(query: dict[str, str]) -> dict[str, Any]:
    """Fault rule from query parameters (?json=... or one parameter per field)."""
    if "json" in query:
        try:
            parsed = orjson.loads(query["json"])  # its depth limit raises a ValueError, never a RecursionError
        except ValueError as exc:
            raise FaultSpecError(f"json parameter: {exc}") from None
        if not isinstance(parsed, dict):
            raise FaultSpecError("json parameter must be an object")
        return parsed
    spec: dict[str, Any] = dict(query)
    try:
        for key in _INT_FIELDS:
            if key in spec and spec[key] != "":
                spec[key] = int(spec[key])
        for key in _FLOAT_FIELDS:
            if key in spec:
                spec[key] = float(spec[key])
    except ValueError as exc:
        raise FaultSpecError(str(exc)) from None
    return spec


def load_scenario(path: str) -> list[dict[str, Any]]:
    """A scenario file: a JSON list of fault rules, or {"faults": [...]}."""
    with open(path, "rb") as f:
        data = orjson.loads(f.read())
    rules = data.get("faults", []) if isinstance(data, dict) else data
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise FaultSpecError(f"{path}: expected a list of fault rules")
    return rules
