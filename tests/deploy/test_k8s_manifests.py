"""Kubernetes manifests in deploy/k8s, checked without a cluster.

Core kinds are validated against the Kubernetes OpenAPI JSON schemas shipped by the
``kubernetes-validate`` package (strict: unknown fields fail, as ``kubectl apply
--validate=strict`` would). KEDA's ScaledObject and TriggerAuthentication are custom
resources with no schema there, so their fields are checked against the keys KEDA
documents. Then the manifests are cross-checked against each other and the code: ports,
probes, volumes, selectors, secrets, the CLI and the settings they configure.

The optional scoring stage (``deploy/k8s/components/scoring-stage``, a kustomize Component
added to the base) is rendered here by a small kustomize of the features these
kustomizations use (resources, components, strategic-merge patches of maps, labels,
images, replacements), cross-checked against ``kubectl kustomize`` where one is installed,
and its objects are checked like the worker's.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml

from models.learn.config import ModelConfig
from models.segments.policy import SegmentPolicy
from streams.cli import cli
from streams.config import PREFIX, Settings, Topics
from streams.exceptions import ConfigError
from streams.features.vector import FEATURE_NAMES
from streams.http.config import HttpSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
RUNBOOK = ROOT / "docs" / "operations.md"
K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests must work on
DOCKER_UID = 10001  # USER in the Dockerfile
CORE_GROUPS = ("v1", "apps/v1", "policy/v1")
WORKER = "segstream-worker"
SCORING = "segstream-scoring"  # StatefulSet of the scoring-stage component
COMPONENT = K8S / "components" / "scoring-stage"
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


def unknown_settings(env: dict[str, str]) -> list[str]:
    """The SEGSTREAM_* variables of ``env`` that no setting of a worker reads (typos)."""
    known = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    known |= {f"{PREFIX}TOPIC_{f.name.upper()}" for f in dataclasses.fields(Topics)}
    known |= {PREFIX + v for v in ("READY_BROKER_TIMEOUT_S", "LIVE_STALL_TIMEOUT_S",
                                   "STATUS_INTERVAL_S", "STATUS_POINTS")}
    unknown = []
    for key, value in env.items():
        if not key.startswith(PREFIX) or key in known:
            continue
        # the model settings (SEGSTREAM_MODELS_*, _MODEL_*, _CHURN_*) have no field of
        # their own in Settings: a variable is one of them if ModelConfig reads it
        try:
            read = ModelConfig.from_env({key: value}) != ModelConfig()
        except ConfigError:
            read = True  # read, and its value rejected: Settings.from_env reports it
        if not read:
            unknown.append(key)
    return sorted(unknown)


def local_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the file paths: the files exist only in the pod (they are
    checked against the mounts instead)."""
    return {k: v for k, v in env.items() if not k.endswith(("_FILE", "_LOCATION"))}


def check_production_settings(s: Settings) -> None:
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism.startswith("SCRAM-")
    assert s.metrics_host == "0.0.0.0"
    assert s.replication_factor >= 3, "production topics need replicas"


def test_worker_settings_are_valid(worker: dict[str, Any], config: dict[str, str]):
    env = env_of(worker, config)
    unknown = unknown_settings(env)
    assert not unknown, f"not settings of the worker (typo?): {unknown}"
    s = Settings.from_env(local_env(env))
    HttpSettings.from_env(env)
    check_production_settings(s)
    assert s.group_instance_id == f"{WORKER}-0", "static membership from the pod name"


def check_files_come_from_mounted_volumes(obj: dict[str, Any],
                                          objects: dict[tuple[str, str], Any],
                                          config: dict[str, str]) -> None:
    env = env_of(obj, config)
    c = container(obj)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
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


def test_worker_files_come_from_mounted_volumes(worker: dict[str, Any],
                                                objects: dict[tuple[str, str], Any],
                                                config: dict[str, str]):
    check_files_come_from_mounted_volumes(worker, objects, config)


def check_state_volume_ports_and_probes(sts: dict[str, Any], config: dict[str, str]) -> str:
    """The checks of a stage's StatefulSet (worker, scoring); its state mount path."""
    env = env_of(sts, config)
    c = container(sts)
    spec = sts["spec"]
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
    (mount,) = state
    return mount["mountPath"]


def test_worker_state_volume_ports_and_probes(worker: dict[str, Any], config: dict[str, str]):
    check_state_volume_ports_and_probes(worker, config)


