"""The layout the README promises: one layer per folder, imports one way, small modules and functions."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "annotate"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
needs_import_linter = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev dependency")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@needs_import_linter
def test_the_import_contract_holds() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 kept, 0 broken" in done.stdout


@needs_import_linter
@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("ingest/model.py", "from annotate.report.html import fmt", "Data flows one way"),
        ("analysis/gold.py", "from annotate.engines.fake import FakeBackend", "Only labelling talks to engines"),
        ("labelling/cache.py", "import annotate.labelling.pipeline", "No import cycles"),
        ("runs/store.py", "from annotate.labelling.pipeline import run", "Data flows one way"),
        ("report/html.py", "from annotate.runs.reader import read_run", "report/ renders typed results"),
        ("report/plots.py", "from annotate.analysis.validate import validate", "report/ renders typed results"),
        ("analysis/agree.py", "from annotate.commands import Written", "Data flows one way"),
    ],
)
def test_the_import_contract_fails_when_a_layer_imports_upwards(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(PACKAGE, tmp_path / "annotate", ignore=shutil.ignore_patterns("__pycache__", "defaults"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "annotate" / module).open("a") as f:
        f.write(f"\n{line}  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    report = done.stdout.split("Broken contracts")[-1]
    assert broken in report and Path(module).stem in report


def _python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


def test_functions_stay_short() -> None:
    """About 60 lines of body at most; a command's option declarations are its signature, not its body."""
    long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                length = (node.end_lineno or 0) - body[0].lineno + 1 if body else 0
                if length > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


def test_each_layer_is_a_folder() -> None:
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert layers == {
        "ingest", "labelling", "learning", "prompts", "runs", "engines", "analysis", "report", "commands"
    }  # fmt: skip
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {
        "__init__.py",
        "config.py",
        "errors.py",
        "files.py",
        "hashing.py",
        "vocabulary.py",
        "cli.py",
        "cli_groups.py",
        "cli_options.py",
    }


def test_a_literal_type_mirrors_its_vocabulary() -> None:
    """Vocabularies are declared once (annotate/vocabulary.py); the Literal the type checker sees must match."""
    from typing import get_args

    from annotate.analysis.estimation.glm import Family
    from annotate.runs.rows import FINAL_STATUSES, Status
    from annotate.vocabulary import ModelFamily, values

    assert get_args(Family) == values(ModelFamily)
    assert set(get_args(Status)) > FINAL_STATUSES and "backend_error" not in FINAL_STATUSES


def test_the_readme_layout_table_names_every_module() -> None:
    """A newcomer finds every module from the README's table, in its layer's row."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| ") and "`annotate/" in line:
            rows[line.split("|")[2].strip()] = line
    missing = []
    for path in _python_files():
        if path.name == "__init__.py":
            continue
        parts = path.relative_to(ROOT).parts
        if len(parts) == 2:
            named = any(f"`annotate/{path.name}`" in key for key in rows)
        else:
            named = f"`{path.name}`" in rows.get(f"`annotate/{parts[1]}/`", "")
        if not named:
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []


FILE_CALLS = {
    "open", "read_text", "read_bytes", "write_text", "write_bytes", "read_csv", "read_parquet", "to_csv",
    "to_parquet", "mkdir", "exists", "is_file", "is_dir", "unlink", "chats", "read_run", "read_gold",
    "read_covariates", "read_table", "file_sha256",
}  # fmt: skip


def test_analysis_opens_no_file() -> None:
    """The commands read every input (runs, chats, gold, covariates, other labellers) and report/ writes: nothing
    under annotate/analysis/ calls what opens a file (import-linter forbids the readers' modules as well)."""
    found = []
    for path in sorted((PACKAGE / "analysis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in FILE_CALLS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
    assert found == []
