"""Simulator scenarios: YAML in, frozen typed values out; price paths as pure functions.

A scenario file (see ``sim/scenarios/*.yaml``)::

    name: crash
    duration: 90s
    symbols:
      - symbol: AAPL-USD
        mark: 200
        tick_size: 0.01
        max_leverage: 20
        path: [{at: 20s, price: 186}, {at: 40s, price: 172}]   # linear keyframes
        generators:
          - {kind: crash, at: 50s, duration: 20s, drop: 0.1, sharpness: 3}
          - {kind: random_walk, sigma: 0.001, step: 1s, seed: 7}
        funding: {interval: 8s, rate: 0.0001}                  # longs pay when > 0
    accounts:
      - name: desk-a
        public_key: qfex_pub_sim_a          # never a secret key: those come from the caller
        account_id: null                    # optional subaccount id selected by auth
        jwt: null                           # optional token accepted by JWT auth
        deposit: 10000
        positions: [{symbol: AAPL-USD, qty: 250, avg: 200, leverage: 10}]
        orders: [{symbol: AAPL-USD, side: SELL, qty: 10, price: 230}]
    faults:
      - {at: 30s, kind: drop_connections}
      - {at: 35s, kind: stall_pulses, seconds: 5}
      - {at: 45s, kind: malformed_frame}
      - {at: 50s, kind: reject_next, command: close_position, error_code: ServerError}
      - {at: 50s, kind: delay_next, command: cancel_all_orders, seconds: 2}

Durations are ``"10s"``, ``"1.5m"``, ``"250ms"`` (the grammar of :mod:`riskwatch.durations`)
or YAML numbers (seconds). Unknown keys
are rejected with the offending key in the message. The mark at scenario time ``t`` is the
keyframe interpolation (starting from ``mark`` at 0, flat after the last keyframe) times
each generator's factor, rounded to ``tick_size``.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from riskwatch import durations
from riskwatch.errors import RiskwatchError

FAULT_KINDS = ("drop_connections", "stall_pulses", "malformed_frame", "reject_next", "delay_next")


class ScenarioError(RiskwatchError, ValueError):
    """A scenario file is invalid; the message names the file, the key and the value."""


def parse_duration(value: object, where: str) -> float:
    """Return ``value`` in seconds: a duration text (:mod:`riskwatch.durations`: ``"10s"``,
    ``"1.5m"``, ``"250ms"``) or a YAML number of seconds. Raise :class:`ScenarioError`
    naming ``where``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return durations.parse_duration(value).seconds
        except ValueError as exc:
            msg = f"{where}: {exc}"
            raise ScenarioError(msg) from None
    msg = f"{where}: {value!r} is not a duration: {durations.GENERAL_HINT}"
    raise ScenarioError(msg)


@dataclass(frozen=True, slots=True)
class Keyframe:
    """The mark reaches ``price`` (USD) at scenario time ``at`` (seconds)."""

    at: float
    price: float


@dataclass(frozen=True, slots=True)
class Generator:
    """A multiplicative price factor.

    ``crash``: from 1 at ``at`` down to ``1 − drop`` at ``at + duration``, accelerating
    (``sharpness`` > 0 shapes the fall exponentially); ``pump`` is the same upwards
    (``1 + drop``). ``random_walk``: a seeded log-normal walk, one step of std ``sigma``
    every ``step`` seconds, linear in between.
    """

    kind: str
    at: float = 0.0
    duration: float = 0.0
    drop: float = 0.0
    sharpness: float = 3.0
    sigma: float = 0.0
    step: float = 1.0
    seed: int = 0

    def factor(self, t: float, walk: list[float]) -> float:
        """Return the factor at scenario time ``t``; ``walk`` caches random-walk levels."""
        if self.kind in ("crash", "pump"):
            if t <= self.at:
                return 1.0
            frac = 1.0 if self.duration <= 0 else min(1.0, (t - self.at) / self.duration)
            if self.sharpness > 0:
                frac = math.expm1(self.sharpness * frac) / math.expm1(self.sharpness)
            sign = -1.0 if self.kind == "crash" else 1.0
            return 1.0 + sign * self.drop * frac
        # random_walk: extend the cached cumulative log-levels as far as needed.
        pos = max(0.0, t) / self.step
        index = int(pos)
        if not walk:
            walk.append(0.0)
        while len(walk) <= index + 1:
            # One generator per step index: the walk does not depend on query order.
            rng = random.Random(f"{self.seed}:{len(walk)}")
            walk.append(walk[-1] + rng.gauss(0.0, self.sigma))
        level = walk[index] + (walk[index + 1] - walk[index]) * (pos - index)
        return math.exp(level)


