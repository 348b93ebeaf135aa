"""Every ``leakguard`` command line in README.md and deploy/ parses as click parses it.

A repeatable option takes one value per occurrence (``--scope a --scope b``): a line that
shows ``--scope a b`` would fail with "unexpected extra argument". Concrete lines (code
blocks, deploy files, Kubernetes ``args``) go through click's own parser; the README's
synopses (``NAME``, ``[--json]``, ``...``) are checked for how they show a repeatable
option.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from service.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file())]
# A command line in a code span, a code block, a shell line or a comment of a deploy file.
LINE = re.compile(r"(?:^|[`'\s/])leakguard ((?:[a-z][a-z-]*)(?: (?:\\\||[^`'\n|])*)?)")
ONE_VALUE = re.compile(r"[^.\]…]+(?:\]+(?:\.\.\.|…)?)?")
SYNOPSIS_MARKS = ("[", "...", "\\|", "…")


def _resolve(args: list[str]) -> tuple[click.Command, list[str]] | None:
    """The command the words name (group by group), and the words left for it."""
    command: click.Command = cli
    context = click.Context(cli, info_name="leakguard")
    while isinstance(command, click.Group) and args:
        found = command.get_command(context, args[0])  # imports a lazy command's module
        if found is None:
            break
        command, args = found, args[1:]
    if command is cli or isinstance(command, click.Group):
        return None  # not one of Leakguard's own commands (flask's run/shell), or a group
    return command, args


def _repeatable(command: click.Command) -> set[str]:
    return {
        name
        for param in command.params
        if isinstance(param, click.Option) and param.multiple
        for name in param.opts
    }


def _lines() -> Iterator[tuple[str, str]]:
    for path in DOCS:
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in LINE.finditer(text):
            yield f"{path.relative_to(ROOT)}: leakguard {match.group(1)}", match.group(1)
        if path.suffix == ".yaml":
            for doc in yaml.safe_load_all(text):
                yield from _container_args(path, doc)


def _container_args(path: Path, node: object) -> Iterator[tuple[str, str]]:
    """Kubernetes containers' ``args`` of the leakguard image (a list, one word each)."""
    if isinstance(node, dict):
        image = node.get("image")
        args = node.get("args")
        if isinstance(image, str) and "leakguard" in image and isinstance(args, list):
            line = shlex.join(str(a) for a in args)
            yield f"{path.relative_to(ROOT)}: args {args}", line
        for value in node.values():
            yield from _container_args(path, value)
    elif isinstance(node, list):
        for value in node:
            yield from _container_args(path, value)


def _split(line: str) -> list[str]:
    line = re.split(r"\s{2,}", line.strip())[0].rstrip(".,;:)")  # then a comment
    line = re.sub(r"%i\b", "high", line)  # the systemd template's instance: a queue
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _documented() -> list[tuple[str, str]]:
    return sorted(set(_lines()))


def test_documented_lines_are_found() -> None:
    found = [where for where, _ in _documented()]
    assert any("api-clients create" in where for where in found)
    assert any("worker --queue" in where for where in found)
    assert any("args [" in where for where in found)


@pytest.mark.parametrize(("where", "line"), _documented(), ids=lambda value: value[:80])
def test_documented_command_line_parses(where: str, line: str) -> None:
    if any(mark in line for mark in SYNOPSIS_MARKS):
        _check_synopsis(where, line)
        return
    resolved = _resolve(_split(line))
    if resolved is None:
        return
    command, args = resolved
    try:
        command.make_context(command.name or "leakguard", list(args), resilient_parsing=False)
    except click.BadParameter:
        pass  # a placeholder where a value of a type goes (FILE, Q): the syntax is right
    except click.UsageError as exc:
        pytest.fail(f"{where}: {exc.format_message()}")
    except click.exceptions.Exit:
        pass  # --help


def _check_synopsis(where: str, line: str) -> None:
    """A repeatable option in a synopsis is shown with one value per occurrence:
    ``--scope SCOPE [--scope SCOPE]...``, never ``--scope SCOPE...`` or ``--queue a b``."""
    words = line.replace("\\|", "|").split()
    resolved = _resolve([w for w in words if not w.startswith(("[", "-"))][:3])
    if resolved is None:
        return
    command, _ = resolved
    repeatable = _repeatable(command)
    for index, word in enumerate(words):
        if word.lstrip("[") not in repeatable:
            continue
        value = words[index + 1] if index + 1 < len(words) else ""
        after = words[index + 2] if index + 2 < len(words) else ""
        # One value, perhaps closing a bracket that repeats as a whole: ``SCOPE]...``.
        assert ONE_VALUE.fullmatch(value), f"{where}: {value!r}"
        closes = "]" in value
        if not closes:
            assert after == "" or after.startswith(("-", "[", "]")), f"{where}: {after!r}"


@pytest.mark.parametrize(
    "line",
    [
        "api-clients create demo --scope risk:check risk:write",
        "worker --queue high default low",
    ],
)
def test_the_check_refuses_space_separated_values(line: str) -> None:
    resolved = _resolve(_split(line))
    assert resolved is not None
    command, args = resolved
    with pytest.raises(click.UsageError, match="unexpected extra argument"):
        command.make_context(command.name or "leakguard", args, resilient_parsing=False)


@pytest.mark.parametrize(
    "line",
    [
        "api-clients create NAME --scope SCOPE... [--json]",
        "worker [--burst] [--queue high\\|default\\|low ...]",
    ],
)
def test_the_check_refuses_a_synopsis_of_space_separated_values(line: str) -> None:
    with pytest.raises(AssertionError):
        _check_synopsis("example", line)
