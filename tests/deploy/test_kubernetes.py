"""The Kubernetes manifests of deploy/kubernetes: valid, consistent, and a config that loads.

Validated offline against the Kubernetes API schemas that the ``kubernetes-validate``
package ships (strict: an unknown field is an error), for the oldest Kubernetes the
StatefulSet needs (1.28: the ``apps.kubernetes.io/pod-index`` label) and the newest the
package knows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs or py.typed
import pytest
import yaml

from riskwatch.config import load_config_text
from riskwatch.rules.load import load_rule_files
from riskwatch.shard import parse_shard, shard_of
from tests.support.paths import REPO

K8S = REPO / "deploy" / "kubernetes"
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


def documents() -> list[tuple[Path, dict[str, Any]]]:
    out: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_api_schemas(version: str) -> None:
    docs = documents()
    assert {d["kind"] for _, d in docs} == {
        "ConfigMap",
        "Secret",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    }
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']}) against {version}: {exc.message}")


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_pod_ordinal_becomes_the_shard_and_the_count_is_the_replicas() -> None:
    sts = one("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    shard = args[args.index("--shard") + 1]
    m = re.fullmatch(r"\$\(POD_INDEX\)/(\d+)", shard)
    assert m is not None, shard
    count = int(m.group(1))
    assert count == sts["spec"]["replicas"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    for ordinal in range(count):  # what each pod's command line becomes
        assert parse_shard(shard.replace("$(POD_INDEX)", str(ordinal))).index == ordinal


def test_service_pdb_and_pods_agree() -> None:
    sts, svc, pdb = one("StatefulSet"), one("Service"), one("PodDisruptionBudget")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["clusterIP"] == "None"  # headless: one DNS name per shard
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_configmap_config_loads_with_the_mounts_of_the_pod(tmp_path: Path) -> None:
    """The config is valid for riskwatch itself once the pod's mounts are in place: its
    secret files are keys of the mounted Secret, its state database is on the volume
    claim, its HTTP port is the container's, its rules are the image's rule pack."""
    sts, config_map = one("StatefulSet"), one("ConfigMap")
    secrets = {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == "Secret"}
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = container["args"][container["args"].index("-c") + 1]
    config_volume = volumes["config"]["configMap"]["name"]
    assert config_volume == config_map["metadata"]["name"]
    assert config_path == f"{mounts['config']}/riskwatch.yaml"
    secret_dir = mounts["secrets"]
    file_secret = secrets[volumes["secrets"]["secret"]["secretName"]]
    (env_from,) = container["envFrom"]
    environ = dict(secrets[env_from["secretRef"]["name"]]["stringData"])

    # Lay the pod's files out under tmp_path and point the config at them.
    text = config_map["data"]["riskwatch.yaml"]
    (tmp_path / "secrets").mkdir()
    for key, value in file_secret["stringData"].items():
        (tmp_path / "secrets" / key).write_text(value + "\n")
    text = text.replace(secret_dir + "/", f"{tmp_path / 'secrets'}/")
    text = text.replace("/etc/riskwatch/rules/", f"{REPO / 'rules'}/")
    config = load_config_text(text, tmp_path / "riskwatch.yaml", environ)

    state_dir = str(Path(config.state.path).parent)
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert mounts["state"] == state_dir
    assert "state" in claims
    assert config.http.port == container["ports"][0]["containerPort"]
    assert load_rule_files(list(config.rules.files)).rules
    names = [a.name for a in config.accounts]
    assert len(names) >= 2
    # Every account is watched by exactly one shard of the StatefulSet.
    count = sts["spec"]["replicas"]
    owners = [shard_of(name, count) for name in names]
    assert all(0 <= o < count for o in owners)
