"""apprise is imported only when a target needs it (riskwatch/notify/deliver.py): the
daemon, the command line and the notification service load without it, and the first
apprise target loads it with riskwatch's ``console://`` registered and only the plugins
its URLs name (riskwatch/notify/plugins.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_the_daemon_loads_without_apprise() -> None:
    out = _run(
        """
        import sys
        import riskwatch.cli.main, riskwatch.daemon.app, riskwatch.daemon.serve
        import riskwatch.notify.service
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("apprise", "requests")))
        """
    )
    assert out == "[]"


def test_the_first_apprise_target_loads_it_with_console_registered() -> None:
    out = _run(
        """
        import sys
        from riskwatch.notify.deliver import _Target
        from riskwatch.secret import Secret
        console = _Target(Secret("console://"), 5.0, None)
        webhook = _Target(Secret("json://127.0.0.1:9/hook"), 5.0, None)
        bogus = _Target(Secret("nosuchscheme://x"), 5.0, None)
        print("apprise" in sys.modules, console.error, webhook.error, bogus.error)
        """
    )
    assert out == "True None None url not understood by apprise"


PLUGINS = """
        import sys
        print(sorted(m.split(".")[2] for m in sys.modules
                     if m.startswith("apprise.plugins.") and m.count(".") == 2))
        """


def test_only_the_plugins_the_urls_name_are_loaded() -> None:
    out = _run(
        """
        from riskwatch.notify.deliver import _Target
        from riskwatch.secret import Secret
        for url in ("console://", "json://127.0.0.1:9/hook", "mailto://u:p@example.com",
                    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"):
            assert _Target(Secret(url), 5.0, None).error is None, url
        """
        + PLUGINS
    )
    assert out == "['base', 'custom_json', 'email', 'slack']"


def test_console_alone_loads_no_plugin_of_apprise() -> None:
    out = _run(
        """
        from riskwatch.notify.deliver import _Target
        from riskwatch.secret import Secret
        assert _Target(Secret("console://"), 5.0, None).error is None
        """
        + PLUGINS
    )
    assert out == "['base']"


def test_a_scheme_no_plugin_source_declares_loads_every_plugin_and_works() -> None:
    # kodi:// is worked out in the plugin's code, not declared: apprise's own full load.
    out = _run(
        """
        import sys
        from riskwatch.notify.deliver import _Target
        from riskwatch.secret import Secret
        json_first = _Target(Secret("json://127.0.0.1:9/hook"), 5.0, None)
        kodi = _Target(Secret("kodi://127.0.0.1"), 5.0, None)
        later = _Target(Secret("discord://1234/abcd"), 5.0, None)
        n = sum(1 for m in sys.modules if m.startswith("apprise.plugins.") and m.count(".") == 2)
        print(json_first.error, kodi.error, later.error, n > 100)
        """
    )
    assert out == "None None None True"


def test_the_sources_name_the_module_of_each_scheme() -> None:
    import apprise  # the test's own process: loading it here is the point
    from apprise.manager_plugins import NotificationManager

    from riskwatch.notify.plugins import _modules_by_scheme

    found = _modules_by_scheme(str(NotificationManager().module_path))  # type: ignore[no-untyped-call]
    assert found["json"] == "custom_json"
    assert found["jsons"] == "custom_json"
    assert found["mailtos"] == "email"
    assert found["form"] == "custom_form"
    assert "kodi" not in found  # declared in code: the full load's case
    assert apprise.Apprise().add("json://127.0.0.1:9/hook")


def test_a_tag_target_loads_the_plugins_of_its_config_file(tmp_path: Path) -> None:
    config = tmp_path / "apprise.txt"
    config.write_text("ops=json://127.0.0.1:9/hook\n")
    out = _run(
        f"""
        from pathlib import Path
        from riskwatch.notify.deliver import _Target
        from riskwatch.secret import Secret
        target = _Target(Secret("tag://ops"), 5.0, Path({str(config)!r}))
        servers = target._apprise().find(tag="ops")
        print(target.error, [s.url().split(":")[0] for s in servers])
        """
    )
    assert out == "None ['json']"


def test_riskwatch_s_own_schemes_are_the_ones_it_registers() -> None:
    # deliver.OWN_SCHEMES is written out: importing console.py registers it with apprise.
    from riskwatch.notify import console, deliver

    assert console.SCHEME in deliver.OWN_SCHEMES
