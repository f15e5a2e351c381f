"""``--redact``: mask personal data before any text reaches the model.

Applied to every message after reading, so prompts, cache keys and excerpts never hold the original.
The masks keep the kind of thing that was there ("[EMAIL]"), which a coder or model may need.
"""

from __future__ import annotations

import re
from dataclasses import replace

from annotate.ingest.model import Chat

CJK = "\u2e80-\u9fff\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef"
"""Chinese, Japanese and Korean characters and full-width forms: Python counts them as word characters, so a
number written straight after one ("手机13812345678") has no word boundary before it."""
START = r"(?<![0-9A-Za-z_\[])"
END = r"(?![0-9A-Za-z_\]])"
"""Boundaries for numbers: no ASCII letter or digit beside them, whatever the script around."""

RULES: list[tuple[str, re.Pattern[str], str]] = [  # in this order: the narrow patterns before the loose ones
    ("email", re.compile(rf"(?:[^\W{CJK}]|[.+-])+@[\w-]+(\.[\w-]+)+"), "[EMAIL]"),
    ("iban", re.compile(rf"{START}[A-Z]{{2}}\d{{2}}(?: ?[A-Z0-9]{{4}}){{3,7}}(?: ?[A-Z0-9]{{1,3}})?{END}"), "[IBAN]"),
    (
        "id_card",
        re.compile(rf"{START}[1-9]\d{{5}}(?:19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{{3}}[\dXx]{END}"),
        "[ID]",
    ),
    ("mobile_cn", re.compile(rf"{START}(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{{4}}[ -]?\d{{4}}{END}"), "[PHONE]"),
    ("card", re.compile(rf"{START}(?:\d[ -]?){{12,18}}\d{END}"), "[CARD]"),
    (
        "order",
        re.compile(
            r"(?i)\b(order|bestellung|invoice|tracking)(\s*(?:number|no\.?|nr\.?|#|id)?\s*:?\s*)"
            r"([A-Z]{0,3}-?\d{4,})"
        ),
        r"\1\2[ORDER]",
    ),
    ("phone", re.compile(rf"{START}\+?\(?\d[\d ()/.-]{{6,}}\d{END}"), "[PHONE]"),
]
DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


def _phone(match: re.Match[str]) -> str:
    found = match.group(0)
    if DATE.fullmatch(found.strip()) or sum(c.isdigit() for c in found) < 7:
        return found
    return "[PHONE]"


def redact_text(text: str) -> str:
    for name, pattern, mask in RULES:
        text = pattern.sub(_phone if name == "phone" else mask, text)
    return text


def redact_chat(chat: Chat) -> Chat:
    return replace(chat, messages=tuple(replace(m, text=redact_text(m.text)) for m in chat.messages))
