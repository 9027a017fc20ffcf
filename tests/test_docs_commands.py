"""The documentation's ``hub`` commands exist, and its settings are the hub's."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from hub.cli import cli
from hub.config import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    ROOT / "conformance" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "plugins").glob("*/README.md")),
]
# `hub ...` in backticks, anywhere in prose or tables.
_COMMAND = re.compile(r"`(?:[A-Z_]+=\S+ )*(hub [^`]*)`")


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for match in _COMMAND.finditer(path.read_text(encoding="utf-8")):
            found.append((path.relative_to(ROOT).as_posix(), match.group(1)))
    return found


def test_the_docs_name_hub_commands():
    assert len(_commands()) > 20


@pytest.mark.parametrize(("doc", "command"), _commands())
def test_documented_command_exists(doc, command):
    words = command.split()[1:]
    ctx = click.Context(cli)
    current: click.Command = cli
    path = ["hub"]
    for word in words:
        if not isinstance(current, click.Group) or word.startswith(("-", "<")) or word == "...":
            break
        # `hub users add|list|unlock` names several subcommands at once.
        subs = [current.get_command(ctx, alternative) for alternative in word.split("|")]
        missing = [a for a, sub in zip(word.split("|"), subs, strict=True) if sub is None]
        assert not missing, f"{doc}: `{command}`: `{' '.join(path)}` has no command {missing}"
        current = subs[0]
        path.append(word)
    assert not isinstance(current, click.Group) or current is not cli, f"{doc}: `{command}`"


def test_environment_only_settings_are_documented():
    names = {f"HUB_{s.name}" for s in SETTINGS if s.env_only}
    assert "HUB_INSTANCE_PATH" in names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert sorted(n for n in names if f"`{n}`" not in readme) == []
