"""Which units of a chat each task sees, and the truncation policy for long chats.

* ``post_handoff`` (empathy, information seeking, solution provision, proactivity): one unit per
  escalated chat. The human agent's turns from the handoff on are the target; earlier turns are context.
* ``first_round`` (initial state): the first round only.
* ``round`` (per-round sentiment): one unit per round; the customer's turn in that round is the
  target and everything before it is context.

Truncation policy (recorded on every affected row): when a unit's transcript is longer than
``max_chars``, the oldest context turns are dropped first; if the target alone is still too long,
each target turn keeps its head and tail around a ``[...]`` marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from annotate.schema import UnitKind
from annotate.transcripts import Chat, Turn, handoff_index, merge_turns, split_rounds

SPEAKER_NAMES = {"customer": "Customer", "ai": "AI assistant", "agent": "Human agent"}
CLIP_MARKER = " [...] "


@dataclass(frozen=True)
class Unit:
    """One thing to label: a slice of one chat, split into context and target turns."""

    task: str
    chat_id: str
    round: int | None
    """Round number for per-round tasks, None for chat-level tasks."""
    context: tuple[Turn, ...]
    target: tuple[Turn, ...]
    truncation: str = ""
    """Empty when nothing was cut; otherwise what the truncation policy did."""

    def as_template_data(self) -> dict[str, Any]:
        """What a prompt template sees: plain data, never template code."""

        def turns(ts: tuple[Turn, ...]) -> list[dict[str, str]]:
            return [{"speaker": t.speaker, "name": SPEAKER_NAMES[t.speaker], "text": t.text} for t in ts]

        return {"round": self.round, "context": turns(self.context), "target": turns(self.target)}


def units_for(chat: Chat, task: str, kind: UnitKind, max_chars: int) -> list[Unit]:
    """All units of one chat for one task; an empty list when the task does not apply (no handoff)."""
    if kind == "post_handoff":
        at = handoff_index(chat)
        if at is None:
            return []
        before = merge_turns(chat.messages[:at])
        after = merge_turns(chat.messages[at:], start=at)
        return [fit_unit(Unit(task, chat.chat_id, None, tuple(before), tuple(after)), max_chars)]
    rounds = split_rounds(chat)
    if kind == "first_round":
        return [fit_unit(Unit(task, chat.chat_id, None, (), rounds[0].turns), max_chars)]
    units = []
    for r in rounds:
        earlier = [t for prev in rounds[: r.number - 1] for t in prev.turns]
        opening = [t for t in r.turns if t.speaker != "customer" and t.last < _first_customer(r.turns)]
        target = tuple(t for t in r.turns if t.speaker == "customer")
        if target:
            units.append(fit_unit(Unit(task, chat.chat_id, r.number, (*earlier, *opening), target), max_chars))
    return units


def _first_customer(turns: tuple[Turn, ...]) -> int:
    return next((t.first for t in turns if t.speaker == "customer"), 1 << 30)


def _size(turns: tuple[Turn, ...]) -> int:
    return sum(len(t.text) + 16 for t in turns)


def fit_unit(unit: Unit, max_chars: int) -> Unit:
    """Apply the truncation policy for a budget of ``max_chars`` transcript characters."""
    context, target = list(unit.context), unit.target
    if _size(unit.context) + _size(target) <= max_chars:
        return unit
    notes = []
    dropped = 0
    while context and _size(tuple(context)) + _size(target) > max_chars:
        context.pop(0)
        dropped += 1
    if dropped:
        notes.append(f"dropped {dropped} oldest context turn(s)")
    if _size(target) > max_chars:
        per_turn = max(200, max_chars // max(1, len(target)) - 16)
        clipped = sum(len(t.text) > per_turn for t in target)
        target = tuple(_clip(t, per_turn) for t in target)
        notes.append(f"clipped {clipped} target turn(s) to {per_turn} characters")
    all_notes = [n for n in (unit.truncation, *notes) if n]
    return Unit(unit.task, unit.chat_id, unit.round, tuple(context), target, "; ".join(all_notes))


def _clip(turn: Turn, limit: int) -> Turn:
    if len(turn.text) <= limit:
        return turn
    half = (limit - len(CLIP_MARKER)) // 2
    return Turn(turn.speaker, turn.text[:half] + CLIP_MARKER + turn.text[-half:], turn.first, turn.last)
