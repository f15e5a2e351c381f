"""What the terminal shows: a progress bar while labelling, and the tables each command prints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from annotate.analysis.results import AgreementResult, DiffResult, ValidationResult
from annotate.errors import AnnotateError
from annotate.prompts.library import PromptLibrary
from annotate.prompts.template import PromptVersion
from annotate.prompts.units import Unit
from annotate.report.html import fmt, fmt_ci
from annotate.report.validation import validation_verdict
from annotate.runs.manifest import RunManifest

if TYPE_CHECKING:
    from annotate.analysis.sample import CodingFiles
    from annotate.labelling.models import ModelInfo

err = Console(stderr=True)
out = Console()


def say(text: str) -> None:
    """Plain text on stdout: no markup, no highlighting, no wrapping (paths and diffs stay intact)."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def print_validation(result: ValidationResult) -> None:
    say(validation_verdict(result))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("variable", "n", "κ", "κ 95% CI", "κ quadratic", "AC1", "α"):
        table.add_column(name, no_wrap=True, justify="left" if name == "variable" else "right")
    for v in result.variables:
        table.add_row(
            v.variable,
            str(v.n),
            fmt(v.cohen_kappa, 2),
            fmt_ci(v.ci95.get("cohen_kappa")),
            fmt(v.kappa_quadratic, 2),
            fmt(v.gwet_ac1, 2),
            fmt(v.krippendorff_alpha, 2),
        )
    out.print(table)
    caveats = [(v.variable, "; ".join(v.notes)) for v in result.variables if v.notes]
    if caveats:  # one place, one line a variable, after the figures they qualify
        say("caveats:")
        for variable, text in caveats:
            say(f"  {variable}: {text}")
    _print_worth(result)
    for v in result.variables:
        if v.by_dispute:
            parts = [f"{name} {s.n} units, κ {fmt(s.cohen_kappa, 2)}" for name, s in v.by_dispute.items()]
            say(f"{v.variable}: " + "; ".join(parts))
    scored = [v for v in result.variables if v.calibration is not None]
    if scored:
        rows = [
            {
                "variable": v.variable,
                "confidence": v.calibration.mean_confidence,
                "accuracy": v.calibration.accuracy,
                "ECE": v.calibration.ece,
                "ECE if calibrated": v.calibration.ece_if_calibrated,
                "AUROC": v.calibration.auroc,
                "κ chosen": v.cohen_kappa,
                "κ weighted": v.expected_label.cohen_kappa if v.expected_label else float("nan"),
                "κ, 30% to humans": v.calibration.risk_coverage[3].cohen_kappa,
            }
            for v in scored
            if v.calibration is not None
        ]
        say("calibration of the model's confidence (report.html explains each column):")
        say(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="-"))
    missing = result.unmatched
    say(
        f"not compared: {len(missing.gold_not_labelled)} gold items never labelled, "
        f"{len(missing.failed_labels)} with a failed label"
    )


AGREE_COLUMNS = (
    "variable",
    "comparison",
    "n",
    "items_left_out",
    "cohen_kappa",
    "gwet_ac1",
    "mean_pairwise_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "identical_share",
)


def _print_worth(result: ValidationResult) -> None:
    """What each variable's labels are worth for its mean, in human labels per 100 coded."""
    say("worth of the LLM labels for each variable's mean, in human labels per 100 coded (100: no saving):")
    for v in result.variables:
        if v.worth is None:
            continue
        w = v.worth
        shown = "not estimable" if w.status == "not_estimable" else w.shown().split(" [")[0]
        interval = "" if w.low is None else f" (95% bootstrap interval {w.low:.0f} to {w.high:.0f})"
        note = f"; {w.note}" if w.note and w.status != "none" else ""
        say(f"  {v.variable}: {shown}{interval}{note}")


