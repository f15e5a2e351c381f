"""The bad-input corpus (tests/data/bad): every case is a one-line error naming file, line and field,
or an explicit skipped row; --strict stops at the first."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.errors import InputError
from annotate.ingest.readers import read_transcripts
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary

BAD = Path(__file__).resolve().parent / "data" / "bad"

CORPUS = [
    ("truncated.jsonl", ["truncated.jsonl:2: not valid JSON"]),
    (
        "wrong_types.jsonl",
        [
            "wrong_types.jsonl:2: field 'chat_id': missing or not a string/integer",
            "wrong_types.jsonl:3: field 'messages': expected a list of messages",
            "wrong_types.jsonl:4: field 'messages[0].role': missing or not a string",
        ],
    ),
    (
        "missing_fields.jsonl",
        [
            "missing_fields.jsonl:2: field 'chat_id'",
            "missing_fields.jsonl:3: field 'messages[0].role'",
            "missing_fields.jsonl:4: field 'messages[0].text'",
        ],
    ),
    ("unknown_role.jsonl", ["unknown_role.jsonl:2: field 'messages[1].role': unknown role 'robot'"]),
    ("empty_chat.jsonl", ["empty_chat.jsonl:2: field 'messages': chat 'e1' has no messages"]),
    ("only_ai.jsonl", ["only_ai.jsonl:2: field 'messages': chat 'a1' has no customer message"]),
    ("duplicate_ids.jsonl", ["duplicate_ids.jsonl:2: field 'chat_id': duplicate chat id 'ok1'"]),
    ("non_utf8.jsonl", ["non_utf8.jsonl:2: not valid UTF-8"]),
]


@pytest.mark.parametrize(("name", "messages"), CORPUS)
def test_each_bad_file_skips_exactly_the_bad_records(name: str, messages: list[str]) -> None:
    result = read_transcripts([BAD / name])
    assert [c.chat_id for c in result.chats] == ["ok1"]
    reasons = [s.reason for s in result.skipped]
    assert len(reasons) == len(messages)
    for reason, expected in zip(reasons, messages, strict=True):
        assert expected in reason and "\n" not in reason


@pytest.mark.parametrize(("name", "messages"), CORPUS)
def test_strict_mode_fails_on_the_first(name: str, messages: list[str]) -> None:
    with pytest.raises(InputError) as raised:
        read_transcripts([BAD / name], strict=True)
    assert messages[0] in str(raised.value)


def test_csv_with_embedded_newlines_and_quotes_reads_intact() -> None:
    (chat,) = read_transcripts([BAD / "embedded.csv"]).chats
    assert chat.messages[0].text == 'He said "it\'s broken",\nthen left.'
    assert chat.messages[1].speaker == "ai" and chat.messages[1].text.startswith('Sorry, "broken" how?')


def test_parquet_without_a_required_column_is_one_clean_error() -> None:
    with pytest.raises(InputError, match=r"missing_column\.parquet: field 'role': missing column"):
        read_transcripts([BAD / "missing_column.parquet"])


def test_the_whole_corpus_in_one_run_loses_no_good_chat(library: PromptLibrary, tmp_path: Path) -> None:
    files = sorted(p for p in BAD.glob("*.jsonl") if p.name != "duplicate_ids.jsonl")
    renamed = []
    for i, path in enumerate(files):  # give each file's good chat its own id
        target = tmp_path / path.name
        target.write_bytes(path.read_bytes().replace(b'"ok1"', f'"ok{i}"'.encode()))
        renamed.append(target)
    out = tmp_path / "run"
    run(
        RunConfig(inputs=renamed, out=out, prompts=library.paths, backend="fake", tasks=["initial_state"]),
        backend=FakeBackend(),
    )
    labels = pd.read_parquet(out / "labels.parquet")
    assert sorted(labels.loc[labels["status"] == "ok", "chat_id"].unique()) == sorted(
        f"ok{i}" for i in range(len(files))
    )
    skipped = labels[labels["status"] == "skipped"]
    assert len(skipped) == sum(len(m) for n, m in CORPUS if n != "duplicate_ids.jsonl")
    assert skipped["error"].str.len().gt(0).all()


def test_a_five_megabyte_message_is_truncated_and_recorded(library: PromptLibrary, tmp_path: Path) -> None:
    huge = "I am very upset. " * 300_000  # ~5 MB
    path = tmp_path / "huge.jsonl"
    path.write_text(
        json.dumps({"chat_id": "h", "messages": [{"role": "customer", "text": huge}, {"role": "ai", "text": "Sorry."}]})
        + "\n"
    )
    assert path.stat().st_size > 5_000_000
    fake = FakeBackend()
    run(
        RunConfig(inputs=[path], out=tmp_path / "run", prompts=library.paths, backend="fake", tasks=["initial_state"]),
        backend=fake,
    )
    (request,) = fake.requests
    assert sum(len(m["content"]) for m in request.messages) < 20_000
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["truncation"].str.contains("clipped 1 target turn").all()
    assert (labels["status"] == "ok").all()


@pytest.mark.parametrize("version", ["v1", "v2"])  # one request per round; one per chat
def test_a_unit_too_long_for_the_model_context_is_cut_to_fit(
    library: PromptLibrary, tmp_path: Path, version: str
) -> None:
    from annotate.config import BackendOptions

    turns = [{"role": "customer" if i % 2 == 0 else "ai", "text": f"turn {i} " + "word " * 150} for i in range(30)]
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"chat_id": "l", "messages": turns}) + "\n")
    fake = FakeBackend()
    run(
        RunConfig(
            inputs=[path],
            out=tmp_path / "run",
            prompts=library.paths,
            backend="fake",
            tasks=["round_sentiment"],
            prompt_versions={"round_sentiment": version},
            options=BackendOptions(max_model_len=2048),
        ),
        backend=fake,
    )
    longest = max(sum(len(m["content"]) for m in r.messages) for r in fake.requests)
    assert longest <= (2048 - 24 - 32) * 3
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["truncation"].str.startswith("context limit 2048 tokens").any()


def test_the_walk_through_coder_script_gives_one_line_errors_and_codes_guarded_ids(tmp_path: Path) -> None:
    """Issue 28 (16): no traceback without arguments, for a missing file or a gold without `round`; ids that the
    coding file guarded against spreadsheet formulas ('-5, '=1+1) are coded like any other."""
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "examples" / "code_from_gold.py"
    spec = importlib.util.spec_from_file_location("code_from_gold", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 2
    assert module.main([str(tmp_path / "missing.csv")]) == 1
    coding = tmp_path / "coding.csv"
    coding.write_text("chat_id,round,variable,value,annotator\n'-5,,empathy,,\n'=1+1,,empathy,,\nc1,,empathy,,\n")
    no_round = tmp_path / "no_round.csv"
    no_round.write_text("chat_id,variable,value\nc1,empathy,2\n")
    assert module.main([str(coding), str(no_round)]) == 1
    gold = tmp_path / "gold.csv"
    gold.write_text("chat_id,round,variable,value\n-5,,empathy,3\n=1+1,,empathy,1\nc1,,empathy,2\n")
    assert module.main([str(coding), str(gold)]) == 0
    filled = coding.read_text().splitlines()
    assert filled[1].startswith("'-5,,empathy,3") and filled[2].startswith("'=1+1,,empathy,1")


@pytest.mark.parametrize(("encoding", "hint"), [("utf-16", "looks like UTF-16"), ("gbk", "another encoding (GBK")])
def test_a_transcript_file_in_another_encoding_fails_the_run_and_is_named(
    encoding: str, hint: str, library: PromptLibrary, tmp_path: Path
) -> None:
    """Issue 28 (24): every record skipped, yet the run exited 0 with "labels: ..."."""
    from typer.testing import CliRunner

    from annotate.cli import app
    from tests.conftest import EXAMPLES, library_flags

    source = EXAMPLES.parent / "zh" / "transcripts.jsonl"
    converted = tmp_path / f"chats.{encoding}.jsonl"
    converted.write_bytes(source.read_text(encoding="utf-8").encode(encoding))
    out = tmp_path / "r"
    args = ["run", str(converted), "-b", "fake", "--out", str(out), *library_flags(library)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no chat could be read: all" in result.output
    assert hint in (out / "labels.csv").read_text()
