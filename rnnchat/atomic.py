"""Crash-safe file writes: a reader sees either the old file or the complete new one, never a mix."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class WriteError(OSError):
    """An OSError (errno kept) whose text is its message alone, without Python's "[Errno N] " before it."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _write_error(exc: OSError, path: Path) -> OSError:
    """Rephrase a low-level OSError so the user learns which file failed and that nothing was lost."""
    reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return WriteError(exc.errno, f"could not write {path}: {reason} (any previous file is unchanged)")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX only; best effort, as some filesystems refuse it)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to ``path`` for writing; on success it replaces ``path`` atomically.

    On any exception the temp file is deleted, ``path`` is left as it was, and the exception
    propagates (OSErrors such as ENOSPC are re-raised with a message naming ``path``).

    A symbolic link to a regular file is itself replaced by the new file; its target is left as it was (so a
    link to another run's checkpoint never overwrites that checkpoint). A path that is not a regular file, or
    links to one that is not (a device such as /dev/null, a pipe, a socket, a folder), is refused with an
    OSError before anything is written: the rename would put a plain file in its place (as root, /dev/null).
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open only writes whole files; mode must be 'w', 'wt' or 'wb', not {mode!r}")
    shown = path = Path(path)
    try:
        kind = os.stat(path).st_mode  # (follows a link: what it points at decides)
    except OSError:
        kind = None  # not there yet, a dangling link (or unreadable: mkstemp below says why)
    if kind is not None and not stat.S_ISREG(kind):
        what = "a folder" if stat.S_ISDIR(kind) else "a pipe" if stat.S_ISFIFO(kind) else "a device or a socket"
        raise WriteError(errno.EINVAL, f"could not write {shown}: it is {what}, not a regular file; nothing was "
                                       f"written")
    directory = path.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _write_error(exc, shown) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; keep the old file's permissions, or use ordinary ones.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _write_error(exc, shown) from exc
        raise
    _fsync_dir(directory)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)
