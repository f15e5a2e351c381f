"""Chats as the rest of the tool sees them: messages of three speakers, and what could not be read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from annotate.config import SPEAKERS, Speaker

__all__ = ["SPEAKERS", "Chat", "Message", "ReadResult", "Skip", "Speaker"]


@dataclass(frozen=True)
class Message:
    speaker: Speaker
    text: str
    ts: str | None = None


@dataclass(frozen=True)
class Chat:
    chat_id: str
    messages: tuple[Message, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    """``file:line`` (or ``file:row``) of the record the chat came from, for error messages."""


@dataclass(frozen=True)
class Skip:
    """A record that could not become a chat, with the reason; reported as a ``skipped`` row."""

    chat_id: str
    reason: str


@dataclass
class ReadResult:
    chats: list[Chat] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
