"""``annotate prompts render``: exactly what the model sees for one chat's units, without running anything."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from annotate.config import Speaker
from annotate.errors import AnnotateError, InputError
from annotate.ingest.readers import read_transcripts
from annotate.prompts.context import fit_to_context
from annotate.prompts.library import PromptLibrary
from annotate.prompts.template import PromptVersion
from annotate.prompts.units import Unit, units_for


def rendered_units(
    library: PromptLibrary,
    task: str,
    version: str | None,
    inputs: list[Path],
    chat_id: str,
    round_number: int | None = None,
    max_chars: int = 12000,
    role_map: Mapping[str, Speaker] | None = None,
    max_model_len: int = 8192,
) -> tuple[PromptVersion, list[tuple[Unit, list[dict[str, str]]]]]:
    """The prompt version and, for each unit of the chat (or only ``round_number``), its messages as a run sends
    them: cut to ``max_chars`` and then fitted to the context of ``max_model_len`` tokens."""
    pv = library.get(task, version)
    chats = {c.chat_id: c for c in read_transcripts(inputs, role_map).chats}
    if chat_id not in chats:
        raise InputError(", ".join(map(str, inputs)), None, "chat_id", f"no chat '{chat_id}'")
    every = units_for(chats[chat_id], task, pv.rubric.unit, max_chars)
    if not every:
        raise AnnotateError(f"chat '{chat_id}' has no {task} unit (post-handoff tasks need a handoff)")
    units = [u for u in every if round_number is None or u.round == round_number or round_number in u.rated_rounds]
    if not units:
        rounds = sorted({r for u in every for r in ([u.round] if u.round is not None else u.rated_rounds)})
        shown = f"{rounds[0]}–{rounds[-1]}" if rounds else "none"
        raise AnnotateError(f"--round {round_number}: chat '{chat_id}' has no such round (its rounds: {shown})")
    fitted = [fit_to_context(u, pv, max_model_len) for u in units]
    return pv, [(u, pv.render(u)) for u in fitted]
