"""High availability: replicas that watch the same accounts, one of them the leader.

Every replica evaluates the rules and may send the protections that are safe to repeat
(``close_position``, ``cancel_all_orders``); ``reduce_position``, ``set_leverage`` and
notifications come from the leader only (:mod:`riskwatch.ha.gate`). Leadership is a
lease in an existing coordination service, one module per backend, all behind
:class:`~riskwatch.ha.base.Leadership` (docs/high-availability.md).
"""
