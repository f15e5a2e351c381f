"""A real OpenAI-compatible server for tests and the bench: llama.cpp's HTTP server (xllamacpp) on 127.0.0.1.

Run as ``python -m tests.local_server [SLOTS]``: prints the base URL on one line, then serves until killed.
SLOTS (default 2) is the number of requests the server decodes together.
"""

from __future__ import annotations

import os
import signal
import sys

import xllamacpp

from annotate.engines import embedded


def main() -> None:
    slots = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    params = xllamacpp.CommonParams()
    params.model.path = str(embedded.gguf_path())
    params.n_ctx = 4096 * slots
    params.n_parallel = slots
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = os.cpu_count() or 1
    params.verbosity = -1
    server = xllamacpp.Server(params)
    print(f"{server.listening_address}/v1", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server
    sys.exit(0)


if __name__ == "__main__":
    main()
