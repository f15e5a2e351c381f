from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from annotate.errors import InputError
from annotate.ingest.readers import parse_role_map, read_transcripts
from annotate.ingest.segmentation import handoff_index, split_rounds
from tests.conftest import ESCALATED, EXAMPLES, NOT_ESCALATED, msgs, write_jsonl


def test_reads_the_shipped_examples() -> None:
    result = read_transcripts([EXAMPLES])
    assert len(result.chats) == 30
    assert result.skipped == []
    assert result.chats[0].meta["escalation"] == "ai_unable"


def test_rounds_merge_consecutive_messages_and_keep_leading_ai_turns_in_round_one(tmp_path: Path) -> None:
    chat = read_transcripts([write_jsonl(tmp_path / "c.jsonl", [ESCALATED])]).chats[0]
    rounds = split_rounds(chat)
    assert [r.number for r in rounds] == [1, 2]
    assert [t.speaker for t in rounds[0].turns] == ["ai", "customer", "ai", "agent"]
    assert rounds[0].customer_text == "My lamp arrived broken.\nThe shade is cracked."
    assert rounds[1].customer_text == "Thanks."
    covered = [i for r in rounds for t in r.turns for i in range(t.first, t.last + 1)]
    assert covered == list(range(len(chat.messages)))


def test_handoff_is_first_agent_message_after_ai_or_the_explicit_field(tmp_path: Path) -> None:
    explicit = {**ESCALATED, "chat_id": "x", "meta": {"handoff_index": 6}}
    human_only = {"chat_id": "h", "messages": msgs(("customer", "hi"), ("agent", "hello"))}
    chats = read_transcripts(
        [write_jsonl(tmp_path / "c.jsonl", [ESCALATED, NOT_ESCALATED, explicit, human_only])]
    ).chats
    assert [handoff_index(c) for c in chats] == [4, None, 6, None]


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_flat_message_tables_group_by_chat_and_order_by_seq(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame(
        {
            "chat_id": ["a", "a", "b", "a"],
            "seq": [2, 1, 1, 3],
            "role": ["bot", "customer", "customer", "human"],
            "text": ['Hello, with commas, and "quotes"\nand a newline', "Hi", "Hey", "Agent here"],
            "channel": ["web", "web", "app", "web"],
        }
    )
    path = tmp_path / f"t.{suffix}"
    if suffix == "csv":
        df.to_csv(path, index=False)
    elif suffix == "parquet":
        df.to_parquet(path)
    else:
        df.to_json(path, orient="records", lines=True)
    result = read_transcripts([path])
    assert result.skipped == []
    a = next(c for c in result.chats if c.chat_id == "a")
    assert [m.speaker for m in a.messages] == ["customer", "ai", "agent"]
    assert a.messages[1].text.endswith('"quotes"\nand a newline')
    assert a.meta == {"channel": "web"}


BAD_RECORDS = [
    ('{"chat_id": "a", "messages": [', "bad.jsonl:1: not valid JSON"),
    ({"messages": msgs(("customer", "hi"))}, "bad.jsonl:1: field 'chat_id': missing"),
    ({"chat_id": "a", "messages": [{"role": "robot", "text": "x"}]}, "field 'messages[0].role': unknown role 'robot'"),
    ({"chat_id": "a", "messages": [{"role": "customer"}]}, "bad.jsonl:1: field 'messages[0].text': missing"),
    (
        {"chat_id": "a", "messages": [{"role": "customer", "text": 5}]},
        "field 'messages[0].text': missing or not a string",
    ),
    ({"chat_id": "a", "messages": []}, "field 'messages': chat 'a' has no messages"),
    ({"chat_id": "a", "messages": msgs(("ai", "hello"))}, "chat 'a' has no customer message"),
    ({"chat_id": "a", "messages": "hi"}, "field 'messages': expected a list"),
    ([1, 2], "bad.jsonl:1: expected a JSON object"),
]


@pytest.mark.parametrize(("record", "message"), BAD_RECORDS)
def test_bad_records_become_skips_naming_file_line_and_field(tmp_path: Path, record: object, message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [record, {**NOT_ESCALATED, "chat_id": "good"}])
    result = read_transcripts([path])
    assert [c.chat_id for c in result.chats] == ["good"]
    assert len(result.skipped) == 1
    assert message in result.skipped[0].reason
    assert "\n" not in result.skipped[0].reason
    with pytest.raises(InputError) as raised:
        read_transcripts([path], strict=True)
    assert message in str(raised.value)


def test_duplicate_ids_and_non_utf8_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    write_jsonl(path, [NOT_ESCALATED, NOT_ESCALATED])
    with path.open("ab") as f:
        f.write(b'{"chat_id": "z", "messages": [{"role": "customer", "text": "caf\xe9"}]}\n')
    result = read_transcripts([path])
    reasons = [s.reason for s in result.skipped]
    assert any("mixed.jsonl:2: field 'chat_id': duplicate chat id 'n1'" in r for r in reasons)
    assert any("mixed.jsonl:3: not valid UTF-8" in r for r in reasons)


def test_table_without_required_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"chat_id": ["a"], "seq": [1], "text": ["hi"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"t\.csv: field 'role': missing column"):
        read_transcripts([path])


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_transcripts([tmp_path / "nope.jsonl"])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match=r"unknown file type '\.txt'"):
        read_transcripts([tmp_path / "x.txt"])


