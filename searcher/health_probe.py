"""``python -m searcher.health_probe``: one gRPC health check, over TLS, for an exec probe.

Kubernetes' built-in gRPC probe speaks plaintext only, so a pod that serves TLS cannot use it; the
manifests in ``deploy/k8s`` run this instead. It imports grpc and the TLS helper of
``searcher.auth`` (about 0.3 s on one core), not torch as the ``albatross`` command does. Health
needs no token (``searcher.auth``), but under mutual TLS the handshake needs a client certificate.

Exit 0 when the server (or ``--service``) is SERVING; otherwise 1 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from indexer.errors import AlbatrossError
from searcher.auth import channel_credentials

PROG = "python -m searcher.health_probe"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="gRPC health check of an Albatross server")
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port (default 127.0.0.1:50051)")
    parser.add_argument("--service", default="", help="service to ask about (default: the whole server)")
    parser.add_argument("--tls-ca", type=Path, help="CA of the server certificate (PEM); turns TLS on")
    parser.add_argument("--tls-cert", type=Path, help="client certificate, for a server with mutual TLS")
    parser.add_argument("--tls-key", type=Path, help="private key of --tls-cert")
    parser.add_argument(
        "--server-name",
        help="a name the server certificate carries, when the --target host is not one (a pod "
        "probing itself on 127.0.0.1 with a certificate for its Service)",
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    return parser


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca is None and args.tls_cert is None:
        return grpc.insecure_channel(args.target)
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    credentials = channel_credentials(args.tls_ca, args.tls_cert, args.tls_key)
    return grpc.secure_channel(args.target, credentials, options=options)


def status_of(args: argparse.Namespace) -> str:
    """The health status name (``SERVING``, ``NOT_SERVING``...) the server gives."""
    with _channel(args) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = status_of(args)
    except AlbatrossError as error:
        print(f"health_probe: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        details = error.details()  # type: ignore[attr-defined]
        said = f"{error.code().name}: {details}" if details else error.code().name  # type: ignore[attr-defined]
        print(f"health_probe: {args.target}: {said}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"health_probe: {args.target}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
