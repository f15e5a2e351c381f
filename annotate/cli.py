"""The command line: a thin typer layer over the library.

Domain errors become one clean line on stderr in exactly one place, ``user_errors``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from annotate import __version__
from annotate.errors import AnnotateError

app = typer.Typer(
    help="Turn customer-service chat transcripts into validated research variables with a local LLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
prompts_app = typer.Typer(help="List, show and render versioned prompts.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")

err = Console(stderr=True)
out = Console()


@contextmanager
def user_errors() -> Iterator[None]:
    """The one place where domain errors turn into a single line and an exit code."""
    try:
        yield
    except AnnotateError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(
            "interrupted: everything labelled so far is saved; run the same command again to resume", soft_wrap=True
        )
        raise typer.Exit(130) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"annotate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


PromptsDir = Annotated[Path | None, typer.Option(help="Prompt versions folder (default: ./prompts or the project's).")]
RubricsDir = Annotated[Path | None, typer.Option(help="Rubrics folder (default: ./rubrics or the project's).")]
Bootstrap = Annotated[int, typer.Option(min=0, help="Chat-level bootstrap resamples for 95% intervals.")]
Seed = Annotated[int, typer.Option(help="Seed for resampling or sampling.")]
Transcripts = Annotated[list[Path] | None, typer.Option(help="Transcript files, if the run's inputs have moved.")]
Roles = Annotated[list[str] | None, typer.Option(help="Map a role name onto customer/ai/agent, e.g. bot=ai.")]
MaxChars = Annotated[int, typer.Option(help="Transcript characters per unit before truncation.")]


def _library(prompts_dir: Path | None, rubrics_dir: Path | None) -> Any:
    from annotate.prompts import PromptLibrary, default_dirs

    default_prompts, default_rubrics = default_dirs()
    return PromptLibrary(prompts_dir or default_prompts, rubrics_dir or default_rubrics)


def _prompt_versions(values: list[str], tasks: list[str] | None) -> dict[str, str]:
    """``v2`` applies to every selected task; ``empathy=v2`` to one."""
    chosen: dict[str, str] = {}
    for value in values:
        task, sep, version = value.rpartition("=")
        if sep:
            chosen[task] = version
        elif tasks:
            chosen.update(dict.fromkeys(tasks, version))
        else:
            raise typer.BadParameter(
                "a bare version needs --task; or write TASK=VERSION", param_hint="--prompt-version"
            )
    return chosen


@app.command()
def run(
    inputs: Annotated[
        list[Path], typer.Argument(help="Transcript files: .jsonl, .csv or .parquet.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (created, or resumed if it exists).")],
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            help="Task to run (repeatable) (default: every task, except one whose variables another task rates too).",
        ),
    ] = None,
    prompt_version: Annotated[
        list[str] | None,
        typer.Option(help="Version for the selected tasks (v2) or one task (empathy=v2) (default: newest)."),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="llamacpp, vllm, openai (or fake, for tests).")
    ] = "llamacpp",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model path or name (default: the embedded model).")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
    ] = None,
    api_key: Annotated[str, typer.Option(envvar="OPENAI_API_KEY", help="Key for --base-url, if it needs one.")] = "",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N chats.")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Label every unit N times (replication tests).")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    max_model_len: Annotated[int, typer.Option(help="Context length the engine allocates.")] = 8192,
    max_chars: MaxChars = 12000,
    batch_size: Annotated[int, typer.Option(min=1, help="Requests per engine call.")] = 512,
    max_attempts: Annotated[int, typer.Option(min=1, help="Tries per unit when an answer is invalid.")] = 3,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight (openai backend).")] = 4,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (llamacpp) (default: all cores).")] = None,
    dtype: Annotated[str | None, typer.Option(help="vLLM dtype (default: float32 on CPU, auto on GPU).")] = None,
    tensor_parallel_size: Annotated[int, typer.Option(min=1, help="vLLM: GPUs per model.")] = 1,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse cached answers.")] = True,
    prefix_cache: Annotated[
        bool,
        typer.Option(help="Engine reuses the shared prompt prefix: fast, but repeats may differ slightly (README)."),
    ] = True,
    strict: Annotated[bool, typer.Option(help="Fail on the first bad input record instead of skipping it.")] = False,
    redact: Annotated[
        bool, typer.Option(help="Mask emails, phone, order, IBAN and card numbers before the model sees text.")
    ] = False,
    ray_workers: Annotated[
        int | None,
        typer.Option(min=1, help="Run the engine on N Ray workers (one engine each) instead of in this process."),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join, e.g. auto (default: start a local Ray instance).")
    ] = None,
    ray_cpus: Annotated[float, typer.Option(min=0.0, help="CPUs per Ray worker (default: 1).")] = 1.0,
    ray_gpus: Annotated[
        float, typer.Option(min=0.0, help="GPUs per Ray worker; = --tensor-parallel-size for vllm (default: 0).")
    ] = 0.0,
    role: Roles = None,
    prompts_dir: PromptsDir = None,
    rubrics_dir: RubricsDir = None,
) -> None:
    """Label transcripts on one or more tasks and write a run directory."""
    from annotate.backends import BackendOptions, Sampling
    from annotate.pipeline import RunConfig
    from annotate.pipeline import run as run_pipeline
    from annotate.transcripts import parse_role_map

    try:
        role_map = parse_role_map(role or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--role") from None
    if ray_address and not ray_workers:
        raise typer.BadParameter("--ray-address needs --ray-workers", param_hint="--ray-address")
    extra: dict[str, Any] = {"api_key": api_key, "tensor_parallel_size": tensor_parallel_size}
    if dtype:
        extra["dtype"] = dtype
    with user_errors():
        library = _library(prompts_dir, rubrics_dir)
        config = RunConfig(
            inputs=inputs,
            out=out,
            library=library,
            tasks=task or None,
            prompt_versions=_prompt_versions(prompt_version or [], task),
            backend=backend,
            options=BackendOptions(
                model=model,
                base_url=base_url,
                max_model_len=max_model_len,
                concurrency=concurrency,
                threads=threads,
                prefix_cache=prefix_cache,
                extra=extra,
            ),
            sampling=Sampling(temperature=temperature, top_p=top_p, seed=seed),
            repeats=repeats,
            limit=limit,
            strict=strict,
            role_map=role_map,
            max_chars=max_chars,
            batch_size=batch_size,
            max_attempts=max_attempts,
            use_cache=cache,
            redact=redact,
            ray=_ray_options(ray_workers, ray_address, ray_cpus, ray_gpus),
        )
        with _RichProgress() as progress:
            summary = run_pipeline(config, progress=progress)
    _print_summary(summary)


def _ray_options(workers: int | None, address: str | None, cpus: float, gpus: float) -> Any:
    if workers is None:
        return None
    from annotate.ray_executor import RayOptions

    return RayOptions(workers=workers, address=address, cpus_per_worker=cpus, gpus_per_worker=gpus)


class _RichProgress:
    """Progress bar with items/s and ETA on stderr."""

    def __enter__(self) -> _RichProgress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                # Completed over elapsed: engines that answer a batch at once make the windowed speed meaningless.
                elapsed = task.elapsed or 0.0
                return Text(f"{task.completed / elapsed:.2f} units/s" if elapsed and task.completed else "- units/s")

        self._progress = Progress(
            TextColumn("labelling"),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
        )
        self._progress.start()
        self._task = self._progress.add_task("units", total=None)
        return self

    def start(self, total: int) -> None:
        """A new run (diff runs two): count from zero again."""
        self._progress.reset(self._task, total=total)

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def _print_summary(summary: Any) -> None:
    statuses = sorted({s for counts in summary.counts.values() for s in counts})
    out.print(f"run {summary.run_id}: labels by task and status", highlight=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("task", no_wrap=True)
    for s in statuses:
        table.add_column(s, justify="right")
    for task_name, counts in sorted(summary.counts.items()):
        table.add_row(task_name, *(str(counts.get(s, 0)) for s in statuses))
    out.print(table)
    rate = summary.model_calls / summary.seconds if summary.seconds else 0.0
    lines = [
        f"chats: {summary.chats} ({summary.chats_without_handoff} without a handoff, so no post-handoff units)",
        f"input records skipped: {summary.skipped_records}",
        f"model calls: {summary.model_calls}, cache hits: {summary.cache_hits}",
        f"tokens: {summary.prompt_tokens} prompt ({summary.cached_prompt_tokens} reused from the engine's prefix cache)"
        f" + {summary.completion_tokens} completion",
        f"time: {summary.seconds:.1f} s ({rate:.2f} model calls/s)",
        f"labels: {summary.out / 'labels.parquet'} (and labels.csv, manifest.json)",
    ]
    out.print("\n".join(lines), highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------- validate


@app.command()
def validate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory from `annotate run`.", show_default=False)],
    gold: Annotated[Path, typer.Option(help="Human labels: chat_id, round, variable, value[, annotator].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for agreement.json, agreement.csv, report.html.")],
    repeat: Annotated[int, typer.Option(min=0, help="Which repeat of the run to compare.")] = 0,
    bootstrap: Bootstrap = 1000,
    seed: Seed = 0,
    transcripts: Transcripts = None,
    group_by: Annotated[
        str | None, typer.Option(help="Chat metadata field for the sentiment trajectories (default: escalation).")
    ] = None,
    prompts_dir: PromptsDir = None,
    rubrics_dir: RubricsDir = None,
) -> None:
    """Agreement of a run's labels with human gold labels: kappa, AC1, alpha, intervals, disagreements."""
    from annotate import plots, report
    from annotate.store import load_run
    from annotate.validation import run_chats
    from annotate.validation import validate as run_validation

    with user_errors():
        library = _library(prompts_dir, rubrics_dir)
        result = run_validation(run_dir, gold, library, transcripts, repeat, bootstrap, seed)
        labels, manifest = load_run(run_dir)
        meta = {c.chat_id: dict(c.meta) for c in run_chats(manifest, transcripts)}
        field_name = group_by or ("escalation" if any("escalation" in m for m in meta.values()) else None)
        frame = plots.trajectory_frame(labels[labels["repeat"] == repeat], meta, field_name)
        trajectory = plots.trajectories(frame, field_name, seed=seed) if len(frame) else None
        paths = report.write_outputs(
            out, result, report.validation_table(result), report.validation_page(result, trajectory, field_name)
        )
        if trajectory is not None:
            (out / "trajectories.png").write_bytes(trajectory)
    _print_agreement(result)
    missing = result["unmatched"]
    typer.echo(
        f"not compared: {len(missing['gold_not_labelled'])} gold items never labelled, "
        f"{len(missing['failed_labels'])} with a failed label"
    )
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


