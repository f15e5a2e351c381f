"""Nothing lost, nothing duplicated: killed runs, Ctrl-C, and an engine server that dies mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from annotate.config import BackendOptions, RunConfig
from annotate.engines.fake import lowest_values
from annotate.engines.openai import OpenAIBackend
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.runs.rows import LABEL_KEY
from annotate.runs.store import RunStore
from tests.conftest import EXAMPLES, ROOT


def cli(library: PromptLibrary, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "annotate.cli",
        "run",
        str(EXAMPLES),
        "--limit",
        "6",
        "--out",
        str(out),
        "--backend",
        "fake",
        "--batch-size",
        "3",
        "--prompts-dir",
        str(library.prompts_dir),
        "--rubrics-dir",
        str(library.rubrics_dir),
    ]


def comparable(out: Path) -> pd.DataFrame:
    labels = pd.read_parquet(out / "labels.parquet")
    return labels.sort_values(LABEL_KEY).reset_index(drop=True)[[*LABEL_KEY, "value", "status", "raw_output"]]


def journaled(out: Path) -> int:
    journal = out / "journal.jsonl"
    return len(journal.read_bytes().splitlines()) if journal.is_file() else 0


def run_until(command: list[str], env: dict[str, str], out: Path, units: int) -> subprocess.Popen[bytes]:
    """Start a run and return once its journal holds ``units`` units (or the run ended): a kill point that
    depends on progress, not on how fast this machine happens to be."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 120
    while proc.poll() is None and journaled(out) < units and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc


def test_sigkill_at_kill_points_then_resume_equals_an_uninterrupted_run(library: PromptLibrary, tmp_path: Path) -> None:
    env = {**os.environ, "ANNOTATE_FAKE_DELAY": "0.25"}
    reference = tmp_path / "reference"
    separate_cache = {**env, "ANNOTATE_CACHE_DIR": str(tmp_path / "reference-cache")}  # else the resumes are free
    subprocess.run(cli(library, reference), env=separate_cache, check=True, capture_output=True, cwd=ROOT)
    killed = tmp_path / "killed"
    kills = 0
    for step in (1, 2, 3, 2):  # killed after the first unit, then mid-run again and again
        proc = run_until(cli(library, killed), env, killed, journaled(killed) + step)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 4
    journal_before = (killed / "journal.jsonl").read_bytes()
    assert journal_before, "the killed runs journaled nothing"
    subprocess.run(cli(library, killed), env=env, check=True, capture_output=True, cwd=ROOT)
    pd.testing.assert_frame_equal(comparable(killed), comparable(reference))
    rows = RunStore(killed).rows()
    keys = [tuple(r[k] for k in LABEL_KEY) for r in rows]
    assert len(keys) == len(set(keys)), "a label was journaled twice"
    assert json.loads((killed / "manifest.json").read_text())["status"] == "complete"


def test_ctrl_c_stops_cleanly_with_a_resume_hint(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "ANNOTATE_FAKE_DELAY": "0.5"}  # slow enough that a loaded machine still sees it mid-run
    proc = subprocess.Popen(
        cli(library, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and journaled(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    done = len((out / "journal.jsonl").read_text().splitlines())
    assert done > 0
    subprocess.run(cli(library, out), env=env, check=True, capture_output=True, cwd=ROOT)
    assert len(pd.read_parquet(out / "labels.parquet")) > done


class _Scripted(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that answers with the lowest allowed values."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        schema = body["response_format"]["json_schema"]["schema"]
        from annotate.config import Sampling
        from annotate.engines.base import Request

        text = lowest_values(Request("", body["messages"], schema, 8, Sampling()))
        payload = json.dumps(
            {
                "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def test_a_server_that_dies_mid_run_is_retried_reported_and_resumed(
    library: PromptLibrary, tmp_path: Path, server: ThreadingHTTPServer
) -> None:
    port = server.server_address[1]
    options = BackendOptions(model="m", base_url=f"http://127.0.0.1:{port}/v1", concurrency=1, attempts=2, timeout=5)
    out = tmp_path / "run"
    backend = OpenAIBackend(options)
    original = backend._post
    calls = {"n": 0}

    def dying(body: dict) -> dict:  # the server goes away after 5 answers
        calls["n"] += 1
        if calls["n"] == 6:
            server.shutdown()
            server.server_close()
        return original(body)

    backend._post = dying  # type: ignore[method-assign]
    config = RunConfig(
        inputs=[EXAMPLES],
        out=out,
        prompts=library.paths,
        backend="openai",
        options=options,
        tasks=["initial_state"],
        limit=8,
    )
    run(config, backend=backend)
    first = pd.read_parquet(out / "labels.parquet")
    assert (first["status"] == "ok").sum() == 2 * 5
    failed = first[first["status"] == "backend_error"]
    assert len(failed) == 2 * 3 and failed["error"].str.contains("Connection refused|URLError").all()
    assert calls["n"] == 5 + 3 * 2  # each failing request was tried twice
    revived = ThreadingHTTPServer(("127.0.0.1", port), _Scripted)
    threading.Thread(target=revived.serve_forever, daemon=True).start()
    try:
        run(config, backend=OpenAIBackend(options))
    finally:
        revived.shutdown()
    final = pd.read_parquet(out / "labels.parquet")
    assert (final["status"] == "ok").all() and len(final) == 16


def test_a_crash_traceback_shows_no_transcript_text(library: PromptLibrary, tmp_path: Path) -> None:
    child = f"""
import sys
from annotate.engines import fake
def explode(self, requests):
    secret = requests[0].messages[-1]["content"]  # a local holding transcript text
    raise RuntimeError("engine fell over")
    yield
fake.FakeBackend.complete = explode
sys.argv = {cli(library, tmp_path / "run")[2:]!r}
from annotate.cli import main
main()
"""
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "200"}
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "engine fell over" in output
    assert "Tracking hasn't moved since Saturday" not in output  # c01's text, held in the local `secret`
