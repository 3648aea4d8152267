"""The daemon's configuration (``riskwatch.yaml``, docs/configuration.md): one frozen, typed tree.

:func:`load_config` reads the file, expands ``${VAR}`` / ``${VAR:-default}`` from the
environment inside every scalar value, reads ``*_file`` secrets, checks every key,
type and cross-field rule, and either returns a :class:`Config` or raises
:class:`~riskwatch.errors.ConfigError` listing *every* problem found, each at its
``FILE:LINE:COL``. ``riskwatch run`` (exit 2), ``riskwatch check`` (exit 1) and
reloads (keep the old config) share it.

Decisions worth knowing:

- unknown keys are problems (with a did-you-mean); booleans are ``true``/``false``
  only; durations are ``500ms``/``1.5s``/``1m30s`` (see :mod:`riskwatch.durations`);
- relative paths (rule globs, ``*_file``, ``state.path``, ``apprise_config``) are
  relative to the config file's folder (docs/design.md#precise-points);
- rule globs follow Prometheus ``rule_files``: a glob that matches nothing is fine,
  a plain path that does not exist is a problem;
- secrets (``secret_key``, ``jwt``, ``admin_token``, notification URLs) become
  :class:`~riskwatch.secret.Secret`; no problem message quotes a value that may be
  secret, and a secret file's content is never printed;
- the exchange URLs must be ``wss://``, except ``ws://`` to a loopback host
  (127.0.0.0/8, ``localhost``, ``::1``: the simulator, an SSH tunnel, a local TLS
  terminator), unless ``exchange.allow_insecure: true``;
- notification route fields left out inherit the ``notifications`` defaults
  (``repeat_interval`` 4h, ``group_wait`` 0s, ``send_resolved`` true).
"""

from __future__ import annotations

import dataclasses
import glob
import ipaddress
import os
import re
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast, get_args
from urllib.parse import urlsplit

from riskwatch.alertmanager_target import is_alertmanager, parse_target
from riskwatch.durations import Duration
from riskwatch.errors import ConfigError, Problem
from riskwatch.secret import MASK, Secret
from riskwatch.state.daily import Baseline, DailyConfig
from riskwatch.yamlsrc import (
    Fields,
    Map,
    Node,
    Problems,
    Reader,
    Scalar,
    Seq,
    parse,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AccountConfig",
    "ActionsConfig",
    "Config",
    "ExchangeConfig",
    "HttpConfig",
    "NotificationsConfig",
    "RetentionConfig",
    "RouteConfig",
    "RuleFiles",
    "StateConfig",
    "UpgradeAuth",
    "check_config",
    "load_config",
    "load_config_text",
]

DEFAULT_CONFIG_PATH = Path("/etc/riskwatch/riskwatch.yaml")

ActionMode = Literal["dry-run", "armed"]
AuthKind = Literal["hmac", "jwt"]
UpgradeAuth = Literal["both", "query", "headers", "none"]
"""Which documented upgrade credentials to send (docs/protocol.md §1)."""
_UPGRADE_AUTH: tuple[UpgradeAuth, ...] = get_args(UpgradeAuth)
Transport = Literal["websockets", "aiohttp"]
"""The WebSocket library under the exchange connections (riskwatch/qfex/transport.py)."""
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)
# docs/protocol.md §4.2: pulses come every 1 s or every 10 s depending on the page read.
SLOWEST_DOCUMENTED_PULSE = 10.0

# Frozen Duration defaults, named so dataclass defaults are plain references.
_ZERO = Duration(0)
_5S = Duration(5_000)
_10S = Duration(10_000)
_60S = Duration(60_000)
_5M = Duration(300_000)
_4H = Duration(4 * 3_600_000)
_30D = Duration(30 * 86_400_000)

