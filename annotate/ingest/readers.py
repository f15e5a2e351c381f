"""Read transcripts from JSONL, CSV or Parquet into chats; bad records become skips (or errors with --strict).

Two input shapes are accepted:

* nested JSONL, one chat per line: ``{"chat_id", "messages": [{"role", "text", "ts"?}], "meta"?}``
* a flat message table (CSV, Parquet or JSONL) with columns ``chat_id``, ``seq`` or ``ts``,
  ``role``, ``text``; any other column is kept as chat metadata.

Role names are mapped onto three speakers: the customer, the AI agent and the human agent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from annotate.config import SPEAKERS, Speaker
from annotate.errors import InputError
from annotate.ingest.model import Chat, Message, ReadResult, Skip
from annotate.ingest.redaction import redact_chat

DEFAULT_ROLE_MAP: dict[str, Speaker] = {
    **dict.fromkeys(["customer", "user", "buyer", "client", "shopper"], "customer"),
    **dict.fromkeys(["ai", "bot", "assistant", "chatbot", "virtual_agent", "ai_agent"], "ai"),
    **dict.fromkeys(["agent", "human", "worker", "staff", "operator", "human_agent", "csr"], "agent"),
}


class _Collector:
    """Gathers chats, turning record-level problems into skips (or raising them when strict)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.pending: list[Chat | Skip] = []
        self.seen: dict[str, str] = {}
        """Chat id -> where it was first read: the only thing kept for every chat."""

    def drain(self) -> Iterator[Chat | Skip]:
        yield from self.pending
        self.pending = []

    def problem(self, err: InputError, chat_id: str | None) -> None:
        if self.strict:
            raise err
        self.pending.append(Skip(chat_id or f"{err.path}:{err.line}", str(err)))

    def add(self, chat: Chat, path: str, line: int | None) -> None:
        if chat.chat_id in self.seen:
            self.problem(
                InputError(
                    path, line, "chat_id", f"duplicate chat id '{chat.chat_id}' (first at {self.seen[chat.chat_id]})"
                ),
                f"{chat.chat_id}@{path}:{line}",
            )
            return
        self.seen[chat.chat_id] = chat.source
        self.pending.append(chat)


def read_as_run(
    paths: Iterable[str | Path],
    role_map: Mapping[str, Speaker] | None = None,
    limit: int | None = None,
    redact: bool = False,
    strict: bool = False,
) -> Iterator[Chat | Skip]:
    """The chats exactly as a run reads them: with its role map, the first ``limit``, redacted if asked.

    ``annotate run`` and every command that reads a run's chats again go through here, so a coding file or
    a report never shows text the model did not see (raw e-mail addresses after ``--redact``, say)."""
    chats = 0
    for item in iter_transcripts(paths, role_map, strict=strict):
        if isinstance(item, Skip):
            yield item
            continue
        if limit is not None and chats >= limit:
            return
        chats += 1
        yield redact_chat(item) if redact else item


def read_transcripts(
    paths: Iterable[str | Path], role_map: Mapping[str, Speaker] | None = None, strict: bool = False
) -> ReadResult:
    """Read every file into memory; bad records become skips (or the first one raises, with ``strict``)."""
    result = ReadResult()
    for item in iter_transcripts(paths, role_map, strict):
        (result.chats if isinstance(item, Chat) else result.skipped).append(item)  # type: ignore[arg-type]
    return result


SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet", ".pq")


def check_inputs(paths: Iterable[str | Path]) -> None:
    """Every input exists and has a known type: checked before any engine starts or any folder is made."""
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError(str(path), None, None, "no such file")
        if path.suffix.lower() not in SUFFIXES:
            raise InputError(str(path), None, None, f"unknown file type '{path.suffix}' (use .jsonl, .csv or .parquet)")