def print_agreement(result: AgreementResult, table: pd.DataFrame) -> None:
    for pair, differences in result.differences.items():
        say(f"{pair}: {'; '.join(differences)}")
    for v in result.variables:
        for pair, stats in v.pairs.items():
            if stats.note:
                say(f"{v.variable}, {pair}: {stats.note}")
    if len(result.coders) >= 3 and result.mode == "runs":
        print_kappa_matrices(result)
        return
    shown = [c for c in AGREE_COLUMNS if c in table.columns]
    printable = table[shown].copy()
    for column in shown[2:]:
        printable[column] = pd.to_numeric(printable[column], errors="coerce")
    say(printable.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="-"))


def print_kappa_matrices(result: AgreementResult) -> None:
    """Three or more runs: per variable, Cohen's κ of every pair of runs with its 95% interval."""
    coders = result.coders
    for v in result.variables:
        say(f"{v.variable} ({v.items_left_out} items left out): Cohen κ [95% CI]")
        matrix = pd.DataFrame("", index=coders, columns=coders)
        for a in coders:
            matrix.loc[a, a] = "1"
        for pair, s in v.pairs.items():
            a, b = pair.split(" vs ")
            low, high = s.ci95.get("cohen_kappa", (float("nan"), float("nan")))
            cell = f"{fmt(s.cohen_kappa, 2)} [{fmt(low, 2)}, {fmt(high, 2)}]"
            matrix.loc[a, b] = matrix.loc[b, a] = cell
        say(matrix.to_string())
        say("")


def print_diff(result: DiffResult) -> None:
    a, b = result.sides
    say(result.text_diff if not result.runs else result.text_diff.split("\n")[0] + " ...")
    for version, r in result.runs.items():
        say(
            f"{version}: {r.model_calls} model calls, {r.cache_hits} cache hits, "
            f"{r.evaluated_prompt_tokens} of {r.prompt_tokens} prompt tokens evaluated, {r.seconds} s"
        )
    between = "task sets" if result.task == "task sets" else "versions"
    for v in result.variables:
        line = f"{v.variable}: {len(v.flipped)} of {v.n} units flipped, kappa between {between} "
        line += fmt(v.between_versions.cohen_kappa)
        g = v.gold
        if g is not None and g.n:
            line += (
                f"; kappa with gold {fmt(g.by_side[a].cohen_kappa)} -> {fmt(g.by_side[b].cohen_kappa)} "
                f"(change {fmt(g.change['cohen_kappa'])}, 95% CI {fmt_ci(g.change_ci95.get('cohen_kappa'))})"
            )
        say(line)


def print_paths(paths: list[Any]) -> None:
    say("wrote " + ", ".join(str(p) for p in paths))


def print_sample(files: CodingFiles, run_dir: Path) -> None:
    chats = files.info.get("chats")
    if chats:
        split = f" ({chats['disputed']} disputed)" if "disputed" in chats else ""
        say(f"chats: {chats['sample']} of {chats['population']} (every named variable of a drawn chat is coded){split}")
    for name, entry in files.info["variables"].items():
        split = (
            f" ({entry['disputed']} disputed, all taken; {entry['random fill']} drawn at random)"
            if "disputed" in entry
            else ""
        )
        say(f"{name}: {entry['sample']} of {entry['population']} items{split}")
    if "replaced" in files.info:
        say(f"the file that was at {files.coding} is now {files.info['replaced']}")
    say(f"wrote {files.coding} (blinded, shuffled), {files.instructions}, {files.plan}")
    say(f"after coding: annotate validate {run_dir} --gold {files.coding} --out reports/...")
    say(f"          and annotate estimate {run_dir} --gold {files.coding} --formula '...' --out reports/...")