_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = re.compile(r"[*?\[]")


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """Where and how to connect (docs/protocol.md §1). Durations are :class:`Duration`.

    ``stale_after`` None (the default) follows each account's measured pulse cadence:
    ``stale_after_pulses`` × cadence (docs/protocol.md §4.2); a value pins it.
    ``upgrade_auth`` says which credentials go on the WebSocket upgrade (§1).
    """

    url: str = "wss://trade.qfex.com"
    market_data_url: str | None = None
    stale_after: Duration | None = None
    stale_after_pulses: float = 3.0
    ping_interval: Duration = _5S
    ping_timeout: Duration = _10S
    allow_insecure: bool = False
    upgrade_auth: UpgradeAuth = "both"
    transport: Transport = "websockets"
    """The WebSocket library: ``websockets`` or ``aiohttp`` (docs/performance.md)."""
    rest_url: str = "https://api.qfex.com"
    refdata_interval: Duration = _5M

    def initial_stale_after(self) -> float:
        """Seconds of silence after which data is stale, before any cadence is measured:
        the pinned ``stale_after``, else ``stale_after_pulses`` × the slowest documented
        cadence (10 s), so that a slow gateway does not flap at start."""
        if self.stale_after is not None:
            return self.stale_after.seconds
        return self.stale_after_pulses * SLOWEST_DOCUMENTED_PULSE


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One monitored account: HMAC (``public_key`` + ``secret_key``) or ``jwt`` credentials.

    ``jwt_file`` is kept so that it is read again before every reconnect;
    ``jwt_command`` (argv) prints a fresh token instead (docs/protocol.md §2.1).
    ``url`` overrides ``exchange.url`` for this account.
    """

    name: str
    public_key: str | None = None
    secret_key: Secret | None = None
    jwt: Secret | None = None
    account_id: str | None = None
    jwt_file: Path | None = None
    jwt_command: tuple[str, ...] | None = None
    url: str | None = None

    @property
    def auth(self) -> AuthKind:
        """``"jwt"`` when a JWT is configured, else ``"hmac"`` (docs/protocol.md §2.1)."""
        return "jwt" if self.jwt is not None else "hmac"


@dataclass(frozen=True, slots=True)
class RuleFiles:
    """The ``rules:`` globs as written, and the rule files they resolve to (sorted, absolute)."""

    patterns: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionsConfig:
    """Protective actions: mode, circuit breaker, kill switch, retry bounds
    (docs/configuration.md; docs/rules.md, "Actions").

    ``max_decision_age``: a command's frame leaves only this long after its decision;
    an older one waits for the account's next fresh pulse (docs/actions.md).
    """

    mode: ActionMode = "dry-run"
    max_per_account_per_hour: int = 6
    kill_switch: bool = False
    max_attempts: int = 5
    retry_window: Duration = _60S
    max_decision_age: Duration = _5S


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One notification route; ``match`` is label equality, ``match_re`` a full regex match."""

    urls: tuple[Secret, ...] = ()
    match: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    match_re: Mapping[str, re.Pattern[str]] = field(default_factory=lambda: MappingProxyType({}))
    continue_: bool = False
    repeat_interval: Duration = _4H
    group_wait: Duration = _ZERO
    group_by: tuple[str, ...] = ()
    send_resolved: bool = True
    name: str | None = None


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    """Routes in order (first match wins unless ``continue_``) and their defaults.

    ``group_interval``: how long a group waits before sending a change after its first
    message; ``inhibit`` / ``family_label``: a firing critical alert inhibits the
    warnings of the same account and rule family (the ``family`` label, or the rule name
    without its severity word); ``delivery_timeout`` / ``delivery_attempts``: per URL.
    """

    routes: tuple[RouteConfig, ...] = ()
    send_resolved: bool = True
    repeat_interval: Duration = _4H
    group_wait: Duration = _ZERO
    apprise_config: Path | None = None
    group_interval: Duration = _5S
    inhibit: bool = True
    family_label: str = "family"
    delivery_timeout: Duration = _10S
    delivery_attempts: int = 3


MIN_TOKEN_LENGTH = 16
"""Shortest admin or read token accepted (docs/http.md, "Authentication")."""

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The Host names allowed by default when the listener is on a loopback address."""


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The HTTP listener and its limits (docs/http.md).

    ``port`` 0 asks the OS for a free port. No ``admin_token``: mutations disabled. A
    ``read_token`` protects the status page and ``/api/*`` (and ``/metrics``,
    ``/healthz``, ``/readyz`` with ``protect_metrics`` / ``protect_health``).
    ``allowed_hosts`` empty: any Host header.
    """

    listen: str = "0.0.0.0:9464"
    host: str = "0.0.0.0"  # noqa: S104 - serving /metrics to Prometheus is the point
    port: int = 9464
    admin_token: Secret | None = None
    external_url: str | None = None
    read_token: Secret | None = None
    protect_metrics: bool = False
    protect_health: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 128
    max_connections_per_client: int = 32
    header_timeout: Duration = _10S
    body_timeout: Duration = _10S
    idle_timeout: Duration = _60S
    admin_requests_per_minute: int = 60
    failed_logins_per_minute: int = 10


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """How long the state database keeps history that would otherwise grow without bound.

    ``notification_log``: delivery attempts older than this are deleted (never younger
    than the longest ``repeat_interval``, which a restart needs to avoid re-notifying).
    ``silences``: a silence is deleted this long after it ended or was expired.
    """

    notification_log: Duration = _30D
    silences: Duration = _30D


@dataclass(frozen=True, slots=True)
class StateConfig:
    """The SQLite state database (absolute path, or ``:memory:``) and its retention.

    ``min_free_mb``: the daemon refuses to start when the state directory's filesystem
    has less free space (MiB); ``warn_free_mb``: below it, the ``StateDiskLow`` alert
    fires (docs/reliability.md, "Storage faults").
    """

    path: Path = Path("/var/lib/riskwatch/state.db")
    retention: RetentionConfig = RetentionConfig()
    min_free_mb: int = 16
    warn_free_mb: int = 256