def test_role_map_extends_defaults(tmp_path: Path) -> None:
    record = {"chat_id": "r", "messages": msgs(("kunde", "hallo"), ("robot", "hi"), ("mensch", "servus"))}
    roles = parse_role_map(["kunde=customer", "robot=ai", "mensch=agent"])
    chat = read_transcripts([write_jsonl(tmp_path / "r.jsonl", [record])], roles).chats[0]
    assert [m.speaker for m in chat.messages] == ["customer", "ai", "agent"]
    with pytest.raises(ValueError, match="NAME=SPEAKER"):
        parse_role_map(["robot=machine"])


def test_a_byte_order_mark_does_not_cost_the_first_chat(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bom.jsonl", [ESCALATED, NOT_ESCALATED])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = read_transcripts([path])
    assert [c.chat_id for c in result.chats] == ["e1", "n1"] and result.skipped == []


def test_a_bad_byte_in_a_csv_skips_its_chat_only_and_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = b"chat_id,seq,role,text\na,1,customer,Hello\na,2,agent,Hi\nb,1,customer,caf\xe9 is cold\nb,2,agent,Sorry\n"
    path.write_bytes(rows)
    result = read_transcripts([path])
    assert [c.chat_id for c in result.chats] == ["a"]
    (skip,) = result.skipped
    assert skip.chat_id == "b" and "t.csv:4: field 'row.text': not valid UTF-8 (byte 0xe9)" in skip.reason
    with pytest.raises(InputError, match="byte 0xe9"):
        read_transcripts([path], strict=True)


def test_timestamps_with_offsets_are_ordered_as_times(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame(
        {
            "chat_id": ["a", "a", "a"],
            # as text, "09:30+01:00" sorts last; as a time it is 08:30 UTC, the first message
            "ts": ["2026-03-01T09:10:00Z", "2026-03-01T09:20:00+00:00", "2026-03-01T09:30:00+01:00"],
            "role": ["agent", "customer", "customer"],
            "text": ["second", "third", "first"],
        }
    ).to_csv(path, index=False)
    (chat,) = read_transcripts([path]).chats
    assert [m.text for m in chat.messages] == ["first", "second", "third"]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("seq", "", "field 'seq': empty"), ("ts", "yesterday-ish", "field 'ts': cannot be read as a time")],
)
def test_a_message_that_cannot_be_ordered_is_reported(tmp_path: Path, column: str, value: str, message: str) -> None:
    path = tmp_path / "t.csv"
    good = "1" if column == "seq" else "2026-03-01T09:10:00Z"
    path.write_text(f"chat_id,{column},role,text\na,{good},customer,Hello\na,{value},agent,Hi\nb,{good},customer,Yo\n")
    result = read_transcripts([path])
    assert [c.chat_id for c in result.chats] == ["b"]
    assert f"t.csv:3: {message}" in result.skipped[0].reason


def test_chat_ids_are_stripped_as_in_gold(tmp_path: Path) -> None:
    result = read_transcripts([write_jsonl(tmp_path / "c.jsonl", [{**ESCALATED, "chat_id": "  e1 "}])])
    assert [c.chat_id for c in result.chats] == ["e1"]
    twice = read_transcripts([write_jsonl(tmp_path / "d.jsonl", [ESCALATED, {**ESCALATED, "chat_id": "e1 "}])])
    assert len(twice.chats) == 1 and "duplicate chat id 'e1'" in twice.skipped[0].reason


def test_half_an_emoji_skips_that_chat_only(tmp_path: Path) -> None:
    """Issue 18: one lone UTF-16 surrogate (JavaScript exports leave them) crashed the whole run in the unit hash."""
    chats = [
        {"chat_id": "text", "messages": [{"role": "customer", "text": "Where is it \ud83d"}]},
        {"chat_id": "id\ud83d", "messages": [{"role": "customer", "text": "fine"}]},
        {"chat_id": "meta", "meta": {"shop": "\udfff"}, "messages": [{"role": "customer", "text": "fine"}]},
        {"chat_id": "clean", "messages": [{"role": "customer", "text": "Where is it \U0001f600"}]},
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(chat) + "\n" for chat in chats))
    result = read_transcripts([path])
    assert [c.chat_id for c in result.chats] == ["clean"]
    reasons = {skip.chat_id: skip.reason for skip in result.skipped}
    assert "messages[0].text" in reasons["text"] and "U+D83D" in reasons["text"]
    assert "field 'chat_id'" in reasons["id\\ud83d"]
    assert "meta.shop" in reasons["meta"] and "U+DFFF" in reasons["meta"]
    json.dumps(reasons, ensure_ascii=False).encode()  # every reason can be written


def test_a_meta_field_named_like_the_records_own_is_refused(tmp_path: Path) -> None:
    """Issue 28 (26): meta ``chat_id`` used to replace every chat's id downstream; now that chat is skipped, named."""
    record = {"chat_id": "a", "meta": {"chat_id": "other"}, "messages": [{"role": "customer", "text": "hi"}]}
    result = read_transcripts([write_jsonl(tmp_path / "c.jsonl", [record, {**record, "chat_id": "b", "meta": {}}])])
    assert [c.chat_id for c in result.chats] == ["b"]
    [skip] = result.skipped
    assert "meta.chat_id" in skip.reason and "the record's own field" in skip.reason
