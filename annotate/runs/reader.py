"""Reading a finished (or interrupted) run directory back: labels, manifest and the chats it read, as it read
them. Every command after ``run`` (validate, agree, diff, sample, estimate, trajectories) starts here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from annotate.errors import RunStoreError
from annotate.hashing import file_sha256
from annotate.ingest.model import Chat
from annotate.ingest.readers import read_as_run
from annotate.runs.manifest import RunManifest
from annotate.runs.store import RunStore


@dataclass(frozen=True)
class Run:
    """A run directory read back: its labels, its manifest, and the chats it read."""

    path: Path
    labels: pd.DataFrame
    manifest: RunManifest
    _chats: dict[tuple[Path, ...], list[Chat]] = field(default_factory=dict, compare=False, repr=False)

    def chats(self, transcripts: list[Path] | None = None) -> list[Chat]:
        """The chats as the run read them (its role map, ``--limit`` and redaction); read once per run object,
        however many steps of a command ask."""
        key = tuple(transcripts or ())
        if key not in self._chats:
            self._chats[key] = run_chats(self.manifest, transcripts)
        return self._chats[key]


def read_run(path: Path) -> Run:
    """The one way every command after ``run`` reads a run directory."""
    labels, manifest = _load(path)
    return Run(path, labels, manifest)


def incomplete_note(run: Run) -> str | None:
    """One line when a labelling run did not finish (killed, interrupted, failed, or still going): every reader
    says so first, since what it reports covers only the units labelled so far."""
    manifest = run.manifest
    if manifest.kind != "labelling" or manifest.status == "complete":
        return None
    units = len(run.labels.drop_duplicates(["chat_id", "round", "task"]))
    if manifest.status == "running":
        state = "is still being labelled" if _lock_held(run.path) else "stopped before it finished (killed?)"
    else:
        state = f"stopped before it finished ({manifest.status})"
    return (
        f"{run.path} {state}: {units} units labelled so far, not every chat; resume it with the same "
        "`annotate run` command, or read these results as partial"
    )


def _lock_held(path: Path) -> bool:
    import fcntl

    try:
        with (path / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def read_runs(paths: Sequence[Path]) -> list[Run]:
    """Runs to compare or combine (agree, consensus): the same run twice, or runs over other transcripts under
    the same chat ids, are refused with one line."""
    runs = [read_run(path) for path in paths]
    check_runs(runs)
    return runs


def read_beside(primary: Run, others: Sequence[Path]) -> list[Run]:
    """Other runs over the same chats, read to stand beside ``primary`` (several labellers): the same run twice, or
    runs over other transcripts under the same chat ids, are refused with one line."""
    runs = [read_run(path) for path in others]
    check_runs([primary, *runs])
    return runs


def check_runs(runs: Sequence[Run]) -> None:
    """Runs compared or combined: distinct, and over the same transcripts."""
    check_distinct_runs([(r.path, r.manifest) for r in runs])
    check_same_transcripts([(r.path, r.manifest) for r in runs])


def _load(path: Path) -> tuple[pd.DataFrame, RunManifest]:
    """Labels and manifest of a run directory; labels come from the journal (in memory, nothing is written) when
    the tables are older than it: a run still going, or killed before it wrote them."""
    store = RunStore(path)
    manifest = store.read_manifest()
    if manifest is None:
        raise RunStoreError(f"{path}: not a run directory (no manifest.json)")
    labels_path, journal = path / "labels.parquet", store.journal_path
    if journal.is_file() and (not labels_path.is_file() or journal.stat().st_mtime_ns > labels_path.stat().st_mtime_ns):
        labels = store.journal_table()  # a run still going, or killed before its tables: the journal is the truth
    elif labels_path.is_file():
        labels = _table_or_journal(labels_path, store)
    else:
        raise RunStoreError(f"{path}: the run has no labels yet")
    if labels.empty:
        why = f" ({manifest.error})" if manifest.error else ""
        raise RunStoreError(f"{path}: the run labelled nothing (status {manifest.status}{why})")
    for column in ("probs", "confidence", "expected"):  # runs written before labels kept probabilities
        if column not in labels.columns:
            labels[column] = None if column == "probs" else float("nan")
    return labels, manifest


def _table_or_journal(labels_path: Path, store: RunStore) -> pd.DataFrame:
    """The label table; when it is cut or empty (a full disk, a copy that stopped), the journal it was written
    from, like a table older than the journal; one line when neither can be read."""
    try:
        return pd.read_parquet(labels_path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        if store.journal_path.is_file():
            return store.journal_table()
        raise RunStoreError(f"{labels_path}: not a readable label table ({e}) and no journal to rebuild it from") from e


def run_chats(manifest: RunManifest, transcripts: list[Path] | None = None) -> list[Chat]:
    """The chats a run read, as it read them (its role map, ``--limit`` and redaction, from the manifest):
    from ``transcripts`` if given, else from the input paths in its manifest."""
    if not manifest.options_known:
        raise RunStoreError(
            f"run {manifest.run_id} is an old consensus whose source runs cannot be read: how they read the chats "
            "(redaction, roles, --limit) is unknown; make the consensus again with this version"
        )
    paths = transcripts or [Path(entry.path) for entry in manifest.inputs]
    if not paths or not all(p.is_file() for p in paths):
        return []
    _check_unchanged(manifest, paths)
    options = manifest.options
    replayed = read_as_run(paths, options.role_map or None, options.limit, bool(options.redact))
    return [chat for chat in replayed if isinstance(chat, Chat)]


def _check_unchanged(manifest: RunManifest, paths: list[Path]) -> None:
    """Refuse transcripts whose content is not what the run read: coders and reports would show text the model
    never labelled, and coded values would be compared with labels of other text (a resume checks the same)."""
    recorded = {entry.sha256 for entry in manifest.inputs if entry.sha256}
    if not recorded:
        return  # a run written before inputs carried their hash
    for path in paths:
        digest = file_sha256(path)
        if digest not in recorded:
            raise RunStoreError(
                f"{path}: not the transcripts run {manifest.run_id} labelled (sha256 {digest[:12]}, the run read "
                f"{', '.join(sorted(h[:12] for h in recorded))}): restore the file, or pass the original with "
                "--transcripts"
            )


def chat_fingerprints(manifest: RunManifest) -> dict[str, str] | None:
    """Per chat id, a hash of the chat's messages as read (before redaction and ``--limit``, so that runs that
    differ only in those still compare); None when the run's input files are no longer there."""
    paths = [Path(entry.path) for entry in manifest.inputs]
    if not paths or not all(p.is_file() for p in paths):
        return None
    role_map = manifest.options.role_map or None
    prints = {}
    for chat in read_as_run(paths, role_map):
        if isinstance(chat, Chat):
            text = json.dumps([[m.speaker, m.text] for m in chat.messages], ensure_ascii=False)
            prints[chat.chat_id] = hashlib.sha256(text.encode()).hexdigest()
    return prints


