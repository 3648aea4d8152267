"""A real etcd (Debian's ``etcd-server``) on free loopback ports, data in a temp folder."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.support.rig import free_port


def etcd_binary() -> str:
    """The etcd binary, or skip the test saying how to get it."""
    found = shutil.which("etcd")
    if found is None:
        pytest.skip("etcd is not installed (Debian package etcd-server)")
    return found


@dataclass
class Etcd:
    """A running etcd: its client URL and process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@asynccontextmanager
async def running_etcd(tmp: Path) -> AsyncIterator[Etcd]:
    """A single-member etcd cluster on loopback, stopped afterwards."""
    binary = etcd_binary()
    folder = tmp / "etcd"
    folder.mkdir(exist_ok=True)
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    peer_url = f"http://127.0.0.1:{peer}"
    log = folder / "etcd.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--name=rw",
                f"--data-dir={folder / 'data'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=rw={peer_url}",
                "--initial-cluster-state=new",
            ],
            stdout=out,
            stderr=out,
        )
    etcd = Etcd(url, proc, log)

    async def healthy() -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(url + "/health") as resp:
                return resp.status == 200 and '"true"' in await resp.text()
        except aiohttp.ClientError:
            return False

    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not await healthy():
            assert proc.poll() is None, log.read_text()
            assert loop.time() < deadline, "etcd not healthy"
            await asyncio.sleep(0.1)
        yield etcd
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