def iter_transcripts(
    paths: Iterable[str | Path], role_map: Mapping[str, Speaker] | None = None, strict: bool = False
) -> Iterator[Chat | Skip]:
    """Chats and skips in file order, one at a time: a JSONL corpus of any size is never held in memory.

    A flat message table is read whole (its rows must be grouped into chats), then given out chat by chat.
    """
    roles = {k.lower(): v for k, v in (role_map or DEFAULT_ROLE_MAP).items()}
    collector = _Collector(strict)
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError(str(path), None, None, "no such file")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            yield from _read_jsonl(path, roles, collector)
        elif suffix in (".csv", ".parquet", ".pq"):
            _read_table(path, _load_table(path), roles, collector, row_offset=2 if suffix == ".csv" else 1)
            yield from collector.drain()
        else:
            raise InputError(str(path), None, None, f"unknown file type '{suffix}' (use .jsonl, .csv or .parquet)")


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, record)``; a line that is not UTF-8 or not JSON yields an InputError instead."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a byte-order mark is not data
            except UnicodeDecodeError as e:
                yield lineno, InputError(str(path), lineno, None, _bad_byte(raw, e.start))
                continue
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as e:
                yield lineno, InputError(str(path), lineno, None, f"not valid JSON ({e.msg} at column {e.colno})")


def _read_jsonl(path: Path, roles: Mapping[str, Speaker], collector: _Collector) -> Iterator[Chat | Skip]:
    flat_rows: list[dict[str, Any]] = []
    for lineno, record in _json_lines(path):
        if isinstance(record, InputError):
            collector.problem(record, None)
        elif not isinstance(record, dict):
            collector.problem(InputError(str(path), lineno, None, "expected a JSON object"), None)
        elif "messages" in record:
            chat = _nested_chat(record, path, lineno, roles, collector)
            if chat is not None:
                collector.add(chat, str(path), lineno)
        else:
            flat_rows.append({**record, "_line": lineno})
        yield from collector.drain()
    if flat_rows:
        import pandas as pd

        _read_table(path, pd.DataFrame(flat_rows), roles, collector, row_offset=0)
        yield from collector.drain()


