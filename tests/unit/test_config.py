"""Config loading: good and bad fixtures checked against their exact error text."""

from __future__ import annotations

import json
import pickle
from datetime import time
from pathlib import Path

import pytest

from riskwatch.config import (
    AccountConfig,
    Config,
    check_config,
    load_config,
    load_config_text,
)
from riskwatch.durations import Duration
from riskwatch.errors import ConfigError, Problem, RiskwatchError
from riskwatch.secret import MASK, Secret, redact
from riskwatch.state.daily import DailyConfig
from tests.support.paths import REPO

TESTDATA = REPO / "tests" / "config" / "testdata"
EXAMPLE = REPO / "examples" / "riskwatch.yaml"

# The environment every fixture is loaded with; its secret values must never leak.
ENV = {
    "QFEX_PUBLIC_KEY": "qfex_pub_1",
    "QFEX_SECRET_KEY": "env-secret-desk-a",
    "SLACK_URL": "slack://env-token-aaa/bbb/ccc",
    "EMPTY": "",
}
SECRET_VALUES = [
    "env-secret-desk-a",
    "env-token-aaa",
    "file-secret-desk-b",
    "file-admin-token-xyz",
    "inline-secret-value-both",
    "inline-jwt-value-both",
    "inline-admin-token-both",
    "default-jwt-value",
    "header.payload.signature-minimal",
    "user:pass",
    "short-adm-tok",
    "short-tok-fil",
]

BAD = sorted(p.name for p in TESTDATA.glob("bad-*.yaml"))
GOOD = sorted(p.name for p in TESTDATA.glob("good-*.yaml"))


@pytest.fixture(autouse=True)
def _in_testdata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTDATA)


