"""The deployment examples in examples/deploy/ agree with relay (docs/deployment.md).

Every YAML file there must parse, and every container that runs relay must:

* run a command ``relay-cli``'s own argument parser accepts (``run``);
* set only ``RELAY_*`` variables relay knows, with values ``Settings.load``
  accepts;
* turn the probe server on (``HEALTH_PORT``, or ``--health-port``: relay's
  default is no server) on an address the kubelet or Cloud Run can reach,
  and point every HTTP probe at that port (a named port resolved through the
  container's ports) and at a path relay's ``HealthServer`` answers: the
  paths are tried against a real one, so a path relay does not serve fails;
  liveness must be ``/livez`` and readiness ``/readyz``;
* be given time to drain: the grace period (Kubernetes'
  ``terminationGracePeriodSeconds``; Cloud Run's fixed 10 s) must cover
  ``DRAIN_TIMEOUT``, plus the supervisor's ``STOP_MARGIN`` with
  ``--processes``, plus ``CLOSE_ALLOWANCE`` to close the streams and exit.

Cloud Run pull workers also need CPU always allocated and at least one
instance; a KEDA ScaledObject must target a Deployment of the examples, with a
``gcp-pubsub`` trigger whose authentication is defined next to it. Every
``yaml`` excerpt in docs/deployment.md must be part of one of the files.

The files are read with PyYAML's ``safe_load_all`` (a dev dependency). Offline
and fast: the only network use is a HealthServer on a loopback port.
"""

from __future__ import annotations

import argparse
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.cli import build_parser
from relay.errors import ConfigurationError
from relay.health import HealthServer
from relay.processes import STOP_MARGIN
from relay.settings import KEYS, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"
MANIFESTS = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))

