"""``annotate agree``: agreement of the LLM with itself (repeats) and across runs (models, backends, prompts).

Only items with an ``ok`` label from every coder are compared; how many were left out is reported.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from annotate.analysis import statistics as st
from annotate.analysis.calibration import use_label
from annotate.analysis.excerpts import VariableInfo, variable_info
from annotate.analysis.results import (
    AgreementResult,
    Bootstrap,
    MultiCoderStatistics,
    PairAgreement,
    RunDescription,
    VariableAgreement,
)
from annotate.errors import RunStoreError
from annotate.prompts.library import PromptLibrary
from annotate.runs.manifest import RunManifest
from annotate.runs.reader import Run


def agree(
    runs: list[Run],
    library: PromptLibrary | None = None,
    repeat: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
    label: str = "chosen",
) -> AgreementResult:
    """One run: across its repeats; several runs: pairwise across runs.

    ``label='expected'`` compares the probability-weighted labels instead of the chosen ones.
    """
    if len(runs) == 1:
        result = agree_repeats(runs[0], library, label)
    else:
        result = agree_runs(runs, library, repeat, n_boot, seed, label)
    result.label = label
    return result


def _load(run: Run, library: PromptLibrary | None, label: str) -> tuple[pd.DataFrame, RunManifest]:
    labels, manifest = run.labels, run.manifest
    labels = labels[labels["status"] != "skipped"]
    scales = {name: (v.scale, v.categories) for name, v in variable_info(labels, manifest, library).items()}
    return use_label(labels, label, scales, str(run.path)), manifest


def agree_repeats(run: Run, library: PromptLibrary | None = None, label: str = "chosen") -> AgreementResult:
    run_dir = run.path
    labels, manifest = _load(run, library, label)
    repeats = sorted(int(r) for r in labels["repeat"].dropna().unique())
    if len(repeats) < 2:
        raise RunStoreError(f"{run_dir} has one repeat: run it with --repeats N (N >= 2), or compare several runs")
    info = variable_info(labels, manifest, library)
    variables = []
    for variable, rows in labels.groupby("variable", sort=True):
        meta = info[str(variable)]
        wide, dropped = _wide(rows, "repeat", repeats)
        variables.append(
            _entry(
                str(variable),
                meta,
                dropped,
                repeats=MultiCoderStatistics.model_validate(
                    st.multi_coder_statistics(wide.to_numpy(int), meta.categories, meta.scale)
                ),
            )
        )
    return AgreementResult(
        mode="repeats",
        runs=[RunDescription.of(run_dir, manifest)],
        coders=[f"repeat {r}" for r in repeats],
        variables=variables,
    )


def agree_runs(
    runs: list[Run],
    library: PromptLibrary | None = None,
    repeat: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
    label: str = "chosen",
) -> AgreementResult:
    if len(runs) < 2:
        raise RunStoreError("give two or more run directories, or one run made with --repeats")
    run_dirs = [run.path for run in runs]
    loaded = [_load(run, library, label) for run in runs]
    names = _coder_names(run_dirs)
    frames = []
    info: dict[str, VariableInfo] = {}
    for name, (labels, manifest) in zip(names, loaded, strict=True):
        rows = labels[labels["repeat"] == repeat].assign(coder=name)
        frames.append(rows)
        info = {**variable_info(rows, manifest, library), **info}
    everything = pd.concat(frames, ignore_index=True)
    variables = []
    for variable, rows in everything.groupby("variable", sort=True):
        meta = info[str(variable)]
        wide, dropped = _wide(rows, "coder", names)
        pairs = {f"{a} vs {b}": _pair(wide, a, b, meta, n_boot, seed) for a, b in combinations(names, 2)}
        all_runs = None
        if len(names) > 2:
            stats = st.multi_coder_statistics(wide.to_numpy(int), meta.categories, meta.scale)
            all_runs = MultiCoderStatistics.model_validate(stats)
        variables.append(_entry(str(variable), meta, dropped, pairs=pairs, all_runs=all_runs))
    return AgreementResult(
        mode="runs",
        runs=[RunDescription.of(d, m) for d, (_, m) in zip(run_dirs, loaded, strict=True)],
        coders=names,
        repeat=repeat,
        bootstrap=Bootstrap(resamples=n_boot, seed=seed),
        differences={
            f"{names[i]} vs {names[j]}": differences(loaded[i][1], loaded[j][1])
            for i, j in combinations(range(len(names)), 2)
        },
        variables=variables,
    )


def _entry(variable: str, meta: VariableInfo, dropped: int, **stats: Any) -> VariableAgreement:
    return VariableAgreement(
        variable=variable,
        task=meta.task,
        scale=meta.scale,
        categories=meta.categories,
        items_left_out=dropped,
        **stats,
    )


def _pair(wide: pd.DataFrame, first: str, second: str, meta: VariableInfo, n_boot: int, seed: int) -> PairAgreement:
    a, b = wide[first].astype(int).tolist(), wide[second].astype(int).tolist()
    chats = [c for c, _ in wide.index]
    point = st.pair_statistics(a, b, meta.categories, meta.scale)
    return PairAgreement.model_validate(
        point
        | {
            "ci95": st.pair_bootstrap(a, b, chats, meta.categories, meta.scale, n_boot, seed),
            "confusion": st.confusion_counts(a, b, meta.categories).tolist(),
            "note": st.degenerate_note(a, b, (str(first), str(second))),
        }
    )


def _wide(rows: pd.DataFrame, coder_column: str, coders: list[Any]) -> tuple[pd.DataFrame, int]:
    """Items x coders of ok labels; items lacking an ok label from any coder are dropped and counted."""
    ok = rows[rows["status"] == "ok"]
    wide = ok.pivot_table(
        index=["chat_id", "round"], columns=coder_column, values="value", aggfunc="first", dropna=False
    )
    wide = wide.reindex(columns=coders)
    total = rows.drop_duplicates(["chat_id", "round"]).shape[0]
    complete = wide.dropna()
    return complete, int(total - len(complete))


def _coder_names(run_dirs: list[Path]) -> list[str]:
    names = [d.name or str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    return names


def differences(a: RunManifest, b: RunManifest) -> list[str]:
    """The configuration that differs between two runs, named from their manifests."""
    found = []
    if a.backend != b.backend:
        found.append(f"backend: {a.backend} vs {b.backend}")
    model_a, model_b = a.model, b.model
    for key in sorted(set(model_a) | set(model_b)):
        if model_a.get(key) != model_b.get(key) and key not in ("license", "source"):
            found.append(f"model {key}: {model_a.get(key)} vs {model_b.get(key)}")
    if a.sampling != b.sampling:
        found.append(f"sampling: {a.sampling} vs {b.sampling}")
    prompts_a, prompts_b = a.prompts, b.prompts
    for task in sorted(set(prompts_a) & set(prompts_b)):
        if prompts_a[task].hash != prompts_b[task].hash:
            found.append(f"{task} prompt: {prompts_a[task].version} vs {prompts_b[task].version}")
    if set(prompts_a) != set(prompts_b):
        only_a = ", ".join(sorted(set(prompts_a) - set(prompts_b))) or "-"
        only_b = ", ".join(sorted(set(prompts_b) - set(prompts_a))) or "-"
        found.append(f"tasks: {only_a} vs {only_b}")
    return found or ["same configuration (a replication)"]
