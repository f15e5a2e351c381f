"""Damaged files, unwritable places and hostile templates end in one line and exit 1, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from annotate.cli import app
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT, library_flags

runner = CliRunner()


def dirs(library: PromptLibrary) -> list[str]:
    return library_flags(library)


def labelled(library: PromptLibrary, out: Path) -> Path:
    result = runner.invoke(app, ["run", str(EXAMPLES), "--limit", "3", "-b", "fake", "--out", str(out), *dirs(library)])
    assert result.exit_code == 0, result.output
    return out


def one_line(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1 and message in result.output, result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("chat_id,round,variable,value\n", "g.csv: no gold labels (the file has a header only)"),
        ("chat_id,round,variable,value\nc01,,empathy,7\n", "g.csv:2: field 'value': 7 is not a value of empathy"),
    ],
)
def test_gold_that_cannot_be_scored(library: PromptLibrary, tmp_path: Path, content: str, message: str) -> None:
    run_dir = labelled(library, tmp_path / "run")
    (tmp_path / "g.csv").write_text(content)
    args = ["validate", str(run_dir), "--gold", str(tmp_path / "g.csv"), "--out", str(tmp_path / "o"), *dirs(library)]
    one_line(runner.invoke(app, args), message)


def test_a_damaged_completion_cache(library: PromptLibrary, tmp_path: Path, isolated_cache: Path) -> None:
    (isolated_cache / "completions.sqlite3").write_bytes(b"this is not a database" * 100)
    args = ["run", str(EXAMPLES), "--limit", "1", "-b", "fake", "--out", str(tmp_path / "r"), *dirs(library)]
    one_line(runner.invoke(app, args), "the completion cache cannot be used")
    assert runner.invoke(app, [*args, "--no-cache"]).exit_code == 0


def test_a_cache_folder_that_cannot_be_made(
    library: PromptLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ANNOTATE_CACHE_DIR", str(blocker / "cache"))
    args = ["run", str(EXAMPLES), "--limit", "1", "-b", "fake", "--out", str(tmp_path / "r"), *dirs(library)]
    one_line(runner.invoke(app, args), "cannot create the cache folder")


def test_a_run_directory_that_cannot_be_written(library: PromptLibrary, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["run", str(EXAMPLES), "--limit", "1", "-b", "fake", "--out", str(blocker / "run"), *dirs(library)]
    one_line(runner.invoke(app, args), "cannot write the run directory")


def test_a_truncated_manifest(library: PromptLibrary, tmp_path: Path) -> None:
    run_dir = labelled(library, tmp_path / "run")
    manifest = run_dir / "manifest.json"
    manifest.write_text(manifest.read_text()[:200])
    args = ["run", str(EXAMPLES), "--limit", "3", "-b", "fake", "--out", str(run_dir), *dirs(library)]
    one_line(runner.invoke(app, args), "manifest.json: damaged")
    agree = ["agree", str(run_dir), str(run_dir), "--out", str(tmp_path / "a"), *dirs(library)]
    one_line(runner.invoke(app, agree), "manifest.json: damaged")


@pytest.mark.parametrize(
    ("version", "message"), [(3, "newer than this annotate reads (2): upgrade annotate"), (0, "format_version 0")]
)
def test_a_manifest_of_an_unknown_format_is_one_line(
    library: PromptLibrary, tmp_path: Path, version: int, message: str
) -> None:
    """Issue 28 (12): format_version is checked, never read as 2."""
    run_dir = labelled(library, tmp_path / "run")
    manifest = run_dir / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": version}))
    validate = ["validate", str(run_dir), "--gold", str(ROOT / "examples" / "gold.csv"), "--out", str(tmp_path / "v")]
    one_line(runner.invoke(app, [*validate, *dirs(library)]), message)


@pytest.mark.parametrize("option", [["--max-model-len", "0"], ["--max-model-len", "-5"], ["--max-chars", "0"]])
def test_a_context_of_nothing_is_refused(library: PromptLibrary, tmp_path: Path, option: list[str]) -> None:
    """Issue 28 (20)."""
    result = runner.invoke(app, ["run", str(EXAMPLES), "-b", "fake", "--out", str(tmp_path / "r"), *option])
    assert result.exit_code == 2 and "Invalid value" in result.output and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("{{ range(10**7) | list | length }}", "OverflowError"),
        ("{{ 'a' * 2000000000 }}", "SecurityError"),
        ("{{ 'a' * 2e9 }}", "TypeError"),
        ("{{ 9 ** 99999999 }}", "SecurityError"),
    ],
)
def test_a_template_that_would_exhaust_memory(library: PromptLibrary, expression: str, problem: str) -> None:
    template = library.prompts_dir / "empathy" / "v1.j2"
    template.write_text(template.read_text().replace("Task: {{ rubric.title }}.", expression))
    one_line(runner.invoke(app, ["prompts", "show", "empathy", "v1", *dirs(library)]), problem)


@pytest.mark.parametrize("command", ["validate", "estimate", "agree", "sample", "trajectories", "consensus"])
def test_an_out_that_cannot_be_written_is_one_line(library: PromptLibrary, tmp_path: Path, command: str) -> None:
    """Issue 18: --out naming an existing file gave tracebacks from every reporting command."""
    from annotate.config import RunConfig
    from annotate.engines.fake import FakeBackend
    from annotate.labelling.pipeline import run

    out, other = tmp_path / "run", tmp_path / "other"
    for folder in (out, other):
        config = RunConfig(inputs=[EXAMPLES], out=folder, prompts=library.paths, backend="fake", limit=4)
        run(config, backend=FakeBackend())
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "inside" if command in ("sample", "trajectories") else blocker
    gold = str(EXAMPLES.parent / "gold.csv")
    args = {
        "validate": ["validate", str(out), "--gold", gold],
        "estimate": ["estimate", str(out), "--gold", gold, "--variable", "initial_urgency"],
        "agree": ["agree", str(out), str(other)],
        "sample": ["sample", str(out)],
        "trajectories": ["trajectories", str(out)],
        "consensus": ["consensus", str(out), str(other)],
    }[command]
    dirs = library_flags(library)
    dirs = [] if command in ("trajectories", "consensus") else dirs
    result = CliRunner().invoke(app, [*args, "--out", str(target), *dirs])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_a_model_that_cannot_load_fails_the_run_in_one_line_and_can_be_corrected(
    library: PromptLibrary, tmp_path: Path
) -> None:
    """Issue 18: a non-GGUF, empty or truncated --model gave a traceback, left the manifest `running`, and the
    folder then refused the corrected model; agree read the empty run, exit 0, n = 0."""
    from annotate.engines import embedded

    dirs = library_flags(library)
    out = tmp_path / "run"
    bad = tmp_path / "model.gguf"
    bad.write_text('{"not": "a model"}')
    runner = CliRunner()
    args = ["run", str(EXAMPLES), "--out", str(out), "--limit", "1", *dirs]
    failed = runner.invoke(app, [*args, "--model", str(bad)])
    assert failed.exit_code == 1 and "not a GGUF model file" in failed.output, failed.output
    if embedded.resolve(None) is None or not embedded.gguf_path().is_file():
        pytest.skip("the embedded model is not installed (make install)")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(embedded.gguf_path().read_bytes()[:4096])
    broken = runner.invoke(app, [*args, "--model", str(truncated)])
    assert broken.exit_code == 1 and "llama.cpp could not load it" in broken.output, broken.output
    lines = broken.output.strip().splitlines()  # the plan, the progress line, then the error in one line
    assert len(lines) <= 3 and lines[0].startswith("to send: 3 requests") and "could not load it" in lines[-1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "could not load" in manifest["error"]
    agreed = runner.invoke(app, ["agree", str(out), str(out), "--out", str(tmp_path / "a"), *dirs])
    assert agreed.exit_code == 1 and "the run labelled nothing (status failed" in agreed.output, agreed.output
    fixed = runner.invoke(app, [*args, "-b", "fake"])  # the corrected setup may use the folder
    assert fixed.exit_code == 0, fixed.output


def test_an_error_with_brackets_keeps_them() -> None:
    """Rich markup swallowed "[ray]" in "pip install 'annotate[ray]'" (issue 20's small fixes)."""
    import typer

    from annotate.cli_options import user_errors
    from annotate.errors import AnnotateError

    def fail() -> None:
        with user_errors():
            raise AnnotateError("the Ray executor needs the ray package: pip install 'annotate[ray]'")

    app_ = typer.Typer()
    app_.command()(fail)
    result = CliRunner().invoke(app_, [])
    assert result.exit_code == 1 and "annotate[ray]" in result.output
