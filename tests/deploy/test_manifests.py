"""The deployment files fit together and fit the code (Docker cannot run here, so they are parsed,
not built): ports, probes, commands, environment variable names and image names agree; every flag
is an option of its command's own parser; every hop (caller -> searcher or router, router -> shard)
carries a token and TLS from files mounted from Secrets that exist."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from albatross.cli import build_parser
from indexer.config import config_from_environment
from searcher import health_probe

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILES = {"albatross:0.1.0": DEPLOY / "Dockerfile", "albatross:0.1.0-cuda": DEPLOY / "Dockerfile.cuda"}
SERVE_PORT = 50051


class _Recording(dict[str, str]):
    """An empty environment that remembers every variable name it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def environment_names() -> set[str]:
    """The ALBATROSS_* names ``config_from_environment`` reads."""
    environ = _Recording()
    config_from_environment(environ)
    return {name for name in environ.asked if name.startswith("ALBATROSS_")}


def k8s_documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def pod_specs(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every pod template of a workload (a RayJob has a head and worker groups)."""
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        yield doc["spec"]["template"]["spec"]
    elif doc["kind"] == "RayJob":
        cluster = doc["spec"]["rayClusterSpec"]
        yield cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster["workerGroupSpecs"]:
            yield group["template"]["spec"]


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in k8s_documents():
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                yield doc, container


def dockerfile_instruction(path: Path, name: str) -> list[str]:
    """The arguments of each ``name`` instruction (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def options_of(parser: argparse.ArgumentParser, *command: str) -> set[str]:
    """The option strings of ``command`` (a subcommand path) exactly as the parser declares them:
    argparse itself would also take an abbreviation of one."""
    for name in command:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return set(parser._option_string_actions)


def assert_options(argv: list[str], options: set[str], where: str) -> None:
    used = {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}
    assert used <= options, f"{where}: {sorted(used - options)} not an option of {argv[:2]}"


def serve_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec, container) of every ``albatross serve``."""
    for doc in k8s_documents():
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                if container.get("command", [])[:2] == ["albatross", "serve"]:
                    yield doc, spec, container


def secret_keys() -> dict[str, set[str]]:
    return {
        d["metadata"]["name"]: set(d.get("data", {})) | set(d.get("stringData", {}))
        for d in k8s_documents()
        if d["kind"] == "Secret"
    }


def secret_file(spec: Mapping[str, Any], container: Mapping[str, Any], path: str) -> tuple[str, str]:
    """The (Secret, key) that ``path`` in ``container`` is mounted from; a key the Secret has."""
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        folder = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(folder) and "secret" in volumes.get(mount["name"], {}):
            secret, key = volumes[mount["name"]]["secret"]["secretName"], path[len(folder) :]
            assert key in secret_keys().get(secret, set()), (
                f"{container['name']}: Secret {secret} has no {key}"
            )
            return secret, key
    raise AssertionError(f"{container['name']} reads {path}, which is on no mounted Secret")


def probe_commands(container: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            yield probe, container[probe]["exec"]["command"]


# --- Dockerfiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_the_dockerfile_runs_the_real_console_command_on_its_exposed_port(image: str) -> None:
    dockerfile = DOCKERFILES[image]
    (cmd,) = dockerfile_instruction(dockerfile, "CMD")
    argv = json.loads(cmd)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]

    assert argv[0] in scripts and argv[1] == "serve"
    assert flag(argv, "--host") == "0.0.0.0"
    assert dockerfile_instruction(dockerfile, "EXPOSE") == [flag(argv, "--port")] == [str(SERVE_PORT)]
    build_parser().parse_args(argv[1:])  # the flags exist


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_the_dockerfile_pins_the_torch_the_package_pins_and_copies_what_exists(image: str) -> None:
    dockerfile = DOCKERFILES[image]
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in dependencies if d.startswith("torch"))

    assert any(torch in run for run in dockerfile_instruction(dockerfile, "RUN"))
    for copy in dockerfile_instruction(dockerfile, "COPY"):
        for source in shlex.split(copy)[:-1]:
            assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
    assert f"-t {image} ." in dockerfile.read_text()  # the build command names the image


# --- compose -------------------------------------------------------------------------------------


def test_compose_services_use_the_built_images_the_serve_port_and_known_variables() -> None:
    services = compose()["services"]
    known = environment_names()
    searcher = services["searcher"]

    assert searcher["image"] in DOCKERFILES
    assert (ROOT / searcher["build"]["dockerfile"]).resolve() == DOCKERFILES[searcher["image"]]
    assert searcher["ports"] == [f"{SERVE_PORT}:{SERVE_PORT}"]
    assert flag(searcher["command"], "--port") == str(SERVE_PORT)
    for name in ("searcher", "ingest"):
        service = services[name]
        assert service["image"] in DOCKERFILES
        assert "ALBATROSS_DB" in service["environment"]
        assert set(service["environment"]) <= known
        assert "postgres" in service["depends_on"]
        build_parser().parse_args(service["command"][1:])
    database = services["postgres"]["environment"]
    url = searcher["environment"]["ALBATROSS_DB"]
    assert (
        f"{database['POSTGRES_USER']}:{database['POSTGRES_PASSWORD']}@postgres:5432/{database['POSTGRES_DB']}"
        in url
    )


# --- Kubernetes ----------------------------------------------------------------------------------


def test_every_manifest_parses_and_names_its_kind() -> None:
    kinds = {doc["kind"] for doc in k8s_documents()}

    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "RayJob", "Secret", "ConfigMap"} <= kinds
    assert all(doc["metadata"]["name"] for doc in k8s_documents())


def test_searchers_serve_on_their_container_port_and_probes_check_grpc_health_there() -> None:
    served = 0
    for _, _, container in serve_containers():
        command = container["command"]
        served += 1
        build_parser().parse_args(command[1:])
        port = int(flag(command, "--port"))
        assert flag(command, "--host") == "0.0.0.0"
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert {"readinessProbe", "livenessProbe"} <= set(container), container["name"]
        for probe, argv in probe_commands(container):
            # Kubernetes' own grpc probe cannot speak TLS: searcher.health_probe does.
            assert argv[:3] == ["python", "-m", "searcher.health_probe"], (container["name"], probe)
            assert flag(argv, "--target") == f"127.0.0.1:{port}", (container["name"], probe)
            health_probe.build_parser().parse_args(argv[3:])
    assert served >= 3  # searcher, shard, router


def test_every_flag_of_the_deployment_files_is_an_option_of_its_command() -> None:
    parser = build_parser()
    commands = [(f"{doc['metadata']['name']}/{c['name']}", c.get("command", [])) for doc, c in containers()]
    commands += [
        (f"compose {name}", s["command"]) for name, s in compose()["services"].items() if "command" in s
    ]
    commands += [(str(d.name), json.loads(dockerfile_instruction(d, "CMD")[0])) for d in DOCKERFILES.values()]
    (job,) = [d for d in k8s_documents() if d["kind"] == "RayJob"]
    commands.append(
        ("RayJob entrypoint", ["albatross", "ingest", *shlex.split(job["spec"]["entrypoint"])[2:]])
    )
    checked = 0
    for where, argv in commands:
        if argv[:1] == ["albatross"]:
            assert_options(argv, options_of(parser, argv[1]), where)
            checked += 1
    probe_options = options_of(health_probe.build_parser())
    for _, _, container in serve_containers():
        for probe, argv in probe_commands(container):
            assert_options(argv[3:], probe_options, f"{container['name']} {probe}")
            checked += 1

    assert checked >= 10
    with pytest.raises(AssertionError, match="--shard-tls-certificate"):  # the check sees a misspelling
        assert_options(["albatross", "serve", "--shard-tls-certificate"], options_of(parser, "serve"), "test")


def test_every_served_port_wants_a_token_over_tls_from_files_in_secrets() -> None:
    path_flags = {"--token-file", "--tls-cert", "--tls-key", "--tls-client-ca"} | {
        f"--shard-{name}" for name in ("token-file", "tls-ca", "tls-cert", "tls-key")
    }
    for _, spec, container in serve_containers():
        command = container["command"]
        assert {"--token-file", "--tls-cert", "--tls-key"} <= set(command), container["name"]
        for name in path_flags & set(command):
            secret_file(spec, container, flag(command, name))
        server_secret, _ = secret_file(spec, container, flag(command, "--tls-cert"))
        for probe, argv in probe_commands(container):
            # The probe trusts the CA of the server's own certificate, and presents a client
            # certificate where the server requires one.
            assert secret_file(spec, container, flag(argv, "--tls-ca")) == (server_secret, "ca.crt"), probe
            if "--tls-client-ca" in command:
                assert "--tls-cert" in argv and "--tls-key" in argv, (container["name"], probe)
                secret_file(spec, container, flag(argv, "--tls-cert"))


def test_the_router_reaches_every_shard_with_its_token_and_certificates_and_callers_as_a_searcher() -> None:
    by_name = {doc["metadata"]["name"]: (doc, spec, c) for doc, spec, c in serve_containers()}
    _, router_spec, router = by_name["albatross-router"]
    _, searcher_spec, searcher = by_name["albatross-searcher"]
    shards = [entry for name, entry in by_name.items() if name.startswith("albatross-shard")]
    command = router["command"]

    def mounted(spec: Mapping[str, Any], container: Mapping[str, Any], name: str) -> tuple[str, str]:
        return secret_file(spec, container, flag(container["command"], name))

    assert len(shards) >= 2
    for _, shard_spec, shard in shards:
        shard_command = shard["command"]
        # The shard accepts exactly the token the router sends...
        assert mounted(router_spec, router, "--shard-token-file") == mounted(
            shard_spec, shard, "--token-file"
        )
        # ...over TLS to a shard certificate of the CA the router trusts, with the router's client
        # certificate, since every shard requires one (mutual TLS).
        assert "--tls-client-ca" in shard_command and {"--shard-tls-cert", "--shard-tls-key"} <= set(command)
        assert mounted(router_spec, router, "--shard-tls-ca")[1] == "ca.crt"
        assert mounted(shard_spec, shard, "--tls-client-ca")[1] == "ca.crt"
        assert (
            mounted(router_spec, router, "--shard-tls-cert")[0]
            == mounted(router_spec, router, "--shard-tls-key")[0]
        )
        # Callers cannot go around the router with their own token.
        assert mounted(shard_spec, shard, "--token-file") != mounted(searcher_spec, searcher, "--token-file")
    for name in ("--token-file", "--tls-cert", "--tls-key"):
        assert mounted(router_spec, router, name) == mounted(searcher_spec, searcher, name), name
    assert ("--tls-client-ca" in command) == ("--tls-client-ca" in searcher["command"])
    # A router serves gRPC only (`serve --router` refuses --http-port): no manifest opens one.
    assert all("--http-port" not in c["command"] for _, _, c in serve_containers())


def test_services_route_to_a_named_container_port_of_their_pods() -> None:
    docs = k8s_documents()
    for service in (d for d in docs if d["kind"] == "Service"):
        selected = [
            d
            for d in docs
            if d["kind"] in ("Deployment", "StatefulSet")
            and service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pods"
        names = {p["name"] for d in selected for c in pod_specs(d) for p in c["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_the_autoscaler_scales_the_searcher_deployment() -> None:
    docs = k8s_documents()
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    target = hpa["spec"]["scaleTargetRef"]

    assert any(d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"] for d in docs)
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_environment_comes_from_manifests_that_exist_and_names_variables_the_code_reads() -> None:
    docs = k8s_documents()
    known = environment_names()
    provided = {
        (d["kind"], d["metadata"]["name"]): set(d.get("data", {})) | set(d.get("stringData", {}))
        for d in docs
        if d["kind"] in ("Secret", "ConfigMap")
    }
    assert "ALBATROSS_DB" in set().union(*provided.values())
    for _, container in containers():
        for source in container.get("envFrom", []):
            kind, ref = (
                ("ConfigMap", source["configMapRef"])
                if "configMapRef" in source
                else ("Secret", source["secretRef"])
            )
            assert (kind, ref["name"]) in provided, (
                f"{container['name']} reads a missing {kind} {ref['name']}"
            )
            assert provided[(kind, ref["name"])] <= known
        assert {e["name"] for e in container.get("env", [])} <= known


def test_images_are_the_ones_the_dockerfiles_build_and_the_ray_job_runs_the_job_script() -> None:
    images = {container["image"] for _, container in containers()}
    compose_images = {
        s["image"] for s in compose()["services"].values() if s["image"].startswith("albatross")
    }
    (job,) = [d for d in k8s_documents() if d["kind"] == "RayJob"]
    entrypoint = shlex.split(job["spec"]["entrypoint"])

    assert images | compose_images <= set(DOCKERFILES)
    assert all(
        image.endswith("-cuda")
        for doc, c in containers()
        if doc["kind"] == "RayJob"
        for image in [c["image"]]
    )
    # The job script is copied into the CUDA image at the path the entrypoint runs.
    assert (
        f"COPY deploy/ray/ingest_job.py ./{Path(entrypoint[1]).name}"
        in DOCKERFILES["albatross:0.1.0-cuda"].read_text()
    )
    assert entrypoint[1] == "/app/ingest_job.py"
    build_parser().parse_args(["ingest", "--engine", "ray", *entrypoint[2:]])


def _config_map_value(name: str) -> str:
    (config,) = [d for d in k8s_documents() if d["kind"] == "ConfigMap"]
    return str(config["data"][name])


def test_searcher_snapshots_live_on_a_persistent_volume_claim_of_each_pod() -> None:
    data_dir = _config_map_value("ALBATROSS_DATA_DIR")
    searchers = 0
    for doc in k8s_documents():
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                command = container.get("command", [])
                if command[:2] != ["albatross", "serve"] or "--router" in command:
                    continue
                searchers += 1
                claims = {
                    t["metadata"]["name"]: t["spec"] for t in doc["spec"].get("volumeClaimTemplates", [])
                }
                (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]

                assert doc["kind"] == "StatefulSet", doc["metadata"]["name"]
                assert mount["name"] in claims, f"{doc['metadata']['name']}: {data_dir} is not on a claim"
                assert claims[mount["name"]]["accessModes"] == ["ReadWriteOnce"]
                assert not any("emptyDir" in volume for volume in spec.get("volumes", []))
    assert searchers >= 3  # the searcher replicas and two replica sets of shards


def test_the_router_names_one_replica_of_every_shard_in_each_shard_set() -> None:
    from searcher.shards import parse_shards

    docs = k8s_documents()
    (router,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "albatross-router"]
    command = router["spec"]["template"]["spec"]["containers"][0]["command"]
    shards = parse_shards(flag(command, "--shards"))
    sets = [
        d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].startswith("albatross-shard")
    ]
    counts = set()
    for doc in sets:
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        counts.add(int(next(e["value"] for e in container["env"] if e["name"] == "ALBATROSS_SHARD_COUNT")))
        name, service = doc["metadata"]["name"], doc["spec"]["serviceName"]
        for index in range(doc["spec"]["replicas"]):
            # Pod N of every set serves shard N, so it must be listed among shard N's replicas.
            assert f"{name}-{index}.{service}:50051" in shards[index]

    assert counts == {len(shards)}
    assert all(len(replicas) == len(sets) >= 2 for replicas in shards)
