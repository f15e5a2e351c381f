"""The run directory's promises: units are whole, damage is found, input changes are refused, one writer."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from annotate.analysis.sample import SampleOptions
from annotate.commands.sample import sample_command
from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.errors import RunStoreError
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.runs.rows import LABEL_KEY
from annotate.runs.store import RunStore
from tests.conftest import EXAMPLES, ROOT, library_flags

FIRST_SIX = [json.loads(line) for line in EXAMPLES.read_text().splitlines()[:6]]


def chats_file(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def config(library: PromptLibrary, out: Path, inputs: Path | None = None, **kw: object) -> RunConfig:
    settings: dict[str, object] = {"limit": 6, **kw}
    return RunConfig(inputs=[inputs or EXAMPLES], out=out, prompts=library.paths, backend="fake", **settings)  # type: ignore[arg-type]


def labels(out: Path) -> pd.DataFrame:
    table = pd.read_parquet(out / "labels.parquet")
    return table.sort_values(LABEL_KEY).reset_index(drop=True)[[*LABEL_KEY, "value", "status"]]


def journal_lines(out: Path) -> list[str]:
    return (out / "journal.jsonl").read_text().splitlines(keepends=True)


# ------------------------------------------------------------------------------- atomic units


def test_a_unit_is_never_half_written_so_resume_completes_it(library: PromptLibrary, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    run(config(library, whole, tasks=["agent_behaviour"]), backend=FakeBackend())
    cut = tmp_path / "cut"
    run(config(library, cut, tasks=["agent_behaviour"]), backend=FakeBackend())
    lines = journal_lines(cut)
    (cut / "journal.jsonl").write_text("".join(lines[:-1]))  # the last chat's unit is gone: all four variables
    run(config(library, cut, tasks=["agent_behaviour"]), backend=FakeBackend())
    pd.testing.assert_frame_equal(labels(cut), labels(whole))
    assert labels(cut).groupby("chat_id").size().eq(4).all()


def test_a_full_disk_stops_the_run_with_one_line_and_loses_nothing(
    library: PromptLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole"
    run(config(library, whole), backend=FakeBackend())
    out = tmp_path / "full"
    written: list[str] = []
    original = RunStore._write

    def fill_up(store: RunStore, line: str) -> None:
        if len(written) == 5:
            store._journal.write(line[: len(line) // 2])  # the disk fills up in the middle of a line
            store._journal.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(line)
        original(store, line)

    monkeypatch.setattr(RunStore, "_write", fill_up)
    with pytest.raises(RunStoreError, match=r"No space left on device.*run the same command again"):
        run(config(library, out), backend=FakeBackend())
    monkeypatch.setattr(RunStore, "_write", original)
    run(config(library, out), backend=FakeBackend())
    pd.testing.assert_frame_equal(labels(out), labels(whole))


# ----------------------------------------------------------------------------- damaged journal


def test_a_damaged_line_inside_the_journal_stops_the_run_with_its_number(
    library: PromptLibrary, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run(config(library, out), backend=FakeBackend())
    lines = journal_lines(out)
    lines[2] = lines[2][:40] + "\n"
    (out / "journal.jsonl").write_text("".join(lines))
    fake = FakeBackend()
    with pytest.raises(RunStoreError, match=r"journal\.jsonl:3: damaged journal line"):
        run(config(library, out), backend=fake)
    assert fake.requests == [] and len(journal_lines(out)) == len(lines)  # nothing asked, nothing touched
    run(config(library, out, skip_corrupt_journal=True), backend=FakeBackend())
    assert labels(out)["status"].eq("ok").all() and len(journal_lines(out)) == len(lines)


# ----------------------------------------------------------------------------- changed input


def test_resuming_after_a_chat_was_edited_is_refused_naming_what_changed(
    library: PromptLibrary, tmp_path: Path
) -> None:
    source = chats_file(tmp_path / "chats.jsonl", FIRST_SIX)
    out = tmp_path / "run"
    run(config(library, out, source), backend=FakeBackend())
    edited = [dict(r) for r in FIRST_SIX]
    edited[1] = {**edited[1], "messages": [*edited[1]["messages"][:-1], {"role": "customer", "text": "Changed."}]}  # type: ignore[list-item]
    chats_file(source, edited)
    before = labels(out)
    with pytest.raises(RunStoreError, match=r"chats\.jsonl has other content.*chat c02"):
        run(config(library, out, source), backend=FakeBackend())
    pd.testing.assert_frame_equal(labels(out), before)


@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        ({"limit": 6}, {"limit": 3}, "limit 6 -> 3"),
        ({"repeats": 2}, {"repeats": 1}, "repeats 2 -> 1"),
        ({}, {"role_map": {"customer": "customer", "ai": "agent", "agent": "agent"}}, "role_map"),
    ],
)
def test_a_resume_that_would_mix_two_inputs_is_refused(
    library: PromptLibrary, tmp_path: Path, first: dict[str, object], second: dict[str, object], named: str
) -> None:
    out = tmp_path / "run"
    run(config(library, out, **first), backend=FakeBackend())
    with pytest.raises(RunStoreError, match=named):
        run(config(library, out, **{**first, **second}), backend=FakeBackend())


def test_growing_a_run_is_allowed_and_recorded(library: PromptLibrary, tmp_path: Path) -> None:
    source = chats_file(tmp_path / "chats.jsonl", FIRST_SIX[:3])
    out = tmp_path / "run"
    run(config(library, out, source), backend=FakeBackend())
    chats_file(source, FIRST_SIX)  # three chats appended
    run(config(library, out, source), backend=FakeBackend())
    run(config(library, out, source, repeats=2), backend=FakeBackend())
    history = json.loads((out / "manifest.json").read_text())["history"]
    assert [h["units_added"] > 0 for h in history] == [True, True, True]
    whole = tmp_path / "whole"
    run(config(library, whole, chats_file(tmp_path / "all.jsonl", FIRST_SIX), repeats=2), backend=FakeBackend())
    pd.testing.assert_frame_equal(labels(out), labels(whole))


def test_two_tasks_rating_one_variable_across_a_resume_are_refused(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(config(library, out, tasks=["empathy"]), backend=FakeBackend())
    with pytest.raises(RunStoreError, match=r"holds empathy labels from task 'empathy'.*'agent_behaviour'"):
        run(config(library, out, tasks=["agent_behaviour"]), backend=FakeBackend())


# ------------------------------------------------------------------------------- one writer


def cli(library: PromptLibrary, out: Path, *extra: str) -> list[str]:
    dirs = library_flags(library)
    return [
        sys.executable,
        "-m",
        "annotate.cli",
        "run",
        str(EXAMPLES),
        "--limit",
        "6",
        "-b",
        "fake",
        "--out",
        str(out),
        *dirs,
        *extra,
    ]


def test_a_second_run_on_the_same_directory_is_refused_at_once(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "ANNOTATE_FAKE_DELAY": "0.2"}
    first = subprocess.Popen(cli(library, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.time() + 30
        while not (out / "journal.jsonl").exists() and time.time() < deadline:
            time.sleep(0.1)
        second = subprocess.run(cli(library, out), env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert second.returncode == 1
        assert f"being written by another annotate run (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killed run's lock died with it: the same command resumes
    done = subprocess.run(cli(library, out), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "ANNOTATE_FAKE_DELAY": "0.12"}
    proc = subprocess.Popen(
        cli(library, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    deadline = time.monotonic() + 120
    journal = out / "journal.jsonl"
    while proc.poll() is None and not (journal.is_file() and journal.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.02)  # the kill point: once the first unit is journaled
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    subprocess.run(cli(library, out), env=env, check=True, capture_output=True, cwd=ROOT)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


# ------------------------------------------------------------------- spreadsheet formulas


def test_csv_outputs_cannot_carry_spreadsheet_formulas(library: PromptLibrary, tmp_path: Path) -> None:
    record = {**FIRST_SIX[0], "chat_id": '=HYPERLINK("http://x")'}
    out = tmp_path / "run"
    run(
        config(library, out, chats_file(tmp_path / "c.jsonl", [record]), tasks=["initial_state"]),
        backend=FakeBackend(script=lambda r: "@SUM(1)"),
    )
    exact = pd.read_parquet(out / "labels.parquet")
    assert exact["chat_id"].iloc[0] == record["chat_id"] and exact["raw_output"].iloc[0] == "@SUM(1)"
    text = pd.read_csv(out / "labels.csv", dtype=str)
    assert text["chat_id"].iloc[0] == "'" + str(record["chat_id"]) and text["raw_output"].iloc[0] == "'@SUM(1)"
    answered = tmp_path / "answered"
    run(
        config(library, answered, chats_file(tmp_path / "c.jsonl", [record]), tasks=["initial_state"], use_cache=False),
        backend=FakeBackend(),
    )
    coding = tmp_path / "to_code.csv"
    sample_command(answered, coding, library, SampleOptions(per_variable=1))
    assert set(pd.read_csv(coding, dtype=str)["chat_id"]) == {"'" + str(record["chat_id"])}


def test_readers_see_the_journal_when_the_tables_are_stale(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 18: after a resume killed before it wrote its tables (or while a run is going), every command read
    the old labels.parquet (26 of 50 journaled units). Nothing is written into the run to read it."""
    from annotate.runs.reader import read_run

    out = tmp_path / "run"
    run(config(library, out, EXAMPLES, limit=3), backend=FakeBackend())
    stale = (out / "labels.parquet").read_bytes()
    run(config(library, out, EXAMPLES, limit=6), backend=FakeBackend())
    fresh = pd.read_parquet(out / "labels.parquet")
    (out / "labels.parquet").write_bytes(stale)  # as a resume killed before its tables would leave it
    past = (out / "journal.jsonl").stat().st_mtime_ns - 10**9
    os.utime(out / "labels.parquet", ns=(past, past))
    loaded = read_run(out)
    labels, _ = loaded.labels, loaded.manifest
    assert labels["chat_id"].nunique() == 6 and len(labels) == len(fresh)
    assert (out / "labels.parquet").read_bytes() == stale  # read, not rewritten


