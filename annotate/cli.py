"""The command line: each command parses options, calls one library function, and prints.

Domain errors become one clean line on stderr in exactly one place, ``cli_options.user_errors``. Library
modules are imported inside the commands, so ``annotate --help`` loads neither pandas nor any engine.
The command groups ``prompts`` and ``models`` are in cli_groups.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotate import __version__
from annotate import cli_groups as groups
from annotate import cli_options as opt
from annotate.config import PromptPaths, RayOptions, RunConfig, Sampling

app = typer.Typer(
    help="Turn customer-service chat transcripts into validated research variables with a local LLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(groups.prompts_app, name="prompts")
app.add_typer(groups.models_app, name="models")


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


@app.command()
def run(
    inputs: Annotated[
        list[Path], typer.Argument(help="Transcript files: .jsonl, .csv or .parquet.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (created, or resumed if it exists).")],
    task: opt.Task = None,
    prompt_version: opt.PromptVersionOption = None,
    prompt_family: opt.PromptFamily = "en",
    backend: opt.Backend = "llamacpp",
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key: opt.ApiKey = "",
    limit: opt.Limit = None,
    repeats: opt.Repeats = 1,
    temperature: opt.Temperature = 0.0,
    top_p: opt.TopP = 1.0,
    seed: Annotated[int, typer.Option(rich_help_panel="Sampling and retries")] = 0,
    max_model_len: opt.MaxModelLen = 8192,
    max_chars: opt.MaxChars = 12000,
    batch_size: opt.BatchSize = 512,
    max_attempts: opt.MaxAttempts = 3,
    concurrency: opt.Concurrency = 4,
    timeout: opt.RequestTimeout = 300.0,
    threads: opt.Threads = None,
    dtype: opt.Dtype = None,
    tensor_parallel_size: opt.TensorParallel = 1,
    cache: opt.Cache = True,
    prefix_cache: opt.PrefixCache = True,
    top_logprobs: opt.TopLogprobs = 20,
    strict: opt.Strict = False,
    redact: opt.Redact = False,
    ray_workers: opt.RayWorkers = None,
    ray_address: opt.RayAddress = None,
    ray_cpus: opt.RayCpus = 1.0,
    ray_gpus: opt.RayGpus = 0.0,
    skip_corrupt_journal_lines: opt.SkipCorrupt = False,
    role: opt.Roles = None,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
    dry_run: opt.DryRun = False,
) -> None:
    """Label transcripts on one or more tasks and write a run directory."""
    if ray_address and not ray_workers:
        raise typer.BadParameter("--ray-address needs --ray-workers", param_hint="--ray-address")
    config = RunConfig(
        inputs=inputs,
        out=out,
        prompts=PromptPaths.resolve(prompts_dir, rubrics_dir),
        tasks=task or None,
        prompt_versions=opt.prompt_versions(prompt_version or [], task),
        prompt_family=prompt_family,
        backend=backend,
        options=opt.engine_from(locals()),
        sampling=Sampling(temperature=temperature, top_p=top_p, seed=seed),
        repeats=repeats,
        limit=limit,
        strict=strict,
        role_map=opt.role_map(role),
        max_chars=max_chars,
        batch_size=batch_size,
        max_attempts=max_attempts,
        use_cache=cache,
        redact=redact,
        ray=RayOptions(ray_workers, ray_address, ray_cpus, ray_gpus) if ray_workers else None,
        skip_corrupt_journal=skip_corrupt_journal_lines,
    )
    from annotate.report.progress import ProgressBar, print_plan, print_run_summary

    if dry_run:
        from annotate.labelling.plan import plan_run

        with opt.user_errors():
            print_plan(plan_run(config), config.out)
        return
    from annotate.labelling.pipeline import run as label

    with opt.user_errors(labelling=True), ProgressBar() as progress:
        summary = label(config, progress=progress)
    print_run_summary(summary)
    opt.exit_if_nothing_read(summary, inputs)


@app.command()
def validate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory from `annotate run`.", show_default=False)],
    gold: Annotated[Path, typer.Option(help="Human labels: chat_id, round, variable, value[, annotator].")],
    out: opt.Out,
    repeat: Annotated[int, typer.Option(min=0, help="Which repeat of the run to compare.")] = 0,
    bootstrap: opt.Bootstrap = 1000,
    seed: opt.Seed = 0,
    transcripts: opt.Transcripts = None,
    group_by: Annotated[
        str | None, typer.Option(help="Chat metadata field for the sentiment trajectories (default: escalation).")
    ] = None,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """Agreement of a run's labels with human gold labels: kappa, AC1, alpha, intervals, disagreements."""
    from annotate.commands.validate import validate_command
    from annotate.report.console import print_paths, print_validation

    with opt.user_errors():
        library = opt.library(prompts_dir, rubrics_dir)
        report = validate_command(run_dir, gold, out, library, transcripts, repeat, bootstrap, seed, group_by)
    opt.warn(report.warnings)
    print_validation(report.result)
    print_paths(report.paths)