def _assert_no_secret(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text


def test_fixture_lists_are_not_empty() -> None:
    """The fixture globs find the good and bad files this suite relies on."""
    assert len(BAD) >= 15
    assert len(GOOD) >= 2


@pytest.mark.parametrize("name", BAD)
def test_bad_fixture_reports_exact_problems(name: str) -> None:
    """Each bad fixture yields exactly the problems listed in its .errors file."""
    expected = (TESTDATA / name).with_suffix(".errors").read_text().splitlines()
    config, problems = check_config(name, environ=ENV)
    assert config is None
    assert [str(p) for p in problems] == expected


@pytest.mark.parametrize("name", BAD)
def test_bad_fixture_raises_config_error_without_secrets(name: str) -> None:
    """load_config raises ConfigError carrying every problem and no secret value."""
    with pytest.raises(ConfigError) as info:
        load_config(name, environ=ENV)
    expected = (TESTDATA / name).with_suffix(".errors").read_text().splitlines()
    assert [str(p) for p in info.value.problems] == expected
    assert str(info.value) == "\n".join(expected)
    _assert_no_secret(str(info.value))
    _assert_no_secret(repr(info.value.problems))


@pytest.mark.parametrize("name", GOOD)
def test_good_fixture_loads_without_leaking(name: str) -> None:
    """Each good fixture loads, and neither repr, str nor redacted_dict shows a secret."""
    config = load_config(name, environ=ENV)
    _assert_no_secret(repr(config))
    _assert_no_secret(str(config))
    _assert_no_secret(json.dumps(config.redacted_dict()))


def test_several_problems_reported_at_once() -> None:
    """A file with many mistakes reports all of them, in position order."""
    _, problems = check_config("bad-many.yaml", environ=ENV)
    assert len(problems) == 9
    assert [(p.line, p.col) for p in problems] == sorted((p.line, p.col) for p in problems)


def test_minimal_config_takes_defaults() -> None:
    """Keys left out take the documented defaults."""
    config = load_config("good-minimal.yaml", environ={})
    assert config.exchange.url == "wss://trade.qfex.com"
    assert config.exchange.market_data_url is None
    assert config.exchange.stale_after is None  # follows the measured pulse cadence
    assert config.exchange.initial_stale_after() == 30.0
    assert config.exchange.ping_interval.seconds == 5.0
    assert config.exchange.ping_timeout.seconds == 10.0
    assert config.exchange.allow_insecure is False
    assert config.actions.mode == "dry-run"
    assert config.actions.max_per_account_per_hour == 6
    assert config.actions.kill_switch is False
    assert config.actions.max_attempts == 5
    assert config.actions.retry_window.seconds == 60.0
    assert config.notifications.routes == ()
    assert config.notifications.send_resolved is True
    assert (config.http.host, config.http.port) == ("0.0.0.0", 9464)  # noqa: S104
    assert config.http.admin_token is None
    assert config.state.path == Path("/var/lib/riskwatch/state.db")
    assert config.daily == DailyConfig()
    assert config.daily.reset_time == time(0, 0)
    assert config.daily.tz == "UTC"
    assert config.daily.baseline == "equity"
    assert config.rules.patterns == ()
    assert config.accounts[0].auth == "jwt"


def test_full_config_values() -> None:
    """Every section of the full fixture converts to the typed value written."""
    config = load_config("good-full.yaml", environ=ENV)
    ex = config.exchange
    assert ex.url == "ws://127.0.0.1:8765/"
    assert ex.market_data_url == "ws://127.0.0.1:8766"
    assert ex.stale_after == Duration(90_000)
    assert ex.ping_interval == Duration(500)
    assert ex.allow_insecure is True

    a, b, c = config.accounts
    assert (a.name, a.public_key, a.auth) == ("desk-a", "qfex_pub_1", "hmac")
    assert a.secret_key is not None
    assert a.secret_key.reveal() == "env-secret-desk-a"
    assert a.account_id == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert b.name == "desk_b.2"
    assert b.secret_key is not None
    assert b.secret_key.reveal() == "file-secret-desk-b"
    assert c.jwt is not None
    assert c.jwt.reveal() == "default-jwt-value"
    assert c.account_id is None

    assert config.rules.patterns == ("rules/*.yaml", "rules/a.yaml")
    assert config.rules.files == (TESTDATA / "rules/a.yaml", TESTDATA / "rules/b.yaml")

    act = config.actions
    assert (act.mode, act.max_per_account_per_hour, act.kill_switch) == ("armed", 10, True)
    assert (act.max_attempts, act.retry_window) == (3, Duration(120_000))

    n = config.notifications
    assert n.apprise_config == TESTDATA / "apprise.yml"
    first, second = n.routes
    assert [u.reveal() for u in first.urls] == [
        "slack://env-token-aaa/bbb/ccc",
        "mailtos://user:pass@example.com",
    ]
    assert dict(first.match) == {"severity": "critical", "account": "desk-a"}
    assert first.match_re["rule"].fullmatch("MarginUsageHigh")
    assert first.continue_ is True
    assert first.repeat_interval == Duration(300_000)
    assert first.group_wait == Duration(10_000)  # inherited
    assert first.group_by == ("account", "rule")
    assert first.send_resolved is True
    assert second.repeat_interval == Duration(7_200_000)  # inherited
    assert second.send_resolved is False  # inherited
    assert second.continue_ is False

    assert (config.http.host, config.http.port) == ("127.0.0.1", 0)
    assert config.http.admin_token is not None
    assert config.http.admin_token.reveal() == "file-admin-token-xyz"
    assert config.http.external_url == "https://riskwatch.example.com/"
    assert config.state.path == TESTDATA / "state/riskwatch.db"
    assert config.daily.reset_time == time(17, 0)
    assert config.daily.tz == "America/New_York"
    assert config.daily.baseline == "max"
    assert config.path == TESTDATA / "good-full.yaml"


def test_env_default_applies_when_unset_or_empty() -> None:
    """${VAR:-default} uses the default when VAR is unset or empty, the value otherwise."""
    text = "accounts:\n  - name: ${NAME:-fallback}\n    jwt: x\n"
    assert load_config_text(text, "c.yaml", {}).accounts[0].name == "fallback"
    assert load_config_text(text, "c.yaml", {"NAME": ""}).accounts[0].name == "fallback"
    assert load_config_text(text, "c.yaml", {"NAME": "set"}).accounts[0].name == "set"


def test_dollar_dollar_is_a_literal_dollar() -> None:
    """$$ in a value is a literal $, and is not the start of a variable."""
    text = "accounts:\n  - name: a\n    jwt: 'a$${NOT_A_VAR}b'\n"
    config = load_config_text(text, "c.yaml", {})
    jwt = config.accounts[0].jwt
    assert jwt is not None
    assert jwt.reveal() == "a${NOT_A_VAR}b"


def test_environ_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an environ argument, os.environ supplies the variables."""
    monkeypatch.setenv("RW_TEST_ACCOUNT", "from-env")
    config = load_config_text("accounts: [{name: '${RW_TEST_ACCOUNT}', jwt: x}]", "c.yaml")
    assert config.accounts[0].name == "from-env"


def test_secret_file_trailing_newlines_are_stripped(tmp_path: Path) -> None:
    """A *_file secret loses its trailing newlines, keeps everything else."""
    (tmp_path / "key").write_bytes(b" spaced key \r\n\n")
    cfg = tmp_path / "riskwatch.yaml"
    cfg.write_text("accounts:\n  - name: a\n    public_key: p\n    secret_key_file: key\n")
    secret = load_config(cfg, environ={}).accounts[0].secret_key
    assert secret is not None
    assert secret.reveal() == " spaced key "


def test_secret_file_content_never_printed(tmp_path: Path) -> None:
    """A secret file that is not utf-8 is a problem that does not echo its bytes."""
    (tmp_path / "key").write_bytes(b"\xffsecret-bytes-here")
    cfg = tmp_path / "riskwatch.yaml"
    cfg.write_text("accounts:\n  - name: a\n    public_key: p\n    secret_key_file: key\n")
    _, problems = check_config(cfg, environ={})
    assert [p.message for p in problems] == ["secret_key_file 'key' is not valid utf-8"]
    assert "secret-bytes" not in str(problems[0])


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    """state.path and rule globs resolve against the config file's folder, not the cwd."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text("rules: []\n")
    cfg = tmp_path / "riskwatch.yaml"
    cfg.write_text("accounts: [{name: a, jwt: x}]\nrules: [rules/*.yaml]\nstate: {path: s.db}\n")
    config = load_config(cfg, environ={})
    assert config.rules.files == (tmp_path / "rules" / "r.yaml",)
    assert config.state.path == tmp_path / "s.db"


def test_missing_config_file_is_a_problem_without_position() -> None:
    """An unreadable config file is reported as FILE: message."""
    _, problems = check_config("does-not-exist.yaml", environ={})
    assert [str(p) for p in problems] == [
        "does-not-exist.yaml: cannot read config file: no such file or directory"
    ]


def test_invalid_utf8_config_is_a_positioned_problem(tmp_path: Path) -> None:
    """A config file that is not utf-8 is reported at the first bad byte."""
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"accounts:\n  - name: \xff\n")
    _, problems = check_config(cfg, environ={})
    assert [(p.line, p.col, p.message) for p in problems] == [
        (2, 11, "config file is not valid utf-8")
    ]


