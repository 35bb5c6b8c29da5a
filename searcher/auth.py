"""Bearer-token authentication and TLS credentials of the gRPC server and its HTTP API.

Clients send ``authorization: Bearer <token>`` in the call metadata (gRPC) or as the
``Authorization`` header (HTTP, checked by ``token_matches`` in ``searcher.http.middleware``). ``TokenAuthInterceptor``
compares it with the configured token in constant time (``hmac.compare_digest``: the time taken
does not tell an attacker how many leading bytes were right) and ends any other call with
UNAUTHENTICATED before the servicer sees it. Health checking and reflection stay open: load
balancers and probes carry no secrets, and reflection only describes the public API.

The token is only as secret as the channel: without TLS it crosses the network in clear text.
"""

from __future__ import annotations

import hmac
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from indexer.config import ServerConfig
from indexer.errors import InvalidArgument
from searcher.method_handlers import Continuation, with_behaviour

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token (metadata 'authorization: Bearer <token>')"


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> bytes | None:
    """The credential of the first ``authorization: Bearer <token>`` entry, None when absent."""
    for key, value in metadata or ():
        if key != AUTHORIZATION:
            continue
        raw = value.encode() if isinstance(value, str) else bytes(value)
        scheme, _, credential = raw.partition(b" ")
        # RFC 6750: the scheme name is case-insensitive.
        return credential.strip() if scheme.lower() == b"bearer" else None
    return None


async def _deny(request_or_iterator: object, context: grpc.aio.ServicerContext) -> None:
    # A coroutine that aborts serves all four call kinds: it never needs to yield a response.
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


def token_matches(metadata: Sequence[tuple[str, Any]] | None, token: bytes) -> bool:
    """Whether ``metadata`` carries ``Bearer <token>``, compared in constant time."""
    presented = bearer_token(metadata)
    return presented is not None and hmac.compare_digest(presented, token)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with the right bearer token (health and reflection always)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def authorized(self, metadata: Sequence[tuple[str, Any]] | None) -> bool:
        return token_matches(metadata, self._token)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if self.authorized(handler_call_details.invocation_metadata):  # type: ignore[attr-defined]
            return handler
        return with_behaviour(handler, _deny)


def _read(path: Path, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {field} {path}: {exc.strerror}", field=field) from exc


def _certificates(path: Path, field: str) -> bytes:
    """The PEM certificates in ``path``, checked here: grpc takes any bytes, then logs its refusal
    and fails a bind (``internal error``) or every handshake (``UNAVAILABLE``) without naming the file."""
    data = _read(path, field)
    try:
        ssl.create_default_context().load_verify_locations(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ValueError, ssl.SSLError) as exc:
        raise InvalidArgument(
            f"{field} {path} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' block)", field=field
        ) from exc
    return data


def _key_pair(cert: Path, key: Path, field: str, key_field: str = "tls_key") -> tuple[bytes, bytes]:
    """(key, certificate chain) PEM bytes of a certificate and its private key, checked to match;
    errors name them ``field`` and ``key_field``."""
    chain = _certificates(cert, field)
    private = _read(key, key_field)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = "it is another certificate's key" if exc.reason == "KEY_VALUES_MISMATCH" else "not a PEM key"
        raise InvalidArgument(
            f"{key_field} {key} is not the private key of {field} {cert} ({why})", field=key_field
        ) from exc
    return private, chain


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the PEM files of ``config``; None when TLS is off.

    With ``tls_client_ca`` a client must present a certificate signed by that CA (mutual TLS).
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    client_ca = _certificates(config.tls_client_ca, "tls_client_ca") if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [_key_pair(config.tls_cert, config.tls_key, "tls_cert")],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def http_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The HTTP API's TLS from the same PEM files as ``server_credentials``; None when TLS is off."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load tls_cert/tls_key: {exc}", field="tls_cert") from exc
    if config.tls_client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=_read(config.tls_client_ca, "tls_client_ca").decode())
    return context


def channel_credentials(
    ca: Path | None, cert: Path | None = None, key: Path | None = None, *, named: str = ""
) -> grpc.ChannelCredentials:
    """Client TLS: trust ``ca`` (None: the system roots); ``cert`` + ``key`` for mutual TLS.
    Errors name the files ``tls_ca``, ``tls_cert`` and ``tls_key`` after ``named``: the router
    passes ``shard_``, so a bad ``--shard-tls-ca`` is not reported as the ``--tls-ca`` it also has."""
    if (cert is None) != (key is None):
        raise InvalidArgument("a client certificate needs its private key", field=f"{named}tls_cert")
    private, chain = (
        _key_pair(cert, key, f"{named}tls_cert", f"{named}tls_key") if cert and key else (None, None)
    )
    return grpc.ssl_channel_credentials(
        root_certificates=_certificates(ca, f"{named}tls_ca") if ca else None,
        private_key=private,
        certificate_chain=chain,
    )


def interceptors(config: ServerConfig) -> list[grpc.aio.ServerInterceptor]:
    """The authentication interceptors ``config`` asks for (none without a token)."""
    if config.auth_token is None:
        return []
    if not config.tls:
        log.warning("a bearer token is required but TLS is off: the token crosses the network in clear")
    return [TokenAuthInterceptor(config.auth_token)]