@app.command()
def agree(
    runs: Annotated[list[Path], typer.Argument(help="One run made with --repeats N, or several.", show_default=False)],
    out: opt.Out,
    repeat: Annotated[int, typer.Option(min=0, help="Which repeat of each run to compare (several runs).")] = 0,
    bootstrap: opt.Bootstrap = 1000,
    seed: opt.Seed = 0,
    label: opt.LabelKind = opt.LabelChoice.chosen,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """Agreement of the LLM with itself across repeats, or across runs (models, backends, prompt versions)."""
    from annotate.commands.agree import agree_command
    from annotate.report.console import print_agreement, print_paths

    with opt.user_errors():
        report = agree_command(runs, out, opt.library(prompts_dir, rubrics_dir), repeat, bootstrap, seed, label.value)
    opt.warn(report.warnings)
    print_agreement(report.result, report.table)
    print_paths(report.paths)


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
    limit: opt.Limit = None,
    bootstrap: opt.Bootstrap = 1000,
    seed: opt.Seed = 0,
    backend: opt.Backend = "llamacpp",
    model: opt.Model = None,
    base_url: opt.BaseUrl = None,
    api_key: opt.ApiKey = "",
    max_model_len: opt.MaxModelLen = 8192,
    concurrency: opt.Concurrency = 4,
    timeout: opt.RequestTimeout = 300.0,
    threads: opt.Threads = None,
    dtype: opt.Dtype = None,
    tensor_parallel_size: opt.TensorParallel = 1,
    prefix_cache: opt.PrefixCache = True,
    top_logprobs: opt.TopLogprobs = 20,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """What changed between two prompts; with --on which labels flipped, with --gold the effect on agreement.

    Two versions of one task: `annotate diff empathy v1 v2`. Two task sets rating the same variables, each
    `task[=version],...`: `annotate diff empathy,information_seeking,solution_provision,proactivity agent_behaviour`.
    """
    if gold is not None and not on:
        raise typer.BadParameter("--gold needs --on: the transcripts both versions should label", param_hint="--gold")
    base = None
    if on:
        options = opt.engine_from(locals())
        prompts = PromptPaths.resolve(prompts_dir, rubrics_dir)
        base = RunConfig(inputs=on, out=out, prompts=prompts, backend=backend, limit=limit, options=options)
    from annotate.commands.diff import diff_command
    from annotate.report.console import print_diff, print_paths
    from annotate.report.progress import ProgressBar

    with opt.user_errors(labelling=True), ProgressBar() as progress:
        library = opt.library(prompts_dir, rubrics_dir)
        report = diff_command(library, first, second, third, out, base, gold, bootstrap, seed, progress)
    print_diff(report.result)
    print_paths(report.paths)


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The coding file to write (.csv).")],
    per_variable: opt.PerVariable = None,
    confidence: opt.ConfidenceLevel = 0.95,
    margin: opt.Margin = 0.05,
    design: opt.Design = opt.DesignChoice.stratified,
    floor: opt.Floor = 0.1,
    stratify_by: opt.StratifyBy = None,
    variable: opt.Variables = None,
    unit: opt.SampleUnit = opt.UnitChoice.item,
    chats: opt.Chats = None,
    seed: opt.Seed = 0,
    transcripts: opt.Transcripts = None,
    force: Annotated[bool, typer.Option(help="Replace an existing coding file (kept as FILE.bak).")] = False,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """A blinded, shuffled sample for human coders with each item's inclusion probability; comes back as gold."""
    from annotate.analysis.sample import SampleOptions
    from annotate.commands.sample import sample_command
    from annotate.report.console import print_sample

    options = SampleOptions(
        per_variable=per_variable,
        confidence=confidence,
        margin=margin,
        stratify_by=stratify_by,
        variables=tuple(variable or ()),
        seed=seed,
        design=design.value,
        floor=floor,
        unit=unit.value,
        chats=chats,
    )
    with opt.user_errors():
        written = sample_command(run_dir, out, opt.library(prompts_dir, rubrics_dir), options, force, transcripts)
    opt.warn(written.warnings)
    print_sample(written.result, run_dir)


@app.command()
def estimate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    gold: opt.Gold,
    out: opt.EstimateOut,
    formula: opt.Formula = None,
    covariates: opt.Covariates = None,
    by: opt.By = None,
    variable: opt.Variables = None,
    family: opt.Family = opt.FamilyChoice.ols,
    label: opt.LabelKind = opt.LabelChoice.chosen,
    target_width: opt.TargetWidth = None,
    drop_missing: opt.DropMissing = False,
    labellers: opt.Labellers = None,
    recalibrate: opt.Recalibrate = False,
    folds: opt.Folds = 10,
    seed: opt.Seed = 0,
    prompt_diff: opt.PromptDiffs = None,
    transcripts: opt.Transcripts = None,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """Effects from LLM labels plus a human sample: LLM-only, human-only and prediction-powered, with 95% intervals.

    A formula may name the run's own variables as regressors (`empathy ~ C(escalation) + initial_sentiment`): their
    LLM labels are then corrected too, which needs their human labels on the coded chats (sample --unit chat).
    """
    from annotate.analysis.estimation import EstimateOptions
    from annotate.commands.estimate import EstimateFiles, estimate_command
    from annotate.report.console import print_paths
    from annotate.report.console_estimate import print_estimate

    files = EstimateFiles(
        gold=gold,
        covariates=covariates,
        transcripts=tuple(transcripts or ()),
        labellers=tuple(labellers or ()),
        prompt_diffs=tuple(prompt_diff or ()),
    )
    options = EstimateOptions(
        formulas=tuple(formula or ()),
        by=by,
        variables=tuple(variable or ()),
        family="logit" if family is opt.FamilyChoice.logit else "ols",
        label=label.value,
        target_width=target_width,
        drop_missing=drop_missing,
        recalibrate=recalibrate,
        folds=folds,
        seed=seed,
    )
    with opt.user_errors():
        library = opt.library(prompts_dir, rubrics_dir)
        report = estimate_command(run_dir, files, options, out, library)
    print_estimate(report.result)
    print_paths(report.paths)


@app.command()
def consensus(
    runs: Annotated[list[Path], typer.Argument(help="Two or more runs, or one run made with --repeats.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The consensus run directory to write.")],
    method: opt.ConsensusMethod = opt.MethodChoice.majority,
) -> None:
    """Combine labellers (models, engines, prompt versions, repeats) into one run: majority, Dawid-Skene, disputes."""
    from annotate.commands.consensus import consensus_command
    from annotate.report.console import print_consensus, print_paths

    with opt.user_errors():
        written = consensus_command(runs, out, method.value)
    opt.warn(written.warnings)
    print_consensus(written.result.manifest, written.table)
    print_paths(written.paths)


@app.command()
def learn(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory, or a transcript file (no LLM labels needed).", show_default=False)
    ],
    gold: opt.Coded,
    out: Annotated[Path, typer.Option("--out", "-o", help="The learned run directory to write.")],
    features: opt.Features = "words,chars,surface",
    folds: opt.LearnFolds = 5,
    bootstrap: opt.Bootstrap = 1000,
    seed: opt.Seed = 0,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """Train a labeller on the human codes (cross-fitted by chat) and label every unit: a run, with a learning curve."""
    from annotate.commands.learn import learn_command
    from annotate.learning.learn import LearnOptions
    from annotate.report.learning import print_learning

    options = LearnOptions(features=tuple(f.strip() for f in features.split(",") if f.strip()), folds=folds, seed=seed)
    with opt.user_errors():
        written = learn_command(run_dir, gold, out, opt.library(prompts_dir, rubrics_dir), options, bootstrap)
    opt.warn(written.warnings)
    print_learning(written.result)


@app.command()
def trajectories(
    run_dir: Annotated[Path, typer.Argument(help="A run with round_sentiment labels.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    group_by: Annotated[str | None, typer.Option(help="Chat metadata field: one curve per value.")] = None,
    bootstrap: opt.Bootstrap = 200,
    seed: opt.Seed = 0,
    transcripts: opt.Transcripts = None,
) -> None:
    """Per-round negative sentiment over each chat's timeline: LOESS curve with a 95% band per group."""
    from annotate.commands.trajectories import trajectories_command

    with opt.user_errors():
        written = trajectories_command(run_dir, out, group_by, bootstrap, seed, transcripts)
    opt.warn(written.warnings)
    frame = written.table
    typer.echo(f"{frame['chat_id'].nunique()} chats, {len(frame)} rounds; wrote {out}")


def main() -> None:
    app(prog_name="annotate")


if __name__ == "__main__":
    main()
