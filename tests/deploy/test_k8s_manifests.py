"""Kubernetes manifests in deploy/k8s, checked without a cluster.

Core kinds are validated against the Kubernetes OpenAPI JSON schemas shipped by the
``kubernetes-validate`` package (strict: unknown fields fail, as ``kubectl apply
--validate=strict`` would). KEDA's ScaledObject and TriggerAuthentication are custom
resources with no schema there, so their fields are checked against the keys KEDA
documents. Then the manifests are cross-checked against each other and the code: ports,
probes, volumes, selectors, secrets, the CLI and the settings they configure.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml

from models.segments.policy import SegmentPolicy
from streams.cli import cli
from streams.config import PREFIX, Settings, Topics
from streams.features.vector import FEATURE_NAMES
from streams.http.config import HttpSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
RUNBOOK = ROOT / "docs" / "operations.md"
K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests must work on
DOCKER_UID = 10001  # USER in the Dockerfile
CORE_GROUPS = ("v1", "apps/v1", "policy/v1")
WORKER = "segstream-worker"
# Subcommand of each Deployment.
SERVICES = {"segstream-actions": "actions", "segstream-enrichment": "enrich"}


def metrics_port(name: str, obj: dict[str, Any], env: dict[str, str]) -> int:
    """Where a workload serves /metrics: each process names its port its own way."""
    if name == "segstream-actions":
        return int(env["SEGSTREAM_ACTIONS_WEB_PORT"])  # the faust web server
    args = container(obj)["args"]
    if "--metrics-port" in args:
        return int(args[args.index("--metrics-port") + 1])
    return int(env["SEGSTREAM_METRICS_PORT"])


# ================================================================================ loading
def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                yield path, doc


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path, doc in documents():
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in out, f"{path.name}: {key} defined twice"
        out[key] = doc
    return out


def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate as kv
    except ImportError:
        msg = "kubernetes-validate is not installed: pip install kubernetes-validate"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return kv


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (c,) = obj["spec"]["template"]["spec"]["containers"]
    return c


def env_of(obj: dict[str, Any], config: dict[str, str]) -> dict[str, str]:
    """The container's environment as Kubernetes resolves it (secrets as placeholders)."""
    c = container(obj)
    env: dict[str, str] = {}
    for ref in c.get("envFrom", []):
        assert set(ref) == {"configMapRef"}, ref
        assert ref["configMapRef"]["name"] == "segstream-config"
        env.update(config)
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in var["valueFrom"]:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[var["name"]] = f"{obj['metadata']['name']}-0"
        else:
            env[var["name"]] = "secret-value-from-a-kubernetes-secret"
    return env


