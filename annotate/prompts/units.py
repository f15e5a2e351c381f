"""Which units of a chat each task sees, and the truncation policy for long chats.

* ``post_handoff`` (empathy, information seeking, solution provision, proactivity): one unit per
  escalated chat. The human agent's turns from the handoff on are the target; earlier turns are context.
* ``first_round`` (initial state): the first round only.
* ``round`` (per-round sentiment): one unit per round; the customer's turn in that round is the
  target and everything before it is context.
* ``chat_rounds`` (per-round sentiment, one request per chat): one unit per chat whose target is the
  whole chat, grouped by round; the answer carries one label per round that has a customer turn.

Truncation policy (recorded on every affected row): when a unit's transcript is longer than
``max_chars``, the oldest context turns are dropped first; if the target alone is still too long,
each target turn keeps its head and tail around a ``[...]`` marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from annotate.ingest.model import Chat
from annotate.ingest.segmentation import Round, Turn, handoff_index, merge_turns, split_rounds
from annotate.prompts.rubrics import UnitKind, round_key

SPEAKER_NAMES = {"customer": "Customer", "ai": "AI assistant", "agent": "Human agent"}
WIDE = re.compile(r"[\u2e80-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
"""CJK characters and full-width punctuation: about one token each (tests/test_long_chats.py measures it)."""


COMMON_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
"""Common Chinese characters, CJK punctuation and full-width forms: one token or less each for Qwen's tokenizer
(docs/prompts.md has the measurement)."""
ASCII_TEXT = re.compile(r"[A-Za-z]|\s(?=[A-Za-z])")
"""Letters, and a space before a letter (it joins the word's token); a space before a digit or a mark does not."""
ASCII_ANY = re.compile(r"[\x00-\x7f]")


def estimated_tokens(text: str) -> float:
    """A high estimate of a text's tokens when the engine cannot count them: a third of one per ASCII letter (or
    space before one), one per other ASCII character (Qwen's tokenizer splits digits one by one), one per common Chinese
    character, and one per UTF-8 byte of anything else (Greek, Hindi, Thai, emoji, combining marks, rare CJK):
    a byte-level tokenizer never needs more tokens than bytes, so those scripts cannot overflow the context.
    """
    letters = len(ASCII_TEXT.findall(text))
    ascii_other = len(ASCII_ANY.findall(text)) - letters
    common = len(COMMON_CJK.findall(text))
    rest = COMMON_CJK.sub("", ASCII_ANY.sub("", text))
    return letters / 3 + ascii_other + common + len(rest.encode("utf-8"))


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
    turn_rounds: tuple[int, ...] = ()
    """``chat_rounds`` units only: the round of each target turn."""
    rate_from: int | None = None
    """``chat_rounds`` windows of a long chat: earlier rounds are shown as context, not rated."""

    @property
    def rated_rounds(self) -> tuple[int, ...]:
        """``chat_rounds`` units only: the rounds to label, those with a customer turn (from ``rate_from``)."""
        if not self.turn_rounds:
            return ()
        first = self.rate_from or 0
        pairs = zip(self.turn_rounds, self.target, strict=True)
        return tuple(sorted({r for r, t in pairs if t.speaker == "customer" and r >= first}))

    @property
    def label_rounds(self) -> tuple[int | None, ...]:
        """The ``round`` of each set of labels this unit yields: its rated rounds, or its own round."""
        return self.rated_rounds or (self.round,)

    def as_template_data(self) -> dict[str, Any]:
        """What a prompt template sees: plain data, never template code."""

        def turns(ts: tuple[Turn, ...]) -> list[dict[str, str]]:
            return [{"speaker": t.speaker, "name": SPEAKER_NAMES[t.speaker], "text": t.text} for t in ts]

        data: dict[str, Any] = {"round": self.round, "context": turns(self.context), "target": turns(self.target)}
        if self.turn_rounds:
            data["rounds"] = group_rounds(data["target"], self.turn_rounds, self.rate_from)
        return data


def group_rounds(
    turns: list[dict[str, str]], turn_rounds: tuple[int, ...], rate_from: int | None = None
) -> list[dict[str, Any]]:
    """Turns grouped by round for templates: ``[{"number", "key", "rated", "turns"}]``."""
    rounds: dict[int, list[dict[str, str]]] = {}
    for turn, number in zip(turns, turn_rounds, strict=True):
        rounds.setdefault(number, []).append(turn)
    return [
        {
            "number": n,
            "key": round_key(n),
            "rated": any(t["speaker"] == "customer" for t in ts) and n >= (rate_from or 0),
            "turns": ts,
        }
        for n, ts in rounds.items()
    ]


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
    if kind == "chat_rounds":
        return chat_windows(task, chat.chat_id, rounds, max_chars)
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


MAX_RATED_ROUNDS = 40
"""Rounds one ``chat_rounds`` request rates at most; a longer chat is split into several requests."""
CONTEXT_ROUNDS = 2
"""Rounds shown (not rated) before each later window of a split chat, so its first rounds have context."""


def chat_windows(task: str, chat_id: str, rounds: list[Round], max_chars: int) -> list[Unit]:
    """A whole chat as one ``chat_rounds`` unit (clipped if need be), or, when it has more than MAX_RATED_ROUNDS
    rounds or cannot fit even clipped, windows of rounds that each fit.

    Each window rates its own rounds and shows up to CONTEXT_ROUNDS earlier rounds as context.
    """
    if len(rounds) <= MAX_RATED_ROUNDS:
        whole = fit_unit(_rounds_unit(task, chat_id, rounds, None, ""), max_chars)
        if _size(whole.target) <= max_chars:  # the whole chat fits, clipped if need be
            return [whole]
    windows, start = [], 0
    while start < len(rounds):
        context = rounds[max(0, start - CONTEXT_ROUNDS) : start]
        budget = max_chars - sum(_size(r.turns) for r in context)
        end, size = start, 0
        while end < len(rounds) and end - start < MAX_RATED_ROUNDS:
            size += _size(rounds[end].turns)
            if end > start and size > budget:
                break
            end += 1
        window = rounds[start:end]
        note = f"rounds {window[0].number}-{window[-1].number} of {len(rounds)} rated in this request"
        if context:
            note += f", rounds {context[0].number}-{context[-1].number} shown as context"
        windows.append(fit_unit(_rounds_unit(task, chat_id, [*context, *window], window[0].number, note), max_chars))
        start = end
    return windows


def _rounds_unit(task: str, chat_id: str, rounds: list[Round], rate_from: int | None, note: str) -> Unit:
    turns = tuple(t for r in rounds for t in r.turns)
    numbers = tuple(r.number for r in rounds for _ in r.turns)
    return Unit(task, chat_id, rate_from, (), turns, truncation=note, turn_rounds=numbers, rate_from=rate_from)


def fit_unit(unit: Unit, max_chars: int) -> Unit:
    """Apply the truncation policy for a budget of ``max_chars`` transcript characters."""
    context, target = unit.context, unit.target
    if _size(context) + _size(target) <= max_chars:
        return unit
    notes = []
    excess, dropped = _size(context) + _size(target) - max_chars, 0
    while dropped < len(context) and excess > 0:
        excess -= len(context[dropped].text) + 16
        dropped += 1
    if dropped:
        context = context[dropped:]
        notes.append(f"dropped {dropped} oldest context turn(s)")
    if _size(target) > max_chars and unit.turn_rounds:
        target, note = _clip_whole_chat(target, max_chars)
        notes.append(note)
    elif _size(target) > max_chars:
        per_turn = max(200, max_chars // max(1, len(target)) - 16)
        clipped = sum(len(t.text) > per_turn for t in target)
        target = tuple(_clip(t, per_turn) for t in target)
        notes.append(f"clipped {clipped} target turn(s) to {per_turn} characters")
        if _size(target) > max_chars:
            target, left_out = _keep_ends(target, max_chars)
            notes.append(f"left out {left_out} middle target turn(s)")
    all_notes = [n for n in (unit.truncation, *notes) if n]
    return replace(unit, context=context, target=target, truncation="; ".join(all_notes))


def _keep_ends(target: tuple[Turn, ...], max_chars: int) -> tuple[tuple[Turn, ...], int]:
    """The first and last turns, alternately, as many as fit: how a long exchange opens and how it ends."""
    n = len(target)
    keep, size = [False] * n, 0
    for i in (j for pair in zip(range(n), range(n - 1, -1, -1), strict=True) for j in pair):
        if keep[i]:
            continue
        if size + len(target[i].text) + 16 > max_chars and any(keep):
            break
        keep[i], size = True, size + len(target[i].text) + 16
    kept = tuple(t for t, k in zip(target, keep, strict=True) if k)
    return kept, n - len(kept)


def _clip_whole_chat(target: tuple[Turn, ...], max_chars: int) -> tuple[tuple[Turn, ...], str]:
    """A whole chat is all target: clip the shop's turns first (they are not rated), then the customer's."""
    customer = [t for t in target if t.speaker == "customer"]
    shop = len(target) - len(customer)
    shop_limit = max(MIN_CLIP, (max_chars - _size(tuple(customer))) // max(1, shop) - 16)
    clipped = tuple(t if t.speaker == "customer" else _clip(t, shop_limit) for t in target)
    note = f"clipped shop turns to {shop_limit} characters"
    if _size(clipped) > max_chars:
        shop_size = _size(tuple(t for t in clipped if t.speaker != "customer"))
        customer_limit = max(MIN_CLIP, (max_chars - shop_size) // max(1, len(customer)) - 16)
        clipped = tuple(_clip(t, customer_limit) if t.speaker == "customer" else t for t in clipped)
        note += f" and customer turns to {customer_limit}"
    return clipped, note


MIN_CLIP = 60
"""Shortest clipped turn of a whole-chat unit: head and tail of about 25 characters each."""


def _clip(turn: Turn, limit: int) -> Turn:
    if len(turn.text) <= limit:
        return turn
    half = (limit - len(CLIP_MARKER)) // 2
    return Turn(turn.speaker, turn.text[:half] + CLIP_MARKER + turn.text[-half:], turn.first, turn.last)