def test_outputs_replace_links_instead_of_writing_through_them(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 18: a run's labels.csv linked elsewhere was overwritten on resume; so was a coding file's rubric."""

    out = tmp_path / "run"
    run(config(library, out, EXAMPLES, limit=3), backend=FakeBackend())
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("keep me")
    (out / "labels.csv").unlink()
    (out / "labels.csv").symlink_to(elsewhere)
    run(config(library, out, EXAMPLES, limit=4), backend=FakeBackend())
    assert elsewhere.read_text() == "keep me" and not (out / "labels.csv").is_symlink()
    coding = tmp_path / "coding.csv"
    coding.with_suffix(".rubric.md").symlink_to(elsewhere)
    sample_command(out, coding, library, SampleOptions(design="random", per_variable=2))
    assert elsewhere.read_text() == "keep me"


def test_a_write_that_fails_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: a full disk while writing reports left a truncated report.html and a 0-byte coding file."""
    import errno

    from annotate.runs.outputs import write_atomic

    target = tmp_path / "report.html"
    write_atomic(target, "<p>the old report</p>")

    def full_disk(self: Path, data: bytes) -> int:
        Path.write_text(self, data[:5].decode())  # part of it, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "<p>the new report, longer</p>")
    monkeypatch.undo()
    assert target.read_text() == "<p>the old report</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


def test_the_manifest_is_typed_versioned_and_migrated_on_read(tmp_path: Path) -> None:
    """Issue 20: one typed manifest; a manifest written before the format had a version still reads."""
    import json

    from annotate.runs.manifest import FORMAT_VERSION, RunManifest
    from annotate.runs.store import RunStore

    old = {
        "run_id": "20261101T000000Z-abcdef",
        "status": "complete",
        "backend": "llamacpp",
        "prompts": {"empathy": {"version": "v1", "hash": "abc", "variables": ["empathy"]}},
        "inputs": [{"path": "chats.jsonl", "bytes": 10, "sha256": "00"}],
        "options": {"repeats": 1, "limit": None, "role_map": None, "redact": False, "max_chars": 9000},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    manifest = RunStore(tmp_path).read_manifest()
    assert isinstance(manifest, RunManifest)
    assert manifest.format_version == FORMAT_VERSION and manifest.kind == "labelling"
    assert manifest.prompts["empathy"].version == "v1" and manifest.options.max_chars == 9000
    consensus = RunManifest.read({**old, "sources": [{"name": "a"}], "method": "majority"})
    assert consensus.kind == "consensus"
    (tmp_path / "manifest.json").write_text(json.dumps({**old, "options": {"repeats": "many"}}))
    with pytest.raises(RunStoreError, match=r"manifest\.json: damaged"):
        RunStore(tmp_path).read_manifest()


def test_no_module_reads_the_manifest_by_string_keys() -> None:
    import re

    root = Path(__file__).resolve().parent.parent / "annotate"
    pattern = re.compile(r"\b(manifest|previous)(\[|\.get\()")
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path.name != "manifest.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_a_cut_label_table_is_rebuilt_from_the_journal_or_named(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 28 (11): a 0-byte labels.parquet newer than the journal gave every reader an ArrowInvalid traceback."""
    from annotate.runs.reader import read_run

    out = tmp_path / "r"
    run(RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=2), backend=FakeBackend())
    whole = read_run(out).labels
    (out / "labels.parquet").write_bytes(b"")
    assert len(read_run(out).labels) == len(whole)
    (out / "journal.jsonl").unlink()
    with pytest.raises(RunStoreError, match=r"not a readable label table .* no journal to rebuild it from"):
        read_run(out)


def test_a_damaged_manifest_points_to_the_journal_only_where_there_is_one(tmp_path: Path) -> None:
    """Issue 28 (17): a consensus (no journal) was told its labels are in journal.jsonl."""
    folder = tmp_path / "consensus"
    folder.mkdir()
    (folder / "manifest.json").write_text("{ cut")
    with pytest.raises(RunStoreError) as caught:
        RunStore(folder).read_manifest()
    assert "journal.jsonl" not in str(caught.value) and "damaged" in str(caught.value)
    (folder / "journal.jsonl").write_text("{}\n")
    with pytest.raises(RunStoreError, match=r"the labels are in journal\.jsonl beside it"):
        RunStore(folder).read_manifest()


def test_readers_refuse_transcripts_the_run_did_not_label(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 28 (9): after an edit, `sample` showed coders text the model never labelled."""
    from typer.testing import CliRunner

    from annotate.cli import app

    source = chats_file(tmp_path / "chats.jsonl", FIRST_SIX)
    out = tmp_path / "run"
    run(config(library, out, source), backend=FakeBackend())
    copy = chats_file(tmp_path / "copy.jsonl", FIRST_SIX)
    args = ["sample", str(out), "--per-variable", "3", "--variable", "empathy", *library_flags(library)]
    kept = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.csv"), "--transcripts", str(copy)])
    assert kept.exit_code == 0, kept.output  # the same content at another path is the same transcripts
    edited = [dict(r) for r in FIRST_SIX]
    edited[1] = {**edited[1], "messages": [*edited[1]["messages"][:-1], {"role": "customer", "text": "Changed."}]}  # type: ignore[list-item]
    chats_file(source, edited)
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b.csv")])
    assert refused.exit_code == 1 and "not the transcripts run" in refused.output and "chats.jsonl" in refused.output
    assert not (tmp_path / "b.csv").exists()
