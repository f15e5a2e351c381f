from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.cli import app
from annotate.config import PACKAGE_DEFAULTS, PromptPaths
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, library_flags, write_jsonl

runner = CliRunner()


def dirs(library: PromptLibrary) -> list[str]:
    return library_flags(library)


def test_help_lists_commands_and_imports_no_engine() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output and "prompts" in result.output
    probe = (
        "import sys; from typer.testing import CliRunner; from annotate.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
        "r = CliRunner().invoke(app, ['run', '--help']); assert r.exit_code == 0; "
        "print(sorted(m for m in ('vllm', 'torch', 'xllamacpp', 'transformers', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("annotate ")


def test_run_with_the_test_double_writes_a_run_directory(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", str(EXAMPLES), "--limit", "3", "--out", str(out), "--backend", "fake", *dirs(library)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "labels by task and status" in result.output
    assert "chats: 3 " in result.output
    assert (out / "labels.parquet").is_file() and (out / "labels.csv").is_file()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "finished already: nothing to do" in again.output


def test_task_and_prompt_version_selection(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            str(EXAMPLES),
            "--limit",
            "2",
            "--out",
            str(out),
            "-b",
            "fake",
            "-t",
            "empathy",
            "-t",
            "proactivity",
            "--prompt-version",
            "v1",
            *dirs(library),
        ],
    )
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(out / "labels.parquet")
    assert set(labels["task"]) == {"empathy", "proactivity"} and set(labels["prompt_version"]) == {"v1"}


def test_missing_input_file_is_one_clean_line(library: PromptLibrary, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r"), "-b", "fake", *dirs(library)]
    )
    assert result.exit_code == 1
    assert result.output.strip().endswith("nope.jsonl: no such file")
    assert "Traceback" not in result.output


def test_strict_mode_fails_on_the_first_bad_record(library: PromptLibrary, tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"chat_id": "a", "messages": [{"role": "robot", "text": "x"}]}])
    result = runner.invoke(
        app, ["run", str(bad), "--out", str(tmp_path / "r"), "-b", "fake", "--strict", *dirs(library)]
    )
    assert result.exit_code == 1
    assert "bad.jsonl:1: field 'messages[0].role': unknown role 'robot'" in result.output


def test_user_errors_in_options(library: PromptLibrary, tmp_path: Path) -> None:
    base = ["run", str(EXAMPLES), "--out", str(tmp_path / "r"), *dirs(library)]
    unknown = runner.invoke(app, [*base, "--backend", "nope"])
    assert unknown.exit_code == 1 and "unknown backend 'nope'" in unknown.output
    bare = runner.invoke(app, [*base, "-b", "fake", "--prompt-version", "v2"])
    assert bare.exit_code == 2 and "--task" in bare.output
    role = runner.invoke(app, [*base, "-b", "fake", "--role", "bot=robot"])
    assert role.exit_code == 2 and "NAME=SPEAKER" in role.output
    openai = runner.invoke(app, [*base, "-b", "openai"])
    assert openai.exit_code == 1 and "needs --base-url" in openai.output
    version = runner.invoke(app, [*base, "-b", "fake", "--prompt-version", "empathy=v7"])
    assert version.exit_code == 1 and "no prompt version 'v7'" in version.output
    ray = runner.invoke(app, [*base, "-b", "fake", "--ray-address", "auto"])
    assert ray.exit_code == 2 and "--ray-address needs --ray-workers" in ray.output


def test_resume_with_other_settings_is_refused(library: PromptLibrary, tmp_path: Path) -> None:
    base = ["run", str(EXAMPLES), "--limit", "1", "--out", str(tmp_path / "r"), "-b", "fake", *dirs(library)]
    first = runner.invoke(app, base)
    assert first.exit_code == 0 and "finished already" not in first.output
    again = runner.invoke(app, base)
    assert again.exit_code == 0 and "finished already: nothing to do" in again.output  # issue 29 (7)
    result = runner.invoke(app, [*base, "--top-p", "0.5"])
    assert result.exit_code == 1 and "choose a new --out directory" in result.output


