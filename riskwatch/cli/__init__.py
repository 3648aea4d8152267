"""The ``riskwatch`` command line: every subcommand lives in this package.

``main`` (``cli/main.py``) parses the arguments and hands each subcommand to its module:
``check``, ``notify_test``, ``control`` (arm, disarm, latch-reset, actions), ``silence``,
``demo`` and ``sim``; ``run`` goes to ``riskwatch.daemon``, ``replay`` and ``test`` to
``riskwatch.offline``. The operator commands share one HTTP client (``apiclient.py``).
"""

from riskwatch.cli.main import main

__all__ = ["main"]
