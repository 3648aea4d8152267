"""``riskwatch check``: validate the config and every rule file it names.

Prints each problem as ``FILE:LINE:COL: message`` on stderr (one per line) and
returns 1 if there is any, else prints a one-line summary and returns 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from riskwatch.config import load_config
from riskwatch.errors import ConfigError


def check(config_path: Path) -> int:
    """Validate ``config_path`` (and its rule files); return the exit status."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    rules = 0
    from riskwatch.rules.load import load_rule_files

    if config.rules.files:
        try:
            ruleset = load_rule_files(list(config.rules.files))
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        rules = len(ruleset.rules)
    print(
        f"{config_path}: ok ({len(config.accounts)} account(s), {len(config.rules.files)} rule "
        f"file(s), {rules} rule(s))"
    )
    return 0