@dataclass(frozen=True, slots=True)
class Funding:
    """Funding every ``interval`` s of scenario time: payment = −qty × mark × rate."""

    interval: float
    rate: float


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A listed symbol: start mark, price path, tick size, leverage cap, funding, and the
    rest of its reference data (``GET /refdata``, docs/protocol.md §11): lot size,
    minimum quantity, status and ``market_hours`` (as the REST answer writes them)."""

    symbol: str
    mark: float
    tick_size: float = 0.01
    max_leverage: float = 20.0
    path: tuple[Keyframe, ...] = ()
    generators: tuple[Generator, ...] = ()
    funding: Funding | None = None
    lot_size: float = 0.001
    min_quantity: float = 0.001
    status: str = "ACTIVE"
    market_hours: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PositionSpec:
    """A starting position: signed qty, average entry price (USD), leverage."""

    symbol: str
    qty: float
    avg: float
    leverage: float | None = None


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A starting resting LIMIT GTC order."""

    symbol: str
    side: str
    qty: float
    price: float
    client_order_id: str = ""


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A simulated account. ``public_key`` is public; secrets never live in scenarios."""

    name: str
    public_key: str
    deposit: float
    account_id: str | None = None
    jwt: str | None = None
    positions: tuple[PositionSpec, ...] = ()
    orders: tuple[OrderSpec, ...] = ()
    leverage: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault injected at scenario time ``at`` (see ``FAULT_KINDS``)."""

    at: float
    kind: str
    account: str | None = None
    seconds: float = 0.0
    text: str | None = None
    command: str | None = None
    error_code: str | None = None
    order_status: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario. ``duration`` (s of scenario time) is when the story ends."""

    name: str
    duration: float
    symbols: tuple[SymbolSpec, ...]
    accounts: tuple[AccountSpec, ...]
    faults: tuple[FaultSpec, ...] = ()
    description: str = ""
    taker_fee: float = 0.0

    def symbol(self, name: str) -> SymbolSpec:
        """Return the spec of symbol ``name``; KeyError naming it if unlisted."""
        for spec in self.symbols:
            if spec.symbol == name:
                return spec
        msg = f"unknown symbol {name!r}"
        raise KeyError(msg)


class PricePath:
    """The mark of one symbol as a function of scenario time (pure, deterministic)."""

    def __init__(self, spec: SymbolSpec) -> None:
        self._spec = spec
        self._frames = (Keyframe(0.0, spec.mark), *sorted(spec.path, key=lambda k: k.at))
        self._walks: list[list[float]] = [[] for _ in spec.generators]

    def base(self, t: float) -> float:
        """Return the keyframe interpolation at ``t`` (USD)."""
        frames = self._frames
        if t <= frames[0].at:
            return frames[0].price
        for prev, nxt in itertools.pairwise(frames):
            if t <= nxt.at:
                span = nxt.at - prev.at
                frac = 1.0 if span <= 0 else (t - prev.at) / span
                return prev.price + (nxt.price - prev.price) * frac
        return frames[-1].price

    def price(self, t: float) -> float:
        """Return the mark at scenario time ``t``, rounded to the tick size (USD)."""
        value = self.base(t)
        for gen, walk in zip(self._spec.generators, self._walks, strict=True):
            value *= gen.factor(t, walk)
        tick = self._spec.tick_size
        return max(tick, round(round(value / tick) * tick, 10))


# -- loading -----------------------------------------------------------------------


def _mapping(value: object, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"{where}: expected a mapping, got {value!r}"
        raise ScenarioError(msg)
    for key in value:
        if key not in allowed:
            msg = f"{where}: unknown key {key!r}"
            raise ScenarioError(msg)
    for key in sorted(required):
        if key not in value:
            msg = f"{where}: missing key {key!r}"
            raise ScenarioError(msg)
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: expected a number, got {value!r}"
        raise ScenarioError(msg)
    return float(value)


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        msg = f"{where}: expected a list, got {value!r}"
        raise ScenarioError(msg)
    return value


def _generator(raw: object, where: str) -> Generator:
    keys = {"kind", "at", "duration", "drop", "sharpness", "sigma", "step", "seed"}
    m = _mapping(raw, where, keys, {"kind"})
    kind = m["kind"]
    if kind not in ("crash", "pump", "random_walk"):
        msg = f"{where}: unknown generator kind {kind!r}"
        raise ScenarioError(msg)
    step = parse_duration(m.get("step", 1.0), f"{where}.step")
    if step <= 0:
        msg = f"{where}.step: must be positive, got {step!r}"
        raise ScenarioError(msg)
    return Generator(
        kind=kind,
        at=parse_duration(m.get("at", 0), f"{where}.at"),
        duration=parse_duration(m.get("duration", 0), f"{where}.duration"),
        drop=_number(m.get("drop", 0.0), f"{where}.drop"),
        sharpness=_number(m.get("sharpness", 3.0), f"{where}.sharpness"),
        sigma=_number(m.get("sigma", 0.0), f"{where}.sigma"),
        step=step,
        seed=int(_number(m.get("seed", 0), f"{where}.seed")),
    )


def _symbol(raw: object, where: str) -> SymbolSpec:
    keys = {
        "symbol", "mark", "tick_size", "max_leverage", "path", "generators", "funding",
        "lot_size", "min_quantity", "status", "market_hours",
    }  # fmt: skip
    m = _mapping(raw, where, keys, {"symbol", "mark"})
    path = []
    for i, item in enumerate(_list(m.get("path"), f"{where}.path")):
        k = _mapping(item, f"{where}.path[{i}]", {"at", "price"}, {"at", "price"})
        path.append(
            Keyframe(
                parse_duration(k["at"], f"{where}.path[{i}].at"),
                _number(k["price"], f"{where}.path[{i}].price"),
            )
        )
    gens = tuple(
        _generator(g, f"{where}.generators[{i}]")
        for i, g in enumerate(_list(m.get("generators"), f"{where}.generators"))
    )
    funding = None
    if m.get("funding") is not None:
        f = _mapping(m["funding"], f"{where}.funding", {"interval", "rate"}, {"interval", "rate"})
        funding = Funding(
            parse_duration(f["interval"], f"{where}.funding.interval"),
            _number(f["rate"], f"{where}.funding.rate"),
        )
        if funding.interval <= 0:
            msg = f"{where}.funding.interval: must be positive, got {funding.interval!r}"
            raise ScenarioError(msg)
    mark = _number(m["mark"], f"{where}.mark")
    if mark <= 0:
        msg = f"{where}.mark: must be positive, got {mark!r}"
        raise ScenarioError(msg)
    return SymbolSpec(
        symbol=str(m["symbol"]),
        mark=mark,
        tick_size=_number(m.get("tick_size", 0.01), f"{where}.tick_size"),
        max_leverage=_number(m.get("max_leverage", 20), f"{where}.max_leverage"),
        path=tuple(path),
        generators=gens,
        funding=funding,
        lot_size=_number(m.get("lot_size", 0.001), f"{where}.lot_size"),
        min_quantity=_number(m.get("min_quantity", 0.001), f"{where}.min_quantity"),
        status=str(m.get("status", "ACTIVE")),
        market_hours=dict(m["market_hours"]) if isinstance(m.get("market_hours"), dict) else None,
    )


def _account(raw: object, where: str, symbols: set[str]) -> AccountSpec:
    keys = {"name", "public_key", "deposit", "account_id", "jwt", "positions", "orders"}
    keys |= {"leverage"}
    m = _mapping(raw, where, keys, {"name", "public_key", "deposit"})
    if "secret_key" in m or "secret" in m:  # pragma: no cover - rejected as unknown above
        msg = f"{where}: scenarios never contain secret keys"
        raise ScenarioError(msg)
    positions = []
    for i, item in enumerate(_list(m.get("positions"), f"{where}.positions")):
        w = f"{where}.positions[{i}]"
        p = _mapping(item, w, {"symbol", "qty", "avg", "leverage"}, {"symbol", "qty", "avg"})
        if p["symbol"] not in symbols:
            msg = f"{w}.symbol: unknown symbol {p['symbol']!r}"
            raise ScenarioError(msg)
        lev = p.get("leverage")
        positions.append(
            PositionSpec(
                symbol=p["symbol"],
                qty=_number(p["qty"], f"{w}.qty"),
                avg=_number(p["avg"], f"{w}.avg"),
                leverage=None if lev is None else _number(lev, f"{w}.leverage"),
            )
        )
    orders = []
    for i, item in enumerate(_list(m.get("orders"), f"{where}.orders")):
        w = f"{where}.orders[{i}]"
        keys_o = {"symbol", "side", "qty", "price", "client_order_id"}
        o = _mapping(item, w, keys_o, {"symbol", "side", "qty", "price"})
        if o["symbol"] not in symbols:
            msg = f"{w}.symbol: unknown symbol {o['symbol']!r}"
            raise ScenarioError(msg)
        if o["side"] not in ("BUY", "SELL"):
            msg = f"{w}.side: expected BUY or SELL, got {o['side']!r}"
            raise ScenarioError(msg)
        orders.append(
            OrderSpec(
                symbol=o["symbol"],
                side=o["side"],
                qty=_number(o["qty"], f"{w}.qty"),
                price=_number(o["price"], f"{w}.price"),
                client_order_id=str(o.get("client_order_id", "")),
            )
        )
    leverage_raw = m.get("leverage") or {}
    if not isinstance(leverage_raw, dict):
        msg = f"{where}.leverage: expected a mapping symbol -> leverage, got {leverage_raw!r}"
        raise ScenarioError(msg)
    return AccountSpec(
        name=str(m["name"]),
        public_key=str(m["public_key"]),
        deposit=_number(m["deposit"], f"{where}.deposit"),
        account_id=None if m.get("account_id") is None else str(m["account_id"]),
        jwt=None if m.get("jwt") is None else str(m["jwt"]),
        positions=tuple(positions),
        orders=tuple(orders),
        leverage={str(k): _number(v, f"{where}.leverage.{k}") for k, v in leverage_raw.items()},
    )


def _fault(raw: object, where: str, accounts: set[str]) -> FaultSpec:
    keys = {"at", "kind", "account", "seconds", "text", "command", "error_code", "order_status"}
    m = _mapping(raw, where, keys, {"at", "kind"})
    if m["kind"] not in FAULT_KINDS:
        msg = f"{where}.kind: unknown fault {m['kind']!r}"
        raise ScenarioError(msg)
    if m.get("account") is not None and m["account"] not in accounts:
        msg = f"{where}.account: unknown account {m['account']!r}"
        raise ScenarioError(msg)
    if m["kind"] in ("reject_next", "delay_next") and not m.get("command"):
        msg = f"{where}: {m['kind']} needs 'command'"
        raise ScenarioError(msg)
    return FaultSpec(
        at=parse_duration(m["at"], f"{where}.at"),
        kind=m["kind"],
        account=m.get("account"),
        seconds=parse_duration(m.get("seconds", 0), f"{where}.seconds"),
        text=m.get("text"),
        command=m.get("command"),
        error_code=m.get("error_code", "ServerError"),
        order_status=m.get("order_status"),
    )


def parse_scenario(raw: object, source: str = "<scenario>") -> Scenario:
    """Build a :class:`Scenario` from parsed YAML; raise ScenarioError naming the problem."""
    keys = {"name", "description", "duration", "symbols", "accounts", "faults", "taker_fee"}
    m = _mapping(raw, source, keys, {"name", "symbols", "accounts"})
    symbols = tuple(
        _symbol(s, f"{source}: symbols[{i}]")
        for i, s in enumerate(_list(m["symbols"], f"{source}: symbols"))
    )
    names = {s.symbol for s in symbols}
    if not symbols or len(names) != len(symbols):
        msg = f"{source}: symbols must be a non-empty list of distinct symbols"
        raise ScenarioError(msg)
    accounts = tuple(
        _account(a, f"{source}: accounts[{i}]", names)
        for i, a in enumerate(_list(m["accounts"], f"{source}: accounts"))
    )
    acc_names = {a.name for a in accounts}
    if not accounts or len(acc_names) != len(accounts):
        msg = f"{source}: accounts must be a non-empty list of distinct names"
        raise ScenarioError(msg)
    faults = tuple(
        _fault(f, f"{source}: faults[{i}]", acc_names)
        for i, f in enumerate(_list(m.get("faults"), f"{source}: faults"))
    )
    return Scenario(
        name=str(m["name"]),
        description=str(m.get("description", "")),
        duration=parse_duration(m.get("duration", 60), f"{source}: duration"),
        symbols=symbols,
        accounts=accounts,
        faults=tuple(sorted(faults, key=lambda f: f.at)),
        taker_fee=_number(m.get("taker_fee", 0.0), f"{source}: taker_fee"),
    )


def list_scenarios() -> list[str]:
    """Return the names of the scenarios shipped in ``riskwatch/sim/scenarios``."""
    folder = resources.files("riskwatch.sim") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name (``crash``) or any YAML file by path."""
    text: str
    source = str(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in list_scenarios():
        res = resources.files("riskwatch.sim") / "scenarios" / f"{name_or_path}.yaml"
        text = res.read_text(encoding="utf-8")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            known = ", ".join(list_scenarios())
            msg = f"no scenario {source!r} (shipped: {known})"
            raise ScenarioError(msg)
        text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{source}: invalid YAML: {exc}"
        raise ScenarioError(msg) from None
    return parse_scenario(raw, source)