def check_distinct_runs(runs: list[tuple[Path, RunManifest]]) -> None:
    """One run given twice (the same folder, a copy or a link: the same run id) would count as two coders."""
    seen: dict[str, Path] = {}
    for path, manifest in runs:
        run_id = manifest.run_id
        if run_id in seen and seen[run_id] != path:
            raise RunStoreError(f"{seen[run_id]} and {path} are one run ({run_id}): give separate runs")
        if run_id in seen:
            raise RunStoreError(f"{path} is given twice: give separate runs")
        seen[run_id] = path


def check_same_transcripts(runs: list[tuple[Path, RunManifest]]) -> None:
    """Runs compared or combined must label the same transcripts: a chat id that names different messages in
    two runs (another export reusing ids) stops the command with one line. Runs read from files with equal
    content hashes need no further look."""
    digests = {tuple(sorted(str(i.sha256) for i in m.inputs)) for _, m in runs}
    if len(digests) <= 1:
        return
    prints = [(path, chat_fingerprints(manifest)) for path, manifest in runs]
    known = [(path, p) for path, p in prints if p is not None]
    for (path_a, a), (path_b, b) in itertools.combinations(known, 2):
        differ = sorted(c for c in set(a) & set(b) if a[c] != b[c])
        if differ:
            raise RunStoreError(
                f"{path_a} and {path_b} label different transcripts under the same chat ids ({len(differ)} chats "
                f"differ, e.g. {differ[0]}): compare runs over the same input"
            )
