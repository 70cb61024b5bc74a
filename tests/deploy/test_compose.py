"""Static checks of the container deployment: Dockerfile, .dockerignore, docker-compose.yml.

Nothing here needs Docker or a network. ``docker-compose.yml`` is validated against the
vendored Compose Specification JSON Schema (see README.md beside this file for its origin)
and cross-checked against the code: the ``segstream`` subcommands it runs, the
``SEGSTREAM_*`` variables it sets, and the Kafka broker it starts.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import fnmatch
import json
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import click
import jsonschema
import pytest
import yaml

from streams.cli import cli
from streams.config import PREFIX, Settings, Topics

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
SCHEMA_FILE = HERE / "compose_spec.json"
DEPLOY_DIR = ROOT / "deploy"

EXPECTED_SERVICES = {"kafka", "topics", "worker", "simulator", "watch", "prometheus", "grafana"}
# Services that run another image than segstream's.
OTHER_IMAGES = {"kafka", "prometheus", "grafana"}
STATE_DIR = "/var/lib/segstream"
METRICS_PORT = 9464
# SEGSTREAM_* variables of the segstream image that are not Settings fields (other
# processes' variables would go here, with a reason).
# Variables of the other processes' settings (actions, enrichment), read from the same
# environment.
EXTRA_SEGSTREAM_VARS: frozenset[str] = frozenset({
    "SEGSTREAM_ACTIONS_BROKER", "SEGSTREAM_ACTIONS_WEB_HOST", "SEGSTREAM_ACTIONS_WEB_PORT",
    "SEGSTREAM_ACTIONS_STATE_DIR", "SEGSTREAM_ACTIONS_API_TOKEN", "SEGSTREAM_LLM_BASE_URL",
    "SEGSTREAM_LLM_MODEL", "SEGSTREAM_LLM_API_KEY"})


# =============================================================================== loading
def _duplicate_keys(node: yaml.Node, where: str, seen: set[int]) -> Iterable[str]:
    """Duplicate mapping keys, which Compose rejects but PyYAML silently lets win."""
    if id(node) in seen:  # an alias of an anchored node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                yield from _duplicate_keys(value, f"{where}.<<", seen)
                continue
            name = key.value if isinstance(key, yaml.ScalarNode) else repr(key)
            if name in keys:
                yield f"{where}.{name} (line {key.start_mark.line + 1})"
            keys.add(name)
            yield from _duplicate_keys(value, f"{where}.{name}", seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{where}[{i}]", seen)


def load_yaml(path: Path) -> list[Any]:
    """All documents of a YAML file, anchors and ``<<`` merge keys resolved."""
    text = path.read_text(encoding="utf-8")
    seen: set[int] = set()
    dups = [d for node in yaml.compose_all(text, Loader=yaml.SafeLoader) if node is not None
            for d in _duplicate_keys(node, "", seen)]
    assert not dups, f"{path.name}: duplicate keys {dups}"
    return list(yaml.safe_load_all(text))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    docs = load_yaml(COMPOSE_FILE)
    assert len(docs) == 1 and isinstance(docs[0], dict), "one YAML document, a mapping"
    return docs[0]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    # The schema names draft-07 by a URI jsonschema does not map, so pick it explicitly.
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator: jsonschema.Draft7Validator, doc: Any) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path]):
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        detail = err.message
        if err.context:  # oneOf/anyOf: say which branch came closest
            detail += f" (closest: {jsonschema.exceptions.best_match(err.context).message})"
        out.append(f"{where}: {detail}")
    return out


# ============================================================================ Dockerfile
@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, else None (shell form)."""
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions, with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    buf, start = "", 0
    for no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation: Docker drops those lines
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf += stripped[:-1].rstrip() + " "
            continue
        keyword, _, args = (buf + stripped).partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    assert not buf, f"Dockerfile ends inside a line continuation (line {start})"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Build stages, each starting with its FROM."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        assert out, f"line {ins.line}: {ins.keyword} before the first FROM"
        out[-1].append(ins)
    return out


def from_image(ins: Instruction) -> tuple[str, str | None]:
    words = [w for w in ins.args.split() if not w.startswith("--")]
    image = words[0]
    name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
    return image, name


