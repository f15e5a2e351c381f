"""The one file hasher: model files, transcripts, gold files and run inputs are all named by the sha256 of
their bytes, read in 4 MiB pieces (model files are gigabytes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

PIECE = 1 << 22


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(PIECE):
            digest.update(chunk)
    return digest.hexdigest()
