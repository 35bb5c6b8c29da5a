"""The deployment files fit together and fit the code (Docker cannot run here, so they are parsed,
not built): ports, probes, commands, environment variable names and image names agree."""

from __future__ import annotations

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


def test_searchers_serve_on_their_container_port_and_probes_use_grpc_health_there() -> None:
    served = 0
    for _, container in containers():
        command = container.get("command", [])
        if command[:2] != ["albatross", "serve"]:
            continue
        served += 1
        build_parser().parse_args(command[1:])
        port = int(flag(command, "--port"))
        assert flag(command, "--host") == "0.0.0.0"
        assert [p["containerPort"] for p in container["ports"]] == [port]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (container["name"], probe)
    assert served >= 3  # searcher, shard, router


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
                claims = {t["metadata"]["name"]: t["spec"] for t in doc["spec"].get("volumeClaimTemplates", [])}
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
    sets = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].startswith("albatross-shard")]
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