def dockerfile_env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword != "ENV":
            continue
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy ENV key value
            env[words[0]] = " ".join(words[1:])
        else:
            env.update(w.split("=", 1) for w in words)
    return env


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    return stages(dockerfile)[-1]


def last(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"the final stage of the Dockerfile has no {keyword}"
    return found[-1]


# ================================================================================ helpers
def env_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as Compose passes it: strings (None: unset)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    out = {}
    for key, value in raw.items():
        if value is None:
            continue  # `KEY:` alone takes the value from the shell running compose
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: "service_started" for name in raw}
    return {name: spec["condition"] for name, spec in raw.items()}


def builds_dockerfile(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    if build is None:
        return False
    if isinstance(build, str):
        build = {"context": build}
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    return context == ROOT and (context / build.get("dockerfile", "Dockerfile")) == DOCKERFILE


def segstream_services(services: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the image built from the Dockerfile (by build or by its tag)."""
    built = {n: s for n, s in services.items() if builds_dockerfile(s)}
    tags = {s["image"] for s in built.values() if "image" in s}
    return {n: s for n, s in services.items() if n in built or s.get("image") in tags}


def as_argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def check_cli_args(argv: list[str]) -> str:
    """Parse ``segstream ARGV`` with click, without running it; return the command path."""
    parent = click.Context(cli, info_name="segstream")
    cmd: click.Command = cli
    path: list[str] = []
    rest = list(argv)
    while isinstance(cmd, click.Group):
        where = " ".join(["segstream", *path])
        assert rest and not rest[0].startswith("-"), f"{argv}: `{where}` needs a subcommand"
        name = rest.pop(0)
        sub = cmd.get_command(parent, name)
        assert sub is not None, (f"{argv}: `{where}` has no subcommand {name!r} "
                                 f"(it has {sorted(cmd.list_commands(parent))})")
        path.append(name)
        if isinstance(sub, click.Group):
            parent = click.Context(sub, info_name=name, parent=parent)
        cmd = sub
    try:
        cmd.make_context(path[-1], rest, parent=parent)
    except click.ClickException as exc:
        raise AssertionError(f"segstream {' '.join(argv)}: {exc.format_message()}") from None
    return " ".join(path)


def known_segstream_vars() -> set[str]:
    names = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings) if f.name != "topics"}
    names |= {f"{PREFIX}TOPIC_{f.name.upper()}" for f in dataclasses.fields(Topics)}
    names.add(PREFIX + "KAFKA_BOOTSTRAP_SERVERS")
    return names | EXTRA_SEGSTREAM_VARS


def settings_env(env: Mapping[str, str]) -> dict[str, str]:
    """Env for ``Settings.from_env`` here: drop files that exist only in the container."""
    out = {}
    for key, value in env.items():
        name = key.removeprefix(PREFIX).lower()
        is_file = key.startswith(PREFIX) and name.endswith(("_file", "_location"))
        if is_file and value and not Path(value).exists():
            assert value.startswith("/"), f"{key}={value}: use an absolute container path"
            continue
        out[key] = value
    return out


def ports_of(service: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(published, target) pairs of a service's ``ports``."""
    out: list[tuple[str | None, str]] = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            published = p.get("published")
            out.append((None if published is None else str(published), str(p["target"])))
            continue
        parts = str(p).split("/")[0].rsplit(":", 2)
        out.append((parts[-2] if len(parts) >= 2 else None, parts[-1]))
    return out


def mounts_of(service: Mapping[str, Any]) -> list[tuple[str | None, str, str]]:
    """(source, target, type) of a service's ``volumes``; type is volume or bind."""
    out: list[tuple[str | None, str, str]] = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("source"), v["target"], v["type"]))
            continue
        parts = str(v).split(":")
        if len(parts) == 1:
            out.append((None, parts[0], "volume"))  # anonymous volume
            continue
        source = parts[0]
        kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        out.append((source, parts[1], kind))
    return out


def duration_s(value: str) -> float:
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, sep, hostport = item.strip().partition("://")
        assert sep, f"listener {item!r} is not NAME://host:port"
        host, _, port = hostport.rpartition(":")
        out[name] = (host, int(port))
    return out