#: Seconds between Cloud Run's SIGTERM and its SIGKILL (not configurable).
CLOUD_RUN_GRACE = 10
#: Seconds a worker is allowed, after the drain, to close its streams (each
#: waits up to 2 s for Pub/Sub to end it), send the last acks and exit.
CLOSE_ALLOWANCE = 5
#: ``RELAY_*`` variables that are not settings (relay.settings._NOT_SETTINGS).
NOT_SETTINGS = {"RELAY_SETTINGS", "RELAY_EMULATOR", "RELAY_EMULATOR_BIN"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# ---------------------------------------------------------------- the checks
def _documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is None:
                continue
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"
            out.append((path, doc))
    return out


def _pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(platform, pod spec) of a workload: Kubernetes' or Cloud Run's."""
    kind, api = doc.get("kind"), doc.get("apiVersion", "")
    template = doc.get("spec", {}).get("template", {})
    if kind in ("Deployment", "StatefulSet") and api.startswith("apps/"):
        yield "kubernetes", template["spec"]
    elif kind == "Service" and api.startswith("serving.knative.dev/"):
        yield "cloud-run", template["spec"]


def _relay_containers() -> list[tuple[str, Path, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    found = []
    for path, doc in _documents():
        for platform, pod in _pod_specs(doc):
            for container in pod["containers"]:
                argv = list(container.get("command", [])) + list(container.get("args", []))
                if argv[:1] == ["relay-cli"] or argv[:3] == ["python", "-m", "relay.cli"]:
                    found.append((platform, path, doc, pod, container))
    return found


def _parse_relay_cli(argv: list[str], where: str) -> argparse.Namespace:
    words = argv[1:] if argv[0] == "relay-cli" else argv[3:]
    try:
        args = build_parser().parse_args(words)
    except SystemExit:
        pytest.fail(f"{where}: relay-cli refuses {' '.join(argv)!r} (its error is above)")
    assert args.command == "run", f"{where}: the worker must run `relay-cli run`, not {argv}"
    return args


def _env(container: dict[str, Any], where: str) -> dict[str, str]:
    env = {}
    for item in container.get("env", []):
        name = item["name"]
        if name.startswith("RELAY_"):
            assert name in NOT_SETTINGS or name.removeprefix("RELAY_") in KEYS, (
                f"{where}: {name} is not a relay setting; relay knows RELAY_<KEY> for "
                f"{', '.join(sorted(KEYS))}"
            )
        if "value" in item:
            assert isinstance(item["value"], str), (
                f"{where}: env {name} must be a string (quote it): {item['value']!r}"
            )
            env[name] = item["value"]
    return env


def _settings(env: dict[str, str], args: argparse.Namespace, where: str) -> Settings:
    relay_env = {k: v for k, v in env.items() if k.startswith("RELAY_") and k not in NOT_SETTINGS}
    try:
        settings = Settings.load(environ=relay_env)
    except ConfigurationError as exc:
        pytest.fail(f"{where}: relay refuses the manifest's settings: {exc}")
    if args.health_port is not None:  # as relay-cli does: --health-port beats HEALTH_PORT
        settings = settings.replace(health_port=args.health_port)
    if args.provisioning:
        settings = settings.replace(provisioning=args.provisioning)
    return settings


class _Status:
    def status(self) -> dict[str, Any]:
        return {"started": True, "stopping": False, "provisioned": True,
                "supervisor_alive": True, "inflight": 0, "subscriptions": []}


@pytest.fixture(scope="module")
def served() -> Iterator[HealthServer]:
    """A real relay health server, to ask whether it serves a path."""
    with HealthServer(_Status(), port=0) as server:
        yield server


def _serves(server: HealthServer, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status != 404
    finally:
        connection.close()


def _probe_port(container: dict[str, Any], port: int | str, where: str) -> int:
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"{where}: probe port {port!r} is not a named port of the container"
    return int(named[port])


def _ids(items: list[Any]) -> list[str]:
    return [f"{p.parent.name}/{p.name}:{d['metadata']['name']}" for _, p, d, _, _ in items]


CONTAINERS = _relay_containers()


def test_the_examples_exist_and_every_yaml_file_parses() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in MANIFESTS}
    assert {"k8s/deployment.yaml", "k8s/keda-scaledobject.yaml",
            "cloud-run/service.yaml"} <= names
    for path, doc in _documents():
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: apiVersion and kind"
        assert doc.get("metadata", {}).get("name"), f"{path}: metadata.name"
    assert {platform for platform, *_ in CONTAINERS} == {"kubernetes", "cloud-run"}


@pytest.mark.parametrize(("platform", "path", "doc", "pod", "container"), CONTAINERS,
                         ids=_ids(CONTAINERS))
def test_the_worker_container_agrees_with_relay(
    platform: str, path: Path, doc: dict[str, Any], pod: dict[str, Any],
    container: dict[str, Any], served: HealthServer,
) -> None:
    where = f"{path.relative_to(DEPLOY)} ({doc['kind']} {doc['metadata']['name']})"
    argv = list(container.get("command", [])) + list(container.get("args", []))
    args = _parse_relay_cli(argv, where)
    settings = _settings(_env(container, where), args, where)

    # Probes: relay's server must be on, reachable, and be what they ask.
    port = settings.health_port
    assert port is not None, (
        f"{where}: relay serves no probes unless HEALTH_PORT (RELAY_HEALTH_PORT) or "
        "--health-port is set; its default is no server"
    )
    assert settings.health_host not in LOOPBACK, (
        f"{where}: HEALTH_HOST is {settings.health_host!r}: the kubelet and Cloud Run probe "
        "the container's address, not its loopback; set RELAY_HEALTH_HOST=0.0.0.0"
    )
    container_ports = [p["containerPort"] for p in container.get("ports", [])]
    assert port in container_ports, f"{where}: HEALTH_PORT {port} is not a container port"
    expected = {"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": None}
    probes = {kind: container[kind] for kind in expected if kind in container}
    assert "livenessProbe" in probes, f"{where}: no livenessProbe"
    for kind, probe in probes.items():
        get = probe.get("httpGet")
        assert get is not None, f"{where}: {kind} must be an httpGet on relay's probes"
        probe_port = _probe_port(container, get["port"], where)
        assert probe_port == port, (
            f"{where}: {kind} probes port {probe_port}, relay serves HEALTH_PORT {port}"
        )
        assert _serves(served, get["path"]), (
            f"{where}: {kind} path {get['path']!r} is not one relay's health server serves"
        )
        if expected[kind]:
            assert get["path"] == expected[kind], f"{where}: {kind} must use {expected[kind]}"

    # Time to drain before the SIGKILL.
    given = [w.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
             for i, w in enumerate(argv) if w.partition("=")[0] == "--processes"]
    processes = any(n.strip().lower() == "auto" or n != "1" for n in given)  # a supervisor
    needed = settings.drain_timeout + (STOP_MARGIN if processes else 0) + CLOSE_ALLOWANCE
    if platform == "kubernetes":
        grace = pod.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
        name = "terminationGracePeriodSeconds"
    else:
        grace, name = CLOUD_RUN_GRACE, "Cloud Run's fixed 10 s between SIGTERM and SIGKILL"
    assert grace >= needed, (
        f"{where}: {name} ({grace}) must cover DRAIN_TIMEOUT {settings.drain_timeout:g}"
        + (f" + the supervisor's {STOP_MARGIN:g} s (--processes)" if processes else "")
        + f" + {CLOSE_ALLOWANCE} s to close the streams = {needed:g}"
    )

    if platform == "cloud-run":
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations.get("run.googleapis.com/cpu-throttling") == "false", (
            f"{where}: a pull worker needs CPU always allocated "
            "(run.googleapis.com/cpu-throttling: \"false\")"
        )
        assert int(annotations.get("autoscaling.knative.dev/minScale", "0")) >= 1, (
            f"{where}: a pull worker needs at least one instance (minScale >= 1)"
        )
        for value in annotations.values():
            assert isinstance(value, str), f"{where}: annotation values must be strings"


def test_the_keda_scaled_object_targets_the_worker_deployment() -> None:
    documents = _documents()
    deployments = {d["metadata"]["name"] for _, d in documents if d["kind"] == "Deployment"}
    auths = {d["metadata"]["name"]: d for _, d in documents
             if d["kind"] in ("TriggerAuthentication", "ClusterTriggerAuthentication")}
    scaled = [d for _, d in documents if d["kind"] == "ScaledObject"]
    assert scaled, "no ScaledObject in examples/deploy"
    for obj in scaled:
        spec = obj["spec"]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"]["name"] in deployments
        for trigger in spec["triggers"]:
            assert trigger["type"] == "gcp-pubsub"
            metadata = trigger["metadata"]
            assert metadata.get("subscriptionName")
            assert metadata.get("mode") in ("SubscriptionSize", "OldestUnackedMessageAge")
            assert isinstance(metadata.get("value"), str)
            auth = auths[trigger["authenticationRef"]["name"]]
            assert auth["spec"]["podIdentity"]["provider"] == "gcp"


# ------------------------------------------- the checks catch what they should
def _broken(container: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(container))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = out
        for key in parents:
            node = node[key]
        node[last] = value
    return out


@pytest.mark.parametrize("change", [
    {"livenessProbe__httpGet__path": "/healthz"},
    {"readinessProbe__httpGet__path": "/livez"},
    {"livenessProbe__httpGet__port": 9090},
    {"command": ["relay-cli", "run", "--processes", "0"]},
    {"command": ["relay-cli", "serve"]},
])
def test_a_wrong_path_port_or_command_fails(change: dict[str, Any], served: HealthServer) -> None:
    platform, path, doc, pod, container = next(c for c in CONTAINERS if c[0] == "kubernetes")
    bad = _broken(container, **change)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        test_the_worker_container_agrees_with_relay(platform, path, doc, pod, bad, served)


@pytest.mark.parametrize("env", [
    {"name": "RELAY_HEALTH_PORT", "value": "9090"},
    {"name": "RELAY_HEALTH_HOST", "value": "127.0.0.1"},
    {"name": "RELAY_DRAIN_TIMEOUT", "value": "50"},
    {"name": "RELAY_DRAIN_TIMOUT", "value": "5"},
    {"name": "RELAY_CONCURRENCY", "value": 16},
])
def test_a_wrong_setting_fails(env: dict[str, Any], served: HealthServer) -> None:
    platform, path, doc, pod, container = next(c for c in CONTAINERS if c[0] == "kubernetes")
    bad = json.loads(json.dumps(container))
    bad["env"] = [e for e in bad["env"] if e["name"] != env["name"]] + [env]
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        test_the_worker_container_agrees_with_relay(platform, path, doc, pod, bad, served)


# ------------------------------------- docs/deployment.md quotes these files
DOC = DEPLOY.parent.parent / "docs" / "deployment.md"


def _doc_excerpts() -> list[tuple[int, str]]:
    """(line, text) of each ```yaml block of docs/deployment.md."""
    excerpts, start, lines = [], 0, []
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        if not start and line.strip() == "```yaml":
            start, lines = number, []
        elif start and line.strip() == "```":
            excerpts.append((start, "\n".join(lines)))
            start = 0
        elif start:
            lines.append(line)
    return excerpts


def _part_of(excerpt: Any, node: Any) -> bool:
    """``excerpt`` is ``node`` with keys left out: every key it has, node has, with
    a value that is a part of node's; lists item by item; anything else equal."""
    if isinstance(excerpt, dict):
        return isinstance(node, dict) and all(
            key in node and _part_of(value, node[key]) for key, value in excerpt.items()
        )
    if isinstance(excerpt, list):
        return (isinstance(node, list) and len(excerpt) == len(node)
                and all(_part_of(e, n) for e, n in zip(excerpt, node, strict=True)))
    return bool(excerpt == node)


def _nodes(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _nodes(child)


def _quoted(excerpt: Any) -> bool:
    return any(_part_of(excerpt, node) for _, doc in _documents() for node in _nodes(doc))


EXCERPTS = _doc_excerpts()


def test_the_deployment_page_quotes_yaml() -> None:
    assert len(EXCERPTS) >= 2, f"{DOC}: expected its yaml excerpts of examples/deploy"


@pytest.mark.parametrize(("line", "text"), EXCERPTS, ids=[f"line {n}" for n, _ in EXCERPTS])
def test_every_yaml_excerpt_on_the_deployment_page_is_in_a_manifest(line: int, text: str) -> None:
    excerpt = yaml.safe_load(text)
    assert isinstance(excerpt, dict), f"docs/deployment.md:{line}: the excerpt is not a mapping"
    assert _quoted(excerpt), (
        f"docs/deployment.md:{line}: this yaml excerpt is not part of any manifest under "
        f"examples/deploy (keys may be left out, values must be the same):\n{text}\n"
        "make the page and the manifest say the same"
    )


@pytest.mark.parametrize("text", [
    'command: ["relay-cli", "run", "--subs", "shop.subs", "--processes", "3"]',
    "triggers:\n  - type: gcp-pubsub\n    metadata:\n      mode: OldestUnackedMessageAge",
    "triggers:\n  - type: gcp-pubsub\n    metadata:\n      subscriptionName: shop-orders\n"
    "      nothere: 1",
])
def test_an_excerpt_that_differs_from_the_manifests_is_refused(text: str) -> None:
    assert not _quoted(yaml.safe_load(text))
