"""Cutting a chat into turns and rounds, and finding the handoff from the AI agent to a human."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from annotate.config import Speaker
from annotate.ingest.model import Chat, Message

HANDOFF_META_KEY = "handoff_index"
"""Chat metadata field that, when present, names the message index (0-based) where the handoff happens."""


@dataclass(frozen=True)
class Turn:
    """Consecutive messages of one speaker, merged."""

    speaker: Speaker
    text: str
    first: int
    """Index of the first merged message in the chat."""
    last: int


@dataclass(frozen=True)
class Round:
    """A customer turn and the provider turns that answer it.

    Provider turns before the chat's first customer turn open round 1, so every message lands in
    exactly one round.
    """

    number: int
    turns: tuple[Turn, ...]

    @property
    def customer_text(self) -> str:
        return "\n".join(t.text for t in self.turns if t.speaker == "customer")


def merge_turns(messages: Iterable[Message], start: int = 0) -> list[Turn]:
    """Merge runs of one speaker; ``start`` is the chat index of the first message given."""
    turns: list[Turn] = []
    for i, m in enumerate(messages, start=start):
        if turns and turns[-1].speaker == m.speaker:
            prev = turns[-1]
            turns[-1] = Turn(m.speaker, f"{prev.text}\n{m.text}", prev.first, i)
        else:
            turns.append(Turn(m.speaker, m.text, i, i))
    return turns


def split_rounds(chat: Chat) -> list[Round]:
    rounds: list[list[Turn]] = []
    for turn in merge_turns(chat.messages):
        starts_round = turn.speaker == "customer" and not (rounds and all(t.speaker != "customer" for t in rounds[-1]))
        if starts_round or not rounds:
            rounds.append([turn])
        else:
            rounds[-1].append(turn)
    return [Round(i + 1, tuple(turns)) for i, turns in enumerate(rounds)]


def handoff_index(chat: Chat) -> int | None:
    """Index of the first human-agent message that follows AI messages, or the explicit field."""
    explicit = chat.meta.get(HANDOFF_META_KEY)
    if explicit is not None and not (isinstance(explicit, float) and math.isnan(explicit)):
        return int(explicit)
    seen_ai = False
    for i, m in enumerate(chat.messages):
        if m.speaker == "ai":
            seen_ai = True
        elif m.speaker == "agent" and seen_ai:
            return i
    return None


def handoff_round(chat: Chat) -> int | None:
    """The round in which the human agent takes over, or None for a chat without a handoff."""
    index = handoff_index(chat)
    if index is None:
        return None
    for r in split_rounds(chat):
        if any(t.first <= index <= t.last for t in r.turns):
            return r.number
    return None