# ========================================================================= schema checks
def test_vendored_schema_is_the_compose_specification(validator: jsonschema.Draft7Validator):
    schema = validator.schema
    assert schema["title"] == "Compose Specification"
    assert {"services", "volumes", "networks"} <= set(schema["properties"])
    # Extension fields (x-segstream) are allowed at the top level and in services.
    assert "^x-" in schema["patternProperties"]
    assert "^x-" in schema["definitions"]["service"]["patternProperties"]


def test_schema_rejects_what_compose_rejects(validator: jsonschema.Draft7Validator):
    ok = {"x-any": {"a": 1}, "services": {"a": {"image": "busybox", "restart": "no"}}}
    assert schema_errors(validator, ok) == []
    bad_docs = {
        "unquoted no": {"services": {"a": {"image": "busybox", "restart": False}}},
        "unknown key": {"services": {"a": {"image": "busybox", "replica": 2}}},
        "bad condition": {"services": {"a": {"image": "busybox",
                                             "depends_on": {"b": {"condition": "healthy"}}}}},
        "env not scalar": {"services": {"a": {"image": "busybox",
                                              "environment": {"A": ["x"]}}}},
        "unknown top level": {"service": {}},
    }
    for what, doc in bad_docs.items():
        assert schema_errors(validator, doc), f"schema accepted: {what}"


def test_compose_file_is_valid_against_the_compose_specification(
        compose: dict[str, Any], validator: jsonschema.Draft7Validator):
    assert schema_errors(validator, compose) == []


def test_compose_file_has_the_services_and_no_version_key(compose: dict[str, Any]):
    assert "version" not in compose, "`version` is obsolete in the Compose Specification"
    assert set(compose["services"]) >= EXPECTED_SERVICES
    # The shared definition is an extension field, merged into the segstream services.
    assert "x-segstream" in compose


# ===================================================================== structural checks
def test_segstream_services_run_existing_subcommands(
        services: dict[str, Any], final_stage: list[Instruction]):
    ours = segstream_services(services)
    assert set(ours) >= EXPECTED_SERVICES - OTHER_IMAGES
    default_cmd = last(final_stage, "CMD").exec_form()
    default_entrypoint = last(final_stage, "ENTRYPOINT").exec_form()
    seen = {}
    for name, svc in ours.items():
        entrypoint = as_argv(svc["entrypoint"]) if "entrypoint" in svc else default_entrypoint
        assert entrypoint == ["segstream"], f"{name}: entrypoint {entrypoint}"
        argv = as_argv(svc["command"]) if "command" in svc else default_cmd
        assert argv is not None, f"{name}: no command and no exec-form CMD in the Dockerfile"
        seen[name] = check_cli_args(argv)
    assert seen["topics"] == "topics create"
    assert seen["worker"] == "worker"
    assert seen["simulator"] == "simulate"
    assert seen["watch"] == "watch"


def test_check_cli_args_catches_bad_commands():
    assert check_cli_args(["simulate", "--users", "10", "--rate", "5"]) == "simulate"
    for argv in (["wokrer"], ["topics"], ["topics", "craete"], ["simulate", "--user", "1"],
                 ["simulate", "--users", "many"], ["watch", "--from-start"]):
        with pytest.raises(AssertionError):
            check_cli_args(argv)


def test_segstream_env_vars_are_known_settings(
        services: dict[str, Any], final_stage: list[Instruction]):
    known = known_segstream_vars()
    used = {(name, key) for name, svc in segstream_services(services).items()
            for key in env_of(svc)}
    used |= {("Dockerfile", key) for key in dockerfile_env(final_stage)}
    unknown = sorted(f"{where}: {key}" for where, key in used
                     if key.startswith(PREFIX) and key not in known)
    assert not unknown, f"not segstream settings (typo?): {unknown}"


def test_settings_accept_every_segstream_service_env(
        services: dict[str, Any], final_stage: list[Instruction]):
    image_env = dockerfile_env(final_stage)
    for name, svc in segstream_services(services).items():
        env = settings_env({**image_env, **env_of(svc)})
        settings = Settings.from_env(env)  # raises ConfigError naming what is wrong
        assert settings.replication_factor == 1, f"{name}: one broker, replication factor 1"


