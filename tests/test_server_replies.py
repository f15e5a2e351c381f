"""The openai backend against a scripted HTTP server on 127.0.0.1: a reply of the wrong shape is a failure row
for that unit, never a traceback that stops the run (issue 18)."""

from __future__ import annotations

import json
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
from annotate.engines.openai import OpenAIBackend
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT, library_flags

REPLIES = [
    {},
    [],
    {"choices": []},
    {"choices": [{}]},
    {
        "choices": [{"message": {"content": '{"initial_sentiment": 2, "initial_urgency": 1}'}}],
        "usage": {"prompt_tokens": "many"},
    },
    {"choices": [{"message": {"content": "{}"}, "logprobs": {"content": [{"token": "1", "logprob": "high"}]}}]},
    "just text",
]


@pytest.fixture
def scripted_server() -> Iterator[str]:
    """Answers each POST with the next malformed reply (status 200), round and round."""
    count = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps(REPLIES[count["n"] % len(REPLIES)]).encode()
            count["n"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_malformed_replies_become_failure_rows(scripted_server: str, library: PromptLibrary, tmp_path: Path) -> None:
    options = BackendOptions(model="served", base_url=scripted_server, concurrency=1, attempts=1)
    out = tmp_path / "run"
    config = RunConfig(
        inputs=[EXAMPLES],
        out=out,
        prompts=library.paths,
        backend="openai",
        tasks=["initial_state"],
        limit=7,
        max_attempts=1,
        use_cache=False,
        options=options,
    )
    run(config, backend=OpenAIBackend(options))
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) == 14  # every unit has its rows: the run went on past each bad reply
    failed = labels[labels["status"] == "backend_error"]
    assert len(failed) >= 12 and failed["error"].str.contains("malformed server reply").all()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.fixture
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """Takes each request and never answers (a hung server)."""
    asked = threading.Event()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            asked.set()
            release.wait(120)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", asked
    release.set()
    server.shutdown()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_run_waiting_on_a_server_that_never_answers(
    silent_server: tuple[str, threading.Event], library: PromptLibrary, tmp_path: Path, stop: signal.Signals
) -> None:
    """Issue 18: `annotate run` against a hung server outlived Ctrl-C and SIGTERM by 15 minutes."""
    url, asked = silent_server
    out = tmp_path / "run"
    dirs = library_flags(library)
    command = [sys.executable, "-m", "annotate.cli", "run", str(EXAMPLES), "--out", str(out), "--limit", "2"]
    command += ["-b", "openai", "--base-url", url, "--model", "served", *dirs]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert asked.wait(60), "the run never reached the server"
    stopped_at = time.monotonic()
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - stopped_at < 15, "the run did not stop promptly"
    assert proc.returncode in (130, 143), stderr
    assert "Traceback" not in stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


ANSWER = {
    "choices": [{"message": {"content": '{"initial_sentiment": 2, "initial_urgency": 1}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5},
}


@pytest.fixture
def swappable_server() -> Iterator[tuple[str, dict[str, object]]]:
    """Answers every chat request alike; ``/models`` lists whatever ``state['models']`` holds (None: 404)."""
    state: dict[str, object] = {"models": None}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            models = state["models"]
            self._send(404, {}) if models is None else self._send(200, {"object": "list", "data": models})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(200, ANSWER)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()


def test_the_cache_keys_on_what_the_server_says_it_serves(
    swappable_server: tuple[str, dict[str, object]],
    library: PromptLibrary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18: another model served at the same --base-url under the same --model got the first one's labels."""
    monkeypatch.setenv("ANNOTATE_CACHE_DIR", str(tmp_path / "cache"))
    url, state = swappable_server

    def hits(name: str) -> int:
        options = BackendOptions(model="served", base_url=url, concurrency=1)
        config = RunConfig(
            inputs=[EXAMPLES],
            out=tmp_path / name,
            prompts=library.paths,
            backend="openai",
            tasks=["initial_state"],
            limit=3,
            options=options,
        )
        return run(config, backend=OpenAIBackend(options)).cache_hits

    state["models"] = [{"id": "served", "owned_by": "vllm", "root": "/weights/model-a", "max_model_len": 8192}]
    assert hits("a1") == 0
    assert hits("a2") == 3  # the same model: answers come from the cache
    state["models"] = [{"id": "served", "owned_by": "vllm", "root": "/weights/model-b", "max_model_len": 8192}]
    assert hits("b") == 0  # same name, same URL, another model: nothing from the first one's cache
    state["models"] = None
    assert hits("unknown1") == 0 and hits("unknown2") == 0  # the server does not say: nothing is cached
    manifest = json.loads((tmp_path / "unknown2" / "manifest.json").read_text())
    assert manifest["model"]["cacheable"] is False


def test_a_server_that_trickles_its_reply_is_cut_off_at_the_whole_request_deadline() -> None:
    """Issue 28 (25): the timeout bounded each socket read, so a byte every half second kept a request forever."""
    from annotate.config import Sampling
    from annotate.engines.base import Request

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        options = BackendOptions(model="m", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", timeout=2)
        backend = OpenAIBackend(options)
        request = Request("k", [{"role": "user", "content": "hi"}], {}, 5, Sampling())
        started = time.monotonic()
        (completion,) = list(backend.complete([request]))
        assert time.monotonic() - started < 6
        assert completion.finish_reason == "error" and "no whole reply within 2 s" in (completion.error or "")
    finally:
        server.shutdown()
