"""The ``http:`` section: listener limits, tokens, Host check (docs/http.md).

Bad values are covered, with their exact ``FILE:LINE:COL`` messages, by the
``tests/config/testdata/bad-http*.yaml`` fixtures (tests/unit/test_config.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from riskwatch.config import LOOPBACK_HOSTS, MIN_TOKEN_LENGTH, HttpConfig, load_config_text
from riskwatch.errors import ConfigError

ACCOUNTS = "accounts: [{name: a, jwt: header.payload.signature}]\n"
TOKEN = "t" * MIN_TOKEN_LENGTH


def _http(body: str) -> HttpConfig:
    return load_config_text(ACCOUNTS + "http:\n" + body, "c.yaml", {}).http


def test_defaults_hold_every_limit() -> None:
    """Without settings every limit is on with its documented default."""
    http = load_config_text(ACCOUNTS, "c.yaml", {}).http
    assert http.max_connections == 128
    assert http.max_connections_per_client == 32
    assert http.header_timeout.seconds == 10.0
    assert http.body_timeout.seconds == 10.0
    assert http.idle_timeout.seconds == 60.0
    assert http.admin_requests_per_minute == 60
    assert http.failed_logins_per_minute == 10
    assert http.read_token is None
    assert not http.protect_metrics
    assert not http.protect_health
    assert http.allowed_hosts == ()  # listening on every interface: any Host


def test_every_setting_is_read() -> None:
    """Each key of the section reaches the config."""
    http = _http(
        f"  read_token: {TOKEN}\n  protect_metrics: true\n  protect_health: true\n"
        "  allowed_hosts: [RiskWatch.Internal, '[::1]', 10.0.0.5]\n"
        "  max_connections: 7\n  max_connections_per_client: 3\n"
        "  header_timeout: 2s\n  body_timeout: 3s\n  idle_timeout: 4s\n"
        "  admin_requests_per_minute: 5\n  failed_logins_per_minute: 6\n"
    )
    assert http.read_token is not None
    assert http.read_token.reveal() == TOKEN
    assert http.protect_metrics
    assert http.protect_health
    assert http.allowed_hosts == ("riskwatch.internal", "::1", "10.0.0.5")
    assert (http.max_connections, http.max_connections_per_client) == (7, 3)
    assert [d.seconds for d in (http.header_timeout, http.body_timeout, http.idle_timeout)] == [
        2.0,
        3.0,
        4.0,
    ]
    assert (http.admin_requests_per_minute, http.failed_logins_per_minute) == (5, 6)


def test_loopback_listener_answers_loopback_names_only_by_default() -> None:
    """On 127.0.0.1 the Host check is on by default; ``*`` turns it off."""
    assert _http("  listen: 127.0.0.1:9464\n").allowed_hosts == LOOPBACK_HOSTS
    assert _http("  listen: '[::1]:9464'\n").allowed_hosts == LOOPBACK_HOSTS
    assert _http("  listen: 127.0.0.1:9464\n  allowed_hosts: ['*']\n").allowed_hosts == ()
    assert _http("  listen: 0.0.0.0:9464\n").allowed_hosts == ()


@pytest.mark.parametrize("key", ["admin_token", "read_token"])
def test_a_token_of_15_characters_is_refused_and_16_accepted(key: str) -> None:
    """Tokens shorter than 16 characters are a config error at the token's position."""
    with pytest.raises(ConfigError) as err:
        _http(f"  {key}: {'x' * (MIN_TOKEN_LENGTH - 1)}\n")
    assert [str(p) for p in err.value.problems] == [
        f"c.yaml:3:{len(key) + 5}: {key} is too short (15 characters): use at least 16,"
        " e.g. the output of 'openssl rand -hex 24'"
    ]
    assert "x" * 15 not in str(err.value)
    token = getattr(_http(f"  {key}: {'x' * MIN_TOKEN_LENGTH}\n"), key)
    assert token is not None


def test_short_token_file_is_refused(tmp_path: Path) -> None:
    """A token read from a file is held to the same length."""
    (tmp_path / "t").write_text("abc\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        _http(f"  admin_token_file: {tmp_path / 't'}\n")
    assert "admin_token is too short (3 characters)" in str(err.value.problems[0])


def test_tokens_are_secrets_of_the_config() -> None:
    """The read token is redacted like the admin token."""
    config = load_config_text(ACCOUNTS + f"http:\n  read_token: {TOKEN}\n", "c.yaml", {})
    assert any(s.reveal() == TOKEN for s in config.secrets())
    assert TOKEN not in str(config.redacted_dict())