def chat_id_text(value: Any) -> str | None:
    """A chat id as text, read one way everywhere (transcripts and gold): ``8.0`` and ``8`` are one chat."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            value = int(value)
    if isinstance(value, (str, int)) and str(value).strip():
        return str(value).strip()  # as gold labels are read: " c01" and "c01" are one chat
    return None


def _nested_chat(
    record: dict[str, Any], path: Path, lineno: int, roles: Mapping[str, Speaker], collector: _Collector
) -> Chat | None:
    chat_id = chat_id_text(record.get("chat_id"))
    if chat_id is None:
        collector.problem(InputError(str(path), lineno, "chat_id", "missing or not a string/integer"), None)
        return None
    raw_messages = record["messages"]
    if not isinstance(raw_messages, list):
        collector.problem(InputError(str(path), lineno, "messages", "expected a list of messages"), chat_id)
        return None
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        collector.problem(InputError(str(path), lineno, "meta", "expected an object"), chat_id)
        return None
    messages = []
    for i, m in enumerate(raw_messages):
        try:
            messages.append(_message(m, roles, path, lineno, f"messages[{i}]"))
        except InputError as err:
            collector.problem(err, chat_id)
            return None
    return _finish_chat(chat_id, messages, meta, path, lineno, collector)


def _message(m: Any, roles: Mapping[str, Speaker], path: Path, line: int | None, where: str) -> Message:
    if not isinstance(m, dict):
        raise InputError(str(path), line, where, "expected an object with 'role' and 'text'")
    role = m.get("role")
    if not isinstance(role, str) or not role.strip():
        raise InputError(str(path), line, f"{where}.role", "missing or not a string")
    speaker = roles.get(role.strip().lower())
    if speaker is None:
        known = ", ".join(sorted(roles))
        raise InputError(
            str(path), line, f"{where}.role", f"unknown role '{role}' (known: {known}; map it with --role)"
        )
    text = m.get("text")
    if not isinstance(text, str):
        raise InputError(str(path), line, f"{where}.text", "missing or not a string")
    for name, value in (("role", role), ("text", text)):
        if bad := _undecodable(value):
            raise InputError(str(path), line, f"{where}.{name}", f"not valid UTF-8 (byte 0x{bad:02x})")
    ts = m.get("ts")
    return Message(speaker, text, None if ts is None or (isinstance(ts, float) and math.isnan(ts)) else str(ts))


RECORD_FIELDS = {"chat_id", "messages", "role", "text", "ts"}
"""A chat's own fields: a meta field of one of these names would stand in for it downstream (a covariate table
keyed by ``chat_id``, say), so it is refused."""


def _finish_chat(
    chat_id: str, messages: list[Message], meta: dict[str, Any], path: Path, line: int | None, collector: _Collector
) -> Chat | None:
    broken = _half_surrogate(chat_id, messages, meta)
    if broken:
        field, code = broken
        safe_id = chat_id.encode("utf-8", "backslashreplace").decode()
        reason = (
            f"not valid UTF-8 (byte 0x{code - 0xDC00:02x})"
            if 0xDC80 <= code <= 0xDCFF
            else f"half of a UTF-16 surrogate pair (U+{code:04X}, as a cut emoji leaves): not valid text"
        )
        collector.problem(InputError(str(path), line, field, reason), safe_id)
        return None
    clash = sorted(set(meta) & RECORD_FIELDS)
    if clash:
        reason = f"a meta field may not be named '{clash[0]}' (the record's own field): rename it"
        collector.problem(InputError(str(path), line, f"meta.{clash[0]}", reason), chat_id)
        return None
    if not messages:
        collector.problem(InputError(str(path), line, "messages", f"chat '{chat_id}' has no messages"), chat_id)
        return None
    if not any(m.speaker == "customer" for m in messages):
        collector.problem(InputError(str(path), line, "messages", f"chat '{chat_id}' has no customer message"), chat_id)
        return None
    return Chat(chat_id, tuple(messages), meta, source=f"{path}:{line}" if line is not None else str(path))


def read_table(path: Path, what: str) -> tuple[Any, int]:
    """A CSV (every cell a string, nothing read as missing) or Parquet table of ``what`` (gold labels,
    covariates), with the file line of its first row; a missing or unreadable file is one line."""
    import pandas as pd

    if not path.is_file():
        raise InputError(str(path), None, None, "no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path), 1
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig"), 2
    except (UnicodeDecodeError, ValueError, OSError) as e:
        raise InputError(str(path), None, None, f"cannot read {what}: {e}") from None


def _load_table(path: Path) -> Any:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            # Undecodable bytes survive as surrogates, so one bad row is skipped instead of the whole file.
            # Plain Python strings (pandas 3 would store Arrow strings, which cannot hold those surrogates);
            # metadata cells are typed afterwards, see _plain.
            return pd.read_csv(
                path, dtype=object, keep_default_na=False, encoding="utf-8-sig", encoding_errors="surrogateescape"
            )
        return pd.read_parquet(path)
    except UnicodeDecodeError as e:
        raise InputError(str(path), None, None, f"not valid UTF-8 (byte {e.start})") from None
    except (ValueError, OSError) as e:
        raise InputError(str(path), None, None, f"cannot read table: {e}") from None


def _read_table(path: Path, df: Any, roles: Mapping[str, Speaker], collector: _Collector, row_offset: int) -> None:
    """Group a flat message table into chats; ``row_offset`` turns a 0-based row into the file's line/row."""
    missing = [c for c in ("chat_id", "role", "text") if c not in df.columns]
    if missing:
        raise InputError(
            str(path), None, missing[0], f"missing column (columns are: {', '.join(map(str, df.columns))})"
        )
    order = "seq" if "seq" in df.columns else "ts" if "ts" in df.columns else None
    if order is None:
        raise InputError(str(path), None, "seq", "a flat message table needs a 'seq' or 'ts' column to order messages")
    line_of = (lambda i, row: int(row["_line"])) if "_line" in df.columns else (lambda i, row: i + row_offset)
    extra = [c for c in df.columns if c not in ("chat_id", "role", "text", "seq", "ts", "_line")]
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, row in enumerate(df.to_dict("records")):
        chat_id = chat_id_text(row.get("chat_id"))
        if chat_id is None:
            collector.problem(InputError(str(path), line_of(i, row), "chat_id", "missing or empty"), None)
            continue
        groups.setdefault(chat_id, []).append((line_of(i, row), row))
    for chat_id, rows in groups.items():
        messages = []
        first_line = min(line for line, _ in rows)
        try:
            rows.sort(key=lambda lr: _order_key(lr[1].get(order), order, path, lr[0]))
            for line, row in rows:
                messages.append(_message(row, roles, path, line, "row"))
        except InputError as err:
            collector.problem(err, chat_id)
            continue
        meta = {c: _plain(rows[0][1][c], from_text=path.suffix.lower() == ".csv") for c in extra}
        chat = _finish_chat(chat_id, messages, meta, path, first_line, collector)
        if chat is not None:
            collector.add(chat, str(path), first_line)


