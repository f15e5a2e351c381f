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


SCRIPTS = {
    "english": "My parcel with the blue lamp has not arrived and the tracking page has said 'in transit' for days. ",
    "chinese": "我的包裹还没有到，物流页面好几天都显示运输中，请帮我查一下到底在哪里。",
    "greek": "Το δέμα μου δεν έχει φτάσει ακόμα και η σελίδα παρακολούθησης δείχνει 'σε μεταφορά'. ",
    "hindi": "मेरा पार्सल अभी तक नहीं आया है और ट्रैकिंग पेज कई दिनों से रास्ते में दिखा रहा है। ",
    "thai": "พัสดุของฉันยังไม่มาถึงและหน้าติดตามแสดงว่ากำลังจัดส่งมาหลายวันแล้ว ",
    "russian": "Моя посылка до сих пор не пришла, а страница отслеживания уже несколько дней пишет «в пути». ",
    "arabic": "لم يصل طردي بعد وصفحة التتبع تقول إنه في الطريق منذ أيام. ",
    "digits": "Ref 4711-0815-2233, order 99812734, code 55501 / 77310 / 12093, paid 1299.90 on 2026-03-01. ",
    "emoji": "Still waiting 😞📦⏳🙄 for my order 🚚💨❓ please help 🙏🙏🙏 ",
    "combining": "Ж̶̢͙a̷̗͒l̸̰̈́g̵̤̈o̶̧͝ t̶̬̓ë̴́x̸̢̌t̷̳̏ is hard to read ",
    "zero_width": "no\u200bspace\u200chere\u200dat\u2060all\ufeffbut\u200bstill\u200btext ",
    "rare_cjk": "𠀀𠀁𠀂𠀃𠀄 𪚥𪚥 𫝀𫝁 \ue000\ue001\ue002 ",
}


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("qwen2.5-coder-0.5b", marks=pytest.mark.model),
        pytest.param("qwen2.5-coder-1.5b", marks=pytest.mark.model15),
    ],
)
def test_the_token_estimate_stays_above_the_real_count_in_every_script(model: str) -> None:
    """Issue 28 (6): the estimate counted a third of a token per non-CJK character; Qwen's tokenizer needs up to
    nine times that. The embedded engine has no tokenizer to ask, so the estimate must stay above what the model
    itself counts, in twelve scripts, on both embedded models."""
    from annotate.config import BackendOptions, Sampling
    from annotate.engines.llamacpp import LlamaCppBackend
    from annotate.prompts.context import prompt_tokens

    engine = LlamaCppBackend(BackendOptions(model=f"embedded:{model}", max_model_len=4096))
    texts = {name: (text * (200 // len(text) + 1))[:200] for name, text in SCRIPTS.items()}
    requests = [
        Request(
            name,
            [{"role": "system", "content": "Rate the chat."}, {"role": "user", "content": text}],
            {},
            1,
            Sampling(),
        )
        for name, text in texts.items()
    ]
    for request, completion in zip(requests, engine.complete(requests), strict=True):
        assert completion.prompt_tokens > 0, (request.key, completion.error)
        estimate = prompt_tokens(request.messages)
        assert estimate >= completion.prompt_tokens, f"{request.key}: {estimate:.0f} < {completion.prompt_tokens}"
    engine.close()


def test_the_engines_own_count_decides_the_fit_when_it_has_one(library: PromptLibrary, tmp_path: Path) -> None:
    """With a tokenizer that needs more than the estimate (a token a character, three times the estimate for English),
    the cut follows it: the estimate alone would send a prompt the engine refuses."""
    from annotate.config import BackendOptions

    def tokens(messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) for m in messages)

    def fits(request: Request) -> str | Completion:
        needed = tokens(request.messages) + request.max_tokens
        return Completion("", "error", error=f"{needed} tokens") if needed > 32768 else lowest_values(request)

    path = write_jsonl(tmp_path / "long.jsonl", [long_chat(200)])
    config = RunConfig(
        inputs=[path],
        out=tmp_path / "run",
        prompts=library.paths,
        backend="fake",
        tasks=["agent_behaviour"],
        max_chars=100_000,
        options=BackendOptions(max_model_len=32768),
    )
    run(config, backend=FakeBackend(script=fits, counter=tokens))
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["status"].eq("ok").all(), labels["error"].tolist()
    assert labels["truncation"].str.startswith("context limit 32768 tokens").all()
