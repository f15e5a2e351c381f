"""Domain errors. The CLI turns every one of them into a single clean line (see cli.py)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class AnnotateError(Exception):
    """Base class: anything the user can fix, reported without a traceback."""


class InputError(AnnotateError):
    """A transcript file is unreadable or a record in it breaks the documented format."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class PromptError(AnnotateError):
    """A prompt version or rubric is missing, malformed or renders badly."""


class BackendError(AnnotateError):
    """An engine could not be loaded or failed in a way retries did not cure."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: whatever was labelled is saved and the run can be resumed."""


class RunStoreError(AnnotateError):
    """A run directory cannot be used as asked (e.g. resuming with another configuration)."""


@contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated (only the main thread may install a handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()
