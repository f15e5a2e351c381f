"""A scripted engine for unit tests. Never the default, never benchmarked.

It answers from a script (a callable, or a queue of texts) and records every request it saw.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from annotate.backends.base import BackendOptions, Completion, Request

Script = Callable[[Request], "str | Completion"]


def lowest_values(request: Request) -> str:
    """Default script: the smallest allowed value for every variable."""
    props = request.schema["properties"]
    return json.dumps({name: min(spec["enum"]) for name, spec in props.items()})


class FakeBackend:
    name = "fake"

    def __init__(self, options: BackendOptions | None = None, script: Script | None = None) -> None:
        self.options = options or BackendOptions()
        self.script: Script = script or self.options.extra.get("script") or lowest_values
        self.calls: list[list[Request]] = []
        """Each call to complete(), with its requests: lets tests count engine calls."""

    @property
    def requests(self) -> list[Request]:
        return [r for call in self.calls for r in call]

    def identity(self) -> dict[str, Any]:
        return {"engine": "fake", "name": self.options.model or "scripted"}

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        self.calls.append(list(requests))
        delay = float(os.environ.get("ANNOTATE_FAKE_DELAY", "0"))  # lets crash tests kill a run mid-flight
        for request in requests:
            time.sleep(delay)
            answer = self.script(request)
            if isinstance(answer, Completion):
                yield answer
            else:
                yield Completion(
                    answer,
                    "stop",
                    prompt_tokens=sum(len(m["content"]) for m in request.messages) // 4,
                    completion_tokens=max(1, len(answer) // 4),
                )

    def close(self) -> None:
        pass
