"""One request for several constructs: a rubric that ``combines`` others, and how runs choose tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.analysis.agree import agree_runs
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines import fake
from annotate.engines.base import Request
from annotate.engines.fake import FakeBackend
from annotate.errors import PromptError
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT, library_flags, read_runs

GOLD = ROOT / "examples" / "gold.csv"

SEPARATE = ["empathy", "information_seeking", "solution_provision", "proactivity"]


def config(library: PromptLibrary, out: Path, **kw: object) -> RunConfig:
    return RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=6, **kw)  # type: ignore[arg-type]


def test_joint_rubric_uses_the_parts_definitions_as_written(library: PromptLibrary) -> None:
    joint = library.get("agent_behaviour").rubric
    assert joint.unit == "post_handoff"
    assert [p.task for p in joint.parts] == SEPARATE
    for task in SEPARATE:
        part = library.get(task).rubric
        assert joint.variables[task] == part.variables[task]
        assert next(p for p in joint.parts if p.task == task).decision_rules == part.decision_rules
    assert joint.json_schema["required"] == SEPARATE
    system = library.get("agent_behaviour").static_messages[0]["content"]
    for task in SEPARATE:
        for rule in library.get(task).rubric.decision_rules:
            assert rule in system


def test_editing_a_part_changes_the_joint_prompt_hash(library: PromptLibrary) -> None:
    before = library.get("agent_behaviour").content_hash
    path = library.rubrics_dir / "proactivity.yaml"
    path.write_text(path.read_text().replace("is still reactive", "stays reactive"))
    assert PromptLibrary(library.prompts_dir, library.rubrics_dir).get("agent_behaviour").content_hash != before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("  - no_such.yaml\n", "no_such.yaml: no such rubric"),
        ("  - initial_state.yaml\n", "initial_state.yaml rates unit 'first_round', this rubric 'post_handoff'"),
        ("  - empathy.yaml\n", "variable 'empathy' appears in two parts"),
        ("variables: {}\n", "field 'variables': not allowed with 'combines'"),
    ],
)
def test_bad_combines_name_the_file_and_field(library: PromptLibrary, edit: str, message: str) -> None:
    path = library.rubrics_dir / "agent_behaviour.yaml"
    path.write_text(path.read_text().replace("thin_evidence:", f"{edit}thin_evidence:", 1))
    with pytest.raises(PromptError, match=r"agent_behaviour\.yaml") as raised:
        _ = library.get("agent_behaviour").rubric
    assert message in str(raised.value)


def test_default_run_rates_each_variable_once(library: PromptLibrary) -> None:
    assert library.default_tasks() == ["agent_behaviour", "initial_state", "round_sentiment"]
    (library.rubrics_dir / "agent_behaviour.yaml").unlink()
    assert library.default_tasks() == sorted([*SEPARATE, "initial_state", "round_sentiment"])


def test_two_tasks_rating_one_variable_are_refused(library: PromptLibrary, tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="tasks 'agent_behaviour' and 'empathy' both rate 'empathy'"):
        run(config(library, tmp_path / "r", tasks=["agent_behaviour", "empathy"]), backend=FakeBackend())


def test_a_version_for_a_task_outside_the_run_is_refused(library: PromptLibrary, tmp_path: Path) -> None:
    dirs = library_flags(library)
    result = CliRunner().invoke(
        app, ["run", str(EXAMPLES), "--out", str(tmp_path / "r"), "-b", "fake", "--prompt-version", "empathy=v1", *dirs]
    )
    assert result.exit_code == 1
    assert "'empathy', which this run does not label (add --task empathy)" in result.output


def test_joint_and_separate_runs_label_the_same_items(library: PromptLibrary, tmp_path: Path) -> None:
    joint = run(config(library, tmp_path / "joint", tasks=["agent_behaviour"]), backend=FakeBackend())
    separate = run(config(library, tmp_path / "separate", tasks=SEPARATE), backend=FakeBackend())
    assert separate.model_calls == 4 * joint.model_calls
    key = ["chat_id", "round", "variable"]
    a = pd.read_parquet(tmp_path / "joint" / "labels.parquet").sort_values(key)
    b = pd.read_parquet(tmp_path / "separate" / "labels.parquet").sort_values(key)
    assert a[key].to_numpy().tolist() == b[key].to_numpy().tolist()
    newest = library.versions("agent_behaviour", "en")[-1]
    assert (a["status"] == "ok").all() and (a["prompt_version"] == newest).all()
    report = agree_runs(read_runs(tmp_path / "joint", tmp_path / "separate"), library, n_boot=50).as_json()
    assert sorted(v["variable"] for v in report["variables"]) == sorted(SEPARATE)
    (difference,) = report["differences"].values()
    assert difference == ["tasks: agent_behaviour vs empathy, information_seeking, proactivity, solution_provision"]


def test_diff_of_two_task_sets_shows_flips_and_the_gold_change(
    library: PromptLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def joint_answers_highest(request: Request) -> str:
        pick = max if "four constructs" in request.messages[0]["content"] else min
        properties = request.schema["properties"]
        return json.dumps({name: pick(spec["enum"]) for name, spec in properties.items()})

    monkeypatch.setattr(fake, "lowest_values", joint_answers_highest)  # what `-b fake` answers with
    dirs = library_flags(library)
    out = tmp_path / "d"
    args = ["diff", ",".join(SEPARATE), "agent_behaviour", "--on", str(EXAMPLES), "--limit", "4", "-b", "fake"]
    result = CliRunner().invoke(app, [*args, "--gold", str(GOLD), "--out", str(out), "--bootstrap", "50", *dirs])
    assert result.exit_code == 0, result.output
    assert "### system messages:" in result.output
    separate_name = "+".join(SEPARATE)
    assert f"{separate_name}: 16 model calls" in result.output and "agent_behaviour: 4 model calls" in result.output
    for variable in SEPARATE:
        assert f"{variable}: 4 of 4 units flipped, kappa between task sets" in result.output
    report = json.loads((out / "agreement.json").read_text())
    proactivity = next(v for v in report["variables"] if v["variable"] == "proactivity")
    assert proactivity["transitions"] == [[0, 4], [0, 0]]
    assert proactivity["flipped"][0]["target"].startswith("Human agent:")
    assert proactivity["gold"]["change"]["percent_agreement"] is not None
    assert set(report["runs"]) == {separate_name, "agent_behaviour"}


def test_diff_of_task_sets_without_a_shared_variable_is_refused(library: PromptLibrary, tmp_path: Path) -> None:
    dirs = library_flags(library)
    result = CliRunner().invoke(app, ["diff", "empathy", "initial_state", "--out", str(tmp_path / "d"), *dirs])
    assert result.exit_code == 1
    assert "'empathy' and 'initial_state' rate no variable in common" in result.output


def test_coding_instructions_for_a_joint_run_give_each_construct_its_own_rubric(library: PromptLibrary) -> None:
    from annotate.analysis.sample import rubric_text
    from annotate.runs.manifest import PromptEntry

    text = rubric_text(library, {"agent_behaviour": PromptEntry(version="v1")}, {"empathy", "proactivity"})
    assert "## empathy (Empathy of the human agent after the handoff)" in text
    assert "## proactivity (Proactivity of the human agent after the handoff)" in text
    assert "Standard closing offers" in text and "Two or more case-specific questions" not in text
