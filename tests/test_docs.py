"""The documentation stays true to the code: the generated command reference is current, every link between
the pages resolves, and the README stays a README."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "docs"))
import generate

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_command_reference_is_current() -> None:
    assert (ROOT / "docs" / "commands.md").read_text() == generate.render(), (
        "docs/commands.md is stale: run python docs/generate.py"
    )


def test_the_run_format_page_is_current() -> None:
    assert (ROOT / "docs" / "run-format.md").read_text() == generate.render_run_format(), (
        "docs/run-format.md is stale: run python docs/generate.py"
    )


def _anchors(page: Path) -> set[str]:
    heads = [line.lstrip("#").strip().lower() for line in page.read_text().splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", head).replace(" ", "-") for head in heads}


def test_every_link_between_the_pages_resolves() -> None:
    broken = []
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.name}: {target}#{anchor}")
    assert not broken


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
