"""``--redact``: mask personal data before any text reaches the model.

Applied to every message after reading, so prompts, cache keys and excerpts never hold the original.
The masks keep the kind of thing that was there ("[EMAIL]"), which a coder or model may need.
"""

from __future__ import annotations

import re
from dataclasses import replace

from annotate.ingest.model import Chat

RULES: list[tuple[str, re.Pattern[str], str]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "[EMAIL]"),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"), "[IBAN]"),
    ("card", re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), "[CARD]"),
    (
        "order",
        re.compile(
            r"(?i)\b(order|bestellung|invoice|tracking)(\s*(?:number|no\.?|nr\.?|#|id)?\s*:?\s*)"
            r"([A-Z]{0,3}-?\d{4,})"
        ),
        r"\1\2[ORDER]",
    ),
    ("phone", re.compile(r"(?<![\w\[])\+?\(?\d[\d ()/.-]{6,}\d(?![\w\]])"), "[PHONE]"),
]
DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


def _phone(match: re.Match[str]) -> str:
    found = match.group(0)
    if DATE.fullmatch(found.strip()) or sum(c.isdigit() for c in found) < 7:
        return found
    return "[PHONE]"


"""Applied in this order: the narrow patterns before the loose phone pattern."""


def redact_text(text: str) -> str:
    for name, pattern, mask in RULES:
        text = pattern.sub(_phone if name == "phone" else mask, text)
    return text


def redact_chat(chat: Chat) -> Chat:
    return replace(chat, messages=tuple(replace(m, text=redact_text(m.text)) for m in chat.messages))
