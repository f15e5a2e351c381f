"""The HTML reports in a real browser: Debian's chromium, driven by Playwright's Python API.

Each page must load without a console error or any network request, its filters must work, and transcript
text that looks like markup must show as text.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines import fake
from annotate.engines.base import Request
from annotate.engines.fake import FakeBackend
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT, library_flags, write_jsonl
from tests.test_agree_diff import varied

GOLD = ROOT / "examples" / "gold.csv"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make install-browser)"),
]
MARKUP = [
    "<script>alert('pwned')</script>",
    "</script><b onmouseover=\"alert('x')\">bold</b>",
    "<a href=\"javascript:alert('link')\">click me</a>",
]


def hostile_chats(path: Path) -> Path:
    records = []
    for i in range(6):
        records.append(
            {
                "chat_id": f"h{i}",
                "meta": {"escalation": "customer_request" if i % 2 else "ai_unable"},
                "messages": [
                    {"role": "ai", "text": "Hello, how can I help?"},
                    {"role": "customer", "text": f"My order broke {MARKUP[i % 3]}"},
                    {"role": "ai", "text": "Let me get a colleague."},
                    {"role": "agent", "text": f"Sorry about that. {MARKUP[(i + 1) % 3]}"},
                    {"role": "customer", "text": f"Still angry {MARKUP[(i + 2) % 3]}"},
                    {"role": "agent", "text": "A replacement ships today."},
                ],
            }
        )
    return write_jsonl(path, records)


def highest(request: Request) -> str:
    return json.dumps({k: max(spec["enum"]) for k, spec in request.schema["properties"].items()})


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: set up before the per-test cache fixture
        patch.setenv("ANNOTATE_CACHE_DIR", str(root / "cache"))
        yield from _reports(root)


def _reports(root: Path) -> Iterator[dict[str, Path]]:
    repo = Path(__file__).resolve().parent.parent
    shutil.copytree(repo / "prompts", root / "prompts")
    shutil.copytree(repo / "rubrics", root / "rubrics")
    library = PromptLibrary(root / "prompts", root / "rubrics")
    chats = hostile_chats(root / "chats.jsonl")
    for name, script in (("low", fake.lowest_values), ("high", highest)):
        config = RunConfig(inputs=[chats], out=root / name, prompts=library.paths, backend="fake")
        run(config, backend=FakeBackend(script=script))
    labels = pd.read_parquet(root / "low" / "labels.parquet")
    gold = labels[["chat_id", "round", "variable"]].assign(value=[_other(v) for v in labels["value"]])
    gold.to_csv(root / "gold.csv", index=False)
    dirs = library_flags(library)
    cli = CliRunner()
    for args in (
        [
            "validate",
            str(root / "low"),
            "--gold",
            str(root / "gold.csv"),
            "--out",
            str(root / "v"),
            "--bootstrap",
            "20",
        ],
        ["agree", str(root / "low"), str(root / "high"), "--out", str(root / "a"), "--bootstrap", "20"],
    ):
        result = cli.invoke(app, [*args, *dirs])
        assert result.exit_code == 0, result.output
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fake, "lowest_values", _by_version)
        args = ["diff", "empathy", "v1", "v2", "--on", str(chats), "-b", "fake", "--out", str(root / "d")]
        result = cli.invoke(app, [*args, "--gold", str(root / "gold.csv"), "--bootstrap", "20", *dirs])
        assert result.exit_code == 0, result.output
        args = ["diff", "empathy,information_seeking,solution_provision,proactivity", "agent_behaviour"]
        result = cli.invoke(app, [*args, "--on", str(chats), "-b", "fake", "--out", str(root / "j"), *dirs])
        assert result.exit_code == 0, result.output
    for name, script in (("e1", fake.lowest_values), ("e2", highest)):
        config = RunConfig(inputs=[EXAMPLES], out=root / name, prompts=library.paths, backend="fake")
        run(config, backend=FakeBackend(script=script if name == "e2" else varied))
    formula = "empathy ~ C(escalation) + initial_sentiment"
    args = ["estimate", str(root / "e1"), "--labellers", str(root / "e2"), "--gold", str(GOLD), "--formula", formula]
    result = cli.invoke(app, [*args, "--out", str(root / "e"), *dirs])
    assert result.exit_code == 0, result.output
    coded = pd.read_csv(GOLD)
    coded[coded["variable"].isin(["empathy", "negative_sentiment"])].to_csv(root / "coded.csv", index=False)
    args = ["learn", str(root / "e1"), "--gold", str(root / "coded.csv"), "--out", str(root / "l"), "--bootstrap", "20"]
    result = cli.invoke(app, [*args, *dirs])
    assert result.exit_code == 0, result.output
    pages = {name: root / name / "report.html" for name in ("v", "a", "d", "j", "e")}
    yield pages | {"l": root / "l" / "learning.html"}


def _other(value: Any) -> int:
    return 2 if value == 1 else 1


def _by_version(request: Request) -> str:
    """Version 2 of empathy answers differently from version 1, so the diff has flipped units to show."""
    pick = max if "Solving the problem well is not empathy" in request.messages[0]["content"] else min
    return json.dumps({k: pick(spec["enum"]) for k, spec in request.schema["properties"].items()})


class Visit:
    """A page opened in chromium, with everything it logged, requested or tried to pop up."""

    def __init__(self, browser: Any, path: Path, width: int = 1280) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = path.as_uri()
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def outside_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (make install)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.mark.parametrize("name", ["v", "a", "d", "j", "e", "l"])
def test_each_page_loads_without_errors_or_network(browser: Any, reports: dict[str, Path], name: str) -> None:
    visit = Visit(browser, reports[name])
    assert visit.errors == []
    assert visit.outside_requests() == []
    assert visit.page.locator("h1").inner_text()
    images = visit.page.locator("img")
    for i in range(images.count()):  # every figure decoded (an inline PNG that failed would be 0 wide)
        assert images.nth(i).evaluate("img => img.naturalWidth") > 0


@pytest.mark.parametrize("name", ["v", "a", "d", "j", "e", "l"])
def test_every_page_fits_a_1280_pixel_window(browser: Any, reports: dict[str, Path], name: str) -> None:
    visit = Visit(browser, reports[name], width=1280)
    wide = visit.page.evaluate(
        """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 1280)
        .slice(0, 3).map(e => e.tagName + ' ' + e.textContent.slice(0, 60))"""
    )
    assert visit.page.evaluate("document.documentElement.scrollWidth") <= 1280, wide


def test_the_estimate_page_draws_every_estimator(browser: Any, reports: dict[str, Path]) -> None:
    visit = Visit(browser, reports["e"])
    figure = visit.page.locator("figure img").first
    assert figure.evaluate("img => img.naturalWidth") > 0
    assert "combined labellers" in visit.page.locator("body").inner_text()


@pytest.mark.parametrize("name", ["v", "d"])
def test_markup_in_transcripts_shows_as_text(browser: Any, reports: dict[str, Path], name: str) -> None:
    visit = Visit(browser, reports[name])
    table = visit.page.locator("#browser").inner_text()
    assert any(fragment in table for fragment in MARKUP)
    visit.page.locator("#browser td").first.hover()
    for link in visit.page.locator("#browser a").all():
        link.click()
    assert visit.dialogs == []  # no injected script, handler or link ran
    assert visit.page.locator("#browser script, #browser a, #browser b").count() == 0
    assert visit.errors == []


def test_the_disagreement_filters_work(browser: Any, reports: dict[str, Path]) -> None:
    visit = Visit(browser, reports["v"])
    page = visit.page
    rows = page.locator("#browser tr[data-variable]")
    total = rows.count()
    assert total > 0 and page.locator("#f-count").inner_text() == f"{total} of {total} shown"
    page.select_option("#f-variable", "empathy")
    shown = [r for r in rows.all() if r.is_visible()]
    assert 0 < len(shown) < total and all(r.get_attribute("data-variable") == "empathy" for r in shown)
    assert page.locator("#f-count").inner_text() == f"{len(shown)} of {total} shown"
    page.select_option("#f-variable", "")
    page.fill("#f-text", "h3")
    shown = [r for r in rows.all() if r.is_visible()]
    assert shown and all("h3" in r.inner_text() for r in shown)
    page.fill("#f-text", "no such text anywhere")
    assert page.locator("#f-count").inner_text() == f"0 of {total} shown"
