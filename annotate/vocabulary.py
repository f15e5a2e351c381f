"""Every closed vocabulary the tool uses, declared once: the commands' choices and the library's checks read
these. (A ``Literal`` type that mirrors one for the type checker is tested equal to it.)"""

from __future__ import annotations

from enum import Enum


class Design(str, Enum):
    """How ``annotate sample`` draws (docs/methods.md#sampling-designs)."""

    stratified = "stratified"
    random = "random"
    confidence = "confidence"
    disputed = "disputed"


class SampleUnit(str, Enum):
    """What ``annotate sample`` draws: each variable's items apart, or whole chats."""

    item = "item"
    chat = "chat"


class ConsensusMethod(str, Enum):
    """The value a consensus unit gets."""

    majority = "majority"
    dawid_skene = "dawid-skene"


class ModelFamily(str, Enum):
    """The regression ``annotate estimate`` fits."""

    ols = "ols"
    logit = "logit"


class LabelKind(str, Enum):
    """Which LLM label stands in for the human one: the answer, or the probability-weighted value."""

    chosen = "chosen"
    expected = "expected"


def values(vocabulary: type[Enum]) -> tuple[str, ...]:
    return tuple(str(member.value) for member in vocabulary)
