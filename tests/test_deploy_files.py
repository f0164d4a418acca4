"""The full-stack files without Docker or a cluster: docker-compose.yml, deploy/Dockerfile and
deploy/k8s/ parse, pin every image, use only real settings, create every topic the app uses,
and match what README and docs/operations.md say."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.app import create_app
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
SETTINGS_ENV = {f"CHURNGUARD_{name.upper()}" for name in Settings.model_fields}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
DATA_DIR = "/var/lib/churnguard"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _services() -> dict[str, dict[str, Any]]:
    return dict(_compose()["services"])


def _resolve(value: Any) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default (empty environment)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: _resolve(v) for k, v in env.items()}


def _k8s_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _k8s(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _k8s_documents() if d["kind"] == kind]
    return doc


def _assert_pinned(image: str, where: str) -> None:
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{where}: image {image!r} has no tag"
    assert tag != "latest", f"{where}: image {image!r} is not pinned"
    assert re.search(r"\d", tag), f"{where}: tag of {image!r} names no version"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else None]


# -- docker-compose.yml ----------------------------------------------------------------------
def test_compose_is_at_the_top_level_and_has_the_whole_stack() -> None:
    assert not (ROOT / "deploy" / "docker-compose.yml").exists()
    services = _services()
    expected = {"kafka", "kafka-init", "redis", "worker-1", "worker-2", "serve", "demo"}
    assert expected | {"prometheus", "grafana"} == set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]


def test_every_compose_image_is_pinned() -> None:
    for name, service in _services().items():
        assert "image" in service, f"{name}: a built service needs a pinned image name too"
        _assert_pinned(_resolve(service["image"]), name)


def test_the_dockerfile_base_image_is_pinned() -> None:
    bases = re.findall(r"(?im)^FROM\s+(\S+)", (ROOT / "deploy" / "Dockerfile").read_text())
    assert bases
    for image in bases:
        _assert_pinned(image, "deploy/Dockerfile")


def test_compose_environment_names_and_values_are_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, service in _services().items():
        env = {k: v for k, v in _environment(service).items() if k.startswith("CHURNGUARD_")}
        assert set(env) <= SETTINGS_ENV, f"{name}: not a setting: {set(env) - SETTINGS_ENV}"
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            Settings()  # the values validate too


def test_two_workers_in_one_group_each_with_its_own_state_volume() -> None:
    services = _services()
    workers = [services["worker-1"], services["worker-2"]]
    for worker in workers:
        assert worker["command"][:2] == ["churnguard", "worker"]
        env = _environment(worker)
        assert env["CHURNGUARD_DATA_DIR"] == DATA_DIR
        assert env["CHURNGUARD_WEB_HOST"] == "0.0.0.0"
        assert any(v.endswith(f":{DATA_DIR}") for v in worker["volumes"])
        assert "/readyz" in " ".join(worker["healthcheck"]["test"])
    envs = [_environment(w) for w in workers]
    assert envs[0]["CHURNGUARD_APP_ID"] == envs[1]["CHURNGUARD_APP_ID"]
    assert workers[0]["volumes"] != workers[1]["volumes"]
    serve = services["serve"]
    assert serve["command"] == ["churnguard", "serve"]
    assert _environment(serve)["CHURNGUARD_SERVE_PORT"] == "6067"
    assert "6067:6067" in serve["ports"]
    demo = services["demo"]
    assert demo["command"][:2] == ["churnguard", "demo"]
    demo_env = _environment(demo)
    assert demo_env["CHURNGUARD_APP_ID"] != envs[0]["CHURNGUARD_APP_ID"]
    # the demo's own worker must not write where the stack's workers and sink read
    stack_outputs = {"alerts", "tasks", "health", "deadletter", "rekeyed", "ticks", "rfm"}
    assert {f"CHURNGUARD_TOPIC_{k.upper()}" for k in stack_outputs} <= set(demo_env)
    assert demo_env["CHURNGUARD_REDIS_URL"] != envs[0]["CHURNGUARD_REDIS_URL"]


def _expected_topics(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Every topic the app declares: name → (partitions, configs), the changelog included."""
    app = create_app(settings)
    topics = app.churnguard_topics  # type: ignore[attr-defined]
    declared = [
        *topics.inputs.values(),
        topics.rekeyed,
        topics.ticks,
        topics.alerts,
        topics.tasks,
        topics.health,
        topics.deadletter,
        topics.rfm,
    ]
    expected = {t.get_topic_name(): (t.partitions, dict(t.config or {})) for t in declared}
    changelog = app.churnguard_table.changelog_topic  # type: ignore[attr-defined]
    expected[changelog.get_topic_name()] = (changelog.partitions, {"cleanup.policy": "compact"})
    return expected


