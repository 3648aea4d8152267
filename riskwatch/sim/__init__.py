"""The QFEX exchange simulator (``riskwatch sim``; docs/simulator.md, docs/protocol.md §15).

Modules: ``ledger`` (account arithmetic), ``exchange`` (sans-I/O matching engine),
``scenario`` (YAML scenarios and price paths), ``authcheck`` and ``ratelimit`` (pure
gateway decisions), ``frames`` (outgoing frame shapes), ``server`` (the two WebSocket
gateways, :class:`~riskwatch.sim.server.Simulator`), ``command`` (the CLI command).
"""
