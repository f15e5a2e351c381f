"""The Ray executor: the same run directory, labels and resume as a local run, on a local Ray instance."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from annotate.config import BackendOptions, RayOptions, RunConfig, Sampling
from annotate.engines.base import Request
from annotate.engines.ray_pool import chunk_by_group
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.runs.store import RunStore
from tests.conftest import EXAMPLES

LABEL = ["chat_id", "round", "task", "variable", "value", "status", "prompt_hash", "raw_output"]


def request(group: str, i: int) -> Request:
    return Request(f"{group}-{i}", [], {}, 8, Sampling(), group=group)


def test_chunks_keep_order_and_never_split_a_chat() -> None:
    requests = [request(chat, i) for chat, n in [("a", 3), ("b", 1), ("c", 4), ("d", 2), ("a", 2)] for i in range(n)]
    chunks = chunk_by_group(requests, 4)
    assert [r for c in chunks for r in c] == requests
    for before, after in itertools.pairwise(chunks):
        assert before[-1].group != after[0].group
    assert 2 <= len(chunks) <= 5
    assert chunk_by_group([], 4) == []
    assert len(chunk_by_group(requests, 1)) == 1


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module (a run that finds Ray started leaves it running)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def fake_config(library: PromptLibrary, out: Path, ray: RayOptions | None, limit: int) -> RunConfig:
    return RunConfig(
        inputs=[EXAMPLES],
        out=out,
        prompts=library.paths,
        backend="fake",
        limit=limit,
        options=BackendOptions(script="by_content"),
        use_cache=False,
        ray=ray,
    )


@pytest.mark.ray
def test_a_ray_run_writes_the_labels_of_a_local_run(local_ray: None, library: PromptLibrary, tmp_path: Path) -> None:
    local = run(fake_config(library, tmp_path / "local", None, limit=8))
    on_ray = run(fake_config(library, tmp_path / "ray", RayOptions(workers=2), limit=8))
    a = pd.read_parquet(tmp_path / "local" / "labels.parquet")[LABEL]
    b = pd.read_parquet(tmp_path / "ray" / "labels.parquet")[LABEL]
    pd.testing.assert_frame_equal(a, b)
    assert a["value"].nunique() > 1  # the scripted answers differ by prompt, so equality means something
    assert on_ray.model_calls == local.model_calls and on_ray.counts == local.counts
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["executor"] == {
        "executor": "ray",
        "workers": 2,
        "address": "local",
        "cpus_per_worker": 1.0,
        "gpus_per_worker": 0.0,
    }
    assert manifest["status"] == "complete" and manifest["model"]["engine"] == "fake"


@pytest.mark.ray
def test_a_local_run_resumes_on_ray_and_a_ray_run_resumes_locally(
    local_ray: None, library: PromptLibrary, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first = run(fake_config(library, out, None, limit=3))
    second = run(fake_config(library, out, RayOptions(workers=2), limit=6))
    third = run(fake_config(library, out, None, limit=9))
    whole = run(fake_config(library, tmp_path / "whole", None, limit=9))
    assert first.model_calls + second.model_calls + third.model_calls == whole.model_calls
    assert second.model_calls > 0 and third.model_calls > 0
    resumed = pd.read_parquet(out / "labels.parquet")[LABEL]
    straight = pd.read_parquet(tmp_path / "whole" / "labels.parquet")[LABEL]
    key = ["task", "chat_id", "round", "variable"]
    pd.testing.assert_frame_equal(
        resumed.sort_values(key).reset_index(drop=True), straight.sort_values(key).reset_index(drop=True)
    )
    run_ids = {row["run_id"] for row in RunStore(out).rows()}
    assert len(run_ids) == 1  # one run, resumed twice


@pytest.mark.ray
def test_a_failing_ray_worker_is_one_clear_error_and_the_run_resumes(
    local_ray: None, library: PromptLibrary, tmp_path: Path
) -> None:
    from annotate.errors import BackendError

    config = fake_config(library, tmp_path / "run", RayOptions(workers=2), limit=4)
    broken = RunConfig(**{**config.__dict__, "options": BackendOptions(script="fail")})
    with pytest.raises(BackendError, match=r"a Ray engine worker failed: .*scripted engine failure"):
        run(broken)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "scripted engine failure" in manifest["error"]
    resumed = run(config)
    straight = run(fake_config(library, tmp_path / "straight", None, limit=4))
    assert resumed.counts == straight.counts and resumed.model_calls == straight.model_calls
