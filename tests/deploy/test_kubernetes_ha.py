"""deploy/kubernetes/ha: two replicas with the Kubernetes Lease backend, valid and consistent.

Validated offline against the Kubernetes API schemas of ``kubernetes-validate`` (strict),
like deploy/kubernetes; the config is loaded by riskwatch itself with the pod's mounts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs or py.typed
import pytest
import yaml

from riskwatch.cli.main import build_parser
from riskwatch.config import load_config_text
from tests.support.paths import REPO

HA = REPO / "deploy" / "kubernetes" / "ha"
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


def documents() -> list[tuple[Path, dict[str, Any]]]:
    out: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(HA.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid(version: str) -> None:
    kinds = sorted(d["kind"] for _, d in documents())
    assert kinds == sorted(
        ["ConfigMap", "Secret", "Secret", "ServiceAccount", "Role", "RoleBinding", "Service",
         "StatefulSet", "PodDisruptionBudget"]
    )  # fmt: skip
    for path, doc in documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']}) against {version}: {exc.message}")


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((HA / "kustomization.yaml").read_text())
    files = {p.name for p in HA.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_two_replicas_own_state_no_shard_lease_rights() -> None:
    sts, role, binding = one("StatefulSet"), one("Role"), one("RoleBinding")
    assert sts["spec"]["replicas"] == 2
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert "--shard" not in args  # both replicas watch every account
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    assert parsed.log_format == "json"
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert "state" in claims  # one state database per replica
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    # The pods run as the service account the Role is bound to, and the Role allows
    # exactly what riskwatch/ha/kubernetes.py does with the Lease.
    assert pod["serviceAccountName"] == binding["subjects"][0]["name"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    verbs = {v for r in role["rules"] for v in r["verbs"]}
    assert verbs == {"get", "create", "update"}
    assert all(r["apiGroups"] == ["coordination.k8s.io"] for r in role["rules"])
    assert all(r["resources"] == ["leases"] for r in role["rules"])
    named = [r for r in role["rules"] if "resourceNames" in r]
    config = yaml.safe_load(one("ConfigMap")["data"]["riskwatch.yaml"])
    assert named[0]["resourceNames"] == [config["ha"]["k8s_lease"]]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_config_loads_with_the_pod_mounts(tmp_path: Path) -> None:
    sts, config_map = one("StatefulSet"), one("ConfigMap")
    secrets = {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == "Secret"}
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    file_secret = secrets[volumes["secrets"]["secret"]["secretName"]]
    (env_from,) = container["envFrom"]
    environ = dict(secrets[env_from["secretRef"]["name"]]["stringData"])
    text = config_map["data"]["riskwatch.yaml"]
    (tmp_path / "secrets").mkdir()
    for key, value in file_secret["stringData"].items():
        (tmp_path / "secrets" / key).write_text(value + "\n")
    text = text.replace(mounts["secrets"] + "/", f"{tmp_path / 'secrets'}/")
    text = text.replace("/etc/riskwatch/rules/", f"{REPO / 'rules'}/")
    config = load_config_text(text, tmp_path / "riskwatch.yaml", environ)
    assert config.ha.backend == "kubernetes"
    assert config.ha.k8s_namespace is None  # the pod's own namespace
    assert config.ha.lease.seconds == 10
    assert str(Path(config.state.path).parent) == mounts["state"]
    schemes = {u.reveal().split("://")[0] for r in config.notifications.routes for u in r.urls}
    assert "alertmanager" in schemes
