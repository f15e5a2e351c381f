"""Writing a file whole, and holding a file lock: used by the run directory and by the prompts' lock file alike."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a whole file atomically: readers see the old one or the new one, never half of either (a full
    disk leaves the old file), and a link at ``path`` is replaced, not followed."""
    tmp = temporary_path(path)
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if need be) for the block: writers that read, change
    and rewrite a shared file take turns. The kernel releases it if the holder dies."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_utf8(path: Path) -> str:
    """A text file the user wrote (a template, a rubric), or one line naming the file, the line and the byte when
    it is not UTF-8 (a file saved as GBK, say) instead of a traceback."""
    from annotate.errors import InputError

    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        message = f"not UTF-8 (byte 0x{raw[e.start]:02x}): save the file as UTF-8"
        raise InputError(str(path), line, None, message) from None