def test_prompts_list_show_render(library: PromptLibrary) -> None:
    listed = runner.invoke(app, ["prompts", "list", *dirs(library)])
    assert listed.exit_code == 0 and "round_sentiment" in listed.output
    marked = {line.split()[0] for line in listed.output.splitlines() if line.split()[1:2] and "*" in line.split()[2]}
    assert marked == {"agent_behaviour", "initial_state", "round_sentiment"}
    shown = runner.invoke(app, ["prompts", "show", "empathy", "v1", *dirs(library)])
    assert shown.exit_code == 0
    assert "=== system ===" in shown.output and '"enum": [1, 2, 3]' in shown.output
    rendered = runner.invoke(
        app, ["prompts", "render", "empathy", "v1", str(EXAMPLES), "--chat", "c17", *dirs(library)]
    )
    assert rendered.exit_code == 0
    assert "chat c17" in rendered.output and "Anna from the care team" in rendered.output
    per_round = runner.invoke(
        app,
        ["prompts", "render", "round_sentiment", "v1", str(EXAMPLES), "--chat", "c09", "--round", "3", *dirs(library)],
    )
    assert per_round.exit_code == 0 and per_round.output.count("########") == 1
    assert "I want to speak to a real person. NOW." in per_round.output
    no_handoff = runner.invoke(
        app, ["prompts", "render", "empathy", "v1", str(EXAMPLES), "--chat", "c23", *dirs(library)]
    )
    assert no_handoff.exit_code == 1 and "has no empathy unit" in no_handoff.output
    far = ["prompts", "render", "round_sentiment", "v1", str(EXAMPLES), "--chat", "c09", "--round", "999"]
    beyond = runner.invoke(app, [*far, *dirs(library)])  # issue 28 (14): the right reason, a non-zero exit
    assert beyond.exit_code == 1 and "--round 999: chat 'c09' has no such round (its rounds: 1–" in beyond.output
    missing = runner.invoke(app, ["prompts", "render", "empathy", "v1", str(EXAMPLES), "--chat", "zz", *dirs(library)])
    assert missing.exit_code == 1 and "no chat 'zz'" in missing.output


def test_a_project_prompts_folder_adds_to_the_packaged_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29 (2): a ./prompts holding only empathy/v3 hid every packaged task and version. Now it adds to
    them: `prompts copy` starts v3 from the packaged v2, `prompts list` says where each version comes from,
    `diff empathy v2 v3` finds both, an empty project folder labels with the packaged prompts, and a version
    whose parent does not exist is refused in one line."""
    monkeypatch.chdir(tmp_path)
    copied = runner.invoke(app, ["prompts", "copy", "empathy", "v2"])
    assert copied.exit_code == 0, copied.output
    own = tmp_path / "prompts" / "empathy" / "v3.yaml"
    assert own.is_file() and own.read_text().startswith("parent: v2\nchangelog: >\n  Started from empathy v2 (")
    listed = runner.invoke(app, ["prompts", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    rows = {tuple(line.split()[:2]): line.split()[-1] for line in listed.output.splitlines() if line.strip()}
    assert rows[("empathy", "v3")] == "project" and rows[("empathy", "v2")] == "packaged"
    assert ("agent_behaviour", "v1") in rows and "over the packaged prompts" in listed.output
    diffed = runner.invoke(app, ["diff", "empathy", "v2", "v3", "--out", str(tmp_path / "d")])
    assert diffed.exit_code == 0, diffed.output
    own.write_text(own.read_text().replace("parent: v2", "parent: v9"))
    shown = runner.invoke(app, ["prompts", "show", "empathy", "v3"])
    assert shown.exit_code == 1 and "field 'parent': empathy has no version 'v9'" in shown.output
    empty = tmp_path / "nothing"
    empty.mkdir()
    args = [
        "run",
        str(EXAMPLES),
        "--out",
        str(tmp_path / "r"),
        "-b",
        "fake",
        "--limit",
        "2",
        "--prompts-dir",
        str(empty),
    ]
    assert runner.invoke(app, args).exit_code == 0
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["prompts"]["agent_behaviour"]["version"]


def test_outside_a_project_the_packaged_prompts_are_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    paths = PromptPaths.resolve()
    assert paths.prompts_dir == PACKAGE_DEFAULTS / "prompts" and paths.rubrics_dir == PACKAGE_DEFAULTS / "rubrics"
    result = runner.invoke(app, ["prompts", "list"])
    assert result.exit_code == 0 and "agent_behaviour" in result.output
    (tmp_path / "prompts").mkdir()
    assert PromptPaths.resolve().prompts_dir == tmp_path / "prompts"  # a project's own folder wins


def test_diff_takes_the_same_engine_options_as_run() -> None:
    def options(command: str) -> set[str]:
        found = click_command(command).params
        return {p.name for p in found if p.name}

    engine = {"backend", "model", "base_url", "api_key", "max_model_len", "concurrency", "threads", "dtype"}
    engine |= {"tensor_parallel_size", "prefix_cache"}
    assert engine <= options("run") and engine <= options("diff")


def click_command(name: str) -> Any:
    import typer.main

    group = typer.main.get_command(app)
    return group.commands[name]  # type: ignore[attr-defined]


def test_ctrl_c_in_a_reader_does_not_promise_a_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 28 (15): Ctrl-C in validate printed the labelling run's resume hint."""
    import annotate.commands.validate as validate_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate_module, "validate_command", interrupted)
    result = runner.invoke(app, ["validate", str(tmp_path), "--gold", str(tmp_path / "g.csv"), "--out", str(tmp_path)])
    assert result.exit_code == 130 and "interrupted: stopped" in result.output and "resume" not in result.output


def _caveats(page: Path) -> list[str]:
    """The rows of a report page's one caveat section, as 'about: caveat' (the section must come before any table)."""
    html = page.read_text()
    start = html.index('<h2 id="caveats">Read these first</h2>')
    assert html.count("Read these first") == 1 and "<h2>" not in html[:start]
    section = html[start : html.index("</table>", start)]
    cells = re.findall(r'<td class="l(?: nw)?">(.*?)</td>', section)
    return [f"{about}: {caveat}" for about, caveat in zip(cells[::2], cells[1::2], strict=True)]


