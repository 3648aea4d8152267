"""Where an account's JWT comes from, and when it expires (docs/protocol.md §2.1).

A JWT is short-lived: the official CLI refreshes it before reconnecting once it has
expired. riskwatch therefore gets its token afresh before every connection attempt:
from the configuration (a fixed token), by reading ``jwt_file`` again (a sidecar or
a cron job rewrites it), or by running ``jwt_command`` (argv, no shell), whose
standard output is the token. The expiry comes from the token's own ``exp`` claim
(Unix seconds), read without checking the signature: riskwatch is not the party
that trusts the token, it only wants to know when the exchange will stop doing so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from riskwatch.errors import RiskwatchError
from riskwatch.logredact import protect
from riskwatch.secret import Secret

__all__ = ["TokenError", "TokenSource", "jwt_expiry"]

log = logging.getLogger(__name__)

COMMAND_TIMEOUT: Final = 30.0
"""Seconds ``jwt_command`` may run before it is killed and the refresh fails."""


class TokenError(RiskwatchError):
    """A JWT could not be read from ``jwt_file`` or printed by ``jwt_command``; the
    message never holds the token. :meth:`TokenSource.refresh` catches it, keeps the
    last good token and counts the failure."""


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (Unix seconds), or None when absent or unreadable."""
    parts = token.split(".")
    if len(parts) != 3:  # header.payload.signature
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


class TokenSource:
    """One account's JWT: fixed, re-read from ``path``, or printed by ``command``.

    :meth:`refresh` (awaited before each connection attempt) fetches it; on failure
    the last good token stays in use and the error is kept in :attr:`last_error`
    (the caller counts and reports it). :attr:`token` is a :class:`Secret`.
    """

    def __init__(
        self,
        *,
        token: Secret | None = None,
        path: Path | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self._token = token
        self._path = path
        self._command = tuple(command) if command else None
        self.last_error = ""
        self.refreshes = 0
        self.failures = 0

    @property
    def token(self) -> Secret | None:
        """The current token (None before a command-sourced token was first fetched)."""
        return self._token

    @property
    def expires_at(self) -> float | None:
        """The current token's ``exp`` (Unix seconds), if it carries one."""
        return jwt_expiry(self._token.reveal()) if self._token is not None else None

    async def refresh(self) -> None:
        """Fetch the token again from its file or command (a fixed one stays)."""
        try:
            if self._path is not None:
                fresh = await asyncio.to_thread(self._read_file, self._path)
            elif self._command is not None:
                fresh = await self._run(self._command)
            else:
                return
        except TokenError as exc:
            self.failures += 1
            self.last_error = str(exc)
            log.error("jwt refresh failed: %s", exc)
            return
        protect(fresh)  # never in a log line, whatever prints it
        self._token = Secret(fresh)
        self.refreshes += 1
        self.last_error = ""

    @staticmethod
    def _read_file(path: Path) -> str:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"cannot read jwt_file {path}: {type(exc).__name__}"
            raise TokenError(msg) from None
        if not text:
            msg = f"jwt_file {path} is empty"
            raise TokenError(msg)
        return text

    @staticmethod
    async def _run(argv: tuple[str, ...]) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            msg = f"cannot run jwt_command {argv[0]!r}: {type(exc).__name__}"
            raise TokenError(msg) from None
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            msg = f"jwt_command {argv[0]!r} did not finish within {COMMAND_TIMEOUT:.0f} s"
            raise TokenError(msg) from None
        if proc.returncode != 0:
            msg = f"jwt_command {argv[0]!r} exited with status {proc.returncode}"
            raise TokenError(msg)
        text = out.decode("utf-8", "replace").strip()
        if not text:
            msg = f"jwt_command {argv[0]!r} printed nothing"
            raise TokenError(msg)
        return text
