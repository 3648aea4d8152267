"""Configuration reload: SIGHUP, a changed config or rule file, or ``POST /api/reload``.

A reload re-reads the config file and the rule files it names (its globs resolved
again, so a new rule file is picked up) with the same checks as start-up
(:func:`riskwatch.config.load_config`, :func:`riskwatch.rules.load.load_rule_files`),
off the event loop. Then, on the loop, in one step that no evaluation can interleave:

- valid: every account's core switches to the new rules
  (:meth:`~riskwatch.pipeline.AccountCore.set_rules`: alert states, latches, daily figures
  and window history of kept rules are kept), the notifier to the new routes
  (:meth:`~riskwatch.notify.service.NotifyService.set_routes`), the rule gauges follow
  (series of removed rules drop to 0, new rules appear at 0), and
  ``riskwatch_config_reload_total{result="success"}`` counts one. Connections are not
  touched: no reconnect, no re-authentication.
- invalid: every problem is logged as ``FILE:LINE:COL: message``, the old rules and
  routes stay in force, ``config_reload_total{result="failure"}`` counts one and a
  critical ``ConfigReloadFailed`` alert is notified (a new trip per refused version;
  it resolves at the next successful reload).

Only ``rules`` and ``notifications`` are hot-reloadable. A change to ``accounts``,
``exchange``, ``http``, ``state``, ``actions`` or ``daily`` is logged as needing a
restart and the running values are kept (the reload of rules and routes still
happens). ``actions`` is included because the mode and kill switch are also changed at
run time (``/api/arm``, ``/api/disarm``): a file edit must not silently re-arm.

The file watcher polls the modification time, size and inode of the config file, of
every rule file and of the folders holding them (a file added to a globbed folder
changes the folder) every :data:`POLL_SECONDS`; it reloads once a change has held for
one whole poll, so an editor's half-written file is not read. No dependency needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from riskwatch.clock import Clock
from riskwatch.config import AccountConfig, Config, load_config
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.live import LiveConfig
from riskwatch.errors import ConfigError, Problem
from riskwatch.logredact import install_redaction
from riskwatch.metrics import Metrics
from riskwatch.notify.notice import AlertNotice
from riskwatch.notify.service import NotifyService
from riskwatch.rules.load import load_rule_files
from riskwatch.rules.model import RuleSet

__all__ = [
    "FAILED_ALERT",
    "HOT_SECTIONS",
    "NOTIFY_RESTART_FIELDS",
    "POLL_SECONDS",
    "RESTART_SECTIONS",
    "ReloadOutcome",
    "Reloader",
    "hot_config",
    "read_candidate",
    "restart_sections",
    "signature",
]

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 1.0
"""Seconds between two looks at the files' modification times."""

FAILED_ALERT: Final = "ConfigReloadFailed"
"""The rule name of the notification sent when a new configuration is refused."""

NOTICE_ACCOUNT: Final = "riskwatch"
"""The ``account`` label of :data:`FAILED_ALERT` (it concerns the daemon, no account)."""

HOT_SECTIONS: Final = ("rules", "notifications")
"""Config sections a reload applies."""

RESTART_SECTIONS: Final = ("accounts", "exchange", "http", "state", "actions", "daily")
"""Config sections whose change needs a restart (the running values are kept)."""

NOTIFY_RESTART_FIELDS: Final = (
    "group_interval",
    "inhibit",
    "family_label",
    "delivery_timeout",
    "delivery_attempts",
    "apprise_config",
)
"""``notifications`` settings the notifier reads at start only (the routes reload)."""

MAX_PROBLEMS_NOTIFIED: Final = 10
"""Problems listed in the failure notification (all of them are logged)."""

Signature = dict[str, tuple[int, int, int] | None]
"""Path → ``(mtime_ns, size, inode)``, or None when the path cannot be read."""


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload did. ``at`` is Unix seconds; ``problems`` as ``FILE:LINE:COL: …``."""

    ok: bool
    trigger: str
    at: float
    problems: tuple[str, ...] = ()
    rules: int = 0
    restart_needed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for ``POST /api/reload`` and the status page."""
        return {
            "ok": self.ok,
            "trigger": self.trigger,
            "at": self.at,
            "problems": list(self.problems),
            "rules": self.rules,
            "restart_needed": list(self.restart_needed),
        }


