"""Engines, registered by name and imported only when used (so `annotate --help` never loads torch)."""

from __future__ import annotations

import importlib

from annotate.config import BackendOptions, RayOptions
from annotate.engines.base import Backend, Completion, Request
from annotate.errors import BackendError

REGISTRY: dict[str, str] = {
    "llamacpp": "annotate.engines.llamacpp:LlamaCppBackend",
    "vllm": "annotate.engines.vllm:VllmBackend",
    "openai": "annotate.engines.openai:OpenAIBackend",
    "fake": "annotate.engines.fake:FakeBackend",
}


def create_backend(name: str, options: BackendOptions) -> Backend:
    if name not in REGISTRY:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(sorted(REGISTRY))})")
    module_name, _, class_name = REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    backend: Backend = getattr(module, class_name)(options)
    return backend


def create_engine(name: str, options: BackendOptions, ray: RayOptions | None = None) -> Backend:
    """The engine a run uses: in this process, or spread over Ray workers."""
    if ray is None:
        return create_backend(name, options)
    from annotate.engines.ray_pool import RayEnginePool

    return RayEnginePool(name, options, ray)


def model_label(name: str, options: BackendOptions) -> str:
    """How a label row names the model: the embedded model's name, the model given, or "scripted" (fake)."""
    if name == "fake":
        return options.model or "scripted"
    from annotate.engines.embedded import resolve

    chosen = resolve(options.model)
    return f"{chosen.name} (embedded)" if chosen else options.model or "scripted"


__all__ = ["REGISTRY", "Backend", "Completion", "Request", "create_backend", "create_engine", "model_label"]
