"""What the commands share: options declared once, their parsing, the prompt library, and ``user_errors``,
the one place where domain errors and stop signals become a single line and an exit code.

``run`` and ``diff`` take the same engine options.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from annotate.config import BackendOptions, PromptPaths, RunSummary
from annotate.errors import AnnotateError, InputError, Terminated, sigterm_raises_terminated
from annotate.vocabulary import ConsensusMethod as MethodChoice
from annotate.vocabulary import Design as DesignChoice
from annotate.vocabulary import LabelKind as LabelChoice
from annotate.vocabulary import ModelFamily as FamilyChoice
from annotate.vocabulary import SampleUnit as UnitChoice

if TYPE_CHECKING:
    from annotate.prompts.library import PromptLibrary

# Options shared between commands.
Out = Annotated[Path, typer.Option("--out", "-o", help="Folder for agreement.json, agreement.csv, report.html.")]
PromptsDir = Annotated[
    Path | None,
    typer.Option(
        help="Prompt versions folder (default: ./prompts, else the package's own).", rich_help_panel="Input and tasks"
    ),
]
RubricsDir = Annotated[
    Path | None,
    typer.Option(
        help="Rubrics folder (default: ./rubrics, else the package's own).", rich_help_panel="Input and tasks"
    ),
]
Bootstrap = Annotated[int, typer.Option(min=0, help="Chat-level bootstrap resamples for 95% intervals.")]
Seed = Annotated[int, typer.Option(help="Seed for resampling or sampling.")]
Transcripts = Annotated[list[Path] | None, typer.Option(help="Transcript files, if the run's inputs have moved.")]
Roles = Annotated[
    list[str] | None,
    typer.Option(help="Map a role name onto customer/ai/agent, e.g. bot=ai.", rich_help_panel="Input and tasks"),
]
MaxChars = Annotated[
    int,
    typer.Option(
        min=200,
        help="Transcript characters per unit before truncation (the model's context is fitted by tokens after, "
        "so Chinese chats, about a token a character, are cut further where they need it).",
        rich_help_panel="Input and tasks",
    ),
]
Limit = Annotated[int | None, typer.Option(min=1, help="Only the first N chats.", rich_help_panel="Input and tasks")]
# `run` only.
Task = Annotated[
    list[str] | None,
    typer.Option(
        "--task",
        "-t",
        help="Task to run (repeatable) (default: every task, except one whose variables another task rates too).",
        rich_help_panel="Input and tasks",
    ),
]
PromptFamily = Annotated[
    str,
    typer.Option(
        "--prompt-family",
        help="Which family of prompt versions the tasks use: en (v1, v2, ...) or zh (zh-v1, ...: Chinese "
        "instructions, rubrics and examples for Chinese chats); --prompt-version overrides it per task.",
        rich_help_panel="Input and tasks",
    ),
]
PromptVersionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--prompt-version",
        help="Version for the selected tasks (v2) or one task (empathy=v2) (default: newest).",
        rich_help_panel="Input and tasks",
    ),
]
Repeats = Annotated[
    int, typer.Option(min=1, help="Label every unit N times (replication tests).", rich_help_panel="Input and tasks")
]
Temperature = Annotated[
    float, typer.Option(min=0.0, help="0: greedy decoding, as labelling needs.", rich_help_panel="Sampling and retries")
]
TopP = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling (1: off).", rich_help_panel="Sampling and retries")
]
BatchSize = Annotated[
    int, typer.Option(min=1, help="Requests per engine call.", rich_help_panel="Sampling and retries")
]
MaxAttempts = Annotated[
    int, typer.Option(min=1, help="Tries per unit when an answer is invalid.", rich_help_panel="Sampling and retries")
]
Cache = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Reuse cached answers.", rich_help_panel="Cache and resume")
]
Strict = Annotated[
    bool,
    typer.Option(help="Fail on the first bad input record instead of skipping it.", rich_help_panel="Input and tasks"),
]
Redact = Annotated[
    bool,
    typer.Option(
        help="Mask emails, phone (mainland mobiles too), order, IBAN, card and Chinese ID card numbers "
        "before the model sees text.",
        rich_help_panel="Input and tasks",
    ),
]
RayWorkers = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Run the engine on N Ray workers (one engine each) instead of in this process.",
        rich_help_panel="Ray",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(help="Ray cluster to join, e.g. auto (default: start a local Ray instance).", rich_help_panel="Ray"),
]
RayCpus = Annotated[float, typer.Option(min=0.0, help="CPUs per Ray worker (default: 1).", rich_help_panel="Ray")]
RayGpus = Annotated[
    float,
    typer.Option(
        min=0.0, help="GPUs per Ray worker; = --tensor-parallel-size for vllm (default: 0).", rich_help_panel="Ray"
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Count what the run would send, and stop: no model call.")]
SkipCorrupt = Annotated[
    bool,
    typer.Option(
        help="Resume past damaged journal lines: drop them and label their units again.",
        rich_help_panel="Cache and resume",
    ),
]
# `sample` only.
PerVariable = Annotated[
    int | None, typer.Option(min=1, help="Items per variable (default: from --confidence and --margin).")
]
ConfidenceLevel = Annotated[float, typer.Option(min=0.5, max=0.999, help="Confidence level.")]
Margin = Annotated[float, typer.Option(min=0.005, max=0.5, help="Margin of error.")]
Floor = Annotated[float, typer.Option(min=0.0, help="--design confidence: added to every unit's uncertainty.")]
StratifyBy = Annotated[str | None, typer.Option(help="Chat metadata field to stratify by, besides the LLM label.")]
# `estimate` only.
Gold = Annotated[
    Path, typer.Option(help="Human labels: chat_id, round, variable, value[, annotator, inclusion_probability].")
]
Covariates = Annotated[
    Path | None, typer.Option(help="Table keyed by chat_id (CSV or Parquet); the chats' meta fields are there anyway.")
]
Formula = Annotated[
    list[str] | None,
    typer.Option(help="Regression, e.g. 'empathy ~ C(escalation)'; repeatable (default: each variable's mean)."),
]
PromptDiffs = Annotated[
    list[Path] | None,
    typer.Option(
        "--prompt-diff",
        help="A prompt diff's output folder whose gold chose a prompt: estimate warns if --gold is that gold "
        "(development data gives optimistic estimates); repeatable.",
    ),
]
By = Annotated[str | None, typer.Option(help="Without --formula: means by this covariate or meta field.")]
Labellers = Annotated[
    list[Path] | None,
    typer.Option(
        "--labellers",
        help="Another run over the same chats (model, prompt version, repeats, consensus); repeatable. Its labels are "
        "combined with the run's (cross-fitted) and each labeller's own estimate is shown beside.",
    ),
]
Recalibrate = Annotated[
    bool, typer.Option(help="Combine the run's own label probabilities (cross-fitted), as for several labellers.")
]
Coded = Annotated[
    Path,
    typer.Option(
        "--gold", help="The coded file (annotate sample, filled in by coders): chat_id, round, variable, value[, ...]."
    ),
]
Features = Annotated[
    str,
    typer.Option(help="Feature sets, comma-separated: words, chars, surface, llm, embeddings (make install-learn)."),
]
LearnFolds = Annotated[int, typer.Option(min=2, help="Cross-fitting folds of coded chats.")]
Folds = Annotated[int, typer.Option(min=2, help="Cross-fitting folds of chats for --labellers / --recalibrate.")]
Variables = Annotated[list[str] | None, typer.Option("--variable", help="Only these variables (repeatable).")]


SampleUnit = Annotated[
    UnitChoice,
    typer.Option(
        "--unit",
        help="item: draw each variable's items apart; chat: draw chats, and code every named variable (every round) "
        "of each drawn chat, all with the chat's inclusion probability.",
    ),
]
Chats = Annotated[int | None, typer.Option(min=1, help="--unit chat: chats to draw (default: from --confidence).")]
Design = Annotated[
    DesignChoice,
    typer.Option(
        help="stratified by LLM label; random; confidence (the less sure the model, the likelier drawn); "
        "disputed (a consensus run's disputed units first, then a random fill)."
    ),
]


ConsensusMethod = Annotated[
    MethodChoice, typer.Option(help="The value a unit gets: majority vote, or Dawid-Skene (3+ sources).")
]


Family = Annotated[FamilyChoice, typer.Option(help="logit: for a 0/1 outcome.")]
LabelKind = Annotated[LabelChoice, typer.Option(help="LLM label: the answer, or the probability-weighted value.")]
EstimateOut = Annotated[Path, typer.Option("--out", "-o", help="Folder for estimate.json, estimate.csv, report.html.")]
TargetWidth = Annotated[
    float | None, typer.Option(min=0.0, help="Also say how many human labels a 95% interval this wide needs.")
]
DropMissing = Annotated[bool, typer.Option(help="Leave out chats with missing covariates instead of stopping.")]
# Engine options: `run` and `diff` take the same set (see engine_options).
Backend = Annotated[
    str, typer.Option("--backend", "-b", help="llamacpp, vllm, openai (or fake, for tests).", rich_help_panel="Engine")
]
Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model path or name (default: the embedded model).", rich_help_panel="Engine"),
]
BaseUrl = Annotated[
    str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.", rich_help_panel="Engine")
]
ApiKey = Annotated[
    str, typer.Option(envvar="OPENAI_API_KEY", help="Key for --base-url, if it needs one.", rich_help_panel="Engine")
]
MaxModelLen = Annotated[
    int, typer.Option(min=256, help="Context length the engine allocates.", rich_help_panel="Engine")
]
Concurrency = Annotated[int, typer.Option(min=1, help="Requests in flight (openai backend).", rich_help_panel="Engine")]
RequestTimeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=1.0,
        help="openai backend: seconds for one whole reply (a server that trickles its answer is cut off too).",
        rich_help_panel="Engine",
    ),
]
Threads = Annotated[
    int | None, typer.Option(min=1, help="CPU threads (llamacpp) (default: all cores).", rich_help_panel="Engine")
]
Dtype = Annotated[
    str | None, typer.Option(help="vLLM dtype (default: float32 on CPU, auto on GPU).", rich_help_panel="Engine")
]
TensorParallel = Annotated[int, typer.Option(min=1, help="vLLM: GPUs per model.", rich_help_panel="Engine")]
TopLogprobs = Annotated[
    int,
    typer.Option(
        min=0,
        max=20,
        help="Candidates per token for label probabilities (0: none, a little faster).",
        rich_help_panel="Engine",
    ),
]
PrefixCache = Annotated[
    bool,
    typer.Option(
        help="Engine reuses the shared prompt prefix: fast, but repeats may differ slightly (README).",
        rich_help_panel="Engine",
    ),
]


def engine_options(
    model: str | None,
    base_url: str | None,
    api_key: str,
    max_model_len: int,
    concurrency: int,
    threads: int | None,
    dtype: str | None,
    tensor_parallel_size: int,
    prefix_cache: bool,
    top_logprobs: int = 20,
    timeout: float = 300.0,
) -> BackendOptions:
    return BackendOptions(
        model=model,
        base_url=base_url,
        max_model_len=max_model_len,
        concurrency=concurrency,
        threads=threads,
        prefix_cache=prefix_cache,
        top_logprobs=top_logprobs,
        api_key=api_key,
        dtype=dtype or None,
        tensor_parallel_size=tensor_parallel_size,
        timeout=timeout,
    )


ENGINE_PARAMETERS = (
    "model",
    "base_url",
    "api_key",
    "max_model_len",
    "concurrency",
    "threads",
    "dtype",
    "tensor_parallel_size",
    "prefix_cache",
    "top_logprobs",
    "timeout",
)


def engine_from(parameters: Mapping[str, Any]) -> BackendOptions:
    """The engine options of a command that declares all of ENGINE_PARAMETERS (``run``, ``diff``)."""
    return engine_options(**{name: parameters[name] for name in ENGINE_PARAMETERS})


def prompt_versions(values: list[str], tasks: list[str] | None) -> dict[str, str]:
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


def role_map(role: list[str] | None) -> Any:
    from annotate.ingest.readers import parse_role_map

    try:
        return parse_role_map(role or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--role") from None


RESUME_HINT = "everything labelled so far is saved; run the same command again to resume"
RERUN_HINT = "stopped; every file is written whole, so nothing half-written was left: run the same command again"


def exit_if_nothing_read(summary: RunSummary, inputs: list[Path]) -> None:
    """A run that could read no chat labelled nothing: exit 1 with one line (the reasons are in labels.csv)."""
    if not summary.chats and summary.skipped_records:
        with user_errors():
            why = f"no chat could be read: all {summary.skipped_records} records were skipped"
            where = f"the reasons are in {summary.out / 'labels.csv'}, status skipped"
            raise InputError(", ".join(map(str, inputs)), None, None, f"{why} ({where})")


def warn(lines: list[str]) -> None:
    """What a command says before its result (a run that did not finish), one line each."""
    for line in lines:
        typer.echo(f"warning: {line}")


@contextmanager
def user_errors(labelling: bool = False) -> Iterator[None]:
    """The one place where domain errors and stop signals turn into a single line and an exit code; the resume
    hint only for a command that labels (``labelling``), not for one that reads a run."""
    hint = RESUME_HINT if labelling else RERUN_HINT
    from rich.console import Console
    from rich.markup import escape

    try:
        with sigterm_raises_terminated():
            yield
    except AnnotateError as e:  # escaped: "pip install 'annotate[ray]'" and "C(x)[T.a]" are text, not markup
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as e:  # an --out that is a file, a full disk, a read-only folder
        where = f"{e.filename}: " if e.filename else ""
        message = escape(f"{where}{e.strerror or e}")
        Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Terminated:
        typer.echo(f"terminated (SIGTERM): {hint}", err=True)
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {hint}", err=True)
        raise typer.Exit(130) from None


def library(prompts_dir: Path | None, rubrics_dir: Path | None) -> PromptLibrary:
    from annotate.prompts.library import PromptLibrary

    return PromptLibrary.from_paths(PromptPaths.resolve(prompts_dir, rubrics_dir))
