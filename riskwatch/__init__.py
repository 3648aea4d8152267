"""riskwatch: risk monitoring, alerting and protection for QFEX accounts.

Importing this package has no side effects; the command line lives in :mod:`riskwatch.cli.main`.
"""

__version__ = "0.1.0"

USER_AGENT = f"riskwatch/{__version__}"
"""The ``User-Agent`` of every request riskwatch makes to the exchange (WebSocket and REST)."""
