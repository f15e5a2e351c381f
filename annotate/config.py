"""What a run is asked to do, what it reports, and where files live: the leaf every layer may import.

Nothing here reads a transcript, loads a prompt or starts an engine; these are plain settings, so that
the command line can build them without importing any heavy module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Speaker = Literal["customer", "ai", "agent"]
SPEAKERS: tuple[Speaker, ...] = ("customer", "ai", "agent")

DEFAULT_BACKEND = "llamacpp"
PACKAGE_DEFAULTS = Path(__file__).resolve().parent / "defaults"
"""The prompts and rubrics that ship inside the package (symlinks to the repository's folders)."""


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; recorded on every label row and part of every cache key."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BackendOptions:
    """Engine settings a user can pass on the command line."""

    model: str | None = None
    """Model path or name; None means the embedded model."""
    base_url: str | None = None
    """For the openai backend."""
    max_model_len: int = 8192
    concurrency: int = 4
    """Requests in flight at once (openai backend)."""
    threads: int | None = None
    """CPU threads for in-process engines; default: all cores."""
    prefix_cache: bool = True
    """Reuse the evaluated shared prompt prefix (llamacpp, vllm). Much faster, but greedy outputs can then
    depend on the request evaluated before (see bench/prefix_cache_determinism.py); off gives bit-exact repeats."""
    top_logprobs: int = 20
    """Candidate tokens the engine reports at each generated token, for label probabilities; 0 asks for none."""
    api_key: str = ""
    """openai: the key for ``base_url``, if it needs one."""
    timeout: float = 300.0
    """openai: seconds to wait for one reply (a timeout is not retried)."""
    attempts: int = 5
    """openai: tries per request when the server fails or is unreachable."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """openai: fields added to every request body (e.g. llama.cpp server's ``cache_prompt``)."""
    dtype: str | None = None
    """vllm: the weights' dtype (default: float32 on a CPU, auto on a GPU)."""
    tensor_parallel_size: int = 1
    """vllm: GPUs per model."""
    revision: str | None = None
    """vllm: the model revision to load (recorded in the run's model identity)."""
    block_size: int | None = None
    """vllm: KV-cache block size (default: 32 on a CPU, vLLM's own on a GPU)."""
    enforce_eager: bool | None = None
    """vllm: no CUDA graphs / compilation (default: on a CPU)."""
    script: str | None = None
    """fake (tests): the named script that answers (``lowest``, ``by_content``, ``fail``, ...)."""
    record_requests: bool = True
    """fake (tests): keep every request for the test to inspect."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run goes (see engines/ray_pool.py)."""

    workers: int = 2
    """Engine workers (actors); each holds one engine."""
    address: str | None = None
    """Ray cluster to join (``auto``, ``ray://host:10001``); None starts a local Ray instance."""
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    chunks_per_worker: int = 4
    """Chunks each worker gets per engine call, on average: smaller chunks balance the load, larger ones
    keep more requests behind one cached prompt prefix."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "executor": "ray",
            "workers": self.workers,
            "address": self.address or "local",
            "cpus_per_worker": self.cpus_per_worker,
            "gpus_per_worker": self.gpus_per_worker,
        }


@dataclass(frozen=True)
class PromptPaths:
    """Where prompt versions and rubrics are read from."""

    prompts_dir: Path
    rubrics_dir: Path

    @classmethod
    def resolve(cls, prompts_dir: Path | None = None, rubrics_dir: Path | None = None) -> PromptPaths:
        """Given folders first, then ``./prompts`` and ``./rubrics`` of a project, then the package's own."""
        here = Path.cwd()
        return cls(
            prompts_dir or _first_dir(here / "prompts", PACKAGE_DEFAULTS / "prompts"),
            rubrics_dir or _first_dir(here / "rubrics", PACKAGE_DEFAULTS / "rubrics"),
        )

    @property
    def packaged(self) -> bool:
        """True when these are the defaults inside the installed package (never written to)."""
        return self.prompts_dir.resolve() == (PACKAGE_DEFAULTS / "prompts").resolve() and not _in_checkout()


def _first_dir(*candidates: Path) -> Path:
    return next((p for p in candidates if p.is_dir()), candidates[-1])


def _in_checkout() -> bool:
    return (PACKAGE_DEFAULTS.parent.parent / ".git").exists()


@dataclass
class RunConfig:
    """Everything ``annotate run`` is asked to do."""

    inputs: list[Path]
    out: Path
    prompts: PromptPaths = field(default_factory=PromptPaths.resolve)
    tasks: list[str] | None = None
    """None means every task a run labels by default (see PromptLibrary.default_tasks)."""
    prompt_versions: dict[str, str] = field(default_factory=dict)
    """Task -> version; tasks not named get the newest version of ``prompt_family``."""
    prompt_family: str = "en"
    """Which family of prompt versions (``en``: ``v1``, ``v2``...; ``zh``: ``zh-v1``...) tasks not named use."""
    backend: str = DEFAULT_BACKEND
    options: BackendOptions = field(default_factory=BackendOptions)
    sampling: Sampling = field(default_factory=Sampling)
    repeats: int = 1
    limit: int | None = None
    strict: bool = False
    role_map: Mapping[str, Speaker] | None = None
    max_chars: int = 12000
    """Transcript characters per unit before the truncation policy applies (see labelling/units.py)."""
    batch_size: int = 512
    """Requests per engine call; each batch is journaled when done."""
    max_attempts: int = 3
    use_cache: bool = True
    redact: bool = False
    """Mask emails, phone numbers, order numbers, IBANs and card numbers before text reaches the model."""
    ray: RayOptions | None = None
    """Run the engine on Ray workers instead of in this process."""
    skip_corrupt_journal: bool = False
    """Resume past damaged journal lines (dropped, their units labelled again) instead of stopping."""


@dataclass
class RunSummary:
    """What a run did, for the terminal and the manifest."""

    run_id: str
    out: Path
    counts: dict[str, dict[str, int]]
    """task -> status -> labels."""
    chats: int
    chats_without_handoff: int
    skipped_records: int
    model_calls: int
    cache_hits: int
    prompt_tokens: int
    cached_prompt_tokens: int
    """Prompt tokens the engine reused from its prefix cache (not evaluated again)."""
    completion_tokens: int
    seconds: float


def cache_dir() -> Path:
    """Where the completion cache (and by default the models) live (``ANNOTATE_CACHE_DIR``)."""
    env = os.environ.get("ANNOTATE_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "annotate"
    base.mkdir(parents=True, exist_ok=True)
    return base


def models_dir() -> Path:
    """Assembled and converted models (``ANNOTATE_MODELS_DIR``, default: ``<cache dir>/models``)."""
    env = os.environ.get("ANNOTATE_MODELS_DIR")
    path = Path(env) if env else cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
