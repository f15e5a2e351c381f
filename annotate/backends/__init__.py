"""Engines, registered by name and imported only when used (so `annotate --help` never loads torch)."""

from __future__ import annotations

import importlib

from annotate.backends.base import Backend, BackendOptions, Completion, Request, Sampling
from annotate.errors import BackendError

REGISTRY: dict[str, str] = {
    "llamacpp": "annotate.backends.llamacpp:LlamaCppBackend",
    "vllm": "annotate.backends.vllm:VllmBackend",
    "openai": "annotate.backends.openai:OpenAIBackend",
    "fake": "annotate.backends.fake:FakeBackend",
}
DEFAULT_BACKEND = "llamacpp"


def create_backend(name: str, options: BackendOptions) -> Backend:
    if name not in REGISTRY:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(sorted(REGISTRY))})")
    module_name, _, class_name = REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    backend: Backend = getattr(module, class_name)(options)
    return backend


__all__ = ["REGISTRY", "Backend", "BackendOptions", "Completion", "Request", "Sampling", "create_backend"]