def check_unprivileged_with_resources(obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    pod = obj["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True, name
    assert pod["securityContext"]["runAsUser"] == DOCKER_UID, name
    c = container(obj)
    assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
    assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
    for part in ("requests", "limits"):
        assert set(c["resources"][part]) == {"cpu", "memory"}, f"{name}: {part}"


def test_workloads_run_unprivileged_with_resources(objects: dict[tuple[str, str], Any]):
    for kind, name in [("StatefulSet", WORKER),
                       *(("Deployment", d) for d in SERVICES)]:
        check_unprivileged_with_resources(objects[(kind, name)])


def check_service_and_pdb(objects: dict[tuple[str, str], Any], sts: dict[str, Any]) -> None:
    """The headless Service and the PodDisruptionBudget of a stage select its pods."""
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = objects[("Service", sts["spec"]["serviceName"])]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"http"}
    pdb = objects[("PodDisruptionBudget", sts["metadata"]["name"])]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_headless_service_and_pdb_select_the_worker_pods(objects: dict[tuple[str, str], Any],
                                                         worker: dict[str, Any]):
    check_service_and_pdb(objects, worker)


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


def check_scaled_object(objects: dict[tuple[str, str], Any], config: dict[str, str],
                        name: str) -> dict[str, Any]:
    """The KEDA objects scaling StatefulSet ``name`` on Kafka lag; the trigger's metadata."""
    so = objects[("ScaledObject", name)]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                      "name": name}
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
    assert int(meta["lagThreshold"]) > 0
    assert meta["sasl"] == SASL[config["SEGSTREAM_KAFKA_SASL_MECHANISM"]]
    assert meta["tls"] == ("enable" if config["SEGSTREAM_KAFKA_SECURITY_PROTOCOL"]
                           .endswith("SSL") else "disable")
    auth = objects[("TriggerAuthentication", trigger["authenticationRef"]["name"])]
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    refs = {(r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    params = {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
    assert params == {"username", "password", "ca"}
    pod_refs = secret_refs(objects[("StatefulSet", name)])
    for secret, key in refs:
        assert (secret, key) in pod_refs or (secret, "*") in pod_refs, (
            f"the scaler reads {secret}/{key}, which the pods of {name} do not use")
    return meta


def test_keda_scales_the_worker_on_its_group_lag(objects: dict[tuple[str, str], Any],
                                                 config: dict[str, str]):
    meta = check_scaled_object(objects, config, WORKER)
    assert meta["consumerGroup"] == config["SEGSTREAM_GROUP_ID"]


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


# ============================================== the scoring stage: a kustomize Component
# A kustomization cannot include a directory that contains it (kustomize reports a
# cycle), so the optional scoring stage is a Component that an environment's
# kustomization (outside deploy/k8s) adds to the base. It is rendered here by hand:
# ``kustomize`` below does what kustomize does for the features these kustomizations
# use and refuses any other, and test_hand_rendering_matches_kustomize compares it with
# ``kubectl kustomize`` where one is installed.
Objects = dict[tuple[str, str], dict[str, Any]]
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "components", "patches", "labels",
                      "images", "replacements"}


def kustomization(root: Path) -> dict[str, Any]:
    k = yaml.safe_load((root / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(k) - KUSTOMIZATION_KEYS
    assert not unknown, f"{root}: the test's kustomize does not handle {sorted(unknown)}"
    return k


def load_objects(path: Path) -> Objects:
    return {(d["kind"], d["metadata"]["name"]): d
            for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None}


def kustomize(root: Path, components: Sequence[Path] = ()) -> Objects:
    """What a kustomization listing ``root`` under resources and ``components`` under
    components renders: ``kustomize build root``, then each component added to it (the
    root's own transformers, e.g. its images, do not reach the components' objects)."""
    objs = build(root)
    for comp in components:
        add_component(objs, comp)
    return objs


def build(root: Path) -> Objects:
    """``kustomize build root``: resources, components, then the root's transformers."""
    k = kustomization(root)
    assert k["kind"] == "Kustomization", root
    objs: Objects = {}
    add_resources(objs, root, k)
    for comp in k.get("components", []):
        add_component(objs, root / comp)
    transform(objs, root, k)
    return objs


def add_component(objs: Objects, comp: Path) -> None:
    k = kustomization(comp)
    assert k["kind"] == "Component" and "components" not in k, comp
    add_resources(objs, comp, k)
    transform(objs, comp, k)


def add_resources(objs: Objects, root: Path, k: dict[str, Any]) -> None:
    for res in k.get("resources", []):
        path = root / res
        added = build(path) if path.is_dir() else load_objects(path)
        for key, doc in added.items():
            assert key not in objs, f"{root}: {key} defined twice"
            objs[key] = copy.deepcopy(doc)


def transform(objs: Objects, root: Path, k: dict[str, Any]) -> None:
    """The root's patches, labels, images and replacements, in kustomize's order."""
    for patch in k.get("patches", []):
        assert set(patch) == {"path"}, f"only strategic-merge patch files: {patch}"
        for key, doc in load_objects(root / patch["path"]).items():
            assert key in objs, f"{patch['path']} patches {key}, which is not there"
            assert doc["apiVersion"] == objs[key]["apiVersion"], key
            merge(objs[key], doc, where=f"{patch['path']}: {key}")
    for entry in k.get("labels", []):
        assert set(entry) <= {"pairs", "includeSelectors"} and not entry.get(
            "includeSelectors"), f"only metadata labels: {entry}"
        for doc in objs.values():
            doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
    for image in k.get("images", []):
        assert set(image) <= {"name", "newName", "newTag"}, image
        for doc in objs.values():
            for c in pod_containers(doc):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for rep in k.get("replacements", []):
        assert set(rep) == {"source", "targets"}, rep
        src = rep["source"]
        assert set(src) == {"kind", "name", "fieldPath"}, src
        value = field_at(objs[(src["kind"], src["name"])], src["fieldPath"])
        for target in rep["targets"]:
            assert set(target) == {"select", "fieldPaths"} and set(target["select"]) == {
                "kind", "name"}, target
            doc = objs[(target["select"]["kind"], target["select"]["name"])]
            for path in target["fieldPaths"]:
                *parent, last = path.split(".")
                field_at(doc, ".".join(parent))[last] = value


def merge(doc: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    """A strategic-merge patch of maps: keys merged, null deletes (no list merging)."""
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        elif isinstance(value, dict) and isinstance(doc.get(key), dict):
            merge(doc[key], value, f"{where}.{key}")
        else:
            assert not isinstance(value, list), f"{where}.{key}: the test merges no lists"
            doc[key] = value


def field_at(doc: dict[str, Any], path: str) -> Any:
    """kustomize's field paths: ``a.b.[name=x].c``."""
    node: Any = doc
    for part in path.split("."):
        if part.startswith("["):
            field, _, value = part.strip("[]").partition("=")
            (node,) = [item for item in node if item.get(field) == value]
        else:
            node = node[part]
    return node


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def component_keys() -> list[tuple[str, str]]:
    """The objects the component adds or patches, read from its files."""
    k = kustomization(COMPONENT)
    files = [*k.get("resources", []), *(p["path"] for p in k.get("patches", []))]
    return sorted(key for f in files for key in load_objects(COMPONENT / f))


@pytest.fixture(scope="module")
def base() -> Objects:
    return kustomize(K8S)


@pytest.fixture(scope="module")
def staged() -> Objects:
    """The base with the scoring-stage component, rendered."""
    return kustomize(K8S, [COMPONENT])


@pytest.fixture(scope="module")
def staged_config(staged: Objects) -> dict[str, str]:
    return staged[("ConfigMap", "segstream-config")]["data"]


@pytest.fixture(scope="module")
def scoring(staged: Objects) -> dict[str, Any]:
    return staged[("StatefulSet", SCORING)]


def kustomize_binary() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.skip("neither kustomize nor kubectl is installed: the hand rendering is not "
                "compared with kustomize's")


@pytest.mark.parametrize("components", [(), (COMPONENT,)], ids=["base", "scoring-stage"])
def test_hand_rendering_matches_kustomize(components: tuple[Path, ...], tmp_path: Path):
    cmd = kustomize_binary()
    # the environment's kustomization the runbook describes, outside deploy/k8s
    env = tmp_path / "env"
    env.mkdir()
    (env / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S, env)],
        "components": [os.path.relpath(c, env) for c in components]}))
    out = subprocess.run([*cmd, str(env)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout)}
    assert rendered == kustomize(K8S, components)


def test_the_component_only_adds_the_scoring_stage(base: Objects, staged: Objects):
    k = kustomization(COMPONENT)
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1alpha1" and k["kind"] == "Component"
    listed = {*k["resources"], *(p["path"] for p in k["patches"])}
    assert listed == {p.name for p in COMPONENT.glob("*.yaml")} - {"kustomization.yaml"}
    assert "components" not in kustomization(K8S), "the base stays without the scoring stage"
    added = set(staged) - set(base)
    assert added == {("StatefulSet", SCORING), ("Service", SCORING),
                     ("PodDisruptionBudget", SCORING), ("ScaledObject", SCORING)}
    changed = {key for key in base if staged[key] != base[key]}
    assert changed == {("ConfigMap", "segstream-config"), ("ConfigMap", "segstream-policy")}
    old, new = base[("ConfigMap", "segstream-config")], staged[("ConfigMap", "segstream-config")]
    assert {k: v for k, v in new["data"].items() if k in old["data"]} == old["data"], (
        "the component adds settings, it changes none of the base's")
    old, new = base[("ConfigMap", "segstream-policy")], staged[("ConfigMap", "segstream-policy")]
    assert old["data"].keys() == new["data"].keys()
    assert new["data"]["campaigns.yaml"] == old["data"]["campaigns.yaml"]


@pytest.mark.parametrize("key", [pytest.param(k, id=f"{k[0]}:{k[1]}") for k in component_keys()])
def test_component_objects_match_the_schemas(key: tuple[str, str], staged: Objects):
    doc = staged[key]
    assert "namespace" not in doc["metadata"], "namespace-agnostic: no metadata.namespace"
    if doc["apiVersion"] not in CORE_GROUPS:
        assert (doc["apiVersion"], doc["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
        return  # checked against KEDA's keys in test_keda_scales_the_scoring_stage
    kv = kubernetes_validate()
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.ValidationError as exc:
        raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}") from None


def test_scoring_runs_the_scoring_command(scoring: dict[str, Any], staged: Objects):
    raw = load_objects(COMPONENT / "scoring-statefulset.yaml")[("StatefulSet", SCORING)]
    assert container(raw)["image"] == "segstream"  # replaced by the worker's image
    c = container(scoring)
    assert c["image"] == container(staged[("StatefulSet", WORKER)])["image"]
    assert c["args"] == ["scoring"] and "command" not in c  # the image's ENTRYPOINT
    check_cli_args(c["args"])


def test_scoring_settings_are_valid(scoring: dict[str, Any], staged: Objects,
                                    staged_config: dict[str, str]):
    env = env_of(scoring, staged_config)
    unknown = unknown_settings(env)
    assert not unknown, f"not settings of the scoring stage (typo?): {unknown}"
    s = Settings.from_env(local_env(env))
    HttpSettings.from_env(env)
    assert s.models.enabled and s.models_stage == "separate"
    stage = s.scoring_stage()  # what `segstream scoring` runs with
    check_production_settings(stage)
    assert stage.role == "scoring"
    assert stage.group_id == f"{staged_config['SEGSTREAM_GROUP_ID']}-scoring"
    assert stage.group_instance_id == f"{SCORING}-0-scoring", "static membership"
    assert stage.state_dir == Path(env["SEGSTREAM_STATE_DIR"]) / "scoring"
    # the event workers read the same ConfigMap: they feed the stage instead of scoring
    events = Settings.from_env(local_env(env_of(staged[("StatefulSet", WORKER)],
                                                staged_config)))
    assert events.models_stage == "separate" and events.role == "events"
    assert events.group_id != stage.group_id
    assert events.topics.scoring == stage.topics.scoring
    assert events.scoring_stage().group_id == stage.group_id


def test_scoring_files_come_from_mounted_volumes(scoring: dict[str, Any], staged: Objects,
                                                 staged_config: dict[str, str]):
    check_files_come_from_mounted_volumes(scoring, staged, staged_config)


def test_scoring_state_and_model_snapshots_on_its_volume(scoring: dict[str, Any],
                                                         staged_config: dict[str, str]):
    state = PurePosixPath(check_state_volume_ports_and_probes(scoring, staged_config))
    env = env_of(scoring, staged_config)
    assert str(state) == env["SEGSTREAM_STATE_DIR"]
    stage = Settings.from_env(local_env(env)).scoring_stage()
    stores = PurePosixPath(stage.state_dir) / stage.group_id  # <state>/scoring/<group>/p<n>
    assert PurePosixPath(stage.state_dir).is_relative_to(state)
    snapshots = PurePosixPath(stage.models.snapshot_dir)
    assert snapshots.is_absolute() and snapshots.is_relative_to(state), (
        "model snapshots must be on the persistent volume")
    assert not snapshots.is_relative_to(stores) and not stores.is_relative_to(snapshots)


def test_scoring_runs_unprivileged_with_resources(scoring: dict[str, Any]):
    check_unprivileged_with_resources(scoring)


def test_scoring_service_and_pdb_select_only_the_scoring_pods(staged: Objects,
                                                              scoring: dict[str, Any]):
    check_service_and_pdb(staged, scoring)
    svc = staged[("Service", SCORING)]
    env = env_of(scoring, staged[("ConfigMap", "segstream-config")]["data"])
    assert {p["port"] for p in svc["spec"]["ports"]} == {int(env["SEGSTREAM_METRICS_PORT"])}
    # neither stage's Service or PodDisruptionBudget selects the other stage's pods
    for sts, other in [(scoring, staged[("StatefulSet", WORKER)]),
                       (staged[("StatefulSet", WORKER)], scoring)]:
        labels = other["spec"]["template"]["metadata"]["labels"]
        name = sts["metadata"]["name"]
        for selector in (staged[("Service", name)]["spec"]["selector"],
                         staged[("PodDisruptionBudget", name)]["spec"]["selector"]
                         ["matchLabels"], sts["spec"]["selector"]["matchLabels"]):
            assert not selector.items() <= labels.items(), f"{name} selects {other}"


def test_keda_scales_the_scoring_stage(staged: Objects, scoring: dict[str, Any],
                                       staged_config: dict[str, str]):
    meta = check_scaled_object(staged, staged_config, SCORING)
    stage = Settings.from_env(local_env(env_of(scoring, staged_config))).scoring_stage()
    assert meta["consumerGroup"] == stage.group_id == "segstream-scoring"
    assert meta["topic"] == stage.topics.scoring == "segstream.scoring"
    spec = staged[("ScaledObject", SCORING)]["spec"]
    assert spec["maxReplicaCount"] == stage.partitions, (
        "segstream.scoring has SEGSTREAM_PARTITIONS partitions: one pod each at most")


def test_metrics_ports_are_distinct_with_the_scoring_stage(staged: Objects,
                                                           staged_config: dict[str, str]):
    keys = [("StatefulSet", WORKER), ("StatefulSet", SCORING),
            *(("Deployment", d) for d in SERVICES)]
    ports = [metrics_port(k[1], staged[k], env_of(staged[k], staged_config)) for k in keys]
    assert len(set(ports)) == len(ports), dict(zip(keys, ports, strict=True))


def test_scoring_policy_has_the_model_segments(staged: Objects, scoring: dict[str, Any],
                                               staged_config: dict[str, str], tmp_path: Path):
    from streams.runtime.app import MODEL_FEATURES, build_policy

    data = staged[("ConfigMap", "segstream-policy")]["data"]
    (tmp_path / "segments.yaml").write_text(data["segments.yaml"])
    s = Settings.from_env({**local_env(env_of(scoring, staged_config)),
                           "SEGSTREAM_SEGMENTS_FILE": str(tmp_path / "segments.yaml")})
    rules, on_scores = build_policy(s).split(MODEL_FEATURES)  # as both stages split it
    assert rules.rules, "the event workers would decide no segment"
    assert on_scores.rules, "the scoring stage would decide no segment"
    campaigns = pytest.importorskip("models.campaigns.book")
    (tmp_path / "campaigns.yaml").write_text(data["campaigns.yaml"])
    book = campaigns.CampaignBook.load(tmp_path / "campaigns.yaml")
    names = {r.name for r in (*rules.rules, *on_scores.rules)}
    missing = sorted({c.trigger.segment for c in book.campaigns} - names)
    assert not missing, f"campaigns on segments the policy does not have: {missing}"


def test_secrets_of_the_scoring_stage_are_the_workers(staged: Objects):
    assert secret_refs(staged[("StatefulSet", SCORING)]) <= secret_refs(
        staged[("StatefulSet", WORKER)]), "a Secret the runbook does not list"


def test_runbook_describes_the_scoring_stage():
    text = RUNBOOK.read_text(encoding="utf-8")
    rel = COMPONENT.relative_to(ROOT).as_posix()
    assert rel in text, f"docs/operations.md does not say how to deploy {rel}"
