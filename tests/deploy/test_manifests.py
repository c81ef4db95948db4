"""deploy/k8s validated offline: every overlay renders, standard kinds pass Kubernetes' own
schemas (kubernetes-validate --strict), custom resources pass the CRD schemas kept in
deploy/k8s/schemas, and what the manifests tell metre (variables, commands, ports, probe
paths, topics, consumer group, the pollers' scaling query) exists in the code.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import kubernetes_validate
import pytest
import yaml

from metre.api.app import create_app
from metre.cli import parser
from metre.ingest.credentials import load_credentials
from metre.settings import Settings
from metre.wiring import all_topics, commits_topic, processor_group
from tests.deploy.manifests import (
    OVERLAYS,
    ROOT,
    SCHEMAS,
    SECRETS,
    containers,
    environment,
    find,
    load,
    pod_spec,
    render,
    role,
    schema_file,
    schema_registry,
)

CUSTOM_GROUPS = ("kafka.strimzi.io/", "postgresql.cnpg.io/", "barmancloud.cnpg.io/", "keda.sh/")

HEALTH_PATHS = {"/healthz", "/readyz"}
"""Probe paths the manifests may use on the health port (each checked in metre/health.py)."""

ALLOW_LIST = ("METRE_ALLOWED_SCHEMES", "METRE_ALLOW_PRIVATE_HOSTS", "METRE_ALLOW_LOCAL_PATHS")
CNPG_APP_SECRET_KEYS = {"username", "password", "host", "port", "dbname", "uri", "fqdn-uri"}


def _settings_names() -> set[str]:
    return {f"METRE_{name.upper()}" for name in Settings.model_fields}


def _commands() -> set[str]:
    sub = next(a for a in parser()._actions if a.dest == "command")
    assert sub.choices is not None
    return set(sub.choices)


def _custom(resource: dict[str, Any]) -> bool:
    return str(resource["apiVersion"]).startswith(CUSTOM_GROUPS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_every_role(overlay: str) -> None:
    resources = render(overlay)
    workloads = {role(r) for r in resources if pod_spec(r) is not None}
    assert workloads == {"poller", "processor", "notifier", "api", "migrate"}
    for r in resources:
        assert r["metadata"].get("namespace") == "metre", r["metadata"]["name"]


def test_there_are_dev_and_prod_overlays() -> None:
    assert set(OVERLAYS) >= {"dev", "prod"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_standard_kinds_pass_kubernetes_schemas_strictly(overlay: str) -> None:
    version = kubernetes_validate.latest_version()
    standard = [r for r in render(overlay) if not _custom(r)]
    assert standard
    for r in standard:
        kubernetes_validate.validate(r, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_pass_the_crd_schemas(overlay: str) -> None:
    custom = [r for r in render(overlay) if _custom(r)]
    assert {r["kind"] for r in custom} >= {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster"}
    for r in custom:
        path = schema_file(r)
        assert path.exists(), f"no schema for {r['apiVersion']} {r['kind']}: add {path.name}"
        _validator(path).validate(r)


def _validator(path: Path) -> jsonschema.Draft202012Validator:
    schema = yaml.safe_load(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=schema_registry())


def test_every_schema_is_a_valid_json_schema() -> None:
    for path in SCHEMAS.glob("*.yaml"):
        _validator(path)


@pytest.mark.parametrize(
    ("kind", "name", "spoil"),
    [
        ("ScaledObject", "metre-processor", lambda r: r["spec"]["triggers"][0]["metadata"]
         .__setitem__("lagTreshold", "10")),
        ("ScaledObject", "metre-processor", lambda r: r["spec"]["triggers"][0]["metadata"]
         .__setitem__("lagThreshold", 10)),
        ("Kafka", "metre", lambda r: r["spec"]["kafka"].__setitem__("replicas", 3)),
        ("KafkaTopic", "metre.commits", lambda r: r["spec"].pop("partitions")),
        ("Cluster", "metre-db", lambda r: r["spec"]["postgresql"]["parameters"]
         .__setitem__("max_connections", 600)),
        ("ScheduledBackup", "metre-db-nightly", lambda r: r["spec"].__setitem__("schedule",
                                                                                "0 2 * * *")),
    ],
)  # fmt: skip
def test_the_schemas_refuse_a_misspelt_or_mistyped_field(kind: str, name: str, spoil: Any) -> None:
    resource = copy.deepcopy(find(render("prod"), kind, name))
    validator = _validator(schema_file(resource))
    validator.validate(resource)
    spoil(resource)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(resource)


def test_secret_templates_are_valid_and_hold_placeholders_only() -> None:
    version = kubernetes_validate.latest_version()
    templates = [r for p in sorted(SECRETS.glob("*.yaml")) for r in load(p)]
    assert {r["metadata"]["name"] for r in templates} == {
        "metre-api-tokens",
        "metre-git-credentials",
        "metre-backup-credentials",
    }
    for r in templates:
        kubernetes_validate.validate(r, version, strict=True)
        for key, value in r["stringData"].items():
            assert "REPLACE-WITH" in value, f"{r['metadata']['name']}/{key} looks like a secret"


def test_the_git_credentials_template_is_a_file_the_pollers_read(tmp_path: Path) -> None:
    (template,) = load(SECRETS / "git-credentials.yaml")
    path = tmp_path / "credentials.toml"
    path.write_text(template["stringData"]["credentials.toml"])
    assert tomllib.loads(path.read_text())
    assert load_credentials(path)


def _secrets_referenced(overlay: str) -> set[tuple[str, str | None]]:
    refs: set[tuple[str, str | None]] = set()
    for workload, c in containers(render(overlay)):
        for item in c.get("env", []):
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                refs.add((ref["name"], ref["key"]))
        for volume in pod_spec(workload).get("volumes", []):  # type: ignore[union-attr]
            if "secret" in volume:
                refs.add((volume["secret"]["secretName"], None))
    for r in render(overlay):
        for ref in r.get("spec", {}).get("secretTargetRef", []):
            refs.add((ref["name"], ref["key"]))
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_used_is_a_template_or_written_by_cloudnativepg(overlay: str) -> None:
    templates = {
        r["metadata"]["name"]: set(r["stringData"]) for p in SECRETS.glob("*.yaml") for r in load(p)
    }
    for name, key in _secrets_referenced(overlay):
        if name == "metre-db-app":  # the Cluster's owner, written by the operator
            assert key in CNPG_APP_SECRET_KEYS, key
        else:
            assert name in templates, f"secret {name} has no template in deploy/k8s/secrets"
            assert key is None or key in templates[name], f"{name} has no key {key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_metre_variable_is_a_setting(overlay: str) -> None:
    known = _settings_names()
    resources = render(overlay)
    for workload, c in containers(resources):
        env = environment(resources, c)
        for name in env:
            where = f"{workload['metadata']['name']}/{c['name']}: {name}"
            if name.startswith("METRE_"):
                assert name in known, f"{where} is not a field of metre.settings.Settings"
            else:  # only there to build a METRE_* value, like a URL from a Secret's parts
                users = [v for v in env.values() if f"$({name})" in v]
                assert users, f"{where} is neither a METRE_* setting nor used in one"
        # The values parse: Settings accepts every one of them.
        plain = {k: v for k, v in env.items() if k.startswith("METRE_") and k in _settings_names()}
        plain = {k: v for k, v in plain.items() if not v.startswith("<secret")}
        fields: dict[str, Any] = {k.removeprefix("METRE_").lower(): v for k, v in plain.items()}
        Settings(**fields)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_and_the_pollers_have_the_same_url_allow_list(overlay: str) -> None:
    resources = render(overlay)
    by_role = {role(w): environment(resources, c) for w, c in containers(resources)}
    api, poller, notifier = by_role["api"], by_role["poller"], by_role["notifier"]
    for name in ALLOW_LIST:
        assert api.get(name) == poller.get(name), name
        # Webhook targets obey the same address rules as repository URLs.
        assert notifier.get(name) == api.get(name), name
    assert poller["METRE_ALLOW_PRIVATE_HOSTS"] == "false"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_are_metre_commands(overlay: str) -> None:
    known = _commands()
    for workload, c in containers(render(overlay)):
        assert c["image"].split("/")[-1].split(":")[0] == "metre"
        assert c["args"][0] in known
        assert c["args"][0] == role(workload)


def _api_paths() -> set[str]:
    return set(create_app(Settings()).openapi()["paths"])


def _health_paths() -> set[str]:
    """The poller's and processor's probe paths that metre/health.py serves."""
    source = (ROOT / "metre" / "health.py").read_text()
    return {p for p in HEALTH_PATHS if f'"{p}"' in source or f"'{p}'" in source}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probe_paths_exist_in_the_code(overlay: str) -> None:
    resources = render(overlay)
    for workload, c in containers(resources):
        if role(workload) == "migrate":
            assert "ports" not in c
            continue
        env = environment(resources, c)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        probes = [c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        if role(workload) == "api":
            assert ports == {"http": 8000}
            assert int(env["METRE_PORT"]) == 8000 == Settings().port
            paths = _api_paths()
        else:
            assert ports == {"health": 8081}
            assert int(env["METRE_HEALTH_PORT"]) == 8081
            if "health_port" in Settings.model_fields:
                assert Settings().health_port == 8081
            paths = _health_paths()
        for probe in probes:
            assert probe["httpGet"]["port"] in ports
            assert probe["httpGet"]["path"] in paths


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_group_and_partitions_match_the_code(overlay: str) -> None:
    resources = render(overlay)
    config = find(resources, "ConfigMap", "metre-config")["data"]
    settings = Settings(topic_prefix=config["METRE_TOPIC_PREFIX"])
    topics = {r["spec"]["topicName"]: r for r in resources if r["kind"] == "KafkaTopic"}
    assert set(topics) == set(all_topics(settings))
    commits = topics[commits_topic(settings)]["spec"]
    assert commits["partitions"] == int(config["METRE_PARTITIONS"])
    for name, topic in topics.items():
        assert topic["metadata"]["name"] == name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "metre"
    kafka_host = config["METRE_KAFKA_BOOTSTRAP"].split(":")[0]
    assert kafka_host == f"{find(resources, 'Kafka', 'metre')['metadata']['name']}-kafka-bootstrap"
    scaled = [r for r in resources if r["kind"] == "ScaledObject"]
    if overlay == "dev":
        assert not scaled
        return
    processors = find(resources, "ScaledObject", "metre-processor")["spec"]
    (trigger,) = processors["triggers"]
    assert trigger["metadata"]["topic"] == commits_topic(settings)
    assert trigger["metadata"]["consumerGroup"] == processor_group(settings)
    assert trigger["metadata"]["bootstrapServers"].startswith(f"{kafka_host}.metre.svc:")
    # A member beyond the partitions would own none.
    assert processors["maxReplicaCount"] <= commits["partitions"]


def _replicas(resources: tuple[dict[str, Any], ...], kind: str, name: str) -> int | None:
    replicas: int | None = find(resources, kind, name)["spec"].get("replicas")
    return replicas


def test_dev_runs_one_of_everything() -> None:
    dev = render("dev")
    for kind, name in (
        ("StatefulSet", "metre-poller"),
        ("Deployment", "metre-processor"),
        ("Deployment", "metre-api"),
        ("KafkaNodePool", "dual"),
    ):
        assert _replicas(dev, kind, name) == 1
    assert find(dev, "Cluster", "metre-db")["spec"]["instances"] == 1
    assert not [r for r in dev if r["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    # One instance has no replica behind -ro: the API reads from the primary.
    api = next(c for w, c in containers(dev) if role(w) == "api")
    assert "@metre-db-rw:" in environment(dev, api)["METRE_READ_DATABASE_URL"]


def test_prod_leaves_replica_counts_to_the_autoscalers() -> None:
    prod = render("prod")
    for kind, name in (
        ("StatefulSet", "metre-poller"),
        ("Deployment", "metre-processor"),
        ("Deployment", "metre-api"),
    ):
        assert _replicas(prod, kind, name) is None
    targets = {
        r["spec"]["scaleTargetRef"]["name"]
        for r in prod
        if r["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    }
    assert targets == {"metre-poller", "metre-processor", "metre-api"}
    assert find(prod, "Cluster", "metre-db")["spec"]["instances"] == 3
    api = next(c for w, c in containers(prod) if role(w) == "api")
    assert "@metre-db-ro:" in environment(prod, api)["METRE_READ_DATABASE_URL"]
    for r in prod:
        if r["kind"] == "KafkaTopic":
            assert r["spec"]["replicas"] == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_and_targets_match_pods(overlay: str) -> None:
    resources = render(overlay)
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in resources if pod_spec(w)]

    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pods)

    for r in resources:
        if r["kind"] == "Service":
            assert selects(r["spec"]["selector"]), r["metadata"]["name"]
        if r["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = r["spec"].get("selector") or r["spec"]["podSelector"]
            assert selects(selector["matchLabels"]), r["metadata"]["name"]
        if r["kind"] in ("Deployment", "StatefulSet"):
            assert selects(r["spec"]["selector"]["matchLabels"])
        if r["kind"] in ("ScaledObject", "HorizontalPodAutoscaler"):
            target = r["spec"]["scaleTargetRef"]
            assert find(resources, target["kind"], target["name"])


def test_the_pollers_egress_refuses_what_metre_refuses() -> None:
    policy = find(render("prod"), "NetworkPolicy", "metre-poller-egress")
    blocks = [
        peer["ipBlock"]
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                    "169.254.0.0/16", "100.64.0.0/10"):  # fmt: skip
        assert private in v4["except"]
    v6 = next(b for b in blocks if b["cidr"] == "::/0")
    assert {"fc00::/7", "fe80::/10", "::1/128"} <= set(v6["except"])


def _due_query() -> str:
    poller = find(render("prod"), "ScaledObject", "metre-poller")
    query: str = poller["spec"]["triggers"][0]["metadata"]["query"]
    return query


@pytest.mark.integration
async def test_the_pollers_scaling_query_counts_due_and_polled_repositories(db_dsn: str) -> None:
    con = await asyncpg.connect(db_dsn)
    try:
        states = {
            "due": "next_poll_at = now() - interval '1 minute'",
            "later": "next_poll_at = now() + interval '1 hour'",
            "polling": "next_poll_at = now() + interval '1 hour', "
            "lease_until = now() + interval '1 minute', state = 'polling'",
            "paused": "next_poll_at = now() - interval '1 minute', paused_at = now(), "
            "state = 'paused'",
            "abandoned": "next_poll_at = now() - interval '1 minute', state = 'abandoned'",
            "failed-due": "next_poll_at = now() - interval '1 minute', state = 'failed'",
        }
        for i, (name, assignment) in enumerate(states.items()):
            repo_id = await con.fetchval(
                "INSERT INTO repos (url) VALUES ($1) RETURNING id", f"https://example.org/{i}.git"
            )
            await con.execute(f"UPDATE repos SET {assignment} WHERE id = $1", repo_id)
            assert name
        count = await con.fetchval(_due_query())
    finally:
        await con.close()
    assert count == 3  # due, polling, failed-due


def test_the_scaling_query_is_the_claims_condition() -> None:
    """The claim (Registry.claim_due_repo) and the query must agree on what is due."""
    store = (ROOT / "processors" / "registry.py").read_text()
    claim = store[store.index("async def claim_due_repo") :]
    claim = claim[: claim.index("RETURNING")]
    query = " ".join(_due_query().split())
    for condition in ("paused_at IS NULL", "state <> 'abandoned'", "next_poll_at <= now()"):
        assert condition in claim
        assert condition in query
    assert re.search(r"lease_until > now\(\)", query)


def test_the_scaling_driver_applies_kedas_kafka_rule() -> None:
    """The scaling driver of bench/scaleout.py (testkit/keda.py): ceil(lag / lagThreshold), at
    least minReplicaCount (1), at most the partitions and maxReplicaCount, the rule the
    processors' ScaledObject declares."""
    from testkit.keda import desired_replicas

    processors = find(render("prod"), "ScaledObject", "metre-processor")["spec"]
    threshold = int(processors["triggers"][0]["metadata"]["lagThreshold"])
    partitions, most = 24, processors["maxReplicaCount"]
    assert desired_replicas(0, threshold, partitions, most) == 1
    assert desired_replicas(1, threshold, partitions, most) == 1
    assert desired_replicas(threshold, threshold, partitions, most) == 1
    assert desired_replicas(threshold + 1, threshold, partitions, most) == 2
    assert desired_replicas(100 * threshold, threshold, partitions, most) == partitions
    assert desired_replicas(100 * threshold, threshold, 8, most) == 8
