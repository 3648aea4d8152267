"""Build the configured :class:`~riskwatch.ha.base.Leadership` (config section ``ha:``)."""

from __future__ import annotations

from riskwatch.config import HaConfig
from riskwatch.ha.base import HaMetrics, Leadership, Standalone

__all__ = ["build_leadership"]


def build_leadership(config: HaConfig, metrics: HaMetrics | None = None) -> Leadership:
    """The backend ``config.backend`` names; :class:`Standalone` for ``none``."""
    lease = config.lease.seconds
    if config.backend == "etcd":
        from riskwatch.ha.etcd import EtcdLeadership

        return EtcdLeadership(
            config.etcd_endpoints, config.etcd_key, lease, config.identity, metrics
        )
    if config.backend == "file":
        from riskwatch.ha.filelock import FileLockLeadership

        assert config.lock_file is not None  # noqa: S101 - the config loader requires it
        return FileLockLeadership(config.lock_file, lease, config.identity, metrics)
    if config.backend == "kubernetes":
        from riskwatch.ha.kubernetes import KubernetesLeadership

        return KubernetesLeadership(
            config.k8s_lease,
            lease,
            namespace=config.k8s_namespace,
            api=config.k8s_api,
            identity=config.identity,
            metrics=metrics,
        )
    leadership = Standalone(config.identity)
    if metrics is not None:
        metrics.leader.labels("none", leadership.identity).set(1)
    return leadership