def _order_key(value: Any, column: str, path: Path, line: int) -> float:
    """Where a message goes in its chat: ``seq`` as a number, ``ts`` as a point in time (offsets honoured)."""
    import pandas as pd

    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        raise InputError(str(path), line, column, "empty, so the message cannot be put in order")
    try:
        if column == "seq":
            return float(value)
        stamp = pd.Timestamp(str(value).strip())
    except (TypeError, ValueError):
        kind = "a number" if column == "seq" else "a time"
        raise InputError(str(path), line, column, f"cannot be read as {kind}: '{value}'") from None
    if stamp is pd.NaT:
        raise InputError(str(path), line, column, f"cannot be read as a time: '{value}'")
    return float((stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).value)


def _half_surrogate(chat_id: str, messages: list[Message], meta: dict[str, Any]) -> tuple[str, int] | None:
    """The first field holding a lone UTF-16 surrogate (JSON escapes such as ``\\ud83d`` decode to one), which
    no UTF-8 file or hash can hold: the field and the code point."""
    fields = [("chat_id", chat_id)] + [(f"messages[{i}].text", m.text) for i, m in enumerate(messages)]
    fields += [(f"meta.{k}", v) for k, v in meta.items() if isinstance(v, str)]
    for field, text in fields:
        code = next((ord(c) for c in text if "\ud800" <= c <= "\udfff"), None)
        if code is not None:
            return field, code
    return None


def _undecodable(text: str) -> int | None:
    """The first byte that was not UTF-8 (read with ``surrogateescape``), or None."""
    return next((ord(c) - 0xDC00 for c in text if "\udc80" <= c <= "\udcff"), None)


def _bad_byte(raw: bytes, start: int) -> str:
    """The byte, and what the file probably is (UTF-16 has a zero in every other byte)."""
    utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff")) or raw.count(b"\x00") > len(raw) // 4
    hint = "looks like UTF-16" if utf16 else "may be in another encoding (GBK, Big5, Latin-1)"
    return f"not valid UTF-8 (byte 0x{raw[start]:02x} at position {start}): the file {hint}; save it as UTF-8"


def _plain(value: Any, from_text: bool = False) -> Any:
    """Numpy scalars and NaN to plain JSON-able Python values; CSV cells (``from_text``) to numbers where
    they are numbers, and empty ones to None, as a typed file would give them."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if from_text and isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        for number in (int, float):
            try:
                return number(text)
            except ValueError:
                continue
    return value


def parse_role_map(pairs: Iterable[str]) -> dict[str, Speaker]:
    """``["bot=ai", "csr=agent"]`` on top of the default mapping."""
    mapping = dict(DEFAULT_ROLE_MAP)
    for pair in pairs:
        name, sep, speaker = pair.partition("=")
        if not sep or speaker.strip() not in SPEAKERS or not name.strip():
            raise ValueError(f"--role expects NAME=SPEAKER with SPEAKER one of {', '.join(SPEAKERS)}, got '{pair}'")
        mapping[name.strip().lower()] = speaker.strip()  # type: ignore[assignment]
    return mapping