def test_worker_settings(services: dict[str, Any], final_stage: list[Instruction]):
    worker = services["worker"]
    env = env_of(worker)
    for key in ("SEGSTREAM_METRICS_PORT", "SEGSTREAM_METRICS_HOST", "SEGSTREAM_STATE_DIR",
                "KAFKA_BOOTSTRAP_SERVERS"):
        assert key in env, f"worker: {key} not set"
    s = Settings.from_env(settings_env({**dockerfile_env(final_stage), **env}))
    assert s.bootstrap_servers == "kafka:9092"
    assert s.metrics_port == METRICS_PORT
    assert s.metrics_host == "0.0.0.0", "metrics must listen beyond the container's loopback"
    assert s.state_dir == Path(STATE_DIR)


def test_worker_state_volume_and_metrics_port_line_up(
        compose: dict[str, Any], final_stage: list[Instruction]):
    worker = compose["services"]["worker"]
    state_dir = env_of(worker)["SEGSTREAM_STATE_DIR"]
    named = {src for src, target, kind in mounts_of(worker)
             if kind == "volume" and target == state_dir and src}
    assert named, f"worker: no named volume mounted at {state_dir}"
    assert named <= set(compose.get("volumes") or {})
    # The state volume belongs to one worker: no replicas sharing it.
    assert worker.get("scale", 1) == 1
    assert (worker.get("deploy") or {}).get("replicas", 1) == 1

    volumes = last(final_stage, "VOLUME")
    declared = volumes.exec_form() or volumes.args.split()
    assert state_dir in declared
    assert dockerfile_env(final_stage).get("SEGSTREAM_STATE_DIR") == state_dir

    port = env_of(worker)["SEGSTREAM_METRICS_PORT"]
    exposed = {p.split("/")[0] for i in final_stage if i.keyword == "EXPOSE"
               for p in i.args.split()}
    assert port in exposed
    assert (port, port) in ports_of(worker) or any(t == port for _, t in ports_of(worker))
    assert port in " ".join(as_argv(worker["healthcheck"]["test"]))
    assert duration_s(worker["stop_grace_period"]) >= 10, "time to commit and close stores"


def test_named_volumes_are_declared(compose: dict[str, Any]):
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for src, target, kind in mounts_of(svc):
            if kind == "volume" and src:
                assert src in declared, f"{name}: volume {src!r} ({target}) is not declared"


def test_depends_on_targets_exist_and_can_satisfy_the_condition(services: dict[str, Any]):
    for name, svc in services.items():
        for target, condition in depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            dep = services[target]
            if condition == "service_healthy":
                hc = dep.get("healthcheck") or {}
                assert hc.get("test") and not hc.get("disable"), (
                    f"{name} waits for {target} to be healthy, but it has no healthcheck")
            if condition == "service_completed_successfully":
                assert dep.get("restart", "no") in ("no", "on-failure"), (
                    f"{name} waits for {target} to complete, but it restarts")
    # No cycles.
    state: dict[str, str] = {}

    def visit(n: str, path: list[str]) -> None:
        assert state.get(n) != "open", f"depends_on cycle: {' -> '.join([*path, n])}"
        if state.get(n) == "done":
            return
        state[n] = "open"
        for t in depends_on(services[n]):
            visit(t, [*path, n])
        state[n] = "done"

    for n in services:
        visit(n, [])


def test_segstream_services_start_after_topics_exist(services: dict[str, Any]):
    for name in ("worker", "simulator", "watch"):
        assert depends_on(services[name]).get("topics") == "service_completed_successfully"
    assert depends_on(services["topics"]) == {"kafka": "service_healthy"}
    assert services["topics"].get("restart") == "no"


