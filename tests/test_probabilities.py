"""Label probabilities: token alignment, renormalisation over the scale, the cache, and the manifest."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotate.config import RunConfig
from annotate.engines.base import Completion, Request, TokenChoice, value_logprobs
from annotate.engines.fake import FakeBackend, lowest_values
from annotate.engines.openai_format import completion_from_openai
from annotate.errors import AnnotateError
from annotate.labelling.cache import CompletionCache
from annotate.labelling.pipeline import run
from annotate.labelling.probabilities import NO_ENGINE_PROBABILITIES, VALUE_NOT_FOUND, Distribution, distribution
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, read_runs, validate_run


def tokens(*pieces: tuple[str, dict[str, float]]) -> list[TokenChoice]:
    """Tokens whose chosen candidate is the first of its top list (or logprob 0 when it has none)."""
    return [TokenChoice(text, next(iter(top.values()), 0.0), top) for text, top in pieces]


def test_candidates_are_found_at_each_values_first_token() -> None:
    found = value_logprobs(
        tokens(
            ('{"', {}),
            ("emp", {}),
            ("athy", {}),
            ('":', {}),
            ("2", {"2": -0.5, "1": -1.2, "３": -3.0, "Sure": -1.0}),
            (',"', {}),
            ("urgency", {}),
            ('":', {}),
            (" 1", {" 1": -0.1, "2": -2.0, " 3,": -3.0}),
            ("}", {}),
        )
    )
    # full-width digits and words never count; a leading space or trailing comma in a candidate does not matter
    assert found == {"empathy": {"2": -0.5, "1": -1.2}, "urgency": {"1": -0.1, "2": -2.0, "3": -3.0}}


def test_a_token_that_merges_the_colon_with_the_digit_is_read_after_the_colon() -> None:
    found = value_logprobs(tokens(('{"a', {}), ('":1', {'":1': -0.2, '":2': -1.9, "1": -3.0}), ("}", {})))
    assert found == {"a": {"1": -0.2, "2": -1.9}}


def test_a_fenced_answer_is_aligned_on_its_own_tokens() -> None:
    """llama.cpp removes a code fence from the answer text but reports the fence's tokens too."""
    found = value_logprobs(
        tokens(
            ("```", {}), ("json", {}), ("\n{\n", {}), (' "', {}), ("x", {}), ('":', {}), (" ", {}), ("3", {"3": -0.7})
        )
    )
    assert found == {"x": {"3": -0.7}}


def test_the_chosen_token_counts_even_when_the_top_list_left_it_out() -> None:
    found = value_logprobs([TokenChoice('{"v":', 0.0, {}), TokenChoice("2", -4.0, {"5": -0.1, "x": -0.2})])
    assert found == {"v": {"5": -0.1, "2": -4.0}}


def test_distribution_renormalises_over_the_allowed_values() -> None:
    dist = distribution({"1": math.log(0.2), "3": math.log(0.2), "7": math.log(0.5)}, [1, 2, 3], 3, "ordinal")
    assert isinstance(dist, Distribution)
    assert dist.probs == pytest.approx({1: 0.5, 2: 0.0, 3: 0.5})
    assert dist.confidence == pytest.approx(0.5)
    assert dist.expected == pytest.approx(2.0)
    assert json.loads(dist.probs_json()) == {"1": 0.5, "2": 0.0, "3": 0.5}


def test_nominal_scales_have_no_expected_value_and_binary_ones_give_the_proportion() -> None:
    nominal = distribution({"1": 0.0, "2": math.log(1 / 3)}, [1, 2], 1, "nominal")
    binary = distribution({"0": math.log(0.25), "1": math.log(0.75)}, [0, 1], 1, "binary")
    assert isinstance(nominal, Distribution) and nominal.expected is None
    assert isinstance(binary, Distribution) and binary.expected == pytest.approx(0.75)


def test_multi_token_values_are_scored_by_their_first_token() -> None:
    # on a 0-10 scale "10" is written as "1" then "0": the first token "1" writes the value 1 itself,
    # so its mass goes to 1; a first token "1" on a scale without 1 goes to the one value it begins
    scale = list(range(0, 11))
    dist = distribution({"1": math.log(0.6), "9": math.log(0.4)}, scale, 1, "ordinal")
    assert isinstance(dist, Distribution) and dist.probs[1] == pytest.approx(0.6) and dist.probs[10] == 0
    only_ten = distribution({"1": math.log(0.6), "5": math.log(0.4)}, [5, 10, 20], 10, "ordinal")
    assert isinstance(only_ten, Distribution) and only_ten.probs == pytest.approx({5: 0.4, 10: 0.6, 20: 0.0})