def restart_sections(old: Config, new: Config) -> tuple[str, ...]:
    """What differs between ``old`` and ``new`` and needs a restart: sections of
    :data:`RESTART_SECTIONS`, and ``notifications.X`` for :data:`NOTIFY_RESTART_FIELDS`."""
    out = [s for s in RESTART_SECTIONS if getattr(old, s) != getattr(new, s)]
    on, nn = old.notifications, new.notifications
    out += [
        f"notifications.{f}"
        for f in NOTIFY_RESTART_FIELDS
        if getattr(on, f, None) != getattr(nn, f, None)
    ]
    return tuple(out)


def hot_config(old: Config, new: Config) -> Config:
    """``old`` with the hot-reloadable parts of ``new``: its rule files and routes."""
    kept = {
        f: getattr(old.notifications, f)
        for f in NOTIFY_RESTART_FIELDS
        if hasattr(old.notifications, f)
    }
    notifications = dataclasses.replace(new.notifications, **kept)
    return dataclasses.replace(old, rules=new.rules, notifications=notifications)


def read_candidate(path: str | os.PathLike[str]) -> tuple[Config, RuleSet]:
    """Read and check the config at ``path`` and its rule files (blocking file I/O).

    Raises ``ConfigError`` with every problem of the config, or of the rule files once
    the config itself is valid.
    """
    config = load_config(path)
    return config, load_rule_files(list(config.rules.files))


def watched_paths(config: Config) -> list[Path]:
    """The config file, its rule files and the folders holding them."""
    files = [config.path, *config.rules.files]
    folders = {p.parent for p in config.rules.files}
    return [*files, *sorted(folders)]


def signature(paths: Iterable[Path]) -> Signature:
    """The ``(mtime_ns, size, inode)`` of each path (None when it cannot be read)."""
    out: Signature = {}
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            out[str(p)] = None
        else:
            out[str(p)] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return out