def test_exchange_url_must_not_carry_a_jwt() -> None:
    """A jwt in the trade URL is refused without echoing it."""
    text = "exchange: {url: 'wss://trade.qfex.com/?jwt=tok-abc'}\naccounts: [{name: a, jwt: x}]"
    problems = _problems_of(text)
    assert [p.message for p in problems] == [
        "url must not carry a jwt; use the account's jwt or jwt_file"
    ]
    assert "tok-abc" not in str(problems[0])


def _problems_of(text: str) -> tuple[Problem, ...]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml", {})
    return info.value.problems


def test_listen_forms() -> None:
    """listen accepts host:port, [v6]:port and :port (all interfaces)."""
    base = "accounts: [{name: a, jwt: x}]\nhttp: {listen: '%s'}\n"
    cases = {
        "[::1]:80": ("::1", 80),
        ":9464": ("0.0.0.0", 9464),  # noqa: S104
        "localhost:0": ("localhost", 0),
    }
    for listen, expected in cases.items():
        http = load_config_text(base % listen, "c.yaml", {}).http
        assert (http.host, http.port) == expected
        assert http.listen == listen
    with pytest.raises(ConfigError, match="invalid listen address 'h:70000'"):
        load_config_text(base % "h:70000", "c.yaml", {})


def test_empty_admin_token_means_disabled() -> None:
    """An admin_token that expands to the empty string leaves mutations disabled."""
    text = "accounts: [{name: a, jwt: x}]\nhttp: {admin_token: '${TOKEN:-}'}\n"
    assert load_config_text(text, "c.yaml", {}).http.admin_token is None


