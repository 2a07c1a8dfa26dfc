"""The Dockerfile and the Kubernetes manifests, checked against the real CLI and config loader.

There is no container engine here, so the files are parsed: their commands go through
`tokengate.cli.build_parser()`, their kong.yaml through `load_config`, their ports and probes are
matched against the parsed flags, and the image's entrypoint is started for real with the
image's environment (on free ports), health-checked with the image's own HEALTHCHECK snippet.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import distributions, entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.ports import free_port
from tokengate import cli
from tokengate.gateway.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
KUBE = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(KUBE.rglob("*.yaml"))
KUBE_DIRS = sorted(path.parent for path in KUBE.rglob("kustomization.yaml"))
DEPLOYMENT_DIRS = [path for path in KUBE_DIRS if (path / "deployment.yaml").exists()]


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Image:
    """What the final stage of the Dockerfile declares (earlier stages only contribute COPYs)."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    user: str = ""
    healthcheck: list[str] = field(default_factory=list)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination)


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        current = ""
        yield keyword.upper(), rest.strip()


def exec_form(text: str) -> list[str]:
    value = json.loads(text)  # a shell form would fail here: it makes sh PID 1, not tokengate
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), text
    return value


def parse_image(text: str) -> Image:
    image = Image()
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            copies = image.copies
            image = Image(copies=copies)
        elif keyword == "COPY":
            words = rest.split()
            if not any(word.startswith("--from") for word in words):
                paths = [word for word in words if not word.startswith("--")]
                image.copies.append((paths[:-1], paths[-1]))
        elif keyword == "ENTRYPOINT":
            image.entrypoint = exec_form(rest)
        elif keyword == "CMD":
            image.cmd = exec_form(rest)
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                image.env[name] = value
        elif keyword == "EXPOSE":
            image.expose += [int(port.partition("/")[0]) for port in rest.split()]
        elif keyword == "USER":
            image.user = rest
        elif keyword == "HEALTHCHECK":
            _options, _, command = rest.partition(" CMD ")
            image.healthcheck = exec_form(command)
    return image


@pytest.fixture
def image() -> Image:
    return parse_image(DOCKERFILE.read_text())


@pytest.fixture
def no_tokengate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser reads TOKENGATE_* for its defaults: start from none of them."""
    for name in list(os.environ):
        if name.startswith("TOKENGATE_"):
            monkeypatch.delenv(name)


def image_args(image: Image, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    for name, value in image.env.items():
        if name.startswith("TOKENGATE_"):
            monkeypatch.setenv(name, value)
    return cli.build_parser().parse_args([*image.entrypoint[1:], *image.cmd])


def test_the_entrypoint_is_the_tokengate_console_script(image: Image) -> None:
    script = image.entrypoint[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"][script] == "tokengate.cli:main"
    (installed,) = entry_points(group="console_scripts", name=script)
    assert installed.load() is cli.main
    assert image.entrypoint[1:] == ["gateway"]


def test_the_image_arguments_parse_and_match_the_exposed_ports(
    image: Image, no_tokengate_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = image_args(image, monkeypatch)
    assert args.command == "gateway"
    assert args.config == "/etc/tokengate/kong.yaml"
    # Inside a container only an all-interfaces listener is reachable from outside it.
    assert args.listen == ("0.0.0.0", 8000)
    assert args.status_listen == ("0.0.0.0", 8100)
    assert sorted(image.expose) == [8000, 8100]


def test_the_image_ships_the_default_config_where_the_gateway_reads_it(image: Image) -> None:
    destinations = {dest: sources for sources, dest in image.copies}
    assert destinations[image.env["TOKENGATE_CONFIG"]] == ["config/kong.yaml"]
    assert load_config(ROOT / "config" / "kong.yaml").routes


def test_the_image_installs_the_project_from_its_own_files(image: Image) -> None:
    sources = {source for paths, _ in image.copies for source in paths}
    # pyproject's readme is README.md; constraints.txt holds the versions the suite passed with
    assert {"pyproject.toml", "src", "README.md", "constraints.txt"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_the_image_runs_as_a_numeric_non_root_user(image: Image) -> None:
    uid, _, gid = image.user.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_the_healthcheck_asks_the_status_port_for_healthz(image: Image) -> None:
    python, flag, snippet = image.healthcheck
    assert (python, flag) == ("python", "-c")
    assert "/healthz" in snippet and "TOKENGATE_STATUS_LISTEN" in snippet


def test_dockerignore_keeps_local_state_out_and_lets_every_copy_in(image: Image) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "bench/results", "*.db"} <= set(patterns)
    for sources, _ in image.copies:
        for source in sources:
            ignored = [pattern for pattern in patterns if fnmatch.fnmatch(source, pattern)]
            assert not ignored, f"{source} is copied but ignored by {ignored}"


def healthcheck(image: Image, status_listen: str) -> int:
    """Run the image's HEALTHCHECK command (its `python` is this interpreter); the exit code."""
    env = {**os.environ, "TOKENGATE_STATUS_LISTEN": status_listen}
    return subprocess.run(
        [sys.executable, *image.healthcheck[1:]], env=env, capture_output=True, timeout=10
    ).returncode