def test_every_reader_says_first_that_a_run_did_not_finish(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 29 (4): after a killed run (manifest `running`, no live lock) validate and sample went ahead without
    a word, and sample drew from the shrunken population."""
    runner = CliRunner()
    out = tmp_path / "run"
    made = runner.invoke(
        app, ["run", str(EXAMPLES), "--out", str(out), "--backend", "fake", "--limit", "8", *dirs(library)]
    )
    assert made.exit_code == 0, made.output
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "status": "running"}))  # killed: no lock held
    gold = str(EXAMPLES.parent / "gold.csv")
    validated = runner.invoke(app, ["validate", str(out), "--gold", gold, "--out", str(tmp_path / "v"), *dirs(library)])
    assert validated.exit_code == 0, validated.output
    first = validated.output.splitlines()[0]
    assert first.startswith(f"warning: {out} stopped before it finished (killed?)") and "units labelled so far" in first
    assert _caveats(tmp_path / "v" / "report.html")[0].startswith("run: Partial run: ")
    other = tmp_path / "other"
    runner.invoke(app, ["run", str(EXAMPLES), "--out", str(other), "--backend", "fake", "--limit", "8", *dirs(library)])
    (other / "manifest.json").write_text(json.dumps({**json.loads(manifest.read_text()), "run_id": "other"}))
    pair = [str(out), str(other)]
    agreed = runner.invoke(app, ["agree", *pair, "--out", str(tmp_path / "a"), *dirs(library)])
    assert agreed.exit_code == 0 and agreed.output.startswith("warning: "), agreed.output
    caveats = _caveats(tmp_path / "a" / "report.html")  # every page: its caveats in one place, under the verdict
    assert [c.split(":")[0] for c in caveats] == ["run 1", "run 2"] and all("Partial run: " in c for c in caveats)
    sample = ["sample", str(out), "--out", str(tmp_path / "c.csv"), "--per-variable", "2", *dirs(library)]
    sampled = runner.invoke(app, sample)
    assert sampled.exit_code == 0 and sampled.output.startswith("warning: ")
    assert "stopped before it finished" in json.loads((tmp_path / "c.sample.json").read_text())["incomplete"]
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "status": "complete"}))
    again = runner.invoke(app, ["validate", str(out), "--gold", gold, "--out", str(tmp_path / "v2"), *dirs(library)])
    assert again.exit_code == 0 and "warning:" not in again.output


def test_a_dry_run_counts_the_requests_and_tokens_the_run_sends(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 29 (1): know the cost before you wait. The plan counts exactly what the run then sends (on the fake
    engine, whose scripted tokenizer counts), writes nothing, and counts nothing already labelled."""
    from annotate.config import RunConfig
    from annotate.engines.fake import FakeBackend
    from annotate.labelling.pipeline import run
    from annotate.labelling.plan import plan_run

    def tokens(messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    config = RunConfig(
        inputs=[EXAMPLES], out=tmp_path / "r", prompts=library.paths, backend="fake", limit=6, use_cache=False
    )
    plan = plan_run(config, FakeBackend(counter=tokens))
    assert not (tmp_path / "r").exists() and plan.counted_by == "engine"
    engine = FakeBackend(counter=tokens)
    run(config, backend=engine)
    sent = engine.requests
    assert sum(plan.requests.values()) == len(sent) and plan.prompt_tokens == sum(tokens(r.messages) for r in sent)
    assert plan.answer_tokens == sum(r.max_tokens for r in sent)
    assert sum(plan_run(config).requests.values()) == 0  # labelled already: nothing left to send
    shown = runner.invoke(
        app, ["run", str(EXAMPLES), "--out", str(tmp_path / "d"), "--limit", "6", "--dry-run", *dirs(library)]
    )
    assert shown.exit_code == 0 and f"to send: {len(sent)} requests (" in shown.output
    assert "estimated high" in shown.output and not (tmp_path / "d").exists()


def test_a_run_tells_its_cost_before_the_first_request_and_times_a_warm_up(
    library: PromptLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 29 (1): without --dry-run too, the run says what it will send before it sends anything, then how long
    the rest will take at the rate its first answers were measured at."""
    monkeypatch.setenv("ANNOTATE_FAKE_DELAY", "0.05")
    args = ["run", str(EXAMPLES), "--backend", "fake", "--limit", "4", "--no-cache", *dirs(library)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    plan, measured = result.output.splitlines()[:2]
    assert plan.startswith("to send: 12 requests (agent_behaviour 4, initial_state 4, round_sentiment 4), ")
    assert measured.startswith("measured here: ") and "for the 8 left" in measured
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["summary"]["model_calls"] == 12
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert again.output.startswith("finished already: nothing to do")  # no plan for nothing to send
    dry = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--dry-run"])
    assert "nothing to send: the 12 units these chats give are in " in dry.output