def _created_topics(tmp_path: Path, partitions: str) -> dict[str, tuple[int, dict[str, str]]]:
    """Run kafka-init's script with a stand-in kafka-topics.sh that records its arguments."""
    record = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/bin/bash\nprintf "%q " "$@" >> {record}\necho >> {record}\n')
    stub.chmod(0o755)
    init = _services()["kafka-init"]
    assert init["entrypoint"][0] == "/bin/bash"
    script = init["command"][0].replace("$$", "$")  # compose's escape of a literal $
    assert "/opt/kafka/bin/kafka-topics.sh" in script
    script = script.replace("/opt/kafka/bin/kafka-topics.sh", str(stub))
    subprocess.run(
        ["/bin/bash", "-ec", script],
        env={"CHURNGUARD_PARTITIONS": partitions, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=30,
    )
    created: dict[str, tuple[int, dict[str, str]]] = {}
    for line in record.read_text().splitlines():
        args = shlex.split(line)
        assert "--create" in args and "--if-not-exists" in args  # re-running is harmless
        configs = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--config")
        name = args[args.index("--topic") + 1]
        created[name] = (int(args[args.index("--partitions") + 1]), configs)
    return created


def test_kafka_init_creates_every_topic_the_app_declares(tmp_path: Path) -> None:
    services = _services()
    partitions = _environment(services["kafka-init"])["CHURNGUARD_PARTITIONS"]
    for worker in ("worker-1", "worker-2"):
        assert _environment(services[worker])["CHURNGUARD_PARTITIONS"] == partitions
    expected = _expected_topics(Settings(partitions=int(partitions)))
    assert _created_topics(tmp_path, partitions) == expected


def test_kafka_init_follows_the_partition_setting(tmp_path: Path) -> None:
    created = _created_topics(tmp_path, "8")
    assert created == _expected_topics(Settings(partitions=8))


def test_compose_mounts_exist_and_prometheus_scrapes_the_services() -> None:
    services = _services()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
    prometheus_mounts = " ".join(services["prometheus"]["volumes"])
    assert "./deploy/prometheus/rules:/etc/prometheus/rules" in prometheus_mounts
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "churnguard" in jobs  # the job name the alert rules select the workers by
    targets = {t for job in jobs.values() for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"worker-1:6066", "worker-2:6066", "serve:6067"}
    assert {t.split(":")[0] for t in targets} <= set(services)
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in grafana_mounts
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards" in grafana_mounts


def _doc_service_mentions() -> Iterator[tuple[str, str]]:
    """(where, service name) for every service README and docs/operations.md name."""
    readme = (ROOT / "README.md").read_text()
    table = _section(readme, "## The full stack")
    for row in re.findall(r"(?m)^\| (`[^|]*`) \|", table):
        for name in re.findall(r"`([^`]+)`", row):
            yield "README table", name
    operations = (ROOT / "docs" / "operations.md").read_text()
    bullet = operations[operations.index("**Docker Compose**") : operations.index("**Kubernetes**")]
    for token in re.findall(r"`([^`]+)`", bullet):
        if re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", token):
            yield "docs/operations.md", token
    for text, where in ((readme, "README"), (operations, "docs/operations.md")):
        for name in re.findall(r"--scale ([\w-]+)=", text):
            yield where, name


def test_every_service_the_docs_name_exists_and_every_service_is_documented() -> None:
    services = set(_services())
    mentioned = list(_doc_service_mentions())
    for where, name in mentioned:
        assert name in services, f"{where} names a service docker-compose.yml lacks: {name}"
    documented = {name for where, name in mentioned if where == "README table"}
    assert documented == services


def test_readme_documents_docker_compose_up_and_the_dashboards() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up" in _section(readme, "## The full stack")
    monitoring = _section(readme, "## Monitoring")
    assert "deploy/grafana/dashboards/" in monitoring and "/readyz" in monitoring


# -- deploy/k8s ----------------------------------------------------------------------------
def test_k8s_has_a_statefulset_a_headless_service_and_a_podmonitor() -> None:
    kinds = sorted(doc["kind"] for doc in _k8s_documents())
    assert kinds == ["ConfigMap", "PodMonitor", "Service", "StatefulSet"]
    assert _k8s("PodMonitor")["apiVersion"] == "monitoring.coreos.com/v1"
    assert _k8s("StatefulSet")["apiVersion"] == "apps/v1"
    service = _k8s("Service")
    assert service["spec"]["clusterIP"] == "None"
    assert _k8s("StatefulSet")["spec"]["serviceName"] == service["metadata"]["name"]


def test_k8s_selectors_match_the_worker_pods() -> None:
    statefulset = _k8s("StatefulSet")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    selectors = [
        statefulset["spec"]["selector"]["matchLabels"],
        _k8s("Service")["spec"]["selector"],
        _k8s("PodMonitor")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    podmonitor = _k8s("PodMonitor")["spec"]
    # the Operator takes the job label from this pod label: the rules select job="churnguard"
    assert pod_labels[podmonitor["jobLabel"]] == "churnguard"
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    (endpoint,) = podmonitor["podMetricsEndpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    assert _k8s("Service")["spec"]["ports"][0]["targetPort"] in port_names


def test_k8s_worker_keeps_rocksdb_on_a_claimed_volume_and_probes_health_and_readiness() -> None:
    spec = _k8s("StatefulSet")["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    _assert_pinned(container["image"], "StatefulSet")
    assert container["command"][:2] == ["churnguard", "worker"]
    (claim,) = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == DATA_DIR
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CHURNGUARD_DATA_DIR"] == DATA_DIR
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    web = next(p for p in container["ports"] if p["name"] == "web")
    assert int(env["CHURNGUARD_WEB_PORT"]) == web["containerPort"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "web"


def test_k8s_environment_names_and_values_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    (container,) = _k8s("StatefulSet")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    configmap = _k8s("ConfigMap")
    env.update(configmap["data"])
    assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    assert set(env) <= SETTINGS_ENV, f"not a setting: {set(env) - SETTINGS_ENV}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Settings()
