"""Read the Dockerfile's instructions so that a test can replay them without Docker.

The Dockerfile is the one place where the install and start commands live; the test
replays its ``RUN`` lines (in a shell, as the image build would) and its
``ENTRYPOINT`` + ``CMD`` (as the container would start) inside a scratch folder that
stands for the image's file system: every absolute path the image owns (``WORKDIR``,
``VOLUME``, ``VIRTUAL_ENV`` and the folders ``COPY`` writes to) is rewritten to the
same path under that folder.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and its argument text."""

    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of the arguments; raises ValueError if not exec form."""
        value = json.loads(self.args)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            msg = f"line {self.line}: {self.keyword} is not in exec form: {self.args!r}"
            raise ValueError(msg)
        return value


def parse(text: str) -> list[Instruction]:
    """Split ``text`` into instructions, joining ``\\`` continuations, dropping comments."""
    out: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out


_ENV_PAIR = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S+)""")


@dataclass(slots=True)
class Image:
    """What the instructions describe, with image paths still as the image sees them."""

    instructions: list[Instruction]
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str | None = None
    volumes: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    stopsignal: str | None = None
    base: str | None = None

    @property
    def roots(self) -> list[str]:
        """Absolute image folders the build writes to or runs in, longest first."""
        found: set[str] = set(self.volumes)
        for ins in self.instructions:
            if ins.keyword == "WORKDIR":
                found.add(ins.args)
            elif ins.keyword == "COPY":
                dest = shlex.split(ins.args)[-1]
                if dest.startswith("/"):
                    found.add(str(Path(dest).parent))
        if "VIRTUAL_ENV" in self.env:
            found.add(self.env["VIRTUAL_ENV"])
        return sorted(found - {"/"}, key=len, reverse=True)


def load(path: Path) -> Image:
    """Parse the Dockerfile at ``path`` into an :class:`Image`."""
    image = Image(parse(path.read_text(encoding="utf-8")))
    for ins in image.instructions:
        match ins.keyword:
            case "FROM":
                image.base = ins.args
            case "ENV":
                for key, value in _ENV_PAIR.findall(ins.args):
                    image.env[key] = value.strip('"')
            case "ENTRYPOINT":
                image.entrypoint = ins.exec_form()
            case "CMD":
                image.cmd = ins.exec_form()
            case "HEALTHCHECK":
                _, _, rest = ins.args.partition("CMD ")
                image.healthcheck = json.loads(rest)
            case "USER":
                image.user = ins.args
            case "VOLUME":
                image.volumes += ins.exec_form()
            case "EXPOSE":
                image.exposed += ins.args.split()
            case "STOPSIGNAL":
                image.stopsignal = ins.args
    return image


class PathMap:
    """Rewrites the image's absolute folders to the same folders under ``root``."""

    def __init__(self, roots: list[str], root: Path) -> None:
        self.root = root
        alternatives = "|".join(re.escape(r) for r in roots)
        # A root counts only as a whole path: not after a word character, a dot or a
        # slash (so ``./src`` stays relative), and followed by a separator or the end.
        self._pattern = re.compile(rf"(?<![\w./])({alternatives})(?=[/\s'\":]|$)")

    def __call__(self, text: str) -> str:
        """``text`` with every image root replaced by its place under ``root``."""
        return self._pattern.sub(lambda m: str(self.root) + m.group(1), text)

    def path(self, image_path: str) -> Path:
        """The host path standing for ``image_path``; raises ValueError outside every root."""
        mapped = Path(self(image_path))
        if not mapped.is_relative_to(self.root):
            msg = f"{image_path} is not under an image root: refusing the host path"
            raise ValueError(msg)
        return mapped
