"""Chats of 200 and 1,000 rounds: every task cuts them to fit the context, and every round is still labelled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from annotate.config import RunConfig
from annotate.engines.base import Completion, Request
from annotate.engines.fake import FakeBackend, lowest_values
from annotate.ingest.readers import read_transcripts
from annotate.labelling.pipeline import run
from annotate.prompts.context import fit_to_context
from annotate.prompts.library import PromptLibrary
from annotate.prompts.units import MAX_RATED_ROUNDS, units_for
from tests.conftest import write_jsonl

MAX_MODEL_LEN = 8192
TASKS = {"agent_behaviour": None, "initial_state": None, "round_sentiment": "v2"}


def long_chat(rounds: int) -> dict[str, object]:
    """An AI greeting, then ``rounds`` customer messages; a human agent takes over after the third."""
    messages = [{"role": "ai", "text": "Hello, this is the shop's assistant. How can I help you today?"}]
    for n in range(1, rounds + 1):
        messages.append({"role": "customer", "text": f"Round {n}: my parcel 4711 is still not here, please check."})
        speaker = "ai" if n <= 3 else "agent"
        messages.append(
            {"role": speaker, "text": f"Reply {n}: I have checked the tracking and written to the courier."}
        )
    return {"chat_id": f"long{rounds}", "messages": messages}


def within_context(request: Request) -> str | Completion:
    """Like a real engine, refuse a request whose prompt and answer budget do not fit (chars/3 as tokens)."""
    tokens = sum(len(m["content"]) for m in request.messages) / 3 + request.max_tokens
    if tokens > MAX_MODEL_LEN:
        return Completion("", "error", error=f"request of about {tokens:.0f} tokens exceeds {MAX_MODEL_LEN}")
    return lowest_values(request)


@pytest.mark.parametrize("rounds", [200, 1000])
def test_every_round_of_a_very_long_chat_is_labelled_once(library: PromptLibrary, tmp_path: Path, rounds: int) -> None:
    path = write_jsonl(tmp_path / "long.jsonl", [long_chat(rounds)])
    fake = FakeBackend(script=within_context)
    config = RunConfig(inputs=[path], out=tmp_path / "run", prompts=library.paths, backend="fake")
    run(config, backend=fake)
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["status"].eq("ok").all(), labels[labels["status"] != "ok"][["task", "error"]].head()
    sentiment = labels[labels["variable"] == "negative_sentiment"]
    assert sorted(sentiment["round"]) == list(range(1, rounds + 1))  # each round once, none lost to a window edge
    windows = [r for r in fake.requests if "round_1" in json.dumps(r.schema) or "round_" in json.dumps(r.schema)]
    assert len(windows) >= rounds // MAX_RATED_ROUNDS
    assert all(len(r.schema["required"]) <= MAX_RATED_ROUNDS for r in windows)
    assert sentiment["truncation"].str.contains("shown as context").any()
    behaviour = labels[labels["task"] == "agent_behaviour"]
    assert len(behaviour) == 4 and behaviour["truncation"].str.len().gt(0).all()


def fitted_requests(
    library: PromptLibrary, path: Path, family: str = "en"
) -> Iterator[tuple[str, list[dict[str, str]], int]]:
    (chat,) = read_transcripts([path]).chats
    tasks = [*TASKS.items(), ("round_sentiment", "v1")] if family == "en" else [(t, None) for t in TASKS]
    for task, version in tasks:
        pv = library.get(task, version, family)
        for unit in units_for(chat, task, pv.rubric.unit, 12000):
            fitted = fit_to_context(unit, pv, MAX_MODEL_LEN)
            yield f"{task} {pv.version}", pv.render(fitted), pv.max_tokens_for(fitted)


@pytest.mark.model
@pytest.mark.parametrize(("rounds", "family"), [(200, "en"), (1000, "en"), (200, "zh"), (1000, "zh")])
def test_long_chats_fit_the_real_models_context_by_its_own_tokenizer(
    library: PromptLibrary, tmp_path: Path, rounds: int, family: str
) -> None:
    """Chinese chats with the Chinese prompts too: about a token a character, where English needs a third."""
    pytest.importorskip("gguf", reason="counting tokens reads the GGUF with gguf and transformers (make install-vllm)")
    transformers = pytest.importorskip("transformers", reason="counting tokens needs transformers (make install-vllm)")
    from annotate.engines import embedded

    gguf = embedded.gguf_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    from tests.test_chinese import long_chinese_chat

    chat = long_chat(rounds) if family == "en" else long_chinese_chat(rounds)
    path = write_jsonl(tmp_path / "long.jsonl", [chat])
    worst = 0.0
    for name, messages, max_tokens in fitted_requests(library, path, family):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        needed = len(tokenizer(text)["input_ids"]) + max_tokens
        assert needed <= MAX_MODEL_LEN, f"{name}: {needed} tokens"
        worst = max(worst, needed / MAX_MODEL_LEN)
    assert worst > 0.1  # the check measured real prompts
