"""The riskwatch exception tree, and the positioned ``Problem`` that config errors carry.

::

    RiskwatchError                  base of everything riskwatch raises on purpose
    ├── ConfigError                 bad config or rule files (carries every Problem found)
    ├── ExpressionInvalid           a rule expression failed the checker (rules/expr/errors.py)
    ├── ScenarioError               a simulator scenario file is invalid (sim/scenario.py)
    ├── InvalidParams               a simulated command's params are unusable (sim/exchange.py)
    ├── CommandRefused              the daemon will not carry out an operator command (web/view.py)
    ├── TokenError                  a JWT could not be read or printed (qfex/credentials.py)
    ├── DeliveryAttemptFailed       one notification delivery attempt failed (notify/deliver.py)
    ├── StateStoreError             the state database is corrupt, foreign or unwritable
    │   └── DuplicateRecordError    the record is already stored (store/errors.py)
    │       └── DuplicateActionError    the action intent is already in the audit log
    ├── ExchangeLinkError           the WebSocket to the exchange failed (also a ConnectionError)
    │   ├── UpgradeRefused          the upgrade was answered with an HTTP status (qfex/transport.py)
    │   └── SocketClosed            the socket closed abnormally (qfex/transport.py)
    ├── CoordinationError           the leader lease's service refused a request (ha/*.py)
    └── SyntaxStop                  internal to the expression parser (rules/expr/parser.py)

Every class is raised somewhere, and every exception class riskwatch defines is in this
tree (``tests/unit/test_errors.py`` holds both, and this picture, to the code). Each class
docstring says what happens when it is raised. ``ExpressionInvalid`` and
``ScenarioError`` are also ``ValueError``: they are bad values handed to a function.

A single malformed frame is *not* an exception: the session turns it into a
``BadMessage`` event that is counted and skipped (docs/reliability.md). Network failures
stay ``OSError`` / ``TimeoutError`` / ``ConnectionError`` (a command written to an
account that is not connected): the client retries them with backoff, the action
executor records the command as not sent. Programming errors (a wrong argument) are
Python's own ``ValueError`` / ``TypeError``.

Messages are lowercase, have no trailing period, name the offending value, and never
contain a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "Problem",
    "RiskwatchError",
    "StateStoreError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a file, at a 1-based line and column.

    ``str(problem)`` is ``FILE:LINE:COL: message`` (README.md#commands, ``riskwatch check``).
    ``line == 0`` means the problem concerns the file as a whole (it could not be read,
    or is empty); it is then printed as ``FILE: message``. The message never contains a
    secret value.
    """

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class RiskwatchError(Exception):
    """Base class of every error riskwatch raises deliberately.

    Catching it at the top of a command turns an expected failure into a clean exit
    status; anything else escaping is a bug and keeps its traceback.
    """


class ConfigError(RiskwatchError):
    """The config or a rule file is invalid; ``problems`` lists every problem found.

    At start-up (``riskwatch run``) the daemon prints each problem to stderr as
    ``FILE:LINE:COL: message`` and exits with status 2; ``riskwatch check`` prints them
    and exits 1. On a reload (SIGHUP or file change) the daemon keeps the old config and
    rules, logs the problems, counts ``config_reload_total{result="failure"}`` and
    notifies.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")


class StateStoreError(RiskwatchError):
    """The state database is corrupt, written by something else, of a newer schema,
    or cannot be written.

    The daemon refuses to start (exit status 2) rather than run without its latches,
    peaks and audit log: starting blank could repeat an action already sent. The
    operator must repair, move or delete the file.
    """


class ExchangeLinkError(RiskwatchError, ConnectionError):
    """The WebSocket to the exchange failed, whichever library carries it
    (riskwatch/qfex/transport.py).

    The connection loop (riskwatch/qfex/client.py) logs it, shows it in the account's
    status and ``/readyz``, and connects again with backoff; an upgrade refused with
    401 or 403 counts as an authentication rejection (retried on the slow schedule).
    """


class CoordinationError(RiskwatchError):
    """The coordination service holding the leader lease (etcd, the Kubernetes API)
    answered a lease request with an error.

    The lease loop (riskwatch/ha/base.py) counts it in ``riskwatch_ha_errors_total``,
    logs it and tries again; leadership ends when the lease runs out.
    """
