"""Every statistic against a hand computation, a published worked example, or the reference library."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from annotate.analysis import statistics as ag

nan = math.nan


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-9


# 2x2 table yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = .7, p_e = .5*.6 + .5*.4 = .5, kappa = .4
TEXTBOOK_A = [1] * 25 + [0] * 25
TEXTBOOK_B = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15

# AC1 by hand: pi = (.25, .35, .2, .1, .1), pe = .755 / 4 = .18875, AC1 = (.9 - .18875) / (1 - .18875)
AC1_A = [1, 2, 3, 3, 2, 1, 4, 1, 2, 5]
AC1_B = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5]


@pytest.mark.parametrize(
    ("a", "b", "cats", "expected"),
    [
        # perfect agreement over several labels
        (
            [1, 2, 3, 1, 2, 3],
            [1, 2, 3, 1, 2, 3],
            [1, 2, 3],
            {"percent_agreement": 1.0, "cohen_kappa": 1.0, "gwet_ac1": 1.0, "krippendorff_alpha": 1.0},
        ),
        # one label only: kappa and alpha undefined, AC1 defined (pe = 0)
        (
            [2, 2, 2, 2],
            [2, 2, 2, 2],
            [1, 2, 3],
            {"percent_agreement": 1.0, "cohen_kappa": nan, "gwet_ac1": 1.0, "krippendorff_alpha": nan},
        ),
        # systematic disagreement: p_o = 0, p_e = .5, kappa = -1
        ([1, 2, 1, 2], [2, 1, 2, 1], [1, 2], {"percent_agreement": 0.0, "cohen_kappa": -1.0}),
        (TEXTBOOK_A, TEXTBOOK_B, [0, 1], {"percent_agreement": 0.7, "cohen_kappa": 0.4}),
        (AC1_A, AC1_B, [1, 2, 3, 4, 5], {"percent_agreement": 0.9, "gwet_ac1": (0.9 - 0.18875) / (1 - 0.18875)}),
        # no items at all
        ([], [], [1, 2], {"percent_agreement": nan, "cohen_kappa": nan, "gwet_ac1": nan}),
    ],
)
def test_pair_statistics(a: list[int], b: list[int], cats: list[int], expected: dict[str, float]) -> None:
    stats = ag.pair_statistics(a, b, cats, "ordinal" if len(cats) > 2 else "nominal")
    for name, value in expected.items():
        assert close(stats[name], value), (name, stats[name], value)


def ac1(a: list[int], b: list[int], cats: list[int]) -> float:
    return ag.ac1_from_counts(ag.confusion_counts(a, b, cats))


def test_ac1_matches_the_irrcac_reference_value() -> None:
    # irrCAC 0.4.4 (the Python port of Gwet's R package) printed AC1 = 0.87673 for this data.
    assert round(ac1(AC1_A, AC1_B, [1, 2, 3, 4, 5]), 5) == 0.87673


def test_ac1_equals_irrcac_on_random_data() -> None:
    irrcac = pytest.importorskip("irrCAC.raw", reason="irrCAC is a dev dependency (make install)")
    import pandas as pd

    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.integers(1, 5, size=30)
        b = np.where(rng.random(30) < 0.5, a, rng.integers(1, 5, size=30))
        reference = irrcac.CAC(pd.DataFrame({"a": a, "b": b}), categories=[1, 2, 3, 4]).gwet()
        ours = ac1(a.tolist(), b.tolist(), [1, 2, 3, 4])
        assert abs(ours - reference["est"]["coefficient_value"]) < 1e-5  # irrCAC rounds to 5 decimals


def test_ac1_stays_informative_when_one_label_dominates() -> None:
    # 48 of 50 items "0" for both, the two rare ones disagree: kappa collapses, AC1 does not.
    a = [0] * 48 + [1, 0]
    b = [0] * 48 + [0, 1]
    assert ag.cohen_kappa(a, b, [0, 1]) < 0
    assert ac1(a, b, [0, 1]) > 0.9


def test_weighted_kappa_penalises_far_disagreements_less_than_unweighted() -> None:
    a = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    near = [1, 2, 3, 4, 5, 2, 3, 4, 5, 4]
    cats = [1, 2, 3, 4, 5]
    plain, linear, quadratic = (ag.cohen_kappa(a, near, cats, w) for w in (None, "linear", "quadratic"))
    assert plain < linear < quadratic
    assert close(quadratic, cohen_kappa_score(a, near, labels=cats, weights="quadratic"))


def test_krippendorff_alpha_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 3 coders, 15 units, gaps.
    data = np.array(
        [
            [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
            [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
            [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
        ]
    )
    assert round(ag.krippendorff_alpha(data, [1, 2, 3, 4], "nominal"), 3) == 0.691


def test_fleiss_kappa_published_example() -> None:
    # Fleiss (1971): 10 subjects, 14 raters, 5 categories; kappa = 0.210.
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    ratings = np.array([np.repeat(np.arange(1, 6), row) for row in counts])
    assert round(ag.fleiss_kappa(ratings, [1, 2, 3, 4, 5]), 3) == 0.210


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_fast_kappa_equals_scikit_learn(weights: str | None) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        a = rng.integers(1, 6, size=40)
        b = np.where(rng.random(40) < 0.6, a, rng.integers(1, 6, size=40))
        counts = ag.confusion_counts(a, b, [1, 2, 3, 4, 5])
        assert close(
            ag.kappa_from_counts(counts, weights), cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights=weights)
        )


def test_confusion_prevalence_and_per_class() -> None:
    human = [1, 1, 2, 3]
    llm = [1, 2, 2, 3]
    counts = ag.confusion_counts(human, llm, [1, 2, 3])
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert ag.prevalence(llm, [1, 2, 3]) == {1: 0.25, 2: 0.5, 3: 0.25}
    classes = ag.per_class_from_counts(counts, [1, 2, 3])
    assert classes[1] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert classes[2]["precision"] == 0.5


def test_counts_based_statistics_equal_scikit_learn() -> None:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(11)
    cats = [1, 2, 3, 4, 5]
    for _ in range(30):
        a = rng.integers(1, 6, size=25)
        b = np.where(rng.random(25) < 0.5, a, rng.integers(1, 4, size=25))
        counts = ag.confusion_counts(a, b, cats)
        assert counts.tolist() == confusion_matrix(a, b, labels=cats).tolist()
        precision, recall, _, support = precision_recall_fscore_support(a, b, labels=cats, zero_division=np.nan)
        ours = ag.per_class_from_counts(counts, cats)
        for k, p, r, s in zip(cats, precision, recall, support, strict=True):
            assert close(ours[k]["precision"], float(p)) and close(ours[k]["recall"], float(r))
            assert ours[k]["support"] == s
        assert close(ag.agreement_from_counts(counts), float(np.mean(a == b)))


def test_cluster_bootstrap_resamples_whole_chats_reproducibly() -> None:
    a = [1, 2, 3] * 10
    b = [1, 2, 3] * 9 + [3, 2, 1]
    chats = [f"c{i // 3}" for i in range(30)]
    first = ag.pair_bootstrap(a, b, chats, [1, 2, 3], "ordinal", n_boot=300, seed=1)
    again = ag.pair_bootstrap(a, b, chats, [1, 2, 3], "ordinal", n_boot=300, seed=1)
    assert first == again
    low, high = first["cohen_kappa"]
    point = ag.cohen_kappa(a, b, [1, 2, 3])
    assert low < point < high == 1.0  # many resamples leave out the one chat that disagrees
    perfect = ag.pair_bootstrap(a, a, chats, [1, 2, 3], "ordinal", n_boot=100)
    assert perfect["cohen_kappa"] == (1.0, 1.0)


def test_multi_coder_statistics() -> None:
    same = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3], [1, 1, 1]])
    stats = ag.multi_coder_statistics(same, [1, 2, 3], "ordinal")
    assert stats["identical_share"] == 1.0 and stats["mean_pairwise_kappa"] == 1.0
    assert stats["fleiss_kappa"] == pytest.approx(1.0) and stats["krippendorff_alpha"] == pytest.approx(1.0)
    one_off = same.copy()
    one_off[0, 2] = 2
    stats = ag.multi_coder_statistics(one_off, [1, 2, 3], "ordinal")
    assert stats["identical_share"] == 0.75
    assert stats["pairwise_kappa"][0][1] == 1.0 and stats["pairwise_kappa"][0][2] < 1.0


def test_figures_from_a_handful_of_items_say_so() -> None:
    """Issue 29 (7): AC1 1.000 [1.00, 1.00] from one item and zero-width intervals from 1-4 items, with no note."""
    from annotate.analysis.statistics import degenerate_note

    assert degenerate_note([2], [2], ("a", "b")) == (
        "only 1 item: every figure rests on it, and their intervals (zero-width or whole-scale) are not evidence"
    )
    assert "only 4 items: every figure rests on them" in str(degenerate_note([1, 2, 3, 1], [1, 2, 3, 3], ("a", "b")))
    assert degenerate_note([1, 2, 3, 1, 2], [1, 2, 3, 3, 2], ("a", "b")) is None
    assert "a used the label 2 for all 5 items" in str(degenerate_note([2] * 5, [1, 2, 3, 3, 2], ("a", "b")))


def test_figure_legends_name_only_what_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29 (7): the agreement plot's legend named one of three series (the first row had no value for two)
    and the risk-coverage legend listed variables that drew no line."""
    from types import SimpleNamespace

    from annotate.report import plots

    drawn: list[object] = []
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or b"")
    nan = float("nan")
    first = SimpleNamespace(cohen_kappa=0.5, gwet_ac1=nan, krippendorff_alpha=nan, ci95={})
    second = SimpleNamespace(cohen_kappa=0.4, gwet_ac1=0.6, krippendorff_alpha=0.3, ci95={})
    plots.agreement_intervals([("a", first), ("b", second)], ["cohen_kappa", "gwet_ac1", "krippendorff_alpha"])
    legend = [t.get_text() for t in drawn[-1].axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["cohen_kappa", "gwet_ac1", "krippendorff_alpha"]
    point = SimpleNamespace(deferred=0.0, cohen_kappa=0.2)
    undefined = SimpleNamespace(deferred=0.0, cohen_kappa=nan)
    scored = [
        ("empathy", SimpleNamespace(risk_coverage=[point])),
        ("urgency", SimpleNamespace(risk_coverage=[undefined])),
    ]
    plots.risk_coverage(scored)
    assert [t.get_text() for t in drawn[-1].axes[0].get_legend().get_texts()] == ["empathy"]


def test_the_trajectory_figure_names_the_groups_it_could_not_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29 (7): a trajectory figure dropped 3 of 4 groups without a note."""
    import pandas as pd

    from annotate.analysis.trajectories import SentimentCurves, trajectories
    from annotate.report import plots

    rows = [("big", f"c{i}", p, 1 + (i + p) % 5) for i in range(6) for p in range(-2, 3)]
    rows += [("small", "s1", 0, 2), ("small", "s1", 1, 3)]
    frame = pd.DataFrame(rows, columns=["group", "chat_id", "position", "value"])
    sentiment = SentimentCurves(frame, trajectories(frame, n_boot=0), "escalation")
    assert [t.group for t in sentiment.curves] == ["big"] and sentiment.undrawn == ["small"]
    drawn: list[object] = []
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or b"")
    plots.trajectories(sentiment.curves, "escalation", 0, sentiment.undrawn)
    notes = [t.get_text() for t in drawn[-1].texts]
    assert notes == ["no curve (fewer than 3 distinct rounds): small"]