class Reloader:
    """Reloads the configuration of a running daemon into ``live`` and its parts.

    :meth:`reload` is safe to call from a signal handler's task, the HTTP API and the
    watcher at once: reloads are serialised. :attr:`last` describes the latest one.
    """

    def __init__(
        self,
        live: LiveConfig,
        accounts: dict[str, AccountRuntime],
        metrics: Metrics,
        notifier: NotifyService,
        clock: Clock,
    ) -> None:
        self.live = live
        self.accounts = accounts
        self.metrics = metrics
        self.notifier = notifier
        self.clock = clock
        self.last: dict[str, Any] | None = None
        self.failures = 0
        self._lock = asyncio.Lock()
        self._failing: AlertNotice | None = None
        self.interval = POLL_SECONDS
        self.select: Callable[[tuple[AccountConfig, ...]], tuple[AccountConfig, ...]] | None = None
        """The accounts this process watches (``--shard``), applied to a new config."""
        self._seen: Signature = signature(watched_paths(live.config))
        self._requests: set[asyncio.Task[ReloadOutcome]] = set()

    def request(self, trigger: str) -> None:
        """Start a reload in a task (for a signal handler, which cannot await)."""
        task = asyncio.get_running_loop().create_task(self.reload(trigger))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def reload(self, trigger: str) -> ReloadOutcome:
        """Re-read the config and rules; apply them or keep the old ones (module doc)."""
        async with self._lock:
            path = self.live.config.path
            seen = signature(watched_paths(self.live.config))
            log.info("configuration reload (%s): reading %s", trigger, path)
            try:
                config, rules = await asyncio.to_thread(read_candidate, path)
            except ConfigError as exc:
                self._seen = seen
                return self._refuse(trigger, exc.problems)
            except Exception as exc:  # never let a reload take the daemon down
                log.exception("configuration reload failed unexpectedly")
                self._seen = seen
                problem = Problem(str(path), 0, 0, f"reload failed: {type(exc).__name__}")
                return self._refuse(trigger, [problem])
            outcome = self._apply(trigger, config, rules)
            self._seen = signature(watched_paths(self.live.config))
            return outcome

    def _refuse(self, trigger: str, problems: Iterable[Problem]) -> ReloadOutcome:
        now = self.clock.now()
        lines = tuple(str(p) for p in problems) or ("invalid configuration",)
        for line in lines:
            log.error("%s", line)
        log.error(
            "configuration reload (%s) REFUSED: %d problem(s); the old rules and routes stay"
            " in force",
            trigger,
            len(lines),
        )
        self.metrics.config_reload.labels("failure").inc()
        self.failures += 1
        shown = lines[:MAX_PROBLEMS_NOTIFIED]
        more = len(lines) - len(shown)
        notice = AlertNotice(
            rule=FAILED_ALERT,
            account=NOTICE_ACCOUNT,
            symbol=None,
            status="firing",
            severity="critical",
            at=now,
            trip_id=self.failures,
            summary=f"new configuration refused ({len(lines)} problem(s)); old rules kept",
            description="\n".join(shown) + (f"\n… and {more} more" if more else ""),
            since=now,
        )
        self.notifier.enqueue_alert(notice)
        self._failing = notice
        outcome = ReloadOutcome(False, trigger, now, lines, len(self.live.rules.rules))
        self.last = outcome.to_dict()
        return outcome

    def _apply(self, trigger: str, new: Config, rules: RuleSet) -> ReloadOutcome:
        """Switch rules and routes in one loop step (no await: no evaluation between)."""
        live, accounts, notifier = self.live, self.accounts, self.notifier
        now = self.clock.now()
        old = live.config
        if self.select is not None:
            new = dataclasses.replace(new, accounts=self.select(new.accounts))
        restart = restart_sections(old, new)
        for section in restart:
            log.warning(
                "configuration reload: %r changed; it takes effect at the next restart"
                " (running values kept)",
                section,
            )
        old_names = set(live.rules.by_name)
        live.rules = rules
        for rt in accounts.values():
            rt.core.set_rules(rules)
        # riskwatch_alert_state follows the rule states at the next scrape
        # (metrics.AlertStateCollector); counters of new rules appear at 0.
        m = self.metrics
        for r in rules.rules:
            if r.name in old_names:
                continue
            for account in accounts:
                m.alerts_fired.labels(r.name, account, r.severity)
        merged = hot_config(old, new)
        if merged.notifications != old.notifications:
            notifier.set_routes(merged.notifications)
            install_redaction([u.reveal() for rc in merged.notifications.routes for u in rc.urls])
        for name, rt in accounts.items():
            notifier.enqueue_sync(name, rt.core.alerts(), now)
        live.config = merged
        if self._failing is not None:
            notifier.enqueue_alert(dataclasses.replace(self._failing, status="resolved", at=now))
            self._failing = None
        m.config_reload.labels("success").inc()
        added_rules = sorted(set(rules.by_name) - old_names)
        removed_rules = sorted(old_names - set(rules.by_name))
        log.warning(
            "configuration reloaded (%s): %d rule(s) from %d file(s)%s%s; %d route(s)",
            trigger,
            len(rules.rules),
            len(new.rules.files),
            f", added {', '.join(added_rules)}" if added_rules else "",
            f", removed {', '.join(removed_rules)}" if removed_rules else "",
            len(new.notifications.routes),
        )
        outcome = ReloadOutcome(True, trigger, now, (), len(rules.rules), restart)
        self.last = outcome.to_dict()
        return outcome

    async def watch(self) -> None:
        """Poll the watched files every :attr:`interval` seconds; reload on a settled change.

        Runs until cancelled. A change is applied once the files have not changed for
        one whole interval.
        """
        previous: Signature | None = None
        while True:
            await asyncio.sleep(self.interval)
            current = signature(watched_paths(self.live.config))
            if current != self._seen and current == previous and not self._lock.locked():
                try:
                    await self.reload("file change")
                except Exception:  # the watcher must outlive a bug in one reload
                    log.exception("configuration reload on file change failed")
                current = self._seen
            previous = current
