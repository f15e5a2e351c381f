from __future__ import annotations

from pathlib import Path

from annotate.ingest.readers import read_transcripts
from annotate.prompts.units import CLIP_MARKER, units_for
from tests.conftest import ESCALATED, NOT_ESCALATED, msgs, write_jsonl


def _chats(tmp_path: Path, *records: dict) -> list:
    return read_transcripts([write_jsonl(tmp_path / "c.jsonl", list(records))]).chats


def test_post_handoff_unit_splits_context_and_target(tmp_path: Path) -> None:
    chat, plain = _chats(tmp_path, ESCALATED, NOT_ESCALATED)
    (unit,) = units_for(chat, "empathy", "post_handoff", 10_000)
    assert [t.speaker for t in unit.context] == ["ai", "customer", "ai"]
    assert [t.speaker for t in unit.target] == ["agent", "customer", "agent"]
    assert unit.round is None and unit.truncation == ""
    assert units_for(plain, "empathy", "post_handoff", 10_000) == []


def test_first_round_and_per_round_units(tmp_path: Path) -> None:
    (chat,) = _chats(tmp_path, ESCALATED)
    (first,) = units_for(chat, "initial_state", "first_round", 10_000)
    assert [t.speaker for t in first.target] == ["ai", "customer", "ai", "agent"]
    rounds = units_for(chat, "round_sentiment", "round", 10_000)
    assert [u.round for u in rounds] == [1, 2]
    assert [t.text for t in rounds[0].context] == ["Hi, how can I help?"]
    assert [t.speaker for t in rounds[0].target] == ["customer"]
    assert len(rounds[1].context) == 4 and rounds[1].target[0].text == "Thanks."


def test_truncation_drops_oldest_context_then_clips_target(tmp_path: Path) -> None:
    long_chat = {
        "chat_id": "long",
        "messages": msgs(
            *[("customer" if i % 2 == 0 else "ai", f"message {i} " + "x" * 300) for i in range(20)],
            ("agent", "A" * 3000),
        ),
    }
    (chat,) = _chats(tmp_path, long_chat)
    (unit,) = units_for(chat, "empathy", "post_handoff", 2000)
    assert "dropped" in unit.truncation and "clipped 1 target turn" in unit.truncation
    assert len(unit.context) == 0
    assert CLIP_MARKER in unit.target[0].text and len(unit.target[0].text) < 2000
    (roomy,) = units_for(chat, "empathy", "post_handoff", 6000)
    assert roomy.truncation.startswith("dropped") and "clipped" not in roomy.truncation
    assert roomy.context[-1].text.startswith("message 19")
