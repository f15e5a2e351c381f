"""``--redact``: mask personal data before any text reaches the model.

Applied to every message after reading, so prompts, cache keys and excerpts never hold the original.
The masks keep the kind of thing that was there ("[EMAIL]"), which a coder or model may need.

Rules match on a width-normalised copy of the text (NFKC: full-width digits, dashes, ideographic spaces and
at signs read as their ASCII forms) and mask the original span, so ``１３８－１２３４－５６７８`` is a phone
number like ``138-1234-5678``. Numbers with a shape of their own (mainland mobiles, ID cards, card numbers) are
found beside any letter (``VX13712345678``, ``13912345678QQ同号``); looser numbers need a boundary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace

from annotate.ingest.model import Chat

DIGITS_APART = r"(?<![0-9\[])", r"(?![0-9\]])"
"""Boundaries for numbers with a shape of their own: no digit beside them (letters may be)."""
APART = r"(?<![0-9A-Za-z_\[])", r"(?![0-9A-Za-z_\]])"
"""Boundaries for loose numbers: no ASCII letter or digit beside them, whatever the script around."""
SEP = r"[ -]?"
"""One optional space or dash between digit groups (after width normalisation)."""


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    mask: str
    group: int = 0
    """The part of a match that is masked (0: all of it; a keyword before it stays)."""
    keep: Callable[[str], bool] | None = None
    """A test on the matched text that spares it (a date that looks like a phone number)."""


def _shaped(body: str) -> re.Pattern[str]:
    return re.compile(DIGITS_APART[0] + body + DIGITS_APART[1])


def _loose(body: str) -> re.Pattern[str]:
    return re.compile(APART[0] + body + APART[1])


DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
ORDER_CN = "订单号码|订单编号|订单号|订单|运单号|快递单号|物流单号|单号|发票号码|发票号"
EMAIL_CUES = ("邮箱地址是", "邮箱地址", "邮箱是", "邮箱", "邮件地址", "电子邮件", "电邮", "发到", "发至", "是")
"""Words written straight before an address whose local part is Chinese: context, not the address."""

RULES: list[Rule] = [  # in this order: the narrow patterns before the loose ones
    Rule("email", re.compile(r"[\w.+%-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "[EMAIL]"),
    Rule("iban", _loose(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?"), "[IBAN]"),
    Rule(
        "id_card",
        _shaped(rf"[1-9]\d{{5}}{SEP}(?:19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]){SEP}\d{{3}}[\dXx]"),
        "[ID]",
    ),
    Rule("mobile_cn", _shaped(rf"(?:\+?86{SEP})?1[3-9]\d{SEP}\d{{4}}{SEP}\d{{4}}"), "[PHONE]"),
    Rule("card", _shaped(rf"(?:\d{SEP}){{12,18}}\d"), "[CARD]"),
    Rule(
        "order",
        re.compile(
            rf"(?i)(?:\b(?:order|bestellung|invoice|tracking)(?:\s*(?:number|no\.?|nr\.?|#|id)?\s*:?\s*)|"
            rf"(?:{ORDER_CN})\s*[:#]?\s*)([A-Z]{{0,3}}-?\d{{4,}})(?![0-9])"
        ),
        "[ORDER]",
        group=1,
    ),
    Rule("wechat", re.compile(r"(?i)(?<![A-Za-z0-9])wxid_[A-Za-z0-9_-]{4,}"), "[WECHAT]"),
    Rule(
        "wechat",
        re.compile(r"(?i)(?:微信号?|(?<![A-Za-z])(?:wechat|weixin|wx)\s*(?:id|号)?)\s*:\s*([A-Za-z][-\w]{5,19})"),
        "[WECHAT]",
        group=1,
    ),
    Rule("wechat", re.compile(r"微信号?\s*([A-Za-z][-\w]{5,19})(?![-\w])", re.ASCII), "[WECHAT]", group=1),
    Rule("qq", re.compile(r"(?i)(?<![A-Za-z])QQ\s*(?:号码|号)?\s*:?\s*([1-9]\d{4,10})(?![0-9])"), "[QQ]", group=1),
    Rule(
        "phone",
        _loose(r"\+?\(?\d[\d ()/.-]{6,}\d"),
        "[PHONE]",
        keep=lambda found: bool(DATE.fullmatch(found.strip())) or sum(c.isdigit() for c in found) < 7,
    ),
]
RULE_NAMES = list(dict.fromkeys(rule.name for rule in RULES))
"""What the manifest records as ``redact``."""


def _normalised(text: str) -> tuple[str, list[int] | None]:
    """``text`` in NFKC, character by character, and for each character of it the original position it came from
    (None: the same positions, as for ASCII text)."""
    if text.isascii():
        return text, None
    out: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        wide = unicodedata.normalize("NFKC", char) if ord(char) > 127 else char
        out.append(wide)
        origin += [i] * len(wide)
    return "".join(out), origin


def _email_start(local: str) -> int:
    """Where the address starts inside the run of word characters before ``@``: an ASCII local part after
    Chinese text starts at its first ASCII character ("邮箱是zhang.wei@"); a Chinese one is all of it, less a cue
    word before it ("邮箱是张三@")."""
    if re.search(r"[A-Za-z]", local):
        tail = re.search(r"[A-Za-z0-9._%+-]+$", local)
        return tail.start() if tail else 0
    for cue in EMAIL_CUES:
        if local.startswith(cue) and len(local) > len(cue):
            return len(cue)
    return 0


def _spans(rule: Rule, normal: str) -> list[tuple[int, int]]:
    spans = []
    for match in rule.pattern.finditer(normal):
        start, end = match.span(rule.group)
        if rule.keep and rule.keep(match.group(0)):
            continue
        if rule.name == "email":
            start += _email_start(normal[start : normal.index("@", start)])
        spans.append((start, end))
    return spans


def redact_text(text: str) -> str:
    normal, origin = _normalised(text)
    for rule in RULES:
        spans = _spans(rule, normal)
        for start, end in reversed(spans):  # from the right: earlier spans keep their positions
            first, last = (start, end - 1) if origin is None else (origin[start], origin[end - 1])
            text = text[:first] + rule.mask + text[last + 1 :]
        if spans:
            normal, origin = _normalised(text)
    return text


def redact_chat(chat: Chat) -> Chat:
    return replace(chat, messages=tuple(replace(m, text=redact_text(m.text)) for m in chat.messages))