def _print_agreement(result: dict[str, Any]) -> None:
    from annotate.report import fmt, fmt_ci

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("variable", "n", "κ", "κ 95% CI", "κ quadratic", "AC1", "α"):
        table.add_column(name, no_wrap=True, justify="left" if name == "variable" else "right")
    for v in result["variables"]:
        table.add_row(
            v["variable"],
            str(v["n"]),
            fmt(v["cohen_kappa"], 2),
            fmt_ci(v["ci95"].get("cohen_kappa")),
            fmt(v["kappa_quadratic"], 2),
            fmt(v["gwet_ac1"], 2),
            fmt(v["krippendorff_alpha"], 2),
        )
    out.print(table)


@app.command()
def agree(
    runs: Annotated[
        list[Path], typer.Argument(help="One run made with --repeats N, or several runs.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for agreement.json, agreement.csv, report.html.")],
    repeat: Annotated[int, typer.Option(min=0, help="Which repeat of each run to compare (several runs).")] = 0,
    bootstrap: Bootstrap = 1000,
    seed: Seed = 0,
    prompts_dir: PromptsDir = None,
    rubrics_dir: RubricsDir = None,
) -> None:
    """Agreement of the LLM with itself across repeats, or across runs (models, backends, prompt versions)."""
    import pandas as pd

    from annotate import report
    from annotate.replication import agree_repeats, agree_runs

    with user_errors():
        library = _library(prompts_dir, rubrics_dir)
        if len(runs) == 1:
            result = agree_repeats(runs[0], library)
        else:
            result = agree_runs(runs, library, repeat, bootstrap, seed)
        table = report.agree_table(result)
        paths = report.write_outputs(out, result, table, report.agree_page(result))
    if result["mode"] == "runs":
        for pair, differences in result["differences"].items():
            typer.echo(f"{pair}: {'; '.join(differences)}")
    shown = [
        c
        for c in (
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
        if c in table.columns
    ]
    printable = table[shown].copy()
    for column in shown[2:]:
        printable[column] = pd.to_numeric(printable[column], errors="coerce")  # None (undefined) -> NaN -> "-"
    typer.echo(printable.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="-"))
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@app.command()
def diff(
    first: Annotated[
        str, typer.Argument(metavar="TASK|TASKS_A", help="A task (then two versions), or the first task set.")
    ],
    second: Annotated[
        str, typer.Argument(metavar="VERSION_A|TASKS_B", help="The earlier version (e.g. v1), or the second task set.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report (and the two runs).")],
    third: Annotated[
        str | None, typer.Argument(metavar="VERSION_B", help="The later version (e.g. v2); none for two task sets.")
    ] = None,
    on: Annotated[list[Path] | None, typer.Option(help="Transcripts to label with both versions.")] = None,
    gold: Annotated[Path | None, typer.Option(help="Human labels, to show the change in agreement.")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="llamacpp, vllm, openai.")] = "llamacpp",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model path or name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N chats.")] = None,
    max_model_len: Annotated[int, typer.Option(help="Context length the engine allocates.")] = 8192,
    bootstrap: Bootstrap = 1000,
    seed: Seed = 0,
    prefix_cache: Annotated[bool, typer.Option(help="Engine reuses the shared prompt prefix (see run).")] = True,
    prompts_dir: PromptsDir = None,
    rubrics_dir: RubricsDir = None,
) -> None:
    """What changed between two prompts; with --on which labels flipped, with --gold the effect on agreement.

    Two versions of one task: `annotate diff empathy v1 v2`. Two task sets that rate the same variables,
    each `task[=version],...`: `annotate diff empathy,information_seeking,solution_provision,proactivity
    agent_behaviour` (one request per construct against one for all four).
    """
    from annotate import report
    from annotate.backends import BackendOptions
    from annotate.diff import Side, compare, task_set
    from annotate.pipeline import RunConfig

    if gold is not None and not on:
        raise typer.BadParameter("--gold needs --on: the transcripts both versions should label", param_hint="--gold")
    with user_errors():
        library = _library(prompts_dir, rubrics_dir)
        if third is None:
            sides, title = (task_set(library, first), task_set(library, second)), None
        else:
            versions = library.get(first, second), library.get(first, third)
            sides, title = (Side(second, versions[:1]), Side(third, versions[1:])), first
        base = None
        if on:
            base = RunConfig(
                inputs=on,
                out=out,
                library=library,
                backend=backend,
                limit=limit,
                options=BackendOptions(
                    model=model, base_url=base_url, max_model_len=max_model_len, prefix_cache=prefix_cache
                ),
            )
        if on:
            with _RichProgress() as progress:
                result = compare(library, *sides, base, gold, bootstrap, seed, progress, title=title)
        else:
            result = compare(library, *sides, None, title=title)
        paths = report.write_outputs(out, result, report.diff_table(result), report.diff_page(result))
        (out / "prompt.diff").write_text(result["text_diff"])
    typer.echo(result["text_diff"] if not on else result["text_diff"].split("\n")[0] + " ...")
    for version, r in result.get("runs", {}).items():
        typer.echo(
            f"{version}: {r['model_calls']} model calls, {r['cache_hits']} cache hits, "
            f"{r['evaluated_prompt_tokens']} of {r['prompt_tokens']} prompt tokens evaluated, {r['seconds']} s"
        )
    for v in result.get("variables", []):
        line = (
            f"{v['variable']}: {len(v['flipped'])} of {v['n']} units flipped, "
            f"kappa between {'versions' if third else 'task sets'} {report.fmt(v['between_versions']['cohen_kappa'])}"
        )
        g = v.get("gold")
        if g and g.get("n"):
            line += (
                f"; kappa with gold {report.fmt(g[sides[0].name]['cohen_kappa'])} -> "
                f"{report.fmt(g[sides[1].name]['cohen_kappa'])} (change {report.fmt(g['change']['cohen_kappa'])}, "
                f"95% CI {report.fmt_ci(g['change_ci95'].get('cohen_kappa'))})"
            )
        typer.echo(line)
    typer.echo("wrote " + ", ".join(str(p) for p in [*paths, out / "prompt.diff"]))


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The coding file to write (.csv).")],
    per_variable: Annotated[
        int | None, typer.Option(min=1, help="Items per variable (default: from --confidence and --margin).")
    ] = None,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Confidence level.")] = 0.95,
    margin: Annotated[float, typer.Option(min=0.005, max=0.5, help="Margin of error.")] = 0.05,
    stratify_by: Annotated[
        str | None, typer.Option(help="Chat metadata field to stratify by, besides the LLM label.")
    ] = None,
    variable: Annotated[list[str] | None, typer.Option(help="Only these variables (repeatable).")] = None,
    seed: Seed = 0,
    transcripts: Transcripts = None,
    prompts_dir: PromptsDir = None,
    rubrics_dir: RubricsDir = None,
) -> None:
    """A blinded, shuffled sample for human coders, stratified by LLM label; comes back in the gold format."""
    from annotate.sampling import draw_sample, rubric_text
    from annotate.store import load_run

    with user_errors():
        library = _library(prompts_dir, rubrics_dir)
        coding, info = draw_sample(
            run_dir, library, per_variable, confidence, margin, stratify_by, variable, seed, transcripts
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        coding.to_csv(out, index=False)
        _, manifest = load_run(run_dir)
        instructions = out.with_suffix(".rubric.md")
        instructions.write_text(rubric_text(library, manifest.get("prompts", {}), set(coding["variable"])))
        plan = out.with_suffix(".sample.json")
        plan.write_text(json.dumps(info, indent=2) + "\n")
    for name, entry in info["variables"].items():
        typer.echo(f"{name}: {entry['sample']} of {entry['population']} items")
    typer.echo(f"wrote {out} (blinded, shuffled), {instructions}, {plan}")
    typer.echo(f"after coding: annotate validate {run_dir} --gold {out} --out reports/...")


@app.command()
def trajectories(
    run_dir: Annotated[Path, typer.Argument(help="A run with round_sentiment labels.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    group_by: Annotated[str | None, typer.Option(help="Chat metadata field: one curve per value.")] = None,
    bootstrap: Bootstrap = 200,
    seed: Seed = 0,
    transcripts: Transcripts = None,
) -> None:
    """Per-round negative sentiment over each chat's timeline: LOESS curve with a 95% band per group."""
    from annotate import plots
    from annotate.errors import RunStoreError
    from annotate.store import load_run
    from annotate.validation import run_chats

    with user_errors():
        labels, manifest = load_run(run_dir)
        meta = {c.chat_id: dict(c.meta) for c in run_chats(manifest, transcripts)}
        if group_by and not any(group_by in m for m in meta.values()):
            raise RunStoreError(f"no chat of {run_dir} has the metadata field '{group_by}'")
        frame = plots.trajectory_frame(labels[labels["repeat"] == 0], meta, group_by)
        if frame.empty:
            raise RunStoreError(f"{run_dir} has no ok negative_sentiment labels (task round_sentiment)")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(plots.trajectories(frame, group_by, n_boot=bootstrap, seed=seed))
    typer.echo(f"{frame['chat_id'].nunique()} chats, {len(frame)} rounds; wrote {out}")


# --------------------------------------------------------------------------------------------- prompts


@prompts_app.command("list")
def prompts_list(prompts_dir: PromptsDir = None, rubrics_dir: RubricsDir = None) -> None:
    """Every task with its prompt versions, content hashes, unit and number of few-shot examples.

    `*` marks the versions a run uses when no --task is given."""
    with user_errors():
        library = _library(prompts_dir, rubrics_dir)
        defaults = library.default_tasks()
        table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
        for name in ("task", "version", "parent", "hash", "unit", "examples"):
            table.add_column(name, no_wrap=True)
        for task_name in library.tasks():
            versions = library.versions(task_name)
            for version in versions:
                pv = library.get(task_name, version)
                by_default = task_name in defaults and version == versions[-1]
                table.add_row(
                    task_name,
                    version + (" *" if by_default else ""),
                    pv.meta.parent or "-",
                    pv.content_hash,
                    pv.rubric.unit,
                    str(len(pv.meta.examples)),
                )
    out.print(table)
    out.print("* run by default (without --task)")


@prompts_app.command("show")
def prompts_show(
    task: Annotated[str, typer.Argument(help="Task name.")],
    version: Annotated[str | None, typer.Argument(help="Version (default: newest).")] = None,
    prompts_dir: PromptsDir = None,
    rubrics_dir: RubricsDir = None,
) -> None:
    """A prompt version: metadata, output schema, and the static messages every unit shares."""
    with user_errors():
        pv = _library(prompts_dir, rubrics_dir).get(task, version)
        messages = pv.static_messages  # render first: a broken template reports before anything is printed
        typer.echo(f"# {pv.task} {pv.version}  hash {pv.content_hash}  parent {pv.meta.parent or '-'}")
        typer.echo(f"# changelog: {pv.meta.changelog.strip()}")
        typer.echo(f"# unit: {pv.rubric.unit}  variables: {', '.join(pv.rubric.variables)}")
        typer.echo(f"# max_tokens: {pv.meta.max_tokens}  examples: {len(pv.meta.examples)}")
        if pv.rubric.unit == "chat_rounds":
            typer.echo(f"# output schema for a chat of 3 rounds: {json.dumps(pv.rubric.rounds_schema([1, 2, 3]))}\n")
        else:
            typer.echo(f"# output schema: {json.dumps(pv.rubric.json_schema)}\n")
        _echo_messages(messages)


@prompts_app.command("render")
def prompts_render(
    task: Annotated[str, typer.Argument(help="Task name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    inputs: Annotated[list[Path], typer.Argument(help="Transcript files.", show_default=False)],
    chat: Annotated[str, typer.Option(help="Chat id to render.")],
    round_number: Annotated[int | None, typer.Option("--round", help="Only this round (per-round tasks).")] = None,
    max_chars: MaxChars = 12000,
    role: Roles = None,
    prompts_dir: PromptsDir = None,
    rubrics_dir: RubricsDir = None,
) -> None:
    """Exactly what the model sees for one chat's units."""
    from annotate.errors import InputError
    from annotate.tasks import units_for
    from annotate.transcripts import parse_role_map, read_transcripts

    with user_errors():
        pv = _library(prompts_dir, rubrics_dir).get(task, version)
        chats = {c.chat_id: c for c in read_transcripts(inputs, parse_role_map(role or [])).chats}
        if chat not in chats:
            raise InputError(", ".join(map(str, inputs)), None, "chat_id", f"no chat '{chat}'")
        units = [
            u
            for u in units_for(chats[chat], task, pv.rubric.unit, max_chars)
            if round_number is None or u.round == round_number or round_number in u.rated_rounds
        ]
        if not units:
            typer.echo(f"chat '{chat}' has no {task} unit (post-handoff tasks need a handoff)")
            raise typer.Exit(0)
        for unit in units:
            where = f" round {unit.round}" if unit.round is not None else ""
            typer.echo(
                f"######## {task} {pv.version} ({pv.content_hash}) chat {chat}{where}"
                + (f"  [truncated: {unit.truncation}]" if unit.truncation else "")
            )
            _echo_messages(pv.render(unit))


def _echo_messages(messages: list[dict[str, str]]) -> None:
    for m in messages:
        typer.echo(f"=== {m['role']} ===\n{m['content']}\n")


def main() -> None:
    app(prog_name="annotate")


if __name__ == "__main__":
    main()
