"""Every shell block of README.md and docs/*.md runs exactly as written, and the docs' references hold.

The convention, also stated in docs/README.md for whoever writes a page:

- A block fenced as ```sh, ```bash or ```shell is run with ``bash -e -c BLOCK`` from the
  repository root, with the virtual environment's ``bin/`` first on ``PATH`` (the README
  asks the reader to activate it) and with every ``RISKWATCH_*``, ``QFEX_*``, ``SLACK_*``
  and ``SMTP_*`` variable removed: only the environment the text tells the reader to set.
  It must exit 0 within :data:`BLOCK_TIMEOUT`.
- First line ``# runs until stopped, showing: TEXT``: a long-running block. It must print
  ``TEXT`` within :data:`LONG_TIMEOUT`; it is then stopped (SIGINT, then SIGTERM to its
  whole process group) and must not have printed an authentication failure.
- First line ``# not run: REASON``: skipped, and the reason (required) is shown.
- First line ``# needs: PROGRAM``: run when ``PROGRAM`` is on ``PATH``, else skipped.
- Any other fence (```text, ```yaml, …) is never run.

The blocks use the documented fixed ports (the simulator's 8765 and 8766, the daemon's
9464), so every block runs under one lock file in the system's temporary folder: test
runs of several checkouts on one machine take turns instead of colliding.

Besides running the blocks, this module checks what a newcomer relies on: the README is
at most 12 KB and starts with ``make demo`` and ``make test``; every relative link of the
docs and every ``docs/*.md`` (and ``#anchor``) cited in the code names a file (and a
heading) that exists; and no tracked file refers to a file outside the repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

BLOCK_TIMEOUT = 300.0
"""Seconds a finite block may take (the slowest, `riskwatch test` of the pack, takes ~10 s)."""
LONG_TIMEOUT = 120.0
"""Seconds a long-running block has to show its text (the crash's critical alert: ~40 s)."""
README_MAX_BYTES = 12 * 1024
SHELL_FENCES = ("sh", "bash", "shell")
SCRUBBED_PREFIXES = ("RISKWATCH_", "QFEX_", "SLACK_", "SMTP_")
DOC_PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
PORTS_LOCK = Path(tempfile.gettempdir()) / "riskwatch-doc-examples.lock"
"""Held while a block runs: the documented ports are one machine's, not one checkout's."""
SIM_STATE = REPO / "examples" / "sim-state.db"
"""The state database examples/sim.yaml creates (README, "A rule's life", step 4)."""

_NOT_RUN = re.compile(r"#\s*not run:\s*(?P<reason>.*)$")
_LONG = re.compile(r"#\s*runs until stopped, showing:\s*(?P<text>.+)$")
_NEEDS = re.compile(r"#\s*needs:\s*(?P<program>\S+)\s*$")
_OPEN = re.compile(r"^(?P<indent>\s*)```(?P<info>[\w-]*)\s*$")
_CLOSE = re.compile(r"^\s*```\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced shell block: where it is, its text, and what its first line asks."""

    page: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        """``PAGE:LINE`` of the opening fence, relative to the repository."""
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def first_line(self) -> str:
        """The block's first line, stripped."""
        return self.text.strip().splitlines()[0].strip() if self.text.strip() else ""


def shell_blocks(page: Path) -> Iterator[Block]:
    """Yield the shell blocks of ``page`` in order, de-indented (list items indent them)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, info, start = len(opened["indent"]), opened["info"], i + 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not _CLOSE.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i].lstrip())
            i += 1
        i += 1
        if info in SHELL_FENCES:
            yield Block(page, start, "\n".join(body) + "\n")


ALL_BLOCKS = [block for page in DOC_PAGES for block in shell_blocks(page)]


def reader_environment() -> dict[str, str]:
    """The environment a reader has after activating .venv, with nothing else set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    venv_bin = Path(sys.executable).parent
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    return env


def start(block: Block) -> subprocess.Popen[str]:
    """Start ``block`` in a shell of its own process group, output merged."""
    return subprocess.Popen(
        ["bash", "-e", "-c", block.text],
        cwd=REPO,
        env=reader_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Interrupt the block like Ctrl-C, then terminate whatever it left running."""
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            # Reap the block's own process once it exits: until then, as a zombie, it
            # keeps its group alive to ``killpg`` and the whole grace would be waited.
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def run_long(block: Block, expected: str) -> str:
    """Run a long-running block until ``expected`` shows (or time runs out); its output."""
    import selectors

    proc = start(block)
    assert proc.stdout is not None
    out: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + LONG_TIMEOUT
    try:
        while time.monotonic() < deadline and expected not in "".join(out):
            if sel.select(timeout=0.5):
                line = proc.stdout.readline()
                if not line and proc.poll() is not None:
                    break
                out.append(line)
    finally:
        sel.close()
        stop_group(proc)
        rest, _ = proc.communicate(timeout=30)
        out.append(rest or "")
    return "".join(out)


def run_block(block: Block) -> subprocess.CompletedProcess[str]:
    """Run a finite block to its end."""
    proc = start(block)
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, _ = proc.communicate()
        pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT:.0f}s:\n{out[-3000:]}")
    finally:
        stop_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


@contextlib.contextmanager
def documented_ports() -> Iterator[None]:
    """Hold the machine-wide lock of the documented ports while the body runs."""
    with PORTS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def fresh_sim_state() -> Iterator[None]:
    """examples/sim.yaml's state database starts and ends absent (a reader's first run)."""

    def clear() -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            SIM_STATE.with_name(SIM_STATE.name + suffix).unlink(missing_ok=True)

    clear()
    yield
    clear()


EXPECTED_OUTPUT: dict[str, tuple[str, ...]] = {
    "riskwatch check -c examples/riskwatch.yaml\n": ("examples/riskwatch.yaml: ok (",),
    "riskwatch replay examples/crash-recording.jsonl -c examples/replay.yaml\n": (
        "MarginUsageHigh FIRING",
        "MarginUsageCritical FIRING",
        "MarginUsageCritical ACTION cancel_all_orders",
    ),
    # README, "A rule's life", step 4: connected, authenticated, alerting.
    "riskwatch run -c examples/sim.yaml\n": (
        "serving /metrics",
        "alert TrailingDrawdown FIRING account=desk-a",
        "[CRITICAL] MarginUsageCritical on desk-a",
        "would have cancel_all_orders",
    ),
}
"""What a block holding the command (key) must print, beyond its marker and exit status."""
NEVER_PRINTED = ("authentication rejected", "FAILED test", "does not exist")


@pytest.mark.timeout(3 * (BLOCK_TIMEOUT + LONG_TIMEOUT))
@pytest.mark.usefixtures("fresh_sim_state")
@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.where for b in ALL_BLOCKS])
def test_shell_block_runs_as_written(block: Block) -> None:
    """Each shell block of the README and docs does what its page says."""
    first = block.first_line
    if skipped := _NOT_RUN.match(first):
        assert skipped["reason"].strip(), f"{block.where}: '# not run:' needs a reason"
        pytest.skip(f"{block.where}: not run: {skipped['reason'].strip()}")
    if (needs := _NEEDS.match(first)) and shutil.which(needs["program"]) is None:
        pytest.skip(f"{block.where}: needs {needs['program']}, not installed")
    if long := _LONG.match(first):
        with documented_ports():
            out = run_long(block, long["text"].strip())
        assert long["text"].strip() in out, f"{block.where}: never showed it:\n{out[-4000:]}"
    else:
        with documented_ports():
            proc = run_block(block)
        out = proc.stdout
        assert proc.returncode == 0, f"{block.where}: exit {proc.returncode}:\n{out[-4000:]}"
    for command, texts in EXPECTED_OUTPUT.items():
        if command in block.text:
            missing = [t for t in texts if t not in out]
            assert missing == [], f"{block.where}: {command.strip()} did not print {missing}"
    printed = [t for t in NEVER_PRINTED if t.lower() in out.lower()]
    assert printed == [], f"{block.where}: printed {printed}:\n{out[-4000:]}"


def readme_block_with(pattern: str) -> Block:
    """The one README block with a line matching ``pattern``."""
    found = [b for b in shell_blocks(REPO / "README.md") if re.search(pattern, b.text, flags=re.M)]
    assert len(found) == 1, f"README.md: {len(found)} blocks match {pattern!r}"
    return found[0]


def test_readme_lists_check_test_and_replay() -> None:
    """The README's rule life shows a check, a test and a replay command, in that order."""
    block = readme_block_with(r"^riskwatch (check|test|replay) ")
    kinds = re.findall(r"^riskwatch (check|test|replay) ", block.text, flags=re.M)
    assert kinds == ["check", "test", "replay"]
    for command in [
        c for c in EXPECTED_OUTPUT if c.startswith(("riskwatch check", "riskwatch replay"))
    ]:
        assert command in block.text, "the rule life runs the commands whose output is checked"


def test_readme_step_four_runs_the_daemon_against_the_simulator() -> None:
    """Step 4 starts `riskwatch sim` and `riskwatch run -c examples/sim.yaml`, run until stopped."""
    block = readme_block_with(r"^riskwatch run -c examples/")
    assert _LONG.match(block.first_line), f"{block.where}: the block says what it shows"
    assert re.search(r"^riskwatch sim( |$)", block.text, flags=re.M)
    assert "riskwatch run -c examples/sim.yaml\n" in block.text


def test_every_marked_block_is_well_formed() -> None:
    """Shell blocks exist, and every marker line says what it must."""
    assert ALL_BLOCKS
    for block in ALL_BLOCKS:
        first = block.first_line
        if first.startswith("# not run"):
            marker = _NOT_RUN.match(first)
            assert marker, block.where
            assert marker["reason"].strip(), block.where
        if first.startswith("# runs until"):
            assert _LONG.match(first), block.where


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    """The README fits in 12 KB and its first block is `make demo` then `make test`."""
    readme = REPO / "README.md"
    assert readme.stat().st_size <= README_MAX_BYTES
    first = next(shell_blocks(readme)).text
    commands = [ln.split("#")[0].strip() for ln in first.splitlines() if ln.strip()[:1] != "#"]
    assert commands == ["make demo", "make test"]


_LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#(?P<anchor>[^)\s]+))?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]|\[|\]|\(.*?\)", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of every heading of ``page``."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def check_reference(source: str, target: Path, anchor: str | None) -> str | None:
    """A problem with a reference from ``source`` to ``target#anchor``, or None."""
    rel = target.resolve().relative_to(REPO.resolve()).as_posix()
    if not target.exists():
        return f"{source}: {rel} does not exist"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"{source}: {rel} has no heading #{anchor}"
    return None


def test_doc_links_resolve() -> None:
    """Every relative link of the README and docs names a file (and heading) that exists."""
    problems = []
    for page in DOC_PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for m in _LINK.finditer(text):
            if re.match(r"[a-z]+:", m["target"]):
                continue
            problem = check_reference(
                str(page.relative_to(REPO)), (page.parent / m["target"]), m["anchor"]
            )
            if problem:
                problems.append(problem)
    for page in DOC_PAGES:
        for m in re.finditer(r"\]\(#(?P<anchor>[^)\s]+)\)", page.read_text(encoding="utf-8")):
            problem = check_reference(str(page.relative_to(REPO)), page, m["anchor"])
            if problem:
                problems.append(problem)
    assert problems == []


def tracked_files() -> list[Path]:
    """The repository's tracked text files."""
    out = subprocess.run(
        ["git", "ls-files", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = [REPO / name for name in out.split("\0") if name]
    return [f for f in files if f.is_file() and f.suffix not in {".png", ".jsonl", ".db"}]


def test_code_cites_docs_that_exist() -> None:
    """Every `docs/NAME.md` (and `#anchor`) cited in the repository exists and has that heading."""
    cite = re.compile(r"docs/(?P<name>[a-z][a-z-]*\.md)(?:#(?P<anchor>[a-z0-9-]+))?")
    problems = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for m in cite.finditer(text):
            where = f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}"
            problem = check_reference(where, REPO / "docs" / m["name"], m["anchor"])
            if problem:
                problems.append(problem)
    assert problems == []


def test_no_file_refers_outside_the_repository() -> None:
    """No tracked file names a path outside the repository (a clone has nothing beside it)."""
    # The machine's shared folders, spelled so that this line does not match itself.
    outside = re.compile(r"\.\./shared/|/wor[k]/|/shar[e]d/(design|qfex)")
    hits = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{path.relative_to(REPO)}: {m[0]}" for m in outside.finditer(text)]
    assert hits == []


def test_no_python_file_edits_sys_path() -> None:
    """Tests, benches and scripts import through packages, never by editing ``sys.path``."""
    edit = re.compile(r"sys\.pat[h]\.(insert|append|extend)|sys\.pat[h] ?\+?=")
    hits = [
        f"{path.relative_to(REPO)}: {m[0]}"
        for path in tracked_files()
        if path.suffix == ".py"
        for m in edit.finditer(path.read_text(encoding="utf-8"))
    ]
    assert hits == []
