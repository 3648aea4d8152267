"""The riskwatch exception tree, and the positioned ``Problem`` that config errors carry.

::

    RiskwatchError                 base of everything riskwatch raises on purpose
    ├── ConfigError                bad config or rule files (carries every Problem found)
    ├── ProtocolError              the exchange broke the QFEX protocol on a connection
    │   └── AuthenticationError    the exchange refused our credentials
    ├── ActionError                a protective action could not be sent or confirmed
    ├── NotificationError          a notification could not be delivered
    └── StateStoreError            the state database is corrupt, foreign or unwritable

Each class docstring says what the daemon does when it is raised. A single malformed
frame is *not* an exception: the session turns it into a ``BadMessage`` event that is
counted and skipped (docs/reliability.md). Network failures stay ``OSError`` /
``TimeoutError``: the client retries them with backoff.

Messages are lowercase, have no trailing period, name the offending value, and never
contain a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ActionError",
    "AuthenticationError",
    "ConfigError",
    "NotificationError",
    "Problem",
    "ProtocolError",
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


class ProtocolError(RiskwatchError):
    """The exchange sent something that breaks the session's state machine.

    Examples: a reply to a command we never sent, a subscription the server refuses
    for good. The client logs it with a (secret-free) sample, counts it, closes the
    connection and reconnects with backoff; the account's data goes stale meanwhile, so
    the built-in ``DataStale`` alert covers a persistent fault.
    """


class AuthenticationError(ProtocolError):
    """The exchange rejected the account's credentials (``authenticated: false`` or an
    auth ``err``).

    Not fatal (docs/design.md#precise-points): reported on every attempt, retried on the slow end of
    the backoff (at least 30 s), ``/readyz`` unready and ``riskwatch_connected`` 0 for
    that account meanwhile.
    """


class ActionError(RiskwatchError):
    """A protective action was refused by the exchange, or never confirmed.

    The executor retries it (a new attempt, a new ``client_order_id``) up to
    ``actions.max_attempts`` times within ``actions.retry_window``, then records it as
    ``failed`` in the audit log, counts ``actions_total{result="failed"}`` and sends a
    critical ``FAILED`` escalation. It never stops evaluation.
    """


class NotificationError(RiskwatchError):
    """A notification could not be delivered to one URL.

    The delivery worker retries with backoff, counts
    ``notifications_total{result="failed"}`` once it gives up, and never delays
    evaluation or actions. Other URLs of the same route are unaffected.
    """


class StateStoreError(RiskwatchError):
    """The state database is corrupt, written by something else, of a newer schema,
    or cannot be written.

    The daemon refuses to start (exit status 2) rather than run without its latches,
    peaks and audit log: starting blank could repeat an action already sent. The
    operator must repair, move or delete the file.
    """