def test_kafka_is_a_consistent_single_node_kraft_broker(services: dict[str, Any]):
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env.get(key) == "1", f"{key} must be 1 on a single broker"
    assert env.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS") == "0"
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "false"

    listen = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listen) | set(advertised) <= set(protocols)
    assert set(advertised) <= set(listen)
    assert {"PLAINTEXT", "CONTROLLER", "EXTERNAL"} <= set(listen)
    assert listen["PLAINTEXT"][1] == 9092 and listen["CONTROLLER"][1] == 9093
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listen and controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised

    host_names = {"kafka", kafka.get("hostname", "kafka")}
    node_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == env["KAFKA_NODE_ID"]
    voter_host, _, voter_port = voter.rpartition(":")
    assert voter_host in host_names and int(voter_port) == listen[controller][1]

    # Clients on the host: the EXTERNAL listener, advertised as localhost:29092, published.
    assert advertised["EXTERNAL"] == ("localhost", 29092)
    assert ("29092", str(listen["EXTERNAL"][1])) in ports_of(kafka)
    assert advertised["PLAINTEXT"][0] in host_names

    cluster_id = env["CLUSTER_ID"]
    try:
        raw = base64.urlsafe_b64decode(cluster_id + "==")
    except binascii.Error:
        raw = b""
    assert len(cluster_id) == 22 and len(raw) == 16, "CLUSTER_ID: base64url of a 16-byte UUID"

    test = " ".join(as_argv(kafka["healthcheck"]["test"]))
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in test
    assert "--bootstrap-server localhost:9092" in test

    log_dirs = env["KAFKA_LOG_DIRS"]
    assert any(kind == "volume" and src and target == log_dirs
               for src, target, kind in mounts_of(kafka)), "Kafka data on a named volume"


def test_segstream_services_bootstrap_from_the_internal_listener(services: dict[str, Any]):
    advertised = listeners(env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"])
    internal = {f"{h}:{p}" for name, (h, p) in advertised.items() if h != "localhost"}
    for name, svc in segstream_services(services).items():
        servers = env_of(svc).get("KAFKA_BOOTSTRAP_SERVERS", "")
        assert servers and set(servers.split(",")) <= internal, (
            f"{name}: KAFKA_BOOTSTRAP_SERVERS={servers!r}, the broker advertises {internal}")


# ==================================================================== Dockerfile checks
def test_dockerfile_base_user_entrypoint_and_cmd(
        dockerfile: list[Instruction], final_stage: list[Instruction]):
    all_stages = stages(dockerfile)
    names = set()
    for stage in all_stages:
        image, name = from_image(stage[0])
        assert image.startswith("python:3.11"), f"line {stage[0].line}: FROM {image}"
        for ins in stage:
            if ins.keyword == "COPY" and "--from=" in ins.args:
                src = re.search(r"--from=(\S+)", ins.args).group(1)  # type: ignore[union-attr]
                assert src in names, f"line {ins.line}: COPY --from={src}: no earlier stage"
        if name:
            names.add(name)

    user = last(final_stage, "USER").args.split(":")[0]
    assert user and user not in ("root", "0"), "the image must run as a non-root user"
    if not user.isdigit():
        created = " ".join(i.args for i in final_stage if i.keyword == "RUN")
        assert re.search(rf"\b(useradd|adduser)\b[^;&|]*\b{re.escape(user)}\b", created), (
            f"USER {user} is never created in the final stage")
    # Nothing after USER switches back to root.
    after_user = final_stage[final_stage.index(last(final_stage, "USER")):]
    assert all(i.keyword != "USER" or i.args.split(":")[0] not in ("root", "0")
               for i in after_user)

    assert last(final_stage, "ENTRYPOINT").exec_form() == ["segstream"]
    cmd = last(final_stage, "CMD").exec_form()
    assert cmd == ["worker"]
    check_cli_args(cmd)

    runs = [i.args for stage in all_stages for i in stage if i.keyword == "RUN"]
    assert any(re.search(r"\bpip install\b[^;&|]*\s\.(\s|$)", r) for r in runs), (
        "the project is installed with `pip install .`")


def test_entrypoint_is_the_projects_console_script():
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["segstream"] == "streams.cli:main"


def test_dockerfile_env_is_valid_settings(final_stage: list[Instruction]):
    env = dockerfile_env(final_stage)
    ours = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    assert ours.get("SEGSTREAM_STATE_DIR") == STATE_DIR
    Settings.from_env(settings_env(ours))


def test_parse_dockerfile_joins_continuations_and_drops_comments():
    text = "# c\nFROM python:3.11-slim AS a\nRUN a \\\n    # inner\n    && b\nUSER 1000\n"
    got = parse_dockerfile(text)
    assert [(i.keyword, i.args, i.line) for i in got] == [
        ("FROM", "python:3.11-slim AS a", 2), ("RUN", "a && b", 3), ("USER", "1000", 6)]


def _ignored(name: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern.removeprefix("!").strip("/")
        if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name, p.removeprefix("**/")):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_local_state_out_but_not_the_sources():
    patterns = [ln.strip() for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    for name in (".venv", ".local", ".git", "__pycache__", "replay-out", ".pytest_cache"):
        assert _ignored(name, patterns), f".dockerignore does not exclude {name}"
    for name in ("pyproject.toml", "streams", "models", "README.md"):
        assert not _ignored(name, patterns), f".dockerignore excludes {name}, the image needs it"


# ==================================================================== YAML under deploy/
def _deploy_yaml() -> list[Path]:
    if not DEPLOY_DIR.is_dir():
        return []
    skip = {"target", "node_modules", "__pycache__"}
    return sorted(p for p in DEPLOY_DIR.rglob("*")
                  if p.is_file() and p.suffix in (".yml", ".yaml")
                  and not any(part.startswith(".") or part in skip
                              for part in p.relative_to(DEPLOY_DIR).parts))


def _is_compose(path: Path, doc: Any) -> bool:
    return re.fullmatch(r"(docker-)?compose.*\.ya?ml", path.name) is not None or (
        isinstance(doc, dict) and isinstance(doc.get("services"), dict)
        and all(isinstance(s, dict) and ("image" in s or "build" in s)
                for s in doc["services"].values()))


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(ROOT))) for p in _deploy_yaml()]
    or [pytest.param(None, id="none", marks=pytest.mark.skip(reason="no YAML under deploy/"))])