@dataclass(frozen=True, slots=True)
class HaConfig:
    """High availability (docs/high-availability.md): which coordination service holds the
    leader lease, and the lease period. ``backend`` ``none`` (the default) runs alone as
    the leader. ``identity`` names this replica in the lease (default: host name and pid).

    ``etcd_endpoints``/``etcd_key``: etcd's v3 JSON gateway and the election key;
    ``lock_file``: a file on a volume the replicas share (one host); ``k8s_lease`` /
    ``k8s_namespace`` / ``k8s_api``: the ``coordination.k8s.io/v1`` Lease, its namespace
    (default: the pod's own) and the API server (default: in-cluster).
    """

    backend: str = "none"
    lease: Duration = _10S
    identity: str | None = None
    etcd_endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    etcd_key: str = "/riskwatch/leader"
    lock_file: Path | None = None
    k8s_lease: str = "riskwatch-leader"
    k8s_namespace: str | None = None
    k8s_api: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration. ``path`` is the file it came from (absolute)."""

    accounts: tuple[AccountConfig, ...]
    path: Path = DEFAULT_CONFIG_PATH
    exchange: ExchangeConfig = ExchangeConfig()
    rules: RuleFiles = RuleFiles()
    actions: ActionsConfig = ActionsConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    http: HttpConfig = HttpConfig()
    state: StateConfig = StateConfig()
    daily: DailyConfig = field(default_factory=DailyConfig)
    ha: HaConfig = HaConfig()

    def redacted_dict(self) -> dict[str, object]:
        """A JSON-ready dict of the config for display, every secret as ``"********"``."""
        return cast(dict[str, object], _plain(self))

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret in the config, for log redaction (:func:`riskwatch.secret.redact`)."""
        found: list[Secret] = []
        for account in self.accounts:
            found += [s for s in (account.secret_key, account.jwt) if s is not None]
        for route in self.notifications.routes:
            found += route.urls
        found += [t for t in (self.http.admin_token, self.http.read_token) if t is not None]
        return tuple(found)