def test_example_config_loads_without_environment() -> None:
    """examples/riskwatch.yaml loads with an empty environment."""
    config = load_config(EXAMPLE, environ={})
    assert config.accounts[0].name == "desk-a"
    assert config.actions.mode == "dry-run"
    assert len(config.notifications.routes) == 2


def test_example_config_mentions_every_key() -> None:
    """Every key the loader accepts appears in the example (commented or not)."""
    text = EXAMPLE.read_text()
    keys = [
        "url:", "market_data_url:", "stale_after:", "ping_interval:", "ping_timeout:",
        "allow_insecure:", "name:", "public_key:", "secret_key:", "secret_key_file:", "jwt:",
        "jwt_file:", "account_id:", "rules:", "mode:", "max_per_account_per_hour:",
        "kill_switch:", "max_attempts:", "retry_window:", "send_resolved:", "repeat_interval:",
        "group_wait:", "apprise_config:", "routes:", "match:", "match_re:", "urls:",
        "continue:", "group_by:", "listen:", "admin_token:", "admin_token_file:",
        "external_url:", "path:", "reset:", "tz:", "baseline:",
    ]  # fmt: skip
    assert [k for k in keys if k not in text] == []


def test_redacted_dict_masks_secrets_and_is_json() -> None:
    """redacted_dict is JSON-serialisable and shows every secret as the mask."""
    config = load_config("good-full.yaml", environ=ENV)
    d = config.redacted_dict()
    text = json.dumps(d)
    _assert_no_secret(text)
    accounts = d["accounts"]
    assert isinstance(accounts, list)
    assert accounts[0]["secret_key"] == MASK
    assert accounts[0]["public_key"] == "qfex_pub_1"
    assert '"stale_after": "1m30s"' in text
    assert '"continue": true' in text
    assert '"admin_token": "********"' in text


def test_config_secrets_feed_redact() -> None:
    """Config.secrets lists every secret so redact can scrub a log line."""
    config = load_config("good-full.yaml", environ=ENV)
    line = "GET slack://env-token-aaa/bbb/ccc with env-secret-desk-a and file-admin-token-xyz"
    scrubbed = redact(line, config.secrets())
    _assert_no_secret(scrubbed)
    assert scrubbed.count(MASK) == 3


def test_config_is_frozen_and_not_picklable() -> None:
    """A loaded config cannot be mutated, and pickling refuses its secrets."""
    config = load_config("good-full.yaml", environ=ENV)
    with pytest.raises(AttributeError):
        config.actions.mode = "dry-run"  # type: ignore[misc]
    with pytest.raises(TypeError, match="refusing to serialise a secret"):
        pickle.dumps(config)


def test_config_can_be_built_in_code() -> None:
    """Drivers can build a Config directly, with the same defaults as the loader."""
    config = Config(accounts=(AccountConfig(name="a", jwt=Secret("j")),))
    assert config.actions.max_attempts == 5
    assert config.redacted_dict()["accounts"] == [
        {
            "name": "a",
            "public_key": None,
            "secret_key": None,
            "jwt": MASK,
            "account_id": None,
            "jwt_file": None,
            "jwt_command": None,
            "url": None,
        }
    ]


def test_config_error_is_a_riskwatch_error() -> None:
    """ConfigError belongs to the tree and prints one problem per line."""
    err = ConfigError([Problem("a.yaml", 1, 2, "x"), Problem("a.yaml", 0, 0, "y")])
    assert isinstance(err, RiskwatchError)
    assert str(err) == "a.yaml:1:2: x\na.yaml: y"