def print_consensus(manifest: RunManifest, rows: pd.DataFrame) -> None:
    say(f"{len(manifest.sources)} sources: {', '.join(s['name'] for s in manifest.sources)}; value: {manifest.method}")
    table = []
    for variable, entry in manifest.coverage.items():
        mine = rows[(rows["variable"] == variable) & (rows["status"] == "ok")]
        table.append(
            {
                "variable": variable,
                "units": entry["units"],
                "by every source": entry["by_every_source"],
                "by some": entry["by_some_sources"],
                "by none": entry["by_no_source"],
                "disputed": int(mine["disputed"].sum()),
                "mean share agreeing": float(mine["share"].mean()) if len(mine) else float("nan"),
            }
        )
    say(pd.DataFrame(table).to_string(index=False, float_format=lambda x: f"{x:.2f}"))


def print_models(models: Sequence[ModelInfo]) -> None:
    for m in models:
        state = "installed" if m.installed else f"not installed ({m.install})"
        say(f"{m.model}{'  (default)' if m.default else ''}: {m.name}, {m.size / 1e6:.0f} MB, {state}")
        say(f"  sha256 {m.sha256}")
        say(f"  source {m.source}; licence {m.license}")
        say(f"  file {m.assembled}" if m.assembled else "  file: assembled and verified at first use")


def print_prompt_list(library: PromptLibrary) -> None:
    """Every version; one that cannot be read is listed as broken, with its reason below, and the rest still show."""
    broken: list[str] = []
    try:
        defaults = library.default_tasks()
    except AnnotateError:
        defaults = []
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for name in ("task", "version", "parent", "hash", "unit", "examples", "from"):
        table.add_column(name, no_wrap=True)
    for task in library.tasks():
        newest = {
            library.versions(task, family)[-1:][0] for family in library.families() if library.versions(task, family)
        }
        for version in library.versions(task):
            try:
                pv = library.get(task, version)
            except AnnotateError as e:
                table.add_row(task, version, "-", "broken", "-", "-", "-")
                broken.append(str(e))
                continue
            marked = version + (" *" if task in defaults and version in newest else "")
            parent, examples = pv.meta.parent or "-", str(len(pv.meta.examples))
            table.add_row(task, marked, parent, pv.content_hash, pv.rubric.unit, examples, library.source(pv))
    out.print(table)
    families = ", ".join(library.families())
    say(f"* the newest of each prompt family ({families}; --prompt-family), run by default (without --task)")
    over = f", over the packaged prompts in {library.base.prompts_dir}" if library.base else ""
    say(f"prompts from {library.prompts_dir}{over}")
    for problem in broken:
        err.print(f"[bold red]broken:[/] {escape(problem)}", highlight=False, soft_wrap=True)


def print_prompt_version(pv: PromptVersion) -> None:
    messages = pv.static_messages  # render first: a broken template reports before anything is printed
    say(f"# {pv.task} {pv.version}  hash {pv.content_hash}  parent {pv.meta.parent or '-'}")
    say(f"# changelog: {pv.meta.changelog.strip()}")
    say(f"# unit: {pv.rubric.unit}  variables: {', '.join(pv.rubric.variables)}")
    say(f"# max_tokens: {pv.meta.max_tokens}  examples: {len(pv.meta.examples)}")
    if pv.rubric.unit == "chat_rounds":
        say(f"# output schema for a chat of 3 rounds: {json.dumps(pv.rubric.rounds_schema([1, 2, 3]))}\n")
    else:
        say(f"# output schema: {json.dumps(pv.rubric.json_schema)}\n")
    _print_messages(messages)


def print_rendered(pv: PromptVersion, chat: str, units: list[tuple[Unit, list[dict[str, str]]]]) -> None:
    for unit, messages in units:
        where = f" round {unit.round}" if unit.round is not None else ""
        truncated = f"  [truncated: {unit.truncation}]" if unit.truncation else ""
        say(f"######## {pv.task} {pv.version} ({pv.content_hash}) chat {chat}{where}{truncated}")
        _print_messages(messages)


def _print_messages(messages: list[dict[str, str]]) -> None:
    for m in messages:
        say(f"=== {m['role']} ===\n{m['content']}\n")