def test_deploy_yaml_is_valid(path: Path, validator: jsonschema.Draft7Validator):
    docs = load_yaml(path)  # parses; no duplicate keys
    assert any(d is not None for d in docs), f"{path}: empty"
    for doc in docs:
        if _is_compose(path, doc):
            assert schema_errors(validator, doc) == [], path


# ============================================================ Prometheus and Grafana
PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
GRAFANA_DIR = DEPLOY_DIR / "grafana"


def bind_mounts(service: Mapping[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to the file)."""
    return {target: (COMPOSE_FILE.parent / src).resolve()
            for src, target, kind in mounts_of(service) if kind == "bind" and src}


def test_prometheus_loads_the_repository_config_and_scrapes_the_worker(
        services: dict[str, Any]):
    prom = services["prometheus"]
    assert prom["image"].startswith("prom/prometheus:v2.")
    args = dict(a.split("=", 1) for a in as_argv(prom["command"]) if "=" in a)
    config_path = args["--config.file"]
    mounts = bind_mounts(prom)
    folder = PurePosixPath(config_path).parent
    assert mounts.get(str(folder)) == PROMETHEUS_DIR, f"{folder} must be deploy/prometheus"
    config = yaml.safe_load((PROMETHEUS_DIR / PurePosixPath(config_path).name).read_text())
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in config["scrape_configs"]}
    worker_port = env_of(services["worker"])["SEGSTREAM_METRICS_PORT"]
    assert targets["segstream-worker"] == [f"worker:{worker_port}"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file
    data = args["--storage.tsdb.path"]
    assert any(kind == "volume" and target == data for _, target, kind in mounts_of(prom))
    assert ("9090", "9090") in ports_of(prom)
    assert "9090" in " ".join(as_argv(prom["healthcheck"]["test"]))


def test_grafana_is_provisioned_with_the_prometheus_source_and_the_dashboard(
        services: dict[str, Any]):
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts.get("/etc/grafana/provisioning") == GRAFANA_DIR / "provisioning"
    (source,) = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    (provider,) = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "segstream.yml").read_text()
    )["providers"]
    dash_dir = provider["options"]["path"]
    assert mounts.get(dash_dir) == GRAFANA_DIR / "dashboards"
    home = env_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert PurePosixPath(home).parent == PurePosixPath(dash_dir)
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / PurePosixPath(home).name).read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}
    assert depends_on(grafana) == {"prometheus": "service_healthy"}
    assert env_of(grafana).get("GF_SECURITY_ADMIN_PASSWORD", "").startswith("${"), (
        "no password in the file: taken from the environment")
