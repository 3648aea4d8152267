"""Report known-vulnerable pins in lock files (docs/supply-chain.md).

    python scripts/audit_locks.py requirements/runtime.lock requirements/dev.lock

Runs pip-audit on each lock file (hashed pins, no resolution, nothing installed) and
prints one line per finding. Exit status:

- 1 when a pin has a known vulnerability (each is listed with its advisory id and the
  versions that fix it): bump the floor in pyproject.toml and run ``make lock``;
- 0 when no pin is known to be vulnerable;
- 0, with a ``NOT AUDITED`` report, when the vulnerability database could not be
  reached (pip-audit then skips every pin: a network without PyPI's JSON API or
  OSV). Saying "no known vulnerabilities" in that case would be a lie, so the
  report says how many pins went unchecked and why;
- 2 when pip-audit itself fails for another reason (a malformed lock file, say).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT_SECONDS = 15
NETWORK_ERRORS = (
    "ConnectionError",
    "NameResolutionError",
    "Max retries exceeded",
    "Read timed out",
    "ServiceError",
    "ConnectTimeout",
)
"""What pip-audit's stderr says when its vulnerability service cannot be reached."""


@dataclass
class Report:
    """What pip-audit found in one lock file."""

    lock: str
    vulnerable: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    audited: int = 0
    network_error: str | None = None

    @property
    def unreachable(self) -> bool:
        """The vulnerability database was not reached: pip-audit failed on the network,
        or skipped every pin."""
        return self.network_error is not None or (bool(self.skipped) and self.audited == 0)


def parse(lock: str, document: dict[str, Any]) -> Report:
    """Read pip-audit's ``--format json`` output for ``lock``."""
    report = Report(lock)
    for dep in document.get("dependencies", []):
        name = f"{dep.get('name')}=={dep.get('version', '?')}"
        if "skip_reason" in dep:
            report.skipped.append(f"{dep.get('name')}: {dep['skip_reason']}")
            continue
        report.audited += 1
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed release"
            aliases = ", ".join(vuln.get("aliases", []))
            ident = vuln.get("id", "?") + (f" ({aliases})" if aliases else "")
            report.vulnerable.append(f"{name}: {ident}, fixed in {fixes}")
    return report


def audit(lock: Path, service: str = "pypi") -> Report | str:
    """Run pip-audit on ``lock`` against ``service`` (``pypi`` or ``osv``); a Report, or
    the error text when pip-audit failed for a reason other than the network."""
    argv = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(lock),
        "--require-hashes",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--timeout",
        str(TIMEOUT_SECONDS),
        "--vulnerability-service",
        service,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    try:
        document = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if any(marker in proc.stderr for marker in NETWORK_ERRORS):
            return Report(str(lock), network_error=tail[:200])
        return f"pip-audit failed (exit {proc.returncode}): {tail}"
    return parse(str(lock), document)


def render(reports: list[Report]) -> tuple[list[str], int]:
    """The lines to print and the exit status for these reports."""
    lines: list[str] = []
    status = 0
    for r in reports:
        if r.vulnerable:
            status = 1
            lines.append(f"audit: {r.lock}: {len(r.vulnerable)} known-vulnerable pin(s):")
            lines += [f"  VULNERABLE {v}" for v in r.vulnerable]
        if r.unreachable:
            reason = r.network_error or r.skipped[0].split(": ", 1)[-1]
            unchecked = f"{len(r.skipped)} pin(s)" if r.skipped else "every pin"
            lines.append(
                f"audit: {r.lock}: NOT AUDITED: the vulnerability database could not be "
                f"reached from here, {unchecked} unchecked ({reason})"
            )
        elif r.skipped:
            lines.append(f"audit: {r.lock}: {len(r.skipped)} pin(s) not audited:")
            lines += [f"  SKIPPED {s}" for s in r.skipped]
        if not r.vulnerable and not r.unreachable:
            lines.append(f"audit: {r.lock}: {r.audited} pin(s) audited, none known vulnerable")
    return lines, status


def main(argv: list[str]) -> int:
    """Audit each lock file named on the command line; see the module docstring."""
    service = "pypi"
    if argv[:1] == ["--service"] and len(argv) >= 2:
        service, argv = argv[1], argv[2:]
    if not argv:
        print("usage: audit_locks.py [--service pypi|osv] LOCK...", file=sys.stderr)
        return 2
    reports: list[Report] = []
    for name in argv:
        result = audit(Path(name), service)
        if isinstance(result, str):
            print(f"audit: {name}: {result}", file=sys.stderr)
            return 2
        reports.append(result)
    lines, status = render(reports)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
