"""The leader lease in etcd, through etcd's v3 JSON gateway (``/v3/...`` over HTTP).

etcd's own election recipe, as its ``concurrency`` package does it: each replica holds
a lease (``/v3/lease/grant`` with the lease period as TTL, kept alive with
``/v3/lease/keepalive``); the leader is the replica whose transaction created the
election key attached to its lease (``/v3/kv/txn``: compare the key's
``create_revision`` to 0, then put). When the leader dies its lease expires, etcd
deletes the key, and the next replica's transaction succeeds. A clean shutdown revokes
the lease (``/v3/lease/revoke``), so the hand-over is immediate.

Endpoints are tried in order; a failed round trip moves to the next one.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from riskwatch.errors import CoordinationError
from riskwatch.ha.base import HaMetrics, LeaseLeadership

__all__ = ["EtcdLeadership"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdLeadership(LeaseLeadership):
    """Leadership held as the etcd election key ``key`` bound to this replica's lease."""

    backend = "etcd"

    def __init__(
        self,
        endpoints: tuple[str, ...],
        key: str,
        lease: float,
        identity: str | None = None,
        metrics: HaMetrics | None = None,
    ) -> None:
        super().__init__(lease, identity, metrics)
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.key = key
        self._lease_id: str | None = None
        self._granted_ttl = lease
        self._session: aiohttp.ClientSession | None = None
        self._endpoint = 0

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=max(0.5, self.lease_seconds / 3))
            self._session = aiohttp.ClientSession(timeout=timeout)
        url = self.endpoints[self._endpoint % len(self.endpoints)] + path
        try:
            async with self._session.post(url, json=body) as resp:
                doc: dict[str, Any] = await resp.json(content_type=None)
                if resp.status != 200 or "error" in doc:
                    msg = f"{path}: HTTP {resp.status}: {doc.get('error') or doc.get('message')}"
                    raise CoordinationError(msg)
                return doc
        except (aiohttp.ClientError, TimeoutError):
            self._endpoint += 1  # the next endpoint next time
            raise

    async def _ensure_lease(self) -> str:
        """This replica's live lease id (granted anew when it expired)."""
        if self._lease_id is not None:
            alive = await self._call("/v3/lease/keepalive", {"ID": self._lease_id})
            ttl = int(alive.get("result", {}).get("TTL", 0) or 0)
            if ttl > 0:
                self._granted_ttl = float(ttl)
                return self._lease_id
            self._lease_id = None  # expired (we were cut off too long): a new one
        granted = await self._call("/v3/lease/grant", {"TTL": max(1, round(self.lease_seconds))})
        self._lease_id = str(granted["ID"])
        self._granted_ttl = float(granted.get("TTL", self.lease_seconds))
        return self._lease_id

    async def step(self) -> float | None:
        lease_id = await self._ensure_lease()
        key = _b64(self.key)
        txn = {
            "compare": [
                {"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}
            ],
            "success": [
                {"request_put": {"key": key, "value": _b64(self.identity), "lease": lease_id}}
            ],
            "failure": [{"request_range": {"key": key}}],
        }
        doc = await self._call("/v3/kv/txn", txn)
        if doc.get("succeeded"):
            return min(self._granted_ttl, self.lease_seconds)
        responses = doc.get("responses") or [{}]
        kvs = responses[0].get("response_range", {}).get("kvs") or []
        holder = kvs[0] if kvs else {}
        if str(holder.get("lease", "")) == lease_id:
            return min(self._granted_ttl, self.lease_seconds)  # ours, kept alive above
        return None

    async def release(self) -> None:
        if self._lease_id is not None:
            await self._call("/v3/lease/revoke", {"ID": self._lease_id})
            self._lease_id = None
        if self._session is not None:
            await self._session.close()
