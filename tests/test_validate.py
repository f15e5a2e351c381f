from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from annotate.analysis.gold import consensus
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.base import Request
from annotate.engines.fake import FakeBackend
from annotate.errors import InputError
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.runs.coded import read_gold
from tests.conftest import EXAMPLES, validate_run

GOLD = Path(__file__).resolve().parent.parent / "examples" / "gold.csv"


def gold_script(flip: set[str]):
    """Answer every unit with the gold label, except chats in ``flip`` (answered with the lowest value)."""
    gold = pd.read_csv(GOLD, dtype={"round": "Int64"})
    chats = {json.loads(line)["chat_id"]: json.loads(line) for line in EXAMPLES.read_text().splitlines()}

    def script(request: Request) -> str:
        user = request.messages[-1]["content"]
        chat_id = next(
            c
            for c, rec in chats.items()
            if all(m["text"] in user for m in rec["messages"][-1:]) or rec["messages"][1]["text"] in user
        )
        answer = {}
        for name, spec in request.schema["properties"].items():
            rows = gold[(gold["chat_id"] == chat_id) & (gold["variable"] == name)]
            match = re.search(r"round (\d+) \(rate this\)", user)
            if match:
                rows = rows[rows["round"] == int(match.group(1))]
            value = int(rows["value"].iloc[0]) if len(rows) else min(spec["enum"])
            answer[name] = min(spec["enum"]) if chat_id in flip else value
        return json.dumps(answer)

    return script