def test_the_healthcheck_fails_when_nothing_answers(image: Image) -> None:
    assert healthcheck(image, f"0.0.0.0:{free_port()}") != 0


def test_the_image_command_serves_and_stops_cleanly_on_sigterm(
    image: Image, tmp_path: Path
) -> None:
    """The ENTRYPOINT with the image's ENV, only the ports moved and the config copied."""
    config = tmp_path / "kong.yaml"
    shutil.copy(ROOT / "config" / "kong.yaml", config)
    proxy, status = free_port(), free_port()
    moved = {
        "TOKENGATE_CONFIG": str(config),
        "TOKENGATE_LISTEN": image.env["TOKENGATE_LISTEN"].rpartition(":")[0] + f":{proxy}",
        "TOKENGATE_STATUS_LISTEN": image.env["TOKENGATE_STATUS_LISTEN"].rpartition(":")[0]
        + f":{status}",
    }
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOKENGATE_")}
    env |= {name: value for name, value in image.env.items() if name.startswith("TOKENGATE_")}
    env |= moved
    script = Path(sys.executable).with_name(image.entrypoint[0])
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tokengate"]
    process = subprocess.Popen(
        [*command, *image.entrypoint[1:], *image.cmd],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while healthcheck(image, moved["TOKENGATE_STATUS_LISTEN"]) != 0:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the healthcheck never passed"
            time.sleep(0.05)
        # The snippet tells the ports apart: the proxy has no /healthz route.
        assert healthcheck(image, moved["TOKENGATE_LISTEN"]) != 0
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{proxy}/nothing", timeout=5)
        assert caught.value.code == 404
        caught.value.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


# --- Kubernetes --------------------------------------------------------------------------------


@functools.cache
def documents(path: Path) -> list[dict[str, Any]]:
    """Parsed once per run; the tests only read them."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def objects(directory: Path, kind: str) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in documents(path)
        if doc["kind"] == kind
    ]


def one(directory: Path, kind: str) -> dict[str, Any]:
    (found,) = objects(directory, kind)
    return found


def test_the_manifest_directories_exist() -> None:
    assert [path.name for path in KUBE_DIRS] == ["sidecar", "standalone"]
    assert [path.name for path in DEPLOYMENT_DIRS] == ["sidecar", "standalone"]
    assert (KUBE / "README.md").exists()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(KUBE)))
def test_every_manifest_parses_and_names_its_kind(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        assert isinstance(doc["apiVersion"], str) and doc["apiVersion"]
        assert isinstance(doc["kind"], str) and doc["kind"]
        assert isinstance(doc["metadata"]["name"], str) and doc["metadata"]["name"]


@pytest.mark.parametrize("directory", KUBE_DIRS, ids=lambda path: path.name)
def test_each_kustomization_lists_every_manifest_beside_it(directory: Path) -> None:
    kustomization = documents(directory / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    listed = sorted(kustomization["resources"])
    present = sorted(p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
    assert listed == present


@dataclass
class Gateway:
    """The gateway container of a Deployment and what it was started with."""

    deployment: dict[str, Any]
    pod: dict[str, Any]
    container: dict[str, Any]
    args: argparse.Namespace

    def port(self, ref: int | str) -> int:
        """A container port given by number or by name."""
        if isinstance(ref, int):
            return ref
        (number,) = [p["containerPort"] for p in self.container["ports"] if p["name"] == ref]
        return int(number)


def gateway_flags() -> set[str]:
    (commands,) = [
        action
        for action in cli.build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    return set(commands.choices["gateway"]._option_string_actions)


def gateway(directory: Path) -> Gateway:
    deployment = one(directory, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c.get("command", [""])[0] == "tokengate"]
    argv = [*container["command"][1:], *container.get("args", [])]
    # Spelled in full: argparse would also take `--worker`, until some `--worker-...` exists.
    assert {arg.partition("=")[0] for arg in argv if arg.startswith("-")} <= gateway_flags()
    return Gateway(deployment, pod, container, cli.build_parser().parse_args(argv))


def cpu_cores(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_the_gateway_container_runs_the_real_cli(directory: Path, no_tokengate_env: None) -> None:
    gw = gateway(directory)
    assert gw.container["command"] == ["tokengate", "gateway"]
    assert gw.args.command == "gateway"
    # The Service reaches the Pod IP and the kubelet probes it: loopback would answer neither.
    assert gw.args.listen[0] == "0.0.0.0" and gw.args.status_listen[0] == "0.0.0.0"
    assert gw.port("proxy") == gw.args.listen[1]
    assert gw.port("status") == gw.args.status_listen[1]
    assert gw.args.listen[1] != gw.args.status_listen[1]


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_probes_use_the_status_port(directory: Path, no_tokengate_env: None) -> None:
    gw = gateway(directory)
    readiness = gw.container["readinessProbe"]["httpGet"]
    liveness = gw.container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz" and liveness["path"] == "/healthz"
    assert gw.port(readiness["port"]) == gw.port(liveness["port"]) == gw.args.status_listen[1]
    annotations = gw.deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == gw.args.status_listen[1]


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_the_service_exposes_only_the_proxy_port(directory: Path, no_tokengate_env: None) -> None:
    gw = gateway(directory)
    service = one(directory, "Service")
    pod_labels = gw.deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert gw.port(port["targetPort"]) == gw.args.listen[1]


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_the_config_map_is_mounted_where_the_gateway_reads_it(
    directory: Path, no_tokengate_env: None
) -> None:
    gw = gateway(directory)
    config_map = one(directory, "ConfigMap")
    config = Path(gw.args.config)
    (mount,) = [m for m in gw.container["volumeMounts"] if m["mountPath"] == str(config.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in gw.pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert config.name in config_map["data"]


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_the_config_map_kong_yaml_passes_the_loader(directory: Path, tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(one(directory, "ConfigMap")["data"]["kong.yaml"])
    config = load_config(path)
    assert config.warnings == ()
    issuers = [route.oidc.issuer for route in config.routes if route.oidc is not None]
    assert issuers and all(issuer.startswith("https://") for issuer in issuers)


def test_the_sidecar_upstream_is_the_app_on_loopback(tmp_path: Path) -> None:
    directory = KUBE / "sidecar"
    path = tmp_path / "kong.yaml"
    path.write_text(one(directory, "ConfigMap")["data"]["kong.yaml"])
    (service,) = load_config(path).services
    assert service.host == "127.0.0.1"
    pod = one(directory, "Deployment")["spec"]["template"]["spec"]
    (app,) = [c for c in pod["containers"] if c["name"] != "tokengate"]
    # The app listens where the gateway sends, on loopback only, and publishes no port.
    assert any(arg.endswith(f"=127.0.0.1:{service.port}") for arg in app["args"])
    assert "ports" not in app


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_workers_match_the_cpu_limit(directory: Path, no_tokengate_env: None) -> None:
    gw = gateway(directory)
    resources = gw.container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()
    assert gw.args.workers == cpu_cores(resources["limits"]["cpu"])


# Measured on a worker with one openid-connect config: 57 MiB at start, about 130 MiB once
# 20,000 distinct tokens (the verified-token cache's two generations of 10,000) went through it
# (`python -m bench.memory`).
WORKER_MIB = 144
SUPERVISOR_MIB = 64  # the process that supervises more than one worker


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_the_memory_limit_holds_a_full_token_cache_in_every_worker(
    directory: Path, no_tokengate_env: None
) -> None:
    """A load test with many clients fills each worker's verified-token cache; a limit below
    that is an OOM kill in the middle of it (128Mi for one worker, 256Mi for two, were)."""
    gw = gateway(directory)
    workers = gw.args.workers
    needed = workers * WORKER_MIB + (SUPERVISOR_MIB if workers > 1 else 0)
    assert mebibytes(gw.container["resources"]["limits"]["memory"]) >= needed


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_several_workers_get_a_writable_temporary_directory(
    directory: Path, no_tokengate_env: None
) -> None:
    """With --workers above 1 the gateway shares metrics and a config snapshot through files in
    the temporary directory (TMPDIR, else /tmp), and refuses to start without one; the root
    filesystem is read-only, so an emptyDir must be mounted there."""
    gw = gateway(directory)
    if gw.args.workers == 1:
        pytest.skip("one worker writes no temporary files")
    env = {e["name"]: e.get("value") for e in gw.container.get("env", [])}
    tmp = env.get("TMPDIR") or "/tmp"
    (mount,) = [m for m in gw.container["volumeMounts"] if m["mountPath"] == tmp]
    assert not mount.get("readOnly", False)
    (volume,) = [v for v in gw.pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


@pytest.mark.parametrize("directory", DEPLOYMENT_DIRS, ids=lambda path: path.name)
def test_every_container_is_locked_down(directory: Path, image: Image) -> None:
    pod = one(directory, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == image.user.partition(":")[0]
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]


def test_the_autoscaler_scales_the_gateway_deployment_on_cpu(no_tokengate_env: None) -> None:
    directory = KUBE / "standalone"
    hpa = one(directory, "HorizontalPodAutoscaler")
    deployment = one(directory, "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilisation is measured against the request; a fixed replica count would fight the HPA.
    assert "cpu" in gateway(directory).container["resources"]["requests"]
    assert "replicas" not in deployment["spec"]


def test_the_disruption_budget_covers_the_gateway_pods() -> None:
    directory = KUBE / "standalone"
    pdb = one(directory, "PodDisruptionBudget")
    pod_labels = one(directory, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # Below the autoscaler's floor, or a node drain could never evict a gateway Pod.
    min_replicas = one(directory, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    assert 1 <= pdb["spec"]["minAvailable"] < min_replicas


# --- dependencies ------------------------------------------------------------------------------


def pinned_versions() -> dict[str, Version]:
    """constraints.txt as {normalised name: version}; every line must be an exact pin."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def test_every_dependency_is_pinned_to_a_version_it_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = pinned_versions()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt (make constraints)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_make_installs_the_pinned_versions() -> None:
    """Run by `make test` from the project's .venv: what it installed is what constraints.txt
    pins (a pin the Makefile did not apply would leave the newest release instead)."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not running from the project's .venv (make test runs from it)")
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in distributions()}
    for name, version in pinned_versions().items():
        assert Version(installed[name]) == version, name
