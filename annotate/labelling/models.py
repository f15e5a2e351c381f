"""What ``annotate models list`` shows: the embedded models, and whether each can be used here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotate.engines import embedded


@dataclass(frozen=True)
class ModelInfo:
    model: str
    """The ``--model`` value that selects it."""
    name: str
    default: bool
    installed: bool
    install: str
    size: int
    sha256: str
    source: str
    license: str
    assembled: Path | None
    """The verified GGUF file, once a run has assembled it."""


def embedded_models() -> list[ModelInfo]:
    return [
        ModelInfo(
            model=embedded.PREFIX + m.key,
            name=m.name,
            default=m is embedded.EMBEDDED,
            installed=embedded.installed(m),
            install=m.install,
            size=m.size,
            sha256=m.sha256,
            source=m.source,
            license=m.license,
            assembled=embedded.assembled(m),
        )
        for m in embedded.MODELS.values()
    ]
