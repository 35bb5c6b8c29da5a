"""The HTTP/JSON API as an aiohttp application, started on the gRPC server's own event loop.

aiohttp was chosen over FastAPI/Starlette on uvicorn: its ``AppRunner`` is made to be started
inside a loop someone else runs (here grpc.aio's), installs no signal handlers of its own, and
streams request and response bodies (NDJSON upserts) without an ASGI layer between; FastAPI's
value, an OpenAPI document from pydantic models, would repeat the proto contract that
``openapi`` already reads from the descriptors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from indexer.config import ServerConfig
from indexer.errors import InvalidArgument
from indexer.version import installed_version
from searcher.auth import http_ssl_context
from searcher.http import middleware, openapi
from searcher.http.handlers import Handlers
from searcher.http.routes import API_ROUTES, JSON
from searcher.telemetry import ACCESS_LOGGER, ServerMetrics

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The pages load nothing but this server's own files: a CDN would be a network fetch at run time.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class Readiness:
    """What ``/readyz`` answers: serving from start until the server begins to drain."""

    def __init__(self) -> None:
        self.serving = False


@dataclass
class HttpEndpoint:
    """The started HTTP API: its bound port and how to stop it."""

    runner: web.AppRunner
    port: int
    readiness: Readiness

    async def close(self) -> None:
        """Stop listening; requests in flight get the runner's shutdown timeout to finish."""
        self.readiness.serving = False
        await self.runner.cleanup()


def _page(name: str) -> web.Response:
    response = web.Response(body=(STATIC_DIR / name).read_bytes(), content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


def build_app(
    config: ServerConfig, handlers: Handlers, metrics: ServerMetrics | None, readiness: Readiness
) -> web.Application:
    app = web.Application(
        client_max_size=config.max_message_bytes,
        middlewares=[
            middleware.telemetry(metrics, logging.getLogger(ACCESS_LOGGER)),
            middleware.cors(config.cors_origins),
            middleware.errors,
            middleware.authentication(config.auth_token),
            middleware.admission(config.max_concurrent_rpcs),
        ],
    )
    for route in API_ROUTES:
        app.router.add_route(route.method, route.path, handlers.handler(route))
    metrics_on = metrics is not None and config.metrics_port is not None
    spec = json.dumps(
        openapi.document(installed_version(), metrics=metrics_on, token=config.auth_token is not None)
    )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def readyz(request: web.Request) -> web.Response:
        status = "SERVING" if readiness.serving else "NOT_SERVING"
        return web.json_response({"status": status}, status=200 if readiness.serving else 503)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(text=spec, content_type=JSON)

    async def search_page(request: web.Request) -> web.Response:
        return _page("index.html")

    async def docs_page(request: web.Request) -> web.Response:
        return _page("docs.html")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/", search_page)
    app.router.add_get("/docs", docs_page)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    if metrics_on and metrics is not None:
        registry = metrics.registry

        async def prometheus(request: web.Request) -> web.Response:
            response = web.Response(body=generate_latest(registry))
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return response

        app.router.add_get("/metrics", prometheus)
    return app


async def start_http(
    config: ServerConfig, handlers: Handlers, metrics: ServerMetrics | None, *, port: int
) -> HttpEndpoint:
    """Serve the API on ``config.http_host`` (else ``config.host``) and ``port`` (0: a free one)."""
    readiness = Readiness()
    runner = web.AppRunner(
        build_app(config, handlers, metrics, readiness), access_log=None, shutdown_timeout=config.grace_s
    )
    await runner.setup()
    host = config.http_host or config.host
    site = web.TCPSite(runner, host, port, ssl_context=http_ssl_context(config))
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise InvalidArgument(f"cannot bind HTTP {host}:{port}: {exc.strerror}", field="http_port") from exc
    bound = int(runner.addresses[0][1])
    readiness.serving = True
    return HttpEndpoint(runner, bound, readiness)