def secret_refs(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """(secret, key) pairs a workload reads; key '*' for a whole mounted Secret."""
    refs = {(v["valueFrom"]["secretKeyRef"]["name"], v["valueFrom"]["secretKeyRef"]["key"])
            for v in container(obj).get("env", [])
            if "secretKeyRef" in v.get("valueFrom", {})}
    refs |= {(v["secret"]["secretName"], "*")
             for v in obj["spec"]["template"]["spec"].get("volumes", []) if "secret" in v}
    return refs


@pytest.fixture(scope="module")
def config(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    return objects[("ConfigMap", "segstream-config")]["data"]


@pytest.fixture(scope="module")
def worker(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return objects[("StatefulSet", WORKER)]


def check_cli_args(argv: list[str]) -> None:
    """Parse ``segstream ARGV`` with click, without running anything."""
    parent = click.Context(cli, info_name="segstream")
    name, *rest = argv
    cmd = cli.get_command(parent, name)
    assert cmd is not None, f"segstream has no subcommand {name!r}"
    cmd.make_context(name, rest, parent=parent)


# ================================================================= schema validation
def test_every_object_is_a_core_kind_or_a_keda_resource():
    kinds = {(d["apiVersion"], d["kind"]) for _, d in documents()}
    custom = {k for k in kinds if k[0] not in CORE_GROUPS}
    assert custom == {("keda.sh/v1alpha1", "ScaledObject"),
                      ("keda.sh/v1alpha1", "TriggerAuthentication")}


@pytest.mark.parametrize(
    "doc", [pytest.param(d, id=f"{p.name}:{d['kind']}:{d['metadata']['name']}")
            for p, d in documents() if d["apiVersion"] in CORE_GROUPS])
def test_core_objects_match_the_kubernetes_schema(doc: dict[str, Any]):
    kv = kubernetes_validate()
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.ValidationError as exc:
        raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}") from None
    assert "namespace" not in doc["metadata"], "namespace-agnostic: no metadata.namespace"


def test_strict_schema_rejects_a_misspelt_field(worker: dict[str, Any]):
    kv = kubernetes_validate()
    broken = yaml.safe_load(yaml.safe_dump(worker))
    c = container(broken)
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization" and "namespace" not in kust
    assert sorted(kust["resources"]) == sorted(p.name for p in manifest_files())
    assert [i["name"] for i in kust["images"]] == ["segstream"]


# ======================================================================= the worker
def test_worker_runs_the_worker_command(worker: dict[str, Any]):
    c = container(worker)
    assert c["image"] == "segstream"  # set by kustomization images
    assert c["args"] == ["worker"] and "command" not in c  # the image's ENTRYPOINT
    check_cli_args(c["args"])


def test_worker_settings_are_valid(worker: dict[str, Any], config: dict[str, str]):
    env = env_of(worker, config)
    known = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    known |= {f"{PREFIX}TOPIC_{f.name.upper()}" for f in dataclasses.fields(Topics)}
    known |= {PREFIX + v for v in ("READY_BROKER_TIMEOUT_S", "LIVE_STALL_TIMEOUT_S",
                                   "STATUS_INTERVAL_S", "STATUS_POINTS")}
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
    assert not unknown, f"not settings of the worker (typo?): {unknown}"
    # files exist only in the pod: they are checked against the mounts below
    local = {k: v for k, v in env.items() if not k.endswith(("_FILE", "_LOCATION"))}
    s = Settings.from_env(local)
    HttpSettings.from_env(env)
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism.startswith("SCRAM-")
    assert s.group_instance_id == f"{WORKER}-0", "static membership from the pod name"
    assert s.metrics_host == "0.0.0.0"
    assert s.replication_factor >= 3, "production topics need replicas"


def test_worker_files_come_from_mounted_volumes(worker: dict[str, Any],
                                                objects: dict[tuple[str, str], Any],
                                                config: dict[str, str]):
    env = env_of(worker, config)
    c = container(worker)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["spec"]["template"]["spec"]["volumes"]}
    files = {k: v for k, v in env.items() if k.endswith(("_FILE", "_LOCATION"))}
    assert "SEGSTREAM_SEGMENTS_FILE" in files and "SEGSTREAM_KAFKA_SSL_CA_LOCATION" in files
    for var, value in files.items():
        path = PurePosixPath(value)
        volume = volumes[mounts[str(path.parent)]]
        if "configMap" in volume:
            data = objects[("ConfigMap", volume["configMap"]["name"])]["data"]
            assert path.name in data, f"{var}: the ConfigMap has no key {path.name}"
        else:
            assert "secret" in volume, f"{var}: mounted from neither a ConfigMap nor a Secret"


def test_worker_state_volume_ports_and_probes(worker: dict[str, Any], config: dict[str, str]):
    env = env_of(worker, config)
    c = container(worker)
    spec = worker["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    state = [m for m in c["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert [m["mountPath"] for m in state] == [env["SEGSTREAM_STATE_DIR"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    port = int(env["SEGSTREAM_METRICS_PORT"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": port}
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    probes = {k: c[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {k: (p["path"], p["port"]) for k, p in probes.items()} == {
        "startupProbe": ("/healthz", "http"), "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http")}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, (
        "a restart gets at least 5 minutes before liveness counts")
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 30


def test_workloads_run_unprivileged_with_resources(objects: dict[tuple[str, str], Any]):
    for kind, name in [("StatefulSet", WORKER),
                       *(("Deployment", d) for d in SERVICES)]:
        obj = objects[(kind, name)]
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == DOCKER_UID, name
        c = container(obj)
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
        for part in ("requests", "limits"):
            assert set(c["resources"][part]) == {"cpu", "memory"}, f"{name}: {part}"


def test_headless_service_and_pdb_select_the_worker_pods(objects: dict[tuple[str, str], Any],
                                                         worker: dict[str, Any]):
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert worker["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = objects[("Service", worker["spec"]["serviceName"])]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"http"}
    pdb = objects[("PodDisruptionBudget", WORKER)]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


# ============================================================================ KEDA
SCALED_OBJECT_SPEC = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                      "cooldownPeriod", "idleReplicaCount", "initialCooldownPeriod", "fallback",
                      "advanced", "triggers"}
TRIGGER_KEYS = {"type", "name", "metadata", "authenticationRef", "metricType",
                "useCachedMetrics"}
KAFKA_METADATA = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold",
                  "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
                  "excludePersistentLag", "scaleToZeroOnInvalidOffset",
                  "limitToPartitionsWithLag", "partitionLimitation", "version", "sasl", "tls",
                  "unsafeSsl"}
SASL = {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256", "PLAIN": "plaintext"}


def test_keda_scales_the_worker_on_its_group_lag(objects: dict[tuple[str, str], Any],
                                                 config: dict[str, str]):
    so = objects[("ScaledObject", WORKER)]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                      "name": WORKER}
    partitions = int(config["SEGSTREAM_PARTITIONS"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions, (
        "more workers than partitions would idle")
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 600
    (trigger,) = spec["triggers"]
    assert set(trigger) <= TRIGGER_KEYS and trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert set(meta) <= KAFKA_METADATA, set(meta) - KAFKA_METADATA
    assert meta["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == config["SEGSTREAM_GROUP_ID"]
    assert int(meta["lagThreshold"]) > 0
    assert meta["sasl"] == SASL[config["SEGSTREAM_KAFKA_SASL_MECHANISM"]]
    assert meta["tls"] == ("enable" if config["SEGSTREAM_KAFKA_SECURITY_PROTOCOL"]
                           .endswith("SSL") else "disable")
    auth = objects[("TriggerAuthentication", trigger["authenticationRef"]["name"])]
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    refs = {(r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    params = {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
    assert params == {"username", "password", "ca"}
    worker_refs = secret_refs(objects[("StatefulSet", WORKER)])
    for name, key in refs:
        assert (name, key) in worker_refs or (name, "*") in worker_refs, (
            f"the scaler reads {name}/{key}, which the workers do not use")


# ===================================================================== the services
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_deployments(name: str, objects: dict[tuple[str, str], Any],
                             config: dict[str, str]):
    obj = objects[("Deployment", name)]
    c = container(obj)
    env = env_of(obj, config)
    port = metrics_port(name, obj, env)
    assert {p["containerPort"] for p in c["ports"]} == {port}
    assert obj["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert c["args"][0] == SERVICES[name]
    probes = (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"])
    if name == "segstream-actions":
        assert probes == ("/metrics", "/metrics")  # faust's web server has no probes
        config_mod = pytest.importorskip("streams.actions.config")
        local = {k: v for k, v in env.items() if not k.endswith(("_FILE", "_LOCATION"))}
        actions = config_mod.ActionsConfig.from_env(local)
        assert actions.web_host == "0.0.0.0" and actions.web_port == port
    else:
        assert probes == ("/healthz", "/readyz")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_commands_exist(name: str, objects: dict[tuple[str, str], Any]):
    sub = SERVICES[name]
    if cli.get_command(click.Context(cli), sub) is None:
        pytest.skip(f"segstream has no `{sub}` command yet; {name} runs `segstream {sub}`")
    check_cli_args(container(objects[("Deployment", name)])["args"])


def test_metrics_ports_are_distinct(objects: dict[tuple[str, str], Any],
                                    config: dict[str, str]):
    ports = [metrics_port(k[1], objects[k], env_of(objects[k], config))
             for k in [("StatefulSet", WORKER), *(("Deployment", d) for d in SERVICES)]]
    assert len(set(ports)) == len(ports)


# ==================================================================== policy, secrets
def test_policy_configmap_holds_valid_segments(objects: dict[tuple[str, str], Any], tmp_path):
    data = objects[("ConfigMap", "segstream-policy")]["data"]
    path = tmp_path / "segments.yaml"
    path.write_text(data["segments.yaml"])
    policy = SegmentPolicy.load(path, FEATURE_NAMES)
    assert policy.rules, "no segments"
    campaigns = pytest.importorskip("models.campaigns.book")
    (tmp_path / "campaigns.yaml").write_text(data["campaigns.yaml"])
    campaigns.CampaignBook.load(tmp_path / "campaigns.yaml")


def test_every_secret_is_documented_in_the_runbook(objects: dict[tuple[str, str], Any]):
    text = RUNBOOK.read_text(encoding="utf-8")
    refs = set()
    for (kind, _), obj in objects.items():
        if kind in ("StatefulSet", "Deployment"):
            refs |= secret_refs(obj)
    assert refs
    for name, key in sorted(refs):
        assert re.search(rf"\b{re.escape(name)}\b", text), f"{name} is not in the runbook"
        if key != "*":
            assert re.search(rf"{re.escape(name)}\b.*\b{re.escape(key)}\b", text), (
                f"the runbook does not say how to create {name} with key {key}")
