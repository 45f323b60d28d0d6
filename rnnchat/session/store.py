"""Where a session's conversations live: one atomic `.npz` per conversation in the data directory.

A conversation file is the LM conversation's memory (`engine.conversation`), the transcript in the header's
`transcript` entry, and the seq2seq chat memory as `seq2seq.<name>` arrays plus the header's `seq2seq` entry,
all in one atomic write. `last.npz` is the autosaved conversation restored on start.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnchat.checkpoint import CheckpointError, load_checkpoint
from rnnchat.engine.conversation import Conversation, SavedWithOtherModel
from rnnchat.engine.seq2seq_chat import ChatState, Seq2SeqChat
from rnnchat.session.transcript import TranscriptError, Turn, from_json, to_json

LAST = "last"          # the autosaved conversation, restored on start
LOCK_FILE = "lock"      # held (flock) by the process that autosaves into this data directory
MEMORY_KEY = "seq2seq"  # the seq2seq memory in a conversation file: header entry and array name prefix
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class SessionError(Exception):
    """A user-facing problem (missing model, unavailable mode, bad name, file or command)."""


def _move(source: Path, dest: Path) -> None:
    """Rename without replacing: FileExistsError if `dest` appeared meanwhile (os.rename would replace it). A
    filesystem without hard links (FAT, some mounts) gets a plain rename."""
    try:
        os.link(source, dest)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        os.rename(source, dest)
        return
    source.unlink()


class OtherModelsConversation(SessionError):
    """A saved conversation of another language model: sound, and kept, but not loadable with this one."""


def default_name() -> str:
    """A name for a saved conversation: the local date and time."""
    return time.strftime("%Y%m%d-%H%M%S")


@dataclass
class Loaded:
    """A conversation read from a file and checked whole, before anything of the session is replaced."""

    conv: Conversation
    transcript: list[Turn]
    chat_state: ChatState | None   # None: no seq2seq model in this session
    note: str | None = None        # the seq2seq memory could not be used and starts fresh


class Store:
    """The conversation files of one data directory."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def prepare(self) -> str | None:
        """Create the data directory if needed. SessionError if it cannot be one (a file is in the way, no
        permission to create it); a note (str) if it is there but not writable: nothing will be saved."""
        d = self.directory
        if d.exists() and not d.is_dir():
            raise SessionError(f"the data directory {d} is not a directory (set RNNCHAT_DATA_DIR to a directory)")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SessionError(f"cannot create the data directory {d} ({e.strerror or e}); set RNNCHAT_DATA_DIR "
                               f"to a writable directory") from None
        if not os.access(d, os.W_OK | os.X_OK):
            return f"the data directory {d} is read-only: conversations and history will not be saved"
        return None

    def lock(self) -> bool:
        """Hold the data directory's lock for this process's lifetime; False if another process holds it (or it
        cannot be taken), so this one must not autosave over that one's conversation."""
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): one process per data directory is the user's care
            return True
        try:
            lock = open(self.directory / LOCK_FILE, "a")
        except OSError:
            return False
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            return False
        self._lock = lock  # held until this store (the session) goes
        return True

    def remove_stale_temporaries(self, older_than_s: float = 3600) -> int:
        """Delete temporary files of interrupted saves (`.NAME.*.tmp`, left by a kill mid-write) older than an
        hour (a younger one may be another process's save in progress); returns how many went."""
        removed, now = 0, time.time()
        for folder in (self.directory, self.directory / "conversations"):
            for tmp in folder.glob(".*.npz.*.tmp"):
                try:
                    if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                        tmp.unlink()
                        removed += 1
                except OSError:
                    continue
        return removed

    def path(self, name: str) -> Path:
        if name == LAST:
            return self.directory / f"{LAST}.npz"
        if not NAME_RE.fullmatch(name):
            raise SessionError(f"bad conversation name {name!r}: use letters, digits, '_', '-' and '.'")
        return self.directory / "conversations" / f"{name}.npz"

    def names(self) -> list[str]:
        """Saved conversations, newest first."""
        dated = []
        for p in (self.directory / "conversations").glob("*.npz"):
            try:  # a dangling link, a directory or a FIFO named *.npz is not a conversation
                st = p.stat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and NAME_RE.fullmatch(p.stem):
                dated.append((st.st_mtime, p.stem))
        return [name for _, name in sorted(dated, reverse=True)]

    def write(self, name: str, conv: Conversation, transcript: list[Turn], chat: Seq2SeqChat | None,
              chat_state: ChatState | None, replace: bool = True, settings: dict | None = None) -> Path:
        """Save a conversation (and the seq2seq memory) under `name`, in one atomic write; with replace=False
        an existing conversation of that name is an error (SessionError) and stays as it is. `settings` are
        recorded in the header."""
        path = self.path(name)
        if not replace and path.exists():
            raise SessionError(f"a conversation named {name!r} exists: choose another name, or replace it "
                               f"(/save -f {name})")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        header: dict[str, Any] = {"transcript": to_json(transcript)}
        if settings is not None:  # what it was made with (mode, candidates, sampling): for the record
            header["settings"] = settings
        if chat is not None and chat_state is not None:
            memory, meta = chat.save_memory(chat_state)
            arrays = {f"{MEMORY_KEY}.{k}": v for k, v in memory.items()}
            header[MEMORY_KEY] = meta
        try:
            conv.save(path, arrays, header)
        except ValueError as e:  # e.g. a transcript too large for a file a reader accepts: nothing is written
            raise SessionError(f"cannot save the conversation: {e}") from None
        return path

    def delete(self, name: str) -> None:
        path = self.path(name)
        if name == LAST or not path.is_file():
            raise SessionError(f"no saved conversation named {name!r}")
        path.unlink()

    def free_name(self, prefix: str) -> str:
        """`prefix-DATE` (with a count if needed) that no saved conversation has."""
        name, k = f"{prefix}-{default_name()}", 1
        while self.path(name).exists():
            name, k = f"{prefix}-{default_name()}-{k}", k + 1
        return name

    def keep_last(self, prefix: str) -> str:
        """Move the autosaved conversation to a free dated name (`/load` lists it); returns that name."""
        name = self.free_name(prefix)
        self.path(name).parent.mkdir(parents=True, exist_ok=True)
        _move(self.path(LAST), self.path(name))
        return name

    def rename(self, old: str, new: str) -> None:
        """Rename a saved conversation; SessionError if `new` is a bad name or taken."""
        source, dest = self.path(old), self.path(new)
        if old == LAST or not source.is_file():
            raise SessionError(f"no saved conversation named {old!r}")
        if new == LAST or dest.exists():
            raise SessionError(f"a conversation named {new!r} exists: choose another name")
        try:
            _move(source, dest)
        except FileExistsError:
            raise SessionError(f"a conversation named {new!r} exists: choose another name") from None

    def set_aside(self, name: str) -> Path:
        """Move a conversation file that cannot be read out of the way (under a dated name in `unreadable/`),
        so that nothing is written over it; returns where it went."""
        path = self.path(name)
        dest = self.directory / "unreadable" / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}.npz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        k = 1
        while dest.exists():
            dest, k = dest.with_name(f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{k}.npz"), k + 1
        path.rename(dest)
        return dest

    def read(self, name: str, conv: Conversation, chat: Seq2SeqChat | None) -> Loaded:
        """Read a saved conversation into `conv` (a new one: the caller swaps it in) and check all of it.

        SessionError if the file is missing or unusable. A seq2seq memory that cannot be used (saved with another
        chat model, or damaged) is replaced by a fresh one, with a note.
        """
        path = self.path(name)
        if not path.exists():
            raise SessionError(f"no saved conversation named {name!r}")
        try:
            arrays, header = load_checkpoint(path, model="conversation")
            conv.load_arrays(path, arrays, header)
            transcript = from_json(header.get("transcript"))
        except SavedWithOtherModel as e:
            raise OtherModelsConversation(str(e)) from None
        except (CheckpointError, TranscriptError) as e:
            raise SessionError(f"{path}: {e}" if isinstance(e, TranscriptError) else str(e)) from None
        if chat is None:
            return Loaded(conv, transcript, None)
        prefix = MEMORY_KEY + "."
        mine = {k.removeprefix(prefix): a for k, a in arrays.items() if k.startswith(prefix)}
        try:
            return Loaded(conv, transcript, chat.read_memory(mine, header.get(MEMORY_KEY)))
        except ValueError as e:
            return Loaded(conv, transcript, ChatState(), f"seq2seq memory not restored ({e}); it starts fresh")
