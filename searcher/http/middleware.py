"""What every HTTP request passes through, outermost first, as every gRPC call passes the interceptors.

``telemetry``: the request id (``X-Request-Id`` in, or a new one; always sent back), the metrics, a
``Server-Timing`` header and one JSON access-log line on the gRPC access logger::

    {"event": "http", "request_id": "...", "method": "POST", "route": "/v1/collections/{name}/search",
     "status": 200, "code": "OK", "duration_ms": 3.1, "peer": "127.0.0.1"}

``cors``: answers preflights and marks answers for the allowed origins. ``errors``: every failure
becomes ``{"error": {"code": <HTTP status>, "status": <gRPC code name>, "message": ..., "field": ...}}``
through ``searcher.errors`` (the one table). ``authentication``: the bearer token, except on the open
paths. ``admission``: at most ``max_concurrent_rpcs`` API requests at once, the next ones 429.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from aiohttp import web

from indexer.errors import Overloaded
from searcher.auth import AUTHORIZATION, UNAUTHENTICATED_MESSAGE, token_matches
from searcher.errors import HTTP_STATUS_OF, status_for
from searcher.http.routes import HEALTH_PATHS, OPEN_PATHS, STATIC_PREFIX
from searcher.telemetry import REQUEST_ID, ServerMetrics, request_id_of

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, X-Request-Id"
CORS_EXPOSED = "X-Request-Id, Server-Timing"
CORS_MAX_AGE_S = "600"
# Errors aiohttp raises itself (no route, wrong method, body over the limit), by gRPC code name.
_CODE_OF_HTTP_ERROR = {404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "RESOURCE_EXHAUSTED"}
# The gRPC metadata key, in the capitalisation HTTP/1.1 clients print.
REQUEST_ID_HEADER = "X-Request-Id"
_CODE = web.RequestKey("albatross_code", str)
_REQUEST_ID = web.RequestKey("albatross_request_id", str)


class Unauthenticated(Exception):
    """No valid bearer token on a request that needs one (an HTTP-only outcome: 401)."""


def error_body(error: BaseException) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for ``error``: our errors by ``searcher.errors``, aiohttp's by status."""
    if isinstance(error, web.HTTPException):
        status = error.status
        code = _CODE_OF_HTTP_ERROR.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")
        return status, _body(status, code, error.reason, None)
    if isinstance(error, Unauthenticated):
        return 401, _body(401, "UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE.replace("metadata", "header"), None)
    code, message = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected error in an HTTP request", exc_info=error)
        return HTTP_STATUS_OF[code], _body(HTTP_STATUS_OF[code], code.name, message, None)
    return HTTP_STATUS_OF[code], _body(
        HTTP_STATUS_OF[code], code.name, message, getattr(error, "field", None)
    )


def _body(status: int, code: str, message: str, field: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "status": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def route_of(request: web.Request) -> str:
    """The route template (``/v1/collections/{name}``): what metrics and logs group by."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(STATIC_PREFIX)


def telemetry(metrics: ServerMetrics | None, access_log: logging.Logger) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_of([(REQUEST_ID, request.headers.get(REQUEST_ID_HEADER, ""))])
        request[_REQUEST_ID] = request_id
        started = time.perf_counter()
        status = 499  # the client went away before an answer (nginx's convention)
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = request_id
                response.headers["Server-Timing"] = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
            return response
        finally:
            seconds = time.perf_counter() - started
            code = request.get(_CODE, "OK" if status < 400 else "CANCELLED")
            route = route_of(request)
            if metrics is not None:
                metrics.http_handled.labels(route, request.method, str(status)).inc()
                metrics.http_latency.labels(route, request.method).observe(seconds)
            level = logging.DEBUG if request.path in HEALTH_PATHS else logging.INFO
            if access_log.isEnabledFor(level):
                entry = {
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "event": "http",
                    "request_id": request_id,
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "code": code,
                    "duration_ms": round(seconds * 1000, 3),
                    "peer": request.remote,
                }
                access_log.log(level, json.dumps(entry))

    return observe


def request_id(request: web.Request) -> str:
    """The id ``telemetry`` gave ``request`` (for a handler that prepares its own response)."""
    return request.get(_REQUEST_ID, "")


def cors(origins: Sequence[str]) -> Middleware:
    allowed = frozenset(origins)

    def allows(origin: str) -> bool:
        return "*" in allowed or origin in allowed

    @web.middleware
    async def cross_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if origin is None:
            return await handler(request)
        if preflight:
            if not allows(origin):
                request[_CODE] = "PERMISSION_DENIED"
                message = f"origin {origin} is not allowed to call this API (server cors_origins)"
                return web.json_response(_body(403, "PERMISSION_DENIED", message, "Origin"), status=403)
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE_S
        else:
            response = await handler(request)
        if allows(origin) and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
            response.headers["Vary"] = "Origin"
        return response

    return cross_origin


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as error:  # the one place that catches everything (searcher.errors maps it)
        status, body = error_body(error)
        request[_CODE] = body["error"]["status"]
        response = web.json_response(body, status=status, dumps=_dumps)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"  # RFC 6750
        return response


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def authentication(token: str | None) -> Middleware:
    expected = token.encode() if token is not None else None

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or request.method == "OPTIONS" or is_open(request.path):
            return await handler(request)
        if not token_matches([(AUTHORIZATION, request.headers.get(AUTHORIZATION, ""))], expected):
            raise Unauthenticated()
        return await handler(request)

    return check_token


def admission(max_in_flight: int) -> Middleware:
    """At most ``max_in_flight`` API requests at once; health, docs and pages are never refused."""
    in_flight = 0

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if is_open(request.path):
            return await handler(request)
        if in_flight >= max_in_flight:
            raise Overloaded(f"{in_flight} requests are in flight, the most this server takes; retry later")
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    return admit