def test_no_distribution_without_log_probabilities_or_without_the_chosen_value() -> None:
    assert distribution(None, [1, 2, 3], 2, "ordinal") == NO_ENGINE_PROBABILITIES
    assert distribution({}, [1, 2, 3], 2, "ordinal") == VALUE_NOT_FOUND
    assert distribution({"1": -0.1}, [1, 2, 3], 2, "ordinal") == VALUE_NOT_FOUND


def test_an_openai_response_with_logprobs_becomes_candidates_per_key() -> None:
    def token(text: str, logprob: float, top: dict[str, float]) -> dict[str, object]:
        return {"token": text, "logprob": logprob, "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}

    response = {
        "choices": [
            {
                "message": {"content": '{"empathy":3}'},
                "finish_reason": "stop",
                "logprobs": {
                    "content": [
                        token('{"', 0, {}),
                        token("empathy", 0, {}),
                        token('":', 0, {}),
                        token("3", -0.3, {"3": -0.3, "2": -1.5}),
                    ]
                },
            }
        ]
    }
    assert completion_from_openai(response, 1.0).value_logprobs == {"empathy": {"3": -0.3, "2": -1.5}}
    del response["choices"][0]["logprobs"]
    assert completion_from_openai(response, 1.0).value_logprobs is None


def answer_with_probabilities(request: Request) -> Completion:
    """The lowest value of each key, with the engine's candidates: 60% on it, 30% on the next, 10% elsewhere."""
    text = lowest_values(request)
    candidates = {}
    for key, spec in request.schema["properties"].items():
        values = sorted(spec["enum"])
        candidates[key] = {str(values[0]): math.log(0.6), str(values[1]): math.log(0.3), "9": math.log(0.1)}
    return Completion(text, "stop", value_logprobs=candidates)


def fake_config(library: PromptLibrary, out: Path, use_cache: bool = True) -> RunConfig:
    return RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=4, use_cache=use_cache)


def test_every_ok_row_gets_probabilities_that_sum_to_one_and_the_cache_keeps_them(
    library: PromptLibrary, tmp_path: Path
) -> None:
    run(fake_config(library, tmp_path / "a"), backend=FakeBackend(script=answer_with_probabilities))
    labels = pd.read_parquet(tmp_path / "a" / "labels.parquet")
    assert (labels["status"] == "ok").all() and labels["probs"].notna().all()
    for row in labels.itertuples():
        probs = {int(k): v for k, v in json.loads(row.probs).items()}
        assert sum(probs.values()) == pytest.approx(1, abs=1e-5)
        assert row.confidence == pytest.approx(probs[row.value]) == pytest.approx(2 / 3, abs=1e-5)
    negative = labels[labels["variable"] == "negative_sentiment"]
    assert negative["expected"].round(4).unique().tolist() == [round(1 + 1 / 3, 4)]  # per round, in chat_rounds
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["probabilities"]["with_probabilities"] == len(labels)

    never_called = FakeBackend(script=lambda r: pytest.fail("the cache should answer"))  # type: ignore[arg-type,return-value]
    run(fake_config(library, tmp_path / "b"), backend=never_called)
    again = pd.read_parquet(tmp_path / "b" / "labels.parquet")
    assert again["cached"].all() and again["probs"].tolist() == labels["probs"].tolist()


def test_an_engine_without_probabilities_leaves_the_columns_empty_and_says_why(
    library: PromptLibrary, tmp_path: Path
) -> None:
    run(fake_config(library, tmp_path / "run"), backend=FakeBackend())
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["probs"].isna().all() and labels["confidence"].isna().all() and labels["expected"].isna().all()
    entry = json.loads((tmp_path / "run" / "manifest.json").read_text())["probabilities"]
    assert entry["method"].startswith("none: the engine returned no log probabilities")
    assert entry["with_probabilities"] == 0 and entry["missing"] == {NO_ENGINE_PROBABILITIES: len(labels)}


def test_a_cache_written_before_probabilities_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT NOT NULL,"
        " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, latency_ms REAL NOT NULL)"
    )
    db.execute("INSERT INTO completions VALUES ('k', '{}', 'stop', 1, 1, 1.0)")
    db.commit()
    db.close()
    cache = CompletionCache(path)
    old = cache.get("k")
    assert old is not None and old.value_logprobs is None
    cache.put("n", Completion("{}", "stop", value_logprobs={"a": {"1": -0.5}}))
    new = cache.get("n")
    assert new is not None and new.value_logprobs == {"a": {"1": -0.5}}
    cache.close()


