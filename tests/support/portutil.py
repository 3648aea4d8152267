"""Loopback ports and HTTP polling shared by the deployment tests."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``url``: (status, body); (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def wait_http(url: str, status: int = 200, timeout: float = 10.0) -> tuple[int, str]:
    """Poll ``url`` every 50 ms until it answers ``status``; return the last answer."""
    deadline = time.monotonic() + timeout
    answer = http_get(url)
    while answer[0] != status and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = http_get(url)
    return answer
