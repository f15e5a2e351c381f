"""A scripted engine for unit tests. Never the default, never benchmarked.

It answers from a script (a callable, or a queue of texts) and records every request it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from annotate.config import BackendOptions
from annotate.engines.base import Completion, Request

Script = Callable[[Request], "str | Completion"]


def lowest_values(request: Request) -> str:
    """Default script: the smallest allowed value for every variable."""
    props = request.schema["properties"]
    return json.dumps({name: min(spec["enum"]) for name, spec in props.items()})


def values_from_content(request: Request) -> str:
    """A deterministic answer that differs between prompts: each value picked by a hash of the messages."""
    digest = hashlib.sha256(json.dumps(request.messages, sort_keys=True).encode()).digest()
    props = request.schema["properties"]
    return json.dumps(
        {
            name: sorted(spec["enum"])[digest[i % len(digest)] % len(spec["enum"])]
            for i, (name, spec) in enumerate(props.items())
        }
    )


def engine_failure(request: Request) -> str:
    """The engine itself fails (as a crashed worker would)."""
    raise RuntimeError("scripted engine failure")


SCRIPTS: dict[str, Script] = {"lowest": lowest_values, "by_content": values_from_content, "fail": engine_failure}
"""Scripts by name, for runs whose options must cross a process boundary (the CLI, Ray workers)."""


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        options: BackendOptions | None = None,
        script: Script | None = None,
        counter: Callable[[list[dict[str, str]]], int] | None = None,
    ) -> None:
        self.options = options or BackendOptions()
        self.counter = counter
        """A scripted tokenizer: the engine's token count the context fit asks for (None: it cannot count)."""
        named = self.options.script or lowest_values
        self.script: Script = script or (SCRIPTS[named] if isinstance(named, str) else named)
        self.calls: list[list[Request]] = []
        """Each call to complete(), with its requests: lets tests count engine calls."""
        self.record = self.options.record_requests
        """Off for long runs (the scale bench): the recorded requests would grow with the corpus."""

    @property
    def requests(self) -> list[Request]:
        return [r for call in self.calls for r in call]

    def identity(self) -> dict[str, Any]:
        return {"engine": "fake", "name": self.options.model or "scripted"}

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        if self.record:
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

    def count_tokens(self, messages: list[dict[str, str]]) -> int | None:
        return self.counter(messages) if self.counter else None

    def close(self) -> None:
        pass
