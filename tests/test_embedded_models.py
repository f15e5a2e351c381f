"""The embedded models: chosen by name on every engine, assembled and checked against their pinned hash."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import types
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.cli import app
from annotate.config import BackendOptions
from annotate.engines import create_backend, embedded
from annotate.errors import BackendError
from tests.conftest import EXAMPLES
from tests.test_real_models import annotate, check_probabilities

runner = CliRunner()


def test_a_model_is_chosen_by_name_and_an_unknown_name_is_one_line() -> None:
    assert embedded.resolve(None) is embedded.EMBEDDED
    assert embedded.resolve("embedded:qwen2.5-coder-1.5b") is embedded.QWEN_CODER_15B
    assert embedded.resolve("/models/x.gguf") is None
    with pytest.raises(BackendError, match=r"unknown embedded model 'embedded:llama'.*embedded:qwen2\.5-coder-0\.5b"):
        embedded.resolve("embedded:llama")
    for backend in ("llamacpp", "vllm", "openai"):
        with pytest.raises(BackendError, match="unknown embedded model"):
            create_backend(backend, BackendOptions(model="embedded:llama"))


def fake_carrier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> embedded.EmbeddedModel:
    """An embedded model whose parts are importable modules with data/ files, like the PyPI carriers."""
    parts = []
    for i, chunk in enumerate(chunks):
        folder = tmp_path / f"carrier{i}"
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "part.bin").write_bytes(chunk)
        module = types.ModuleType(f"carrier{i}")
        module.__file__ = str(folder / "__init__.py")
        monkeypatch.setitem(sys.modules, f"carrier{i}", module)
        parts.append((f"carrier{i}", "part.bin"))
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()
    return replace(embedded.QWEN_CODER_15B, key="test", parts=tuple(parts), sha256=digest, size=sum(map(len, chunks)))


def test_parts_are_assembled_in_order_and_checked_against_the_pinned_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANNOTATE_MODELS_DIR", str(tmp_path / "models"))
    model = fake_carrier(tmp_path, monkeypatch, [b"GGUF first ", b"second ", b"third"])
    path = embedded.gguf_path(model)
    assert path.read_bytes() == b"GGUF first second third"
    assert embedded.assembled(model) == path
    wrong = replace(model, key="wrong", sha256="0" * 64)
    with pytest.raises(BackendError, match=r"hash to .*, expected 0000"):
        embedded.gguf_path(wrong)
    assert not list((tmp_path / "models").glob("*.part"))  # nothing half-written is left behind


@pytest.mark.parametrize("damage", ["truncated", "same size, other bytes"])
def test_a_damaged_assembled_file_is_assembled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """Issue 18: a damaged assembled model file was listed and used under the pinned sha256."""
    monkeypatch.setenv("ANNOTATE_MODELS_DIR", str(tmp_path / "models"))
    model = fake_carrier(tmp_path, monkeypatch, [b"GGUF first ", b"second ", b"third"])
    path = embedded.gguf_path(model)
    path.write_bytes(b"GGUF fir" if damage == "truncated" else b"GGUF first second thirD")
    monkeypatch.setattr(embedded, "_VERIFIED", set())  # a new process
    assert embedded.gguf_path(model).read_bytes() == b"GGUF first second third"


def test_a_missing_carrier_names_the_package_and_the_make_target() -> None:
    absent = replace(embedded.QWEN_CODER_15B, parts=(("no_such_carrier_part1", "part01.bin"),), sha256="1" * 64)
    with pytest.raises(
        BackendError, match=re.escape("needs the package 'no-such-carrier-part1': run `make install-model-1.5b`")
    ):
        embedded.gguf_path(absent)


def test_models_list_shows_both_models_with_size_and_hash() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "embedded:qwen2.5-coder-0.5b  (default)" in result.output
    assert "embedded:qwen2.5-coder-1.5b" in result.output and "1117 MB" in result.output
    assert embedded.QWEN_CODER_15B.sha256 in result.output and embedded.EMBEDDED.sha256 in result.output


@pytest.mark.model15
def test_the_1_5b_model_assembles_verifies_and_labels(tmp_path: Path) -> None:
    path = embedded.gguf_path(embedded.QWEN_CODER_15B)  # assembles once and checks the pinned sha256
    assert path.stat().st_size == embedded.QWEN_CODER_15B.size
    assert path.read_bytes()[:4] == b"GGUF"
    chat = next(line for line in EXAMPLES.read_text().splitlines() if json.loads(line)["chat_id"] == "c23")
    (tmp_path / "one.jsonl").write_text(chat + "\n")
    out = tmp_path / "run"
    done = annotate("run", str(tmp_path / "one.jsonl"), "--out", str(out), "--model", "embedded:qwen2.5-coder-1.5b")
    assert done.returncode == 0, done.stderr
    labels = pd.read_parquet(out / "labels.parquet")
    assert (labels["model"] == "Qwen2.5-Coder-1.5B-Instruct (embedded)").all()
    check_probabilities(labels[labels["status"] == "ok"])
    assert (labels["status"] == "ok").sum() >= len(labels) - 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == embedded.QWEN_CODER_15B.sha256
    assert manifest["model"]["embedded"] == "qwen2.5-coder-1.5b"


def test_a_cut_file_at_the_models_path_is_not_listed_as_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 28 (27): `models list` presented a 12-byte file at the model's path as the verified model."""
    monkeypatch.setenv("ANNOTATE_MODELS_DIR", str(tmp_path / "models"))
    model = embedded.EMBEDDED
    (tmp_path / "models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / f"{model.sha256[:16]}.gguf").write_bytes(b"twelve bytes")
    assert embedded.assembled(model) is None
    listed = CliRunner().invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "twelve" not in listed.output and f"{model.sha256[:16]}.gguf" not in listed.output