@pytest.fixture
def scripted_run(library: PromptLibrary, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    config = RunConfig(
        inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=8, tasks=["empathy", "initial_state"]
    )
    run(config, backend=FakeBackend(script=gold_script({"c02", "c05"})))
    return out


def test_validate_matches_an_independent_computation(scripted_run: Path, library: PromptLibrary) -> None:
    result = validate_run(scripted_run, GOLD, library, n_boot=200).as_json()
    by_name = {v["variable"]: v for v in result["variables"]}
    assert set(by_name) == {"empathy", "initial_sentiment", "initial_urgency"}
    labels = pd.read_parquet(scripted_run / "labels.parquet")
    gold = pd.read_csv(GOLD)
    joined = labels[labels["variable"] == "empathy"].merge(gold[gold["variable"] == "empathy"], on="chat_id")
    expected = cohen_kappa_score(joined["value_y"], joined["value_x"], labels=[1, 2, 3])
    assert by_name["empathy"]["cohen_kappa"] == pytest.approx(expected)
    assert by_name["empathy"]["n"] == 8 and by_name["empathy"]["chats"] == 8
    assert by_name["empathy"]["percent_agreement"] == pytest.approx((joined["value_x"] == joined["value_y"]).mean())
    assert sum(map(sum, by_name["empathy"]["confusion"])) == 8
    low, high = by_name["empathy"]["ci95"]["cohen_kappa"]
    assert low <= by_name["empathy"]["cohen_kappa"] <= high
    # only the flipped chats disagree, and every disagreement carries what the model saw
    assert {d["chat_id"] for d in result["disagreements"]} <= {"c02", "c05"}
    assert all(d["target"] for d in result["disagreements"])
    # gold items outside this 8-chat, 2-task run are reported, not silently dropped
    never = result["unmatched"]["gold_not_labelled"]
    assert len(never) == len(gold) - 8 - 16
    assert {"chat_id": "c09", "round": None, "variable": "empathy"} in never


def test_failed_labels_are_listed_not_compared(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(
        RunConfig(
            inputs=[EXAMPLES],
            out=out,
            prompts=library.paths,
            backend="fake",
            limit=3,
            tasks=["empathy"],
            max_attempts=1,
        ),
        backend=FakeBackend(script=lambda r: "nonsense"),
    )
    result = validate_run(out, GOLD, library, n_boot=0).as_json()
    assert result["variables"] == []
    assert [f["status"] for f in result["unmatched"]["failed_labels"]] == ["parse_error"] * 3


def test_several_annotators_give_consensus_and_a_human_ceiling(
    scripted_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = pd.read_csv(GOLD)
    second = gold.assign(annotator="b")
    second.loc[second["chat_id"] == "c01", "value"] = 1
    path = tmp_path / "two.csv"
    pd.concat([gold.assign(annotator="a"), second]).to_csv(path, index=False)
    both = read_gold(path).table
    agreed = consensus(both)
    assert len(agreed) == len(gold)
    # c01 empathy: a says 1, b says 1 -> 1; initial_sentiment: a 2, b 1 -> tie -> lower median 1
    pick = agreed[(agreed["chat_id"] == "c01") & (agreed["variable"] == "initial_sentiment")]["value"]
    assert pick.tolist() == [1]
    result = validate_run(scripted_run, path, library, n_boot=0).as_json()
    empathy = next(v for v in result["variables"] if v["variable"] == "empathy")
    assert set(empathy["by_annotator"]["llm_vs"]) == {"a", "b"}
    assert empathy["by_annotator"]["human_pairs"]["a vs b"]["n"] == 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("chat_id,round,variable,value\nc01,,empathy,high\n", "g.csv:2: field 'value': not a whole number"),
        ("chat_id,round,variable,value\nc01,1.5,negative_sentiment,2\n", "g.csv:2: field 'round'"),
        ("chat_id,round,variable,value\n,,empathy,2\n", "g.csv:2: field 'chat_id': empty"),
        ("chat_id,round,value\nc01,,2\n", "field 'variable': missing column"),
        (
            "chat_id,round,variable,value\nc01,,empathy,2\nc01,,empathy,3\n",
            "g.csv:3: field 'value': the same annotator",
        ),
    ],
)
def test_gold_errors_name_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "g.csv"
    path.write_text(content)
    with pytest.raises(InputError) as raised:
        read_gold(path)
    assert message in str(raised.value)


def test_validate_command_writes_json_csv_and_a_self_contained_report(
    scripted_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "validate",
            str(scripted_run),
            "--gold",
            str(GOLD),
            "--out",
            str(out),
            "--bootstrap",
            "100",
            "--prompts-dir",
            str(library.prompts_dir),
            "--rubrics-dir",
            str(library.rubrics_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "empathy" in result.output and "wrote" in result.output
    data = json.loads((out / "agreement.json").read_text())
    table = pd.read_csv(out / "agreement.csv")
    assert list(table["variable"]) == [v["variable"] for v in data["variables"]]
    assert {"cohen_kappa", "cohen_kappa_ci_low", "gwet_ac1", "krippendorff_alpha"} <= set(table.columns)
    html = (out / "report.html").read_text()
    assert "Agreement by variable" in html and "Disagreements" in html
    assert html.count('src="data:image/png;base64,') >= 4
    assert not re.search(r'(src|href)="(https?:)?//', html)  # opens without network


def test_validate_command_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(tmp_path), "--gold", str(GOLD), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "not a run directory" in result.output


def test_trajectory_cost_follows_what_is_asked() -> None:
    """Issue 18: a 10,000-round chat took 309 s to validate: LOESS ran on 200 resamples even with --bootstrap 0,
    each exact at every round. Bands now follow --bootstrap and LOESS is exact every half percent."""
    import numpy as np
    from statsmodels.nonparametric.smoothers_lowess import lowess

    from annotate.analysis.trajectories import smooth, trajectories

    rng = np.random.default_rng(0)
    rounds = 2000
    frame = pd.DataFrame(
        {
            "chat_id": ["long"] * rounds,
            "round": np.arange(1, rounds + 1),
            "position": np.linspace(0, 100, rounds),
            "value": rng.integers(1, 6, rounds).astype(float),
            "group": "all",
        }
    )
    (without,) = trajectories(frame, n_boot=0)
    assert without.band is None
    exact = lowess(frame["value"], frame["position"], frac=0.6, it=0, return_sorted=True)
    reference = np.interp(without.grid, exact[:, 0], exact[:, 1])
    position, value = frame["position"].to_numpy(), frame["value"].to_numpy()
    np.testing.assert_allclose(smooth(position, value, without.grid), reference, atol=0.02)


def test_trajectories_count_rounds_from_the_handoff() -> None:
    from annotate.analysis.trajectories import trajectory_frame
    from annotate.ingest.model import Chat, Message
    from annotate.ingest.segmentation import handoff_round

    def chat(chat_id: str, roles: list[str]) -> Chat:
        return Chat(chat_id, [Message(role, f"{role} {i}") for i, role in enumerate(roles)], {})

    late = chat("late", ["customer", "ai", "customer", "ai", "customer", "agent", "customer", "agent"])
    never = chat("never", ["customer", "ai", "customer", "ai"])
    assert handoff_round(late) == 3 and handoff_round(never) is None
    labels = pd.DataFrame(
        {
            "chat_id": ["late"] * 4 + ["never"] * 2,
            "round": [1, 2, 3, 4, 1, 2],
            "variable": "negative_sentiment",
            "status": "ok",
            "value": [1, 2, 3, 4, 1, 1],
        }
    )
    frame = trajectory_frame(labels, {}, None, {"late": 3, "never": None})
    assert frame["position"].tolist() == [-2, -1, 0, 1, 0, 1]


def test_validate_opens_with_the_agreement_against_a_bar_and_claims_no_unmeasured_saving(
    scripted_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    """Issue 27: the verdict states κ against a stated bar first, counts only the variables where κ is defined, and
    on 8 coded chats names no saving: the worth cannot be measured there."""
    dirs = ["--prompts-dir", str(library.prompts_dir), "--rubrics-dir", str(library.rubrics_dir)]
    args = ["validate", str(scripted_run), "--gold", str(GOLD), "--out", str(tmp_path / "v"), "--bootstrap", "20"]
    result = CliRunner().invoke(app, [*args, *dirs])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("Cohen's κ with the gold:") and "reach the bar of 0.80" in first
    data = json.loads((tmp_path / "v" / "agreement.json").read_text())
    defined = [v for v in data["variables"] if v["cohen_kappa"] is not None]
    assert f"over {len(defined)} variables" in first
    assert "No variable shows a saving of human work" in first and "would save" not in first
    assert all(v["worth"]["status"] in {"none", "not_estimable"} for v in data["variables"])