def _plain(value: object) -> object:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Duration | Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name.rstrip("_"): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, zoneinfo.ZoneInfo):
        return value.key
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path``.

    ``environ`` (default ``os.environ``) supplies ``${VAR}`` values. Problems are
    reported with ``path`` as written by the caller. Raises ``ConfigError`` with every
    problem, sorted by position.
    """
    config, problems = check_config(path, environ)
    if config is None:
        raise ConfigError(problems)
    return config


def check_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[Config | None, list[Problem]]:
    """Like :func:`load_config`, but return ``(config or None, problems)``; never raises
    ``ConfigError``. ``riskwatch check`` prints the problems and goes on to the rules.
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        return None, [Problem(name, 0, 0, f"cannot read config file: {_reason(exc)}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(name, line, col, "config file is not valid utf-8")]
    return _check_text(text, name, environ)


def load_config_text(
    text: str, path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Config:
    """Validate config ``text`` as if read from ``path`` (for positions and relative paths).

    Raises ``ConfigError`` with every problem.
    """
    config, problems = _check_text(text, os.fspath(path), environ)
    if config is None:
        raise ConfigError(problems)
    return config


def _check_text(
    text: str, name: str, environ: Mapping[str, str] | None
) -> tuple[Config | None, list[Problem]]:
    problems = Problems()
    root = parse(text, name, problems)
    if root is None and not problems:
        problems.add_problem(Problem(name, 0, 0, "config file is empty"))
    if root is None:
        return None, problems.sorted()
    loader = _Loader(
        Reader(problems, environ=os.environ if environ is None else environ),
        Path(name).absolute().parent,
    )
    config = loader.config(root, Path(name).absolute())
    if problems:
        return None, problems.sorted()
    return config, []


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


class _Loader:
    """Walks the document; every method reports problems and returns its best value."""

    def __init__(self, reader: Reader, base: Path) -> None:
        self.r = reader
        self.base = base
        self.insecure = False  # exchange.allow_insecure, also read by account URLs

    def config(self, root: Node, path: Path) -> Config:
        f = self.r.mapping(
            root,
            required={"accounts"},
            optional={
                "exchange",
                "rules",
                "actions",
                "notifications",
                "http",
                "state",
                "daily",
                "ha",
            },
        )
        return Config(
            path=path,
            exchange=self.exchange(f.get("exchange")),
            accounts=self.accounts(f.get("accounts")),
            rules=self.rules(f.get("rules")),
            actions=self.actions(f.get("actions")),
            notifications=self.notifications(f.get("notifications")),
            http=self.http(f.get("http")),
            state=self.state(f.get("state")),
            daily=self.daily(f.get("daily")),
            ha=self.ha(f.get("ha")),
        )

    # -- sections

    def exchange(self, node: Node | None) -> ExchangeConfig:
        r, d = self.r, ExchangeConfig()
        f = r.mapping(
            node,
            optional={
                "url",
                "market_data_url",
                "stale_after",
                "ping_interval",
                "ping_timeout",
                "allow_insecure",
                "stale_after_pulses",
                "upgrade_auth",
                "transport",
                "rest_url",
                "refdata_interval",
            },
        )
        insecure = r.as_bool(f.get("allow_insecure"), d.allow_insecure)
        self.insecure = insecure
        positive = Duration(1)
        pulses = r.as_float(f.get("stale_after_pulses"), d.stale_after_pulses, minimum=1.0)
        upgrade = r.as_enum(f.get("upgrade_auth"), _UPGRADE_AUTH, d.upgrade_auth)
        transport = r.as_enum(f.get("transport"), TRANSPORTS, d.transport)
        return ExchangeConfig(
            url=self._ws_url(f.get("url"), insecure, "url") or d.url,
            market_data_url=self._ws_url(f.get("market_data_url"), insecure, "market_data_url"),
            stale_after=r.as_duration(f.get("stale_after"), minimum=positive)
            if f.get("stale_after") is not None
            else None,
            stale_after_pulses=pulses,
            rest_url=self._http_url(f.get("rest_url"), insecure) or d.rest_url,
            refdata_interval=r.as_duration(
                f.get("refdata_interval"), d.refdata_interval, minimum=Duration(1000)
            ),
            upgrade_auth=next(u for u in _UPGRADE_AUTH if u == upgrade),
            transport="aiohttp" if transport == "aiohttp" else "websockets",
            ping_interval=r.as_duration(f.get("ping_interval"), d.ping_interval, minimum=positive),
            ping_timeout=r.as_duration(f.get("ping_timeout"), d.ping_timeout, minimum=positive),
            allow_insecure=insecure,
        )

    def _ws_url(self, node: Node | None, insecure: bool, key: str) -> str | None:
        text = self.r.as_str(node)
        if node is None or text is None:
            return None
        # The URL is not quoted back: a trade URL may carry ?jwt=… (docs/protocol.md §1).
        parts = urlsplit(text)
        allowed = ("wss", "ws") if insecure or _is_loopback(parts.hostname) else ("wss",)
        if parts.scheme not in allowed:
            hint = "" if insecure or parts.scheme != "ws" else " (ws:// needs allow_insecure: true)"
            found = f"'{parts.scheme}://'" if parts.scheme else "no scheme"
            self.r.problem(node, f"{key} must use wss://{hint}, found {found}")
            return None
        if not parts.hostname:
            self.r.problem(node, f"{key} has no host")
            return None
        if "jwt=" in parts.query:
            self.r.problem(node, f"{key} must not carry a jwt; use the account's jwt or jwt_file")
            return None
        return text

    def _http_url(self, node: Node | None, insecure: bool) -> str | None:
        """The REST base URL (docs/protocol.md §13): https, or http on loopback/insecure."""
        text = self.r.as_str(node)
        if node is None or text is None:
            return None
        parts = urlsplit(text)
        allowed = ("https", "http") if insecure or _is_loopback(parts.hostname) else ("https",)
        if parts.scheme not in allowed or not parts.hostname:
            self.r.problem(node, f"rest_url must be an https:// URL with a host, found '{text}'")
            return None
        return text

    def accounts(self, node: Node | None) -> tuple[AccountConfig, ...]:
        items = self.r.as_list(node)
        if isinstance(node, Seq) and not items:
            self.r.problem(node, "at least one account is required")
        seen: dict[str, Node] = {}
        out: list[AccountConfig] = []
        for item in items:
            account = self.account(item, seen)
            if account is not None:
                out.append(account)
        return tuple(out)

    def account(self, node: Node, seen: dict[str, Node]) -> AccountConfig | None:
        r = self.r
        f = r.mapping(
            node,
            required={"name"},
            optional={
                "public_key",
                "secret_key",
                "secret_key_file",
                "jwt",
                "jwt_file",
                "jwt_command",
                "account_id",
                "url",
            },
        )
        name_node = f.get("name")
        name = r.as_str(name_node)
        if name is not None and name_node is not None:
            if not _ACCOUNT_NAME.fullmatch(name):
                r.problem(
                    name_node,
                    f"invalid account name '{name}': use 1 to 64 letters, digits, '_', '.' or '-'",
                )
            elif name in seen:
                first = seen[name].start
                r.problem(
                    name_node,
                    f"duplicate account name '{name}' (first defined at {first.line}:{first.col})",
                )
            else:
                seen[name] = name_node
        public_key = r.as_str(f.get("public_key"))
        secret_key = self._secret(f, "secret_key")
        jwt = self._secret(f, "jwt")
        has_hmac_secret = "secret_key" in f or "secret_key_file" in f
        has_jwt = "jwt" in f or "jwt_file" in f or "jwt_command" in f
        jwt_command: tuple[str, ...] | None = None
        if "jwt_command" in f:
            argv = r.as_str_list(f.get("jwt_command"))
            if not argv:
                r.problem(_key(f, "jwt_command"), "jwt_command needs a program to run")
            elif "jwt" in f or "jwt_file" in f:
                r.problem(_key(f, "jwt_command"), "jwt_command excludes jwt and jwt_file")
            else:
                jwt_command = tuple(argv)
        jwt_path_node = f.get("jwt_file")
        jwt_text = r.as_str(jwt_path_node) if jwt_path_node is not None else None
        jwt_file = self._path(jwt_text) if jwt_text else None
        account_url = self._ws_url(f.get("url"), self.insecure, "url")
        if f.node is not None:
            if ("public_key" in f or has_hmac_secret) and has_jwt:
                r.problem(f.node, "use either public_key with secret_key (hmac) or jwt, not both")
            elif not has_jwt and not ("public_key" in f or has_hmac_secret):
                r.problem(
                    f.node,
                    "missing credentials: set public_key with secret_key or secret_key_file, "
                    "or jwt or jwt_file",
                )
            elif "public_key" in f and not has_hmac_secret:
                r.problem(_key(f, "public_key"), "public_key needs secret_key or secret_key_file")
            elif has_hmac_secret and "public_key" not in f:
                which = "secret_key" if "secret_key" in f else "secret_key_file"
                r.problem(_key(f, which), f"{which} needs public_key")
        account_id = self._account_id(f.get("account_id"))
        if name is None:
            return None
        return AccountConfig(
            name=name,
            public_key=public_key,
            secret_key=secret_key,
            jwt=jwt,
            account_id=account_id,
            jwt_file=jwt_file,
            jwt_command=jwt_command,
            url=account_url,
        )

    def _account_id(self, node: Node | None) -> str | None:
        text = self.r.as_str(node, allow_empty=True)
        if node is None or not text:
            return None
        try:
            return str(uuid.UUID(text))
        except ValueError:
            self.r.problem(node, f"account_id '{text}' is not a uuid")
            return None

    def _secret(self, f: Fields, key: str, *, empty_is_absent: bool = False) -> Secret | None:
        """``key`` inline or ``key_file`` read from disk; both at once is a problem.

        With ``empty_is_absent``, an inline value that expands to ``""`` means "not set"
        (``admin_token: ${RISKWATCH_ADMIN_TOKEN:-}``); otherwise it is a problem.
        """
        file_key = f"{key}_file"
        inline, from_file = f.get(key), f.get(file_key)
        if inline is not None and from_file is not None:
            self.r.problem(_key(f, file_key), f"{key} and {file_key} are mutually exclusive")
            return None
        if inline is not None:
            value = self.r.as_str(inline, allow_empty=empty_is_absent)
            return Secret(value) if value else None
        if from_file is not None:
            return self._read_secret_file(from_file, file_key)
        return None

    def _read_secret_file(self, node: Node, key: str) -> Secret | None:
        text = self.r.as_str(node)
        if text is None:
            return None
        path = self._path(text)
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.r.problem(node, f"cannot read {key} '{text}': {_reason(exc)}")
            return None
        try:
            value = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            self.r.problem(node, f"{key} '{text}' is not valid utf-8")
            return None
        if not value:
            self.r.problem(node, f"{key} '{text}' is empty")
            return None
        return Secret(value)

    def _path(self, text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else self.base / path

    def rules(self, node: Node | None) -> RuleFiles:
        patterns: list[str] = []
        files: set[Path] = set()
        for item in self.r.as_list(node):
            pattern = self.r.as_str(item)
            if pattern is None:
                continue
            patterns.append(pattern)
            full = self._path(pattern)
            if _GLOB_CHARS.search(pattern):
                matches = glob.glob(str(full), recursive=True)
                files.update(Path(m) for m in matches if Path(m).is_file())
            elif full.is_file():
                files.add(full)
            else:
                self.r.problem(item, f"rule file '{pattern}' not found")
        return RuleFiles(patterns=tuple(patterns), files=tuple(sorted(files)))

    def actions(self, node: Node | None) -> ActionsConfig:
        return read_actions(self.r, node)

    def notifications(self, node: Node | None) -> NotificationsConfig:
        r, d = self.r, NotificationsConfig()
        f = r.mapping(
            node,
            optional={
                "routes",
                "send_resolved",
                "repeat_interval",
                "group_wait",
                "group_interval",
                "apprise_config",
                "inhibit",
                "family_label",
                "delivery_timeout",
                "delivery_attempts",
            },
        )
        attempts_node = f.get("delivery_attempts")
        attempts = r.as_int(attempts_node, d.delivery_attempts)
        if attempts_node is not None and not 1 <= attempts <= 20:
            r.problem(attempts_node, "delivery_attempts must be 1 to 20")
            attempts = d.delivery_attempts
        family_node = f.get("family_label")
        family = r.as_str(family_node, d.family_label)
        if family_node is not None and not _LABEL_NAME.fullmatch(family):
            r.problem(family_node, f"invalid label name '{family}'")
            family = d.family_label
        defaults = NotificationsConfig(
            send_resolved=r.as_bool(f.get("send_resolved"), d.send_resolved),
            repeat_interval=r.as_duration(
                f.get("repeat_interval"), d.repeat_interval, minimum=Duration(1)
            ),
            group_wait=r.as_duration(f.get("group_wait"), d.group_wait),
            group_interval=r.as_duration(
                f.get("group_interval"), d.group_interval, minimum=Duration(1)
            ),
            inhibit=r.as_bool(f.get("inhibit"), d.inhibit),
            family_label=family,
            delivery_timeout=r.as_duration(
                f.get("delivery_timeout"), d.delivery_timeout, minimum=Duration(100)
            ),
            delivery_attempts=attempts,
        )
        routes = tuple(self.route(item, defaults) for item in r.as_list(f.get("routes")))
        apprise_config = None
        apprise_node = f.get("apprise_config")
        apprise_text = r.as_str(apprise_node)
        if apprise_node is not None and apprise_text is not None:
            apprise_config = self._path(apprise_text)
            if not apprise_config.is_file():
                r.problem(apprise_node, f"apprise_config file '{apprise_text}' not found")
        return dataclasses.replace(defaults, routes=routes, apprise_config=apprise_config)

    def route(self, node: Node, defaults: NotificationsConfig) -> RouteConfig:
        r = self.r
        f = r.mapping(
            node,
            required={"urls"},
            optional={
                "name",
                "match",
                "match_re",
                "continue",
                "repeat_interval",
                "group_wait",
                "group_by",
                "send_resolved",
            },
        )
        urls: list[Secret] = []
        for item in r.as_list(f.get("urls")):
            url = r.as_str(item)
            if url is None:
                continue
            if not _URL_SCHEME.match(url):
                # Never quoted back: notification URLs embed tokens.
                r.problem(item, "notification url has no scheme (expected e.g. slack://…)")
                continue
            if is_alertmanager(url):
                try:
                    parse_target(url)
                except ValueError as exc:
                    r.problem(item, str(exc))  # the message never quotes the url
                    continue
            urls.append(Secret(url))
        name = r.as_str(f.get("name"))
        if name is not None and not _ROUTE_NAME.fullmatch(name):
            r.problem(
                f.get("name") or node, f"invalid route name '{name}' (letters, digits, _ . -)"
            )
            name = None
        return RouteConfig(
            name=name,
            urls=tuple(urls),
            match=MappingProxyType(self._labels(f.get("match"))),
            match_re=MappingProxyType(self._label_regexes(f.get("match_re"))),
            continue_=r.as_bool(f.get("continue"), False),
            repeat_interval=r.as_duration(
                f.get("repeat_interval"), defaults.repeat_interval, minimum=Duration(1)
            ),
            group_wait=r.as_duration(f.get("group_wait"), defaults.group_wait),
            group_by=tuple(self._label_names(f.get("group_by"))),
            send_resolved=r.as_bool(f.get("send_resolved"), defaults.send_resolved),
        )

    def _label_key_ok(self, key: Scalar) -> bool:
        if _LABEL_NAME.fullmatch(key.value):
            return True
        self.r.problem(key, f"invalid label name '{key.value}'")
        return False

    def _labels(self, node: Node | None) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self._label_pairs(node):
            text = self.r.as_str(value, allow_empty=True)
            if text is not None:
                out[key.value] = text
        return out

    def _label_regexes(self, node: Node | None) -> dict[str, re.Pattern[str]]:
        out: dict[str, re.Pattern[str]] = {}
        for key, value in self._label_pairs(node):
            text = self.r.as_str(value, allow_empty=True)
            if text is None:
                continue
            try:
                out[key.value] = re.compile(text)
            except re.error as exc:
                message = f"invalid regular expression: {exc.msg}"
                if isinstance(value, Scalar) and exc.pos is not None and text == value.value:
                    self.r.problem_in(value, exc.pos, message)
                else:
                    self.r.problem(value, message)
        return out

    def _label_pairs(self, node: Node | None) -> list[tuple[Scalar, Node]]:
        if node is None:
            return []
        if not isinstance(node, Map):
            self.r.problem(node, f"expected a mapping of labels, found {node.kind}")
            return []
        return [(k, v) for k, v in node.pairs if self._label_key_ok(k)]

    def _label_names(self, node: Node | None) -> list[str]:
        out: list[str] = []
        for item in self.r.as_list(node):
            name = self.r.as_str(item)
            if name is None:
                continue
            if _LABEL_NAME.fullmatch(name):
                out.append(name)
            else:
                self.r.problem(item, f"invalid label name '{name}'")
        return out

    def http(self, node: Node | None) -> HttpConfig:
        r, d = self.r, HttpConfig()
        f = r.mapping(
            node,
            optional={
                "listen",
                "admin_token",
                "admin_token_file",
                "external_url",
                "read_token",
                "read_token_file",
                "protect_metrics",
                "protect_health",
                "allowed_hosts",
                "max_connections",
                "max_connections_per_client",
                "header_timeout",
                "body_timeout",
                "idle_timeout",
                "admin_requests_per_minute",
                "failed_logins_per_minute",
            },
        )
        listen, host, port = d.listen, d.host, d.port
        listen_node = f.get("listen")
        text = r.as_str(listen_node)
        if listen_node is not None and text is not None:
            parsed = _parse_listen(text)
            if parsed is None:
                r.problem(
                    listen_node,
                    f"invalid listen address '{text}': write host:port, e.g. 0.0.0.0:9464",
                )
            else:
                listen, (host, port) = text, parsed
        external_node = f.get("external_url")
        external = r.as_str(external_node, allow_empty=True) or None
        if external_node is not None and external is not None:
            parts = urlsplit(external)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                r.problem(external_node, "external_url must be an http:// or https:// url")
                external = None
        second = Duration(1_000)
        read_token = self._token(f, "read_token")
        protect = {
            key: r.as_bool(f.get(key), getattr(d, key))
            for key in ("protect_metrics", "protect_health")
        }
        token_given = f.get("read_token") is not None or f.get("read_token_file") is not None
        for key, on in protect.items():
            node = f.get(key)
            if on and node is not None and not token_given:
                r.problem(node, f"{key} needs a read_token (or read_token_file)")
        return HttpConfig(
            listen=listen,
            host=host,
            port=port,
            admin_token=self._token(f, "admin_token"),
            external_url=external,
            read_token=read_token,
            protect_metrics=protect["protect_metrics"],
            protect_health=protect["protect_health"],
            allowed_hosts=self.allowed_hosts(f.get("allowed_hosts"), host),
            max_connections=r.as_int(
                f.get("max_connections"), d.max_connections, minimum=1, maximum=10_000
            ),
            max_connections_per_client=r.as_int(
                f.get("max_connections_per_client"),
                d.max_connections_per_client,
                minimum=1,
                maximum=10_000,
            ),
            header_timeout=r.as_duration(f.get("header_timeout"), d.header_timeout, minimum=second),
            body_timeout=r.as_duration(f.get("body_timeout"), d.body_timeout, minimum=second),
            idle_timeout=r.as_duration(f.get("idle_timeout"), d.idle_timeout, minimum=second),
            admin_requests_per_minute=r.as_int(
                f.get("admin_requests_per_minute"), d.admin_requests_per_minute, minimum=1
            ),
            failed_logins_per_minute=r.as_int(
                f.get("failed_logins_per_minute"), d.failed_logins_per_minute, minimum=1
            ),
        )

    def _token(self, f: Fields, key: str) -> Secret | None:
        """An HTTP token (``key`` or ``key_file``) of at least :data:`MIN_TOKEN_LENGTH`."""
        token = self._secret(f, key, empty_is_absent=True)
        if token is not None and len(token.reveal()) < MIN_TOKEN_LENGTH:
            node = f.get(key) or f.get(f"{key}_file")
            assert node is not None  # noqa: S101 - a token was read from one of them
            self.r.problem(
                node,
                f"{key} is too short ({len(token.reveal())} characters): use at least"
                f" {MIN_TOKEN_LENGTH}, e.g. the output of 'openssl rand -hex 24'",
            )
            return None
        return token

    def allowed_hosts(self, node: Node | None, listen_host: str) -> tuple[str, ...]:
        """Host names the HTTP API answers to (docs/http.md, "DNS rebinding").

        Default: the loopback names when listening on a loopback address, else any.
        ``["*"]`` (or an empty list) allows any Host.
        """
        if node is None:
            return LOOPBACK_HOSTS if _is_loopback(listen_host) else ()
        out: list[str] = []
        for item in self.r.as_list(node):
            name = self.r.as_str(item)
            if name is None:
                continue
            name = name.strip().lower()
            if name == "*":
                return ()
            if name.startswith("[") and name.endswith("]"):
                name = name[1:-1]
            if not re.fullmatch(r"[a-z0-9_.:-]+", name) or (":" in name and not _is_ip(name)):
                self.r.problem(
                    item,
                    f"invalid host name '{name}': write a name or an address without a port,"
                    " e.g. riskwatch.internal or 10.0.0.5",
                )
                continue
            out.append(name)
        return tuple(out)

    def state(self, node: Node | None) -> StateConfig:
        r, d = self.r, StateConfig()
        f = r.mapping(node, optional={"path", "retention", "min_free_mb", "warn_free_mb"})
        text = r.as_str(f.get("path"))
        path = d.path if text is None else Path(text) if text == ":memory:" else self._path(text)
        return StateConfig(
            path=path,
            retention=self.retention(f.get("retention")),
            min_free_mb=r.as_int(f.get("min_free_mb"), d.min_free_mb, minimum=0),
            warn_free_mb=r.as_int(f.get("warn_free_mb"), d.warn_free_mb, minimum=0),
        )

    def retention(self, node: Node | None) -> RetentionConfig:
        r, d = self.r, RetentionConfig()
        f = r.mapping(node, optional={"notification_log", "silences"})
        hour = Duration(3_600_000)
        return RetentionConfig(
            notification_log=r.as_duration(
                f.get("notification_log"), d.notification_log, minimum=hour
            ),
            silences=r.as_duration(f.get("silences"), d.silences, minimum=hour),
        )

    def daily(self, node: Node | None) -> DailyConfig:
        return read_daily(self.r, node)

    def ha(self, node: Node | None) -> HaConfig:
        r, d = self.r, HaConfig()
        f = r.mapping(
            node,
            optional={
                "backend",
                "lease",
                "identity",
                "etcd_endpoints",
                "etcd_key",
                "lock_file",
                "k8s_lease",
                "k8s_namespace",
                "k8s_api",
            },
        )
        backend = r.as_enum(f.get("backend"), ("none", "etcd", "file", "kubernetes"), d.backend)
        endpoints = tuple(r.as_str_list(f.get("etcd_endpoints"))) or d.etcd_endpoints
        for item in r.as_list(f.get("etcd_endpoints")):
            text = r.as_str(item)
            if text is not None and urlsplit(text).scheme not in ("http", "https"):
                r.problem(item, "etcd endpoint must be an http:// or https:// URL")
        lock_node = f.get("lock_file")
        lock_text = r.as_str(lock_node)
        lock_file = self._path(lock_text) if lock_text else None
        at = f.get("backend") or node
        if backend == "file" and lock_file is None and at is not None:
            r.problem(
                at, "ha backend file needs lock_file (a file on a volume shared by the replicas)"
            )
        return HaConfig(
            backend=backend,
            lease=r.as_duration(f.get("lease"), d.lease, minimum=Duration(1_000)),
            identity=r.as_str(f.get("identity")),
            etcd_endpoints=endpoints,
            etcd_key=r.as_str(f.get("etcd_key"), d.etcd_key),
            lock_file=lock_file,
            k8s_lease=r.as_str(f.get("k8s_lease"), d.k8s_lease),
            k8s_namespace=r.as_str(f.get("k8s_namespace")),
            k8s_api=r.as_str(f.get("k8s_api")),
        )


def read_actions(r: Reader, node: Node | None) -> ActionsConfig:
    """The ``actions`` section (config file or rule test file): mode, breaker, retries."""
    d = ActionsConfig()
    f = r.mapping(
        node,
        optional={
            "mode",
            "max_per_account_per_hour",
            "kill_switch",
            "max_attempts",
            "retry_window",
            "max_decision_age",
        },
    )
    mode = r.as_enum(f.get("mode"), ("dry-run", "armed"), d.mode)
    return ActionsConfig(
        mode=cast(ActionMode, mode),
        max_per_account_per_hour=r.as_int(
            f.get("max_per_account_per_hour"), d.max_per_account_per_hour, minimum=1
        ),
        kill_switch=r.as_bool(f.get("kill_switch"), d.kill_switch),
        max_attempts=r.as_int(f.get("max_attempts"), d.max_attempts, minimum=1, maximum=100),
        retry_window=r.as_duration(f.get("retry_window"), d.retry_window, minimum=Duration(1)),
        max_decision_age=r.as_duration(
            f.get("max_decision_age"), d.max_decision_age, minimum=Duration(100)
        ),
    )


def read_daily(r: Reader, node: Node | None) -> DailyConfig:
    """The ``daily`` section (config file or rule test file): reset time, zone, baseline."""
    d = DailyConfig()
    f = r.mapping(node, optional={"reset", "tz", "baseline"})
    baseline = r.as_enum(f.get("baseline"), ("equity", "balance", "max"), d.baseline)
    reset = r.as_time_of_day(f.get("reset"))
    tz = r.as_timezone(f.get("tz"))
    return DailyConfig(
        reset=reset.strftime("%H:%M") if reset is not None else d.reset,
        tz=tz.key if tz is not None else d.tz,
        baseline=cast(Baseline, baseline),
    )


def _key(f: Fields, key: str) -> Scalar:
    node = f.key(key)
    assert node is not None  # noqa: S101 - only called for keys known to be present
    return node


def _is_loopback(host: str | None) -> bool:
    """True for a host that never leaves this machine (``ws://`` is safe there)."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _parse_listen(text: str) -> tuple[str, int] | None:
    """``host:port`` or ``[v6]:port`` -> (host, port); an empty host means all interfaces."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9_.-]*):(\d{1,5})", text)
    if m is None:
        return None
    host = m.group(1) if m.group(1) is not None else m.group(3)
    port = int(m.group(2) if m.group(2) is not None else m.group(4))
    if port > 65535:
        return None
    return (host or "0.0.0.0", port)  # noqa: S104 - an explicit ":9464" means every interface
