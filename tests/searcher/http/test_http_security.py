"""The HTTP API behind the gRPC server's token, TLS (mutual too) and message limit, on loopback, with a
throwaway CA; and the configuration that turns the API on."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from albatross.cli import build_parser, main
from albatross.exit_codes import EXIT_INVALID
from albatross.options import app_config
from albatross.serving_commands import with_operations_options
from indexer.config import ServerConfig, config_from_environment
from indexer.errors import InvalidArgument
from searcher.server import RunningServer, create_server
from tests.searcher.http.calls import call, http_server
from tests.searcher.serving import ServerThread, served_app
from tests.searcher.test_auth_tls import Pki

TOKEN = "http-s3cret"


@pytest.fixture(scope="module")
def tls_server(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[RunningServer]:
    config = ServerConfig(
        auth_token=TOKEN, tls_cert=pki.server_cert, tls_key=pki.server_key, max_message_bytes=4096
    )
    with http_server(served_app(tmp_path_factory.mktemp("https-data"), tiny_albert_dir, config)) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_server(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[RunningServer]:
    config = ServerConfig(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    with http_server(served_app(tmp_path_factory.mktemp("mtls-data"), tiny_albert_dir, config)) as running:
        yield running


def _trusting(pki: Pki, *, client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_the_api_is_served_over_tls_with_the_token(tls_server: RunningServer, pki: Pki) -> None:
    assert str(tls_server.http_url).startswith("https://")
    answer = call("GET", f"{tls_server.http_url}/v1/collections", headers=BEARER, context=_trusting(pki))
    assert (answer.status, answer.json()) == (200, {"collections": []})


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Bearer {TOKEN}x", TOKEN, f"Basic {TOKEN}"])
def test_a_missing_or_wrong_token_is_401(
    tls_server: RunningServer, pki: Pki, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = call("GET", f"{tls_server.http_url}/v1/collections", headers=headers, context=_trusting(pki))
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    error = answer.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and "Bearer" in error["message"]


def test_the_token_scheme_is_case_insensitive(tls_server: RunningServer, pki: Pki) -> None:
    headers = {"Authorization": f"bearer {TOKEN}"}
    assert (
        call("GET", f"{tls_server.http_url}/v1/collections", headers=headers, context=_trusting(pki)).status
        == 200
    )


def test_probes_docs_and_pages_need_no_token(tls_server: RunningServer, pki: Pki) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/"):
        assert call("GET", f"{tls_server.http_url}{path}", context=_trusting(pki)).status == 200, path


def test_the_openapi_document_declares_the_bearer_token(tls_server: RunningServer, pki: Pki) -> None:
    doc = call("GET", f"{tls_server.http_url}/openapi.json", context=_trusting(pki)).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_plain_http_to_the_tls_port_gets_no_answer(tls_server: RunningServer) -> None:
    plain = str(tls_server.http_url).replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call("GET", f"{plain}/healthz", timeout=10)


def test_a_client_that_does_not_trust_the_certificate_fails(tls_server: RunningServer) -> None:
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        call("GET", f"{tls_server.http_url}/healthz", context=ssl.create_default_context(), timeout=10)


def test_a_body_over_the_message_limit_is_413(tls_server: RunningServer, pki: Pki) -> None:
    body = '{"query": "' + "x" * 8192 + '", "k": 1}'
    answer = call(
        "POST",
        f"{tls_server.http_url}/v1/collections/any/search",
        body,
        headers=BEARER,
        context=_trusting(pki),
    )
    assert answer.status == 413
    assert answer.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_an_ndjson_line_over_the_message_limit_is_rejected_and_the_rest_written(
    tls_server: RunningServer, pki: Pki
) -> None:
    url, context = tls_server.http_url, _trusting(pki)
    assert call("POST", f"{url}/v1/collections/big", {}, headers=BEARER, context=context).status == 201
    huge = '{"id": "huge", "text": "' + "y" * 20_000 + '"}'
    body = '{"id": "ok", "text": "fine"}\n' + huge + '\n{"id": "after", "text": "also fine"}\n'
    answer = call("POST", f"{url}/v1/collections/big/documents", body, headers=BEARER, context=context)
    assert answer.status == 200
    results = answer.lines()
    assert [r["status"] for r in results] == [
        "DOCUMENT_STATUS_WRITTEN",
        "DOCUMENT_STATUS_REJECTED",
        "DOCUMENT_STATUS_WRITTEN",
    ]
    assert results[1]["error"].startswith("line 2 is longer than the message limit")
    assert results[2]["id"] == "after"


def test_mutual_tls_needs_a_client_certificate(mtls_server: RunningServer, pki: Pki) -> None:
    url = f"{mtls_server.http_url}/v1/collections"
    assert call("GET", url, context=_trusting(pki, client_cert=True)).status == 200
    with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
        call("GET", url, context=_trusting(pki), timeout=10)


# --- configuration ------------------------------------------------------------------------------------


def test_the_http_api_is_off_unless_a_port_is_given() -> None:
    assert ServerConfig().http_port is None
    assert config_from_environment({}).server.http_port is None


def test_the_environment_turns_the_api_on_with_its_origins() -> None:
    config = config_from_environment(
        {"ALBATROSS_HTTP_PORT": "8080", "ALBATROSS_CORS_ORIGINS": "https://a.example, http://b.example:3000"}
    ).server
    assert config.http_port == 8080
    assert config.cors_origins == ("https://a.example", "http://b.example:3000")


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"http_port": 70000}, "http_port"), ({"cors_origins": ("a.example",)}, "cors_origins")],
)
def test_a_bad_http_setting_is_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        ServerConfig(**changes)  # type: ignore[arg-type]
    assert error.value.field == field


def test_serve_flags_reach_the_config() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--http-port",
            "0",
            "--http-host",
            "0.0.0.0",
            "--cors-origin",
            "*",
            "--cors-origin",
            "https://x.example",
        ]
    )
    server = with_operations_options(app_config(args), args).server
    assert (server.http_port, server.http_host, server.cors_origins) == (
        0,
        "0.0.0.0",
        ("*", "https://x.example"),
    )


def test_readiness_turns_503_when_shutdown_begins(tmp_path: Path, tiny_albert_dir: Path) -> None:
    config = ServerConfig(host="127.0.0.1", http_port=0, drain_delay_s=1.5)
    thread = ServerThread()
    try:
        running = thread.run(create_server(served_app(tmp_path, tiny_albert_dir, config), port=0))
        url = f"{running.http_url}/readyz"
        assert call("GET", url).status == 200
        stopping = asyncio.run_coroutine_threadsafe(running.stop(grace_s=1.0), thread.loop)
        deadline = time.monotonic() + 1.0
        while (answer := call("GET", url)).status == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        # Draining: still answering (load balancers need a probe or two to notice), but not ready.
        assert (answer.status, answer.json()) == (503, {"status": "NOT_SERVING"})
        assert call("GET", f"{running.http_url}/healthz").status == 200
        stopping.result(timeout=30)
    finally:
        thread.close()


def test_requests_past_max_concurrent_rpcs_are_429(tmp_path: Path, tiny_albert_dir: Path) -> None:
    config = ServerConfig(max_concurrent_rpcs=1)
    with http_server(served_app(tmp_path, tiny_albert_dir, config)) as running:
        url = str(running.http_url)
        assert call("POST", f"{url}/v1/collections/slow", {}).status == 201
        host, port = url.removeprefix("http://").split(":")
        # An upsert whose body has not arrived yet holds the one place.
        held = http.client.HTTPConnection(host, int(port), timeout=30)
        held.putrequest("POST", "/v1/collections/slow/documents")
        held.putheader("Transfer-Encoding", "chunked")
        held.endheaders()
        time.sleep(0.3)
        refused = call("GET", f"{url}/v1/collections")
        assert refused.status == 429
        assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert call("GET", f"{url}/healthz").status == 200  # probes are never refused
        line = b'{"id": "late", "text": "arrives at last"}\n'
        held.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(line), line))
        assert held.getresponse().status == 200
        held.close()
        assert call("GET", f"{url}/v1/collections").status == 200


def test_a_router_refuses_http_rather_than_ignoring_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--router", "--shards", "127.0.0.1:1", "--http-port", "0"]) == EXIT_INVALID
    assert "--http-port" in capsys.readouterr().err
