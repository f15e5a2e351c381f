"""Command groups: ``annotate prompts ...`` (versioned prompts) and ``annotate models ...`` (embedded models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotate import cli_options as opt

prompts_app = typer.Typer(help="List, show and render versioned prompts.", no_args_is_help=True)
models_app = typer.Typer(help="The embedded models: which are installed, their size and sha256.", no_args_is_help=True)


@prompts_app.command("list")
def prompts_list(prompts_dir: opt.PromptsDir = None, rubrics_dir: opt.RubricsDir = None) -> None:
    """Every task with its prompt versions, content hashes, unit and number of few-shot examples.

    `*` marks the versions a run uses when no --task is given."""
    from annotate.report.console import print_prompt_list

    with opt.user_errors():
        print_prompt_list(opt.library(prompts_dir, rubrics_dir))


@prompts_app.command("copy")
def prompts_copy(
    task: Annotated[str, typer.Argument(help="Task name.")],
    version: Annotated[str, typer.Argument(help="The version to start from (packaged or your own).")],
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """Start a new version of a task in your project's ./prompts (or --prompts-dir) from an existing one.

    The copy is the next version of its family, with `parent` set; write its changelog, then edit it."""
    from annotate.prompts.library import copy_version

    with opt.user_errors():
        library = opt.library(prompts_dir, rubrics_dir)
        target = prompts_dir or Path.cwd() / "prompts"
        made = copy_version(library, task, version, target)
    typer.echo(f"wrote {made} and {made.with_suffix('.yaml')} (parent {version}): edit them, and the changelog")


@prompts_app.command("show")
def prompts_show(
    task: Annotated[str, typer.Argument(help="Task name.")],
    version: Annotated[str | None, typer.Argument(help="Version (default: newest).")] = None,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """A prompt version: metadata, output schema, and the static messages every unit shares."""
    from annotate.report.console import print_prompt_version

    with opt.user_errors():
        pv = opt.library(prompts_dir, rubrics_dir).get(task, version)
        print_prompt_version(pv)


@prompts_app.command("render")
def prompts_render(
    task: Annotated[str, typer.Argument(help="Task name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    inputs: Annotated[list[Path], typer.Argument(help="Transcript files.", show_default=False)],
    chat: Annotated[str, typer.Option(help="Chat id to render.")],
    round_number: Annotated[int | None, typer.Option("--round", help="Only this round (per-round tasks).")] = None,
    max_chars: opt.MaxChars = 12000,
    max_model_len: opt.MaxModelLen = 8192,
    role: opt.Roles = None,
    prompts_dir: opt.PromptsDir = None,
    rubrics_dir: opt.RubricsDir = None,
) -> None:
    """Exactly what the model sees for one chat's units (cut as a run with the same --max-chars and
    --max-model-len cuts them)."""
    from annotate.prompts.preview import rendered_units
    from annotate.report.console import print_rendered

    roles = opt.role_map(role)
    with opt.user_errors():
        library = opt.library(prompts_dir, rubrics_dir)
        pv, units = rendered_units(library, task, version, inputs, chat, round_number, max_chars, roles, max_model_len)
    print_rendered(pv, chat, units)


@models_app.command("list")
def models_list() -> None:
    """Every embedded model: its --model name, whether it is installed, size, sha256, source and licence."""
    from annotate.labelling.models import embedded_models
    from annotate.report.console import print_models

    with opt.user_errors():
        print_models(embedded_models())
