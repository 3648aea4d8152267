"""The leader lease as a Kubernetes ``Lease`` (``coordination.k8s.io/v1``), as client-go's
leader election keeps it.

The Lease object names its holder (``spec.holderIdentity``), the period
(``leaseDurationSeconds``) and the last renewal (``renewTime``). The holder renews it
every third of the period with a ``PUT`` carrying the ``resourceVersion`` it read, so
two writers can never both succeed (the API server answers 409 Conflict to the second).
Another replica takes the Lease over only when it has seen the same record, unchanged,
for a whole period by its own clock (as client-go does, so that clock skew between
nodes does not matter), or when the Lease is free (no holder).

In a pod it uses the service account: the API server from ``KUBERNETES_SERVICE_HOST``
/ ``KUBERNETES_SERVICE_PORT``, the token (re-read at each request: it rotates) and CA
from ``/var/run/secrets/kubernetes.io/serviceaccount/``, the pod's namespace from the
same folder. The role needs ``get``, ``create`` and ``update`` on
``leases.coordination.k8s.io`` (deploy/kubernetes/ha/).
"""

from __future__ import annotations

import os
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp

from riskwatch.errors import CoordinationError
from riskwatch.ha.base import HaMetrics, LeaseLeadership

__all__ = ["SERVICE_ACCOUNT", "KubernetesLeadership"]

SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _micro_time(t: float) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesLeadership(LeaseLeadership):
    """Leadership held as the Lease ``namespace/name``."""

    backend = "kubernetes"

    def __init__(
        self,
        name: str,
        lease: float,
        *,
        namespace: str | None = None,
        api: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        identity: str | None = None,
        metrics: HaMetrics | None = None,
    ) -> None:
        super().__init__(lease, identity, metrics)
        self.name = name
        self.namespace = namespace or self._pod_namespace()
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.api = (api or (f"https://{host}:{port}" if host else "")).rstrip("/")
        if not self.api:
            msg = "no Kubernetes API server: not in a pod and ha.k8s_api not set"
            raise ValueError(msg)
        self.token_file = token_file or SERVICE_ACCOUNT / "token"
        ca = ca_file or SERVICE_ACCOUNT / "ca.crt"
        self._ssl: ssl.SSLContext | None = None
        if self.api.startswith("https://") and ca.exists():
            self._ssl = ssl.create_default_context(cafile=str(ca))
        self._session: aiohttp.ClientSession | None = None
        # client-go's observation: the record last seen and when (monotonic).
        self._seen_version: str | None = None
        self._seen_at = 0.0

    @staticmethod
    def _pod_namespace() -> str:
        try:
            return (SERVICE_ACCOUNT / "namespace").read_text(encoding="utf-8").strip()
        except OSError:
            return "default"

    @property
    def _url(self) -> str:
        base = f"{self.api}/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return base

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError:
            token = ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _request(
        self, method: str, url: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=max(0.5, self.lease_seconds / 3))
            self._session = aiohttp.ClientSession(timeout=timeout)
        async with self._session.request(
            method, url, json=body, headers=self._headers(), ssl=self._ssl or True
        ) as resp:
            doc: dict[str, Any] = await resp.json(content_type=None)
            if resp.status not in (200, 201, 404, 409):
                msg = f"{method} lease: HTTP {resp.status}: {doc.get('message', '')}"
                raise CoordinationError(msg)
            return resp.status, doc

    def _spec(self, now: float, acquire: bool, transitions: int) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }
        if acquire:
            spec["acquireTime"] = _micro_time(now)
        return spec

    async def step(self) -> float | None:
        now = time.time()
        status, lease = await self._request("GET", f"{self._url}/{self.name}")
        if status == 404:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, acquire=True, transitions=0),
            }
            status, _ = await self._request("POST", self._url, body)
            return self.lease_seconds if status in (200, 201) else None
        spec = lease.get("spec") or {}
        meta = lease.get("metadata") or {}
        holder = spec.get("holderIdentity") or ""
        version = str(meta.get("resourceVersion", ""))
        if version != self._seen_version:
            self._seen_version, self._seen_at = version, time.monotonic()
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            lease["spec"] = {**spec, **self._spec(now, acquire=False, transitions=transitions)}
        else:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
            if holder and time.monotonic() - self._seen_at < duration:
                return None  # held, and renewed within its period as far as we have seen
            lease["spec"] = {**spec, **self._spec(now, acquire=True, transitions=transitions + 1)}
        status, _ = await self._request("PUT", f"{self._url}/{self.name}", lease)
        return self.lease_seconds if status == 200 else None

    async def release(self) -> None:
        """Clear the holder so another replica takes over without waiting a period."""
        status, lease = await self._request("GET", f"{self._url}/{self.name}")
        if status == 200 and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            lease["spec"]["holderIdentity"] = ""
            await self._request("PUT", f"{self._url}/{self.name}", lease)
        if self._session is not None:
            await self._session.close()