def test_validate_reports_calibration_and_the_probability_weighted_label(
    library: PromptLibrary, tmp_path: Path
) -> None:

    run(fake_config(library, tmp_path / "run"), backend=FakeBackend(script=answer_with_probabilities))
    result = validate_run(tmp_path / "run", EXAMPLES.parent / "gold.csv", library, n_boot=0)
    empathy = next(v for v in result.variables if v.variable == "empathy")
    assert empathy.calibration is not None and empathy.expected_label is not None
    calibration = empathy.calibration
    # every label says 1 with 2/3 confidence: one bin, whose accuracy is the share of gold 1s
    assert calibration.mean_confidence == pytest.approx(2 / 3, abs=1e-5)
    assert len(calibration.reliability) == 1
    assert calibration.ece == pytest.approx(abs(2 / 3 - calibration.accuracy), abs=1e-5)
    assert math.isnan(calibration.auroc) or 0 <= calibration.auroc <= 1
    assert [p.deferred for p in calibration.risk_coverage] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert calibration.risk_coverage[-1].kept == round(empathy.n / 2)


def test_calibration_statistics_on_known_values() -> None:
    from annotate.analysis.calibration import calibration, probability_weighted

    # confident labels are right, unsure ones wrong: perfect separation
    scores = calibration([0.9, 0.9, 0.8, 0.3, 0.2], [1, 2, 3, 1, 2], [1, 2, 3, 2, 3], [1, 2, 3], "ordinal")
    assert scores.accuracy == pytest.approx(0.6)
    # but 3 right and 2 wrong labels are too few for an AUROC: 1.0 here is luck as much as skill
    assert math.isnan(scores.auroc) and "AUROC not given: 3 right and 2 wrong labels" in scores.notes[0]
    assert scores.brier == pytest.approx((0.01 + 0.01 + 0.04 + 0.09 + 0.04) / 5)
    assert scores.risk_coverage[-1].accuracy == 1.0  # half deferred: the unsure two (and one more) are gone
    assert probability_weighted(pd.Series([1.4, 1.5, 2.6, 0.2]), [1, 2, 3]).tolist() == [1, 1, 3, 1]
    many = calibration([0.9] * 6 + [0.3] * 6, [1] * 12, [1] * 6 + [2] * 6, [1, 2, 3], "ordinal")
    assert many.auroc == 1.0 and many.auroc_ci95 == (1.0, 1.0)


def test_a_calibrated_labeller_is_told_apart_from_small_sample_error() -> None:
    """Defect 9: a perfectly calibrated labeller showed ECE 0.11-0.20 at n = 22-79 with nothing to compare it to."""
    from annotate.analysis.calibration import calibration

    rng = np.random.default_rng(4)
    confidence = rng.uniform(0.4, 1.0, 30)
    right = rng.uniform(size=30) < confidence  # calibrated by construction
    scores = calibration(confidence.tolist(), [1] * 30, np.where(right, 1, 2).tolist(), [1, 2], "binary")
    assert scores.ece > 0.05  # small-sample error alone
    assert scores.ece_if_calibrated == pytest.approx(scores.ece, abs=0.08)
    assert scores.ece_ci95 is not None and scores.ece_ci95[0] <= scores.ece <= scores.ece_ci95[1]


def test_agree_can_compare_probability_weighted_labels(library: PromptLibrary, tmp_path: Path) -> None:
    from annotate.analysis.agree import agree

    run(fake_config(library, tmp_path / "a"), backend=FakeBackend(script=answer_with_probabilities))
    run(fake_config(library, tmp_path / "b", use_cache=False), backend=FakeBackend())
    run(fake_config(library, tmp_path / "a2"), backend=FakeBackend(script=answer_with_probabilities))
    result = agree(read_runs(tmp_path / "a", tmp_path / "a2"), library, n_boot=0, label="expected")
    assert result.label == "expected"
    # every probability-weighted value is 1 + 1/3 -> 1: the two runs agree everywhere
    assert all(pair.percent_agreement == 1.0 for v in result.variables for pair in v.pairs.values())
    with pytest.raises(AnnotateError, match="have no probabilities"):
        agree(read_runs(tmp_path / "a", tmp_path / "b"), library, n_boot=0, label="expected")


def test_the_reasons_for_missing_probabilities_survive_an_interrupted_run(
    library: PromptLibrary, tmp_path: Path
) -> None:
    answered = []

    def stop_after_two(request: Request) -> str:
        if len(answered) == 2:
            raise KeyboardInterrupt
        answered.append(request)
        return lowest_values(request)

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(fake_config(library, out, use_cache=False), backend=FakeBackend(script=stop_after_two))
    interrupted = json.loads((out / "manifest.json").read_text())
    assert interrupted["status"] == "interrupted"
    before = interrupted["probabilities"]["missing"][NO_ENGINE_PROBABILITIES]
    assert before > 0
    run(fake_config(library, out, use_cache=False), backend=FakeBackend())
    labels = pd.read_parquet(out / "labels.parquet")
    entry = json.loads((out / "manifest.json").read_text())["probabilities"]
    assert entry["missing"] == {NO_ENGINE_PROBABILITIES: len(labels)} and entry["ok_labels"] == len(labels)
