"""The documentation stays short where it must and true to the code: the README's length,
every relative link and anchor, every setting and every command documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import typer.main

from pipelines.run import app

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
README_MAX_LINES = 250

_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_SETTING = re.compile(r"[\"']((?:KIMAI|ATLAS|DBT)_[A-Z0-9_]+)[\"']")


def _prose(text: str) -> str:
    """The Markdown without its fenced code blocks (a link or heading there is code)."""
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.lower().strip()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's ``-1``, ``-2`` for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for match in _HEADING.finditer(_prose(path.read_text())):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(path: Path) -> list[str]:
    """The relative links of `path` whose file or heading anchor does not exist."""
    broken = []
    for target in _LINK.findall(_prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and unquote(anchor) not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


def test_slug_follows_github() -> None:
    assert slug("Least-privilege Kimai login") == "least-privilege-kimai-login"
    assert slug("Materialization of vw_timesheet_facts") == "materialization-of-vw_timesheet_facts"
    assert slug("What each run detects, and what `reconcile` adds") == (
        "what-each-run-detects-and-what-reconcile-adds"
    )
    assert slug("Kimai's screens in Metabase") == "kimais-screens-in-metabase"
    assert slug("Latest results: commit 9f6ba6f, 2026-12-06") == (
        "latest-results-commit-9f6ba6f-2026-12-06"
    )


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text(
        "# A title\n\n## Some Section\n\n```\n# not a heading\n```\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#some-section) [ok](#own) [web](https://example.com/x)\n"
        "[gone](missing.md) [bad](there.md#no-such) [code](there.md#not-a-heading)\n"
        "```sh\n[inside code](nowhere.md)\n```\n\n## Own\n"
    )
    assert broken_links(page) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "there.md#no-such: no heading #no-such in there.md",
        "there.md#not-a-heading: no heading #not-a-heading in there.md",
    ]


def test_the_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move depth to docs/"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_every_setting_of_the_code_is_documented() -> None:
    names = set(_SETTING.findall((REPO / "pipelines" / "config.py").read_text()))
    # the settings the product reads, as config.py names them, at the very least these
    assert {"KIMAI_DB_HOST", "ATLAS_DB_URL", "ATLAS_API_TOKENS_FILE", "DBT_PROFILES_DIR"} <= names
    text = "\n".join(p.read_text() for p in [README, *DOCS])
    documented = set(re.findall(r"(?<![A-Z0-9_])((?:KIMAI|ATLAS|DBT)_[A-Z0-9_]+)", text))
    assert sorted(names - documented) == []


def _command_paths(command: Any, prefix: str) -> list[str]:
    """Every command and subcommand under `command`, as typed after ``pipelines.run``."""
    subcommands = getattr(command, "commands", None)  # a group (typer's own click)
    if not subcommands:
        return [prefix]
    paths = [prefix] if prefix else []
    for name, sub in subcommands.items():
        paths += _command_paths(sub, f"{prefix} {name}".strip())
    return paths


def test_every_command_is_in_the_readme() -> None:
    commands = _command_paths(typer.main.get_command(app), "")
    assert {"sync", "reconcile", "serve", "token create"} <= set(commands)
    readme = README.read_text()
    missing = [c for c in commands if f"python -m pipelines.run {c}" not in readme]
    assert missing == []
