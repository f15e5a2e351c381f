"""A real OpenAI-compatible server for tests: llama.cpp's HTTP server (xllamacpp) on 127.0.0.1.

Run as ``python -m tests.local_server``: prints the base URL on one line, then serves until killed.
"""

from __future__ import annotations

import signal
import sys

import xllamacpp

from annotate import embedded


def main() -> None:
    params = xllamacpp.CommonParams()
    params.model.path = str(embedded.gguf_path())
    params.n_ctx = 8192
    params.n_parallel = 2
    params.verbosity = -1
    server = xllamacpp.Server(params)
    print(f"{server.listening_address}/v1", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server
    sys.exit(0)


if __name__ == "__main__":
    main()
