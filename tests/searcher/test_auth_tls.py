"""Token authentication and TLS on a real server (127.0.0.1, port 0) with a throwaway CA made here.

The server requires TLS and a bearer token; a second one also requires a client certificate
(mutual TLS). Health checking stays open to callers without a token.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from albatross.cli import main
from albatross.exit_codes import EXIT_INVALID, EXIT_NOT_FOUND
from indexer.config import ServerConfig, config_from_environment
from indexer.errors import InvalidArgument
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher import health_probe
from searcher.auth import bearer_token, channel_credentials
from searcher.client import AlbatrossClient
from searcher.server import RunningServer
from tests.searcher.serving import running_server, served_app

TOKEN = "s3cret-token-of-the-tests"


# --- a throwaway PKI --------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_path: Path

    @classmethod
    def create(cls, folder: Path, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, _write_cert(cert, folder / f"{name}.pem"))

    def issue(self, folder: Path, name: str, *, server: bool) -> tuple[Path, Path]:
        """A leaf certificate for 127.0.0.1/localhost (server) or a client: (cert, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _write_cert(cert, folder / f"{name}.pem"), _write_key(key, folder / f"{name}.key")


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority.create(folder, "albatross-test-ca")
    rogue = Authority.create(folder, "rogue-ca")
    server_cert, server_key = ca.issue(folder, "server", server=True)
    client_cert, client_key = ca.issue(folder, "client", server=False)
    rogue_cert, rogue_key = rogue.issue(folder, "rogue-client", server=False)
    return Pki(
        ca.cert_path, server_cert, server_key, client_cert, client_key, rogue.cert_path, rogue_cert, rogue_key
    )


@pytest.fixture(scope="module")
def tls_server(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[RunningServer]:
    config = ServerConfig(auth_token=TOKEN, tls_cert=pki.server_cert, tls_key=pki.server_key)
    with running_server(served_app(tmp_path_factory.mktemp("tls-data"), tiny_albert_dir, config)) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_server(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[RunningServer]:
    config = ServerConfig(
        auth_token=TOKEN, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca
    )
    with running_server(served_app(tmp_path_factory.mktemp("mtls-data"), tiny_albert_dir, config)) as running:
        yield running


def _code_of_listing(client: AlbatrossClient) -> grpc.StatusCode:
    try:
        client.list_collections(timeout=10)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


# --- TLS --------------------------------------------------------------------------------------


def test_a_tls_client_trusting_the_ca_with_the_token_is_served(tls_server: RunningServer, pki: Pki) -> None:
    with AlbatrossClient(tls_server.target, token=TOKEN, tls_ca=pki.ca) as client:
        assert client.list_collections() == []


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server: RunningServer) -> None:
    with AlbatrossClient(tls_server.target, token=TOKEN) as client:
        assert _code_of_listing(client) == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_server_certificate_fails(
    tls_server: RunningServer, pki: Pki
) -> None:
    with AlbatrossClient(tls_server.target, token=TOKEN, tls_ca=pki.rogue_ca) as client:
        assert _code_of_listing(client) == grpc.StatusCode.UNAVAILABLE


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", TOKEN[:-1]])
def test_a_missing_or_wrong_token_is_unauthenticated(
    tls_server: RunningServer, pki: Pki, token: str | None
) -> None:
    with AlbatrossClient(tls_server.target, token=token, tls_ca=pki.ca) as client:
        assert _code_of_listing(client) == grpc.StatusCode.UNAUTHENTICATED


def test_another_scheme_than_bearer_is_unauthenticated(tls_server: RunningServer, pki: Pki) -> None:
    with grpc.secure_channel(tls_server.target, channel_credentials(pki.ca)) as channel:
        stub = pb_grpc.CollectionsStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ListCollections(
                pb.ListCollectionsRequest(), metadata=(("authorization", f"Basic {TOKEN}"),), timeout=10
            )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_a_refused_call_never_reaches_the_servicer(tls_server: RunningServer, pki: Pki) -> None:
    with AlbatrossClient(tls_server.target, token="wrong", tls_ca=pki.ca) as intruder:
        with pytest.raises(grpc.RpcError) as raised:
            intruder.create_collection("intruded")
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    with AlbatrossClient(tls_server.target, token=TOKEN, tls_ca=pki.ca) as client:
        assert "intruded" not in [c.name for c in client.list_collections()]


def test_health_checking_needs_no_token(tls_server: RunningServer, pki: Pki) -> None:
    with grpc.secure_channel(tls_server.target, channel_credentials(pki.ca)) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_the_health_probe_checks_a_tls_server_by_the_name_its_certificate_carries(
    tls_server: RunningServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = ["--target", tls_server.target, "--tls-ca", str(pki.ca)]

    assert health_probe.main(probe) == 0
    assert health_probe.main([*probe, "--server-name", "localhost", "--service", "albatross.v1.Search"]) == 0
    assert health_probe.main([*probe, "--server-name", "search.elsewhere.example"]) == 1
    assert health_probe.main([*probe[:2], "--tls-ca", str(pki.rogue_ca)]) == 1
    assert health_probe.main(probe[:2]) == 1  # plaintext to a TLS server
    assert health_probe.main([*probe, "--service", "no.such.Service"]) == 1
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("health_probe: ")]
    assert len(said) == 4 and said[-1].endswith(": NOT_FOUND"), said


def test_the_health_probe_presents_a_client_certificate_under_mutual_tls(
    mtls_server: RunningServer, pki: Pki
) -> None:
    probe = ["--target", mtls_server.target, "--tls-ca", str(pki.ca)]

    assert health_probe.main(probe) == 1
    assert (
        health_probe.main([*probe, "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]) == 0
    )


def test_the_health_probe_runs_without_torch(tls_server: RunningServer, pki: Pki) -> None:
    # An exec probe runs every few seconds: it must not pay the encoder's imports.
    command = [sys.executable, "-m", "searcher.health_probe", "--target", tls_server.target]
    probed = subprocess.run([*command, "--tls-ca", str(pki.ca)], capture_output=True, text=True, timeout=60)
    imports = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, searcher.health_probe; print(sorted({'torch', 'transformers'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert probed.returncode == 0, probed.stderr
    assert imports.stdout.strip() == "[]", imports.stderr


def test_the_bearer_scheme_is_case_insensitive_and_other_metadata_is_ignored() -> None:
    assert bearer_token([("x-other", "Bearer no"), ("authorization", "bearer abc")]) == b"abc"
    assert bearer_token([("authorization", "Token abc")]) is None
    assert bearer_token(None) is None


# --- mutual TLS -------------------------------------------------------------------------------


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server: RunningServer, pki: Pki) -> None:
    with AlbatrossClient(mtls_server.target, token=TOKEN, tls_ca=pki.ca) as client:
        assert _code_of_listing(client) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_certificate_of_another_ca(mtls_server: RunningServer, pki: Pki) -> None:
    with AlbatrossClient(
        mtls_server.target,
        token=TOKEN,
        tls_ca=pki.ca,
        tls_cert=pki.rogue_client_cert,
        tls_key=pki.rogue_client_key,
    ) as client:
        assert _code_of_listing(client) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_serves_a_client_with_a_certificate_and_still_checks_the_token(
    mtls_server: RunningServer, pki: Pki
) -> None:
    certificate = {"tls_ca": pki.ca, "tls_cert": pki.client_cert, "tls_key": pki.client_key}
    with AlbatrossClient(mtls_server.target, token=TOKEN, **certificate) as client:
        assert _code_of_listing(client) == grpc.StatusCode.OK
    with AlbatrossClient(mtls_server.target, token="wrong", **certificate) as client:
        assert _code_of_listing(client) == grpc.StatusCode.UNAUTHENTICATED


# --- the command line and configuration -------------------------------------------------------


def test_search_command_sends_the_token_file_over_tls(
    tls_server: RunningServer, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALBATROSS_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    command = [
        "search",
        "owls",
        "--collection",
        "absent",
        "--target",
        tls_server.target,
        "--tls-ca",
        str(pki.ca),
    ]

    # NOT_FOUND: the call got past authentication to the servicer.
    assert main([*command, "--token-file", str(token_file)]) == EXIT_NOT_FOUND
    assert main(command) == EXIT_INVALID


def test_the_token_comes_from_the_environment_and_is_never_printed() -> None:
    server = config_from_environment({"ALBATROSS_TOKEN": TOKEN, "ALBATROSS_METRICS_PORT": "9464"}).server

    assert (server.auth_token, server.metrics_port) == (TOKEN, 9464)
    assert TOKEN not in repr(server)
    assert config_from_environment({}).server.auth_token is None


def test_half_a_tls_configuration_is_refused(pki: Pki) -> None:
    with pytest.raises(InvalidArgument, match="private key"):
        ServerConfig(tls_cert=pki.server_cert)
    with pytest.raises(InvalidArgument, match="server certificate"):
        ServerConfig(tls_client_ca=pki.ca)
    with pytest.raises(InvalidArgument, match="empty"):
        ServerConfig(auth_token="  ")
