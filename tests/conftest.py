"""Every test talks to this machine only: a host name looked up for anything but
loopback fails (as an unknown name does, so nothing leaves the machine) and fails the
test that asked, at its end, naming the host.

It guards the lookups made in the test's own process (``socket.getaddrinfo``, which
the standard event loop's ``getaddrinfo`` and so aiohttp and websockets call); a daemon
started as a subprocess is covered by giving it loopback URLs only (``rest_url``
included: its default is the real exchange's).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_LOCAL_NAMES = frozenset({"localhost", "", "0.0.0.0", "::"})  # noqa: S104 (bind-all, not a peer)


def _is_local(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host):
            asked.append(str(host))
            msg = f"tests talk to this machine only, not to {host}"
            raise socket.gaierror(socket.EAI_NONAME, msg)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    assert not asked, f"the test looked up hosts beyond this machine: {sorted(set(asked))}"
