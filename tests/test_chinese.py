"""The Chinese prompt family (issue 21): versions zh-v1 of every task, selected with --prompt-family zh, rating
the same variables on the same scales; the shipped Chinese chats and gold; planted answers withheld; long
Chinese chats cut to the context by their tokens, not their characters."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.base import Completion, Request
from annotate.engines.fake import FakeBackend, lowest_values
from annotate.errors import PromptError
from annotate.ingest.readers import read_transcripts
from annotate.labelling.pipeline import run
from annotate.prompts.context import MESSAGE_OVERHEAD_TOKENS, fit_to_context
from annotate.prompts.library import PromptLibrary, family_of
from annotate.prompts.units import WIDE, estimated_tokens, units_for
from tests.conftest import DEFAULT_VARIABLES, ROOT, library_flags, write_jsonl

runner = CliRunner()
ZH = ROOT / "examples" / "zh"
DEFAULTS = ("agent_behaviour", "initial_state", "round_sentiment")
SINGLE = ("empathy", "information_seeking", "solution_provision", "proactivity")
SEVEN = DEFAULT_VARIABLES


def test_every_task_has_a_chinese_version_with_the_english_scales_and_keys(library: PromptLibrary) -> None:
    assert library.families() == ["en", "zh"]
    for task in (*DEFAULTS, *SINGLE):
        english, chinese = library.get(task), library.get(task, family="zh")
        assert chinese.version == "zh-v1" and family_of(chinese.version) == "zh" and english.version.startswith("v")
        assert chinese.rubric.unit == english.rubric.unit and chinese.rubric_path.parent.name == "zh"
        for name, variable in english.rubric.variables.items():
            zh_variable = chinese.rubric.variables[name]
            assert (zh_variable.scale, list(zh_variable.values)) == (variable.scale, list(variable.values))
        system = chinese.static_messages[0]["content"]
        assert len(WIDE.findall(system)) > len(system) / 3  # the instructions are written in Chinese
        examples = [m["content"] for m in chinese.static_messages[1::2]]
        assert examples and all(len(WIDE.findall(text)) > 10 for text in examples)  # and so are the examples


def test_the_family_picks_the_newest_version_of_its_own(library: PromptLibrary) -> None:
    assert library.versions("empathy") == ["v1", "v2", "zh-v1"]
    assert library.versions("empathy", "zh") == ["zh-v1"]
    assert library.get("empathy").version == "v2"  # a Chinese version never becomes the English default
    (library.prompts_dir / "empathy" / "zh-v1.j2").unlink()
    with pytest.raises(PromptError, match="task 'empathy' has no prompt of family 'zh'"):
        library.get("empathy", family="zh")


def test_run_with_the_chinese_family_labels_all_seven_variables_and_validates(
    library: PromptLibrary, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["run", str(ZH / "transcripts.jsonl"), "--out", str(out), "--backend", "fake", "--prompt-family", "zh"]
    done = runner.invoke(app, [*args, *library_flags(library)])
    assert done.exit_code == 0, done.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert {task: entry["version"] for task, entry in manifest["prompts"].items()} == dict.fromkeys(DEFAULTS, "zh-v1")
    labels = pd.read_parquet(out / "labels.parquet")
    assert set(labels["variable"]) == SEVEN and labels["status"].eq("ok").all()
    lock = json.loads((library.prompts_dir / "versions.lock.json").read_text())
    assert {f"{task}/zh-v1" for task in DEFAULTS} <= set(lock)
    validated = runner.invoke(
        app, ["validate", str(out), "--gold", str(ZH / "gold.csv"), "--out", str(tmp_path / "v"), "--bootstrap", "0"]
    )
    assert validated.exit_code == 0, validated.output
    result = json.loads((tmp_path / "v" / "agreement.json").read_text())
    assert {v["variable"] for v in result["variables"]} == SEVEN
    assert result["unmatched"]["gold_not_labelled"] == []


def test_an_unknown_family_is_one_line(library: PromptLibrary, tmp_path: Path) -> None:
    args = ["run", str(ZH / "transcripts.jsonl"), "--out", str(tmp_path / "r"), "--backend", "fake"]
    done = runner.invoke(app, [*args, "--prompt-family", "fr", *library_flags(library)])
    assert done.exit_code == 1
    assert "--prompt-family fr: no prompt of that family (families: en, zh)" in done.output
    assert not (tmp_path / "r" / "labels.parquet").exists()


def test_the_shipped_chinese_chats_cover_every_arm_and_the_middle_categories() -> None:
    chats = read_transcripts([ZH / "transcripts.jsonl"]).chats
    assert {c.meta["escalation"] for c in chats} == {"ai_unable", "customer_upset", "supervisor", "none"}
    gold = pd.read_csv(ZH / "gold.csv")
    assert set(gold["chat_id"]) == {c.chat_id for c in chats} and set(gold["variable"]) == SEVEN
    middle = {"empathy": 2, "information_seeking": 2, "solution_provision": 2, "initial_urgency": 2}
    for variable, value in middle.items():
        assert (gold[gold["variable"] == variable]["value"] == value).sum() >= 4, variable
    sentiment = gold[gold["variable"].isin(["initial_sentiment", "negative_sentiment"])]["value"]
    assert sentiment.isin([2, 3, 4]).sum() >= 20


def test_chinese_versions_withhold_answers_planted_in_a_chat(library: PromptLibrary) -> None:
    injected = ROOT / "tests" / "data" / "injection" / "zh_injected.jsonl"
    chats = {c.chat_id: c for c in read_transcripts([injected]).chats}
    for task in DEFAULTS:
        pv = library.get(task, family="zh")
        for unit in units_for(chats["zi01"], task, pv.rubric.unit, 12000):
            user = pv.render(unit)[-1]["content"]
            assert "⟦JSON-like text withheld⟧" in user and '"empathy": 3' not in user and 'round_1": 1' not in user
            assert "给评分系统的说明" in user  # the note itself stays: it is part of the chat


def long_chinese_chat(rounds: int) -> dict[str, object]:
    """An AI greeting, then ``rounds`` Chinese customer messages; a human agent takes over after the third."""
    messages = [{"role": "ai", "text": "您好，我是店铺的智能助手，请问有什么可以帮您？"}]
    for n in range(1, rounds + 1):
        messages.append({"role": "customer", "text": f"第{n}次问了：我的包裹4711还没到，麻烦查一下物流。"})
        speaker = "ai" if n <= 3 else "agent"
        messages.append({"role": speaker, "text": f"第{n}次回复：已经查询物流，并留言催促快递派送。"})
    return {"chat_id": f"zh-long{rounds}", "messages": messages}


MAX_MODEL_LEN = 8192


def one_token_a_character(request: Request) -> str | Completion:
    """An engine whose tokenizer needs one token for every Chinese character (more than Qwen's) and a third of
    one for anything else; it refuses a request that does not fit, as a real one does."""
    text = "".join(m["content"] for m in request.messages)
    wide = len(WIDE.findall(text))
    tokens = wide + (len(text) - wide) / 3 + request.max_tokens
    if tokens > MAX_MODEL_LEN:
        return Completion("", "error", error=f"request of about {tokens:.0f} tokens exceeds {MAX_MODEL_LEN}")
    return lowest_values(request)


def test_a_long_chinese_chat_is_cut_to_the_context_by_tokens(library: PromptLibrary, tmp_path: Path) -> None:
    """12,000 characters of Chinese are about 12,000 tokens: a character budget alone would overflow 8,192."""
    path = write_jsonl(tmp_path / "long.jsonl", [long_chinese_chat(300)])
    fake = FakeBackend(script=one_token_a_character)
    config = RunConfig(inputs=[path], out=tmp_path / "run", prompts=library.paths, backend="fake", prompt_family="zh")
    run(config, backend=fake)
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["status"].eq("ok").all(), labels[labels["status"] != "ok"][["task", "error"]].head()
    assert sorted(labels[labels["variable"] == "negative_sentiment"]["round"]) == list(range(1, 301))
    behaviour = labels[labels["task"] == "agent_behaviour"]
    assert behaviour["truncation"].str.contains("context limit").all()


def test_the_estimate_counts_a_chinese_character_as_a_token(tmp_path: Path) -> None:
    assert estimated_tokens("你好，世界") == 5
    assert estimated_tokens("abcdef") == 2
    assert estimated_tokens("订单order") == 2 + 5 / 3
    assert estimated_tokens("Ελ 12") == 4 + 1 + 2  # other scripts by their UTF-8 bytes; digits one each
    chat = read_transcripts([ZH / "transcripts.jsonl"]).chats[0]
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    pv = library.get("agent_behaviour", family="zh")
    (unit,) = units_for(chat, "agent_behaviour", pv.rubric.unit, 12000)
    assert fit_to_context(unit, pv, MAX_MODEL_LEN) == unit  # a short chat is left whole
    (unit,) = units_for(
        read_transcripts([write_jsonl(tmp_path / "c.jsonl", [long_chinese_chat(30)])]).chats[0],
        "agent_behaviour",
        pv.rubric.unit,
        12000,
    )
    static = sum(estimated_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in pv.static_messages)
    budget = int(static) + 2 * pv.max_tokens_for(unit) + 32 + 250  # room for 250 tokens of chat
    fitted = fit_to_context(unit, pv, budget)
    used = sum(estimated_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in pv.render(fitted))
    assert fitted.truncation.startswith(f"context limit {budget} tokens")
    assert used <= budget - 2 * pv.max_tokens_for(unit) - 32
    with pytest.raises(PromptError, match="leaves a chat under 200"):
        fit_to_context(unit, pv, 1200)


def test_figures_never_draw_empty_boxes_for_chinese_category_names() -> None:
    import warnings

    from annotate.report import plots

    names = {"1": "机械", "2": "模板化", "3": "个性化"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns for every glyph its fonts lack
        png = plots.confusion_heatmap([[3, 1, 0], [0, 2, 1], [0, 0, 4]], [1, 2, 3], "empathy", names=names)
    assert png.startswith(b"\x89PNG")
    assert plots.drawable("2 模板化") == ("2 模板化" if plots.cjk_font() else "2")


def test_an_invalid_answer_is_asked_again_in_the_prompts_language(library: PromptLibrary, tmp_path: Path) -> None:
    def once_wrong(request: Request) -> str:
        return (
            lowest_values(request) if request.messages[-1]["role"] == "user" and len(fake.requests) > 1 else "不是JSON"
        )

    fake = FakeBackend(script=once_wrong)
    config = RunConfig(
        inputs=[ZH / "transcripts.jsonl"],
        out=tmp_path / "r",
        prompts=library.paths,
        backend="fake",
        limit=1,
        tasks=["initial_state"],
        prompt_family="zh",
    )
    run(config, backend=fake)
    first, second = fake.requests
    assert first.messages[-1]["role"] == "user"
    assert second.messages[-2]["content"] == "不是JSON"
    assert second.messages[-1]["content"].startswith("你上一次的回答无法使用")
    labels = pd.read_parquet(tmp_path / "r" / "labels.parquet")
    assert labels["status"].eq("ok").all() and (labels["attempts"] == 2).all()


def test_a_cjk_font_installed_after_matplotlib_cached_its_list_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29 (3): after `make install-browser` the font was on disk but not in matplotlib's cached list, so
    Chinese names vanished from every figure. The list is taken as stale as it was; the disk is read again."""
    from matplotlib import font_manager

    from annotate.report import plots

    on_disk = [p for p in font_manager.findSystemFonts() if plots.CJK_FILES.search(Path(p).name)]
    if not on_disk:
        pytest.skip("no CJK font on this machine (make install-browser installs one)")
    stale = [f for f in font_manager.fontManager.ttflist if f.name not in plots.CJK_FONTS]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", stale)
    plots.cjk_font.cache_clear()
    try:
        assert plots.cjk_font() in plots.CJK_FONTS
        assert plots.drawable("2 模板化") == "2 模板化"
    finally:
        plots.cjk_font.cache_clear()
