"""Checkpoint files: one uncompressed ``.npz`` per model, never pickle.

Weights are stored under their parameter names; ``__header__`` is a 1-D uint8 array of the UTF-8
bytes of a JSON object. Files are read with ``allow_pickle=False`` and validated before use.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile

from rnnchat.atomic import atomic_open
from rnnchat.text import Vocab

FORMAT_NAME = "rnnchat-checkpoint"
CURRENT_FORMAT_VERSION = 1
HEADER_KEY = "__header__"
MAX_HEADER_BYTES = 16 * 2**20
MAX_DIM = 10**7  # largest size accepted for any config value or array dimension
MAX_INFLATION = 64  # a compressed member may expand at most this much (a zip bomb is refused before it is read)
STORAGE_DTYPES = ("float32", "float16")
# Everything np.load and zipfile raise for damaged or hostile files (RuntimeError: encrypted zip).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError,
                NotImplementedError, RuntimeError)

Spec = Callable[[dict], Mapping[str, tuple[int, ...]]] | Mapping[str, tuple[int, ...]]
PathLike = str | os.PathLike[str]


class CheckpointError(Exception):
    """A checkpoint file could not be loaded; the message names the file and the problem."""


def _short(value: object, limit: int = 100) -> str:
    """Compact one-line rendering of a header value (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)  # no escape codes
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _names(names: list[str], most: int = 10) -> str:
    """A readable list of array names: at most `most`, then a count."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(t, str) for t in value)


# (key, test, what it must be): the typed part of the header after format and version.
_HEADER_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("model", lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    ("config", lambda v: isinstance(v, dict), "an object of architecture sizes"),
    ("vocab", _is_str_list, "a list of strings ([] for a model without one)"),
    ("dtype", lambda v: v in STORAGE_DTYPES, f"one of {STORAGE_DTYPES}"),
    ("corpus", lambda v: isinstance(v, dict), "an object"),
    ("metrics", lambda v: isinstance(v, dict), "an object"),
    ("created", lambda v: isinstance(v, str), "an ISO time string"),
    ("git_commit", lambda v: v is None or isinstance(v, str), "a string or null"),
)


def _header_problem(h: dict) -> str | None:
    """Describe what is wrong with a decoded header, or return None if it is valid."""
    if h.get("format") != FORMAT_NAME:
        return f"not an rnnchat checkpoint (header format is {h.get('format')!r})"
    version = h.get("format_version")
    if not _is_int(version) or version < 1:
        return f"header format_version must be a positive int, not {version!r}"
    if version > CURRENT_FORMAT_VERSION:
        return (f"written by a newer rnnchat (format {version} > {CURRENT_FORMAT_VERSION}); "
                "upgrade rnnchat to load it")
    for key, ok, want in _HEADER_FIELDS:
        if key not in h:
            return f"header has no {key}"
        if not ok(h[key]):
            return f"header {key} must be {want}, not {_short(h[key])}"
    for key, value in h["config"].items():  # sizes, possibly as lists (e.g. per-layer widths)
        for size in value if isinstance(value, list) else [value]:
            if _is_int(size) and not 0 <= size <= MAX_DIM:
                return f"header config {key!r} = {size} is out of range (sizes must be 0..{MAX_DIM})"
    if len(set(h["vocab"])) != len(h["vocab"]):
        dup = next(t for t, n in Counter(h["vocab"]).items() if n > 1)
        return f"header vocab has duplicate token {dup!r}"
    return None


def _git_commit() -> str | None:
    """The commit of the repository holding this file, or None (git missing, not a repo, ...)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return out if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", out) else None


def _json_default(obj: object) -> object:
    """Let numpy scalars and arrays in metrics/config serialise as plain JSON."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_checkpoint(path: PathLike, arrays: Mapping[str, np.ndarray], header: Mapping[str, Any],
                    *, float16: bool = False) -> None:
    """Validate and atomically write ``arrays`` and ``header`` to ``path``.

    Floating arrays are stored as float32 (float16 if ``float16``), integer/bool arrays as they are.
    ``format``, ``format_version``, ``dtype``, ``created`` and ``git_commit`` are filled in when
    absent and must match the file when given. ValueError: NaN/inf, bad dtype or header.
    """
    storage = "float16" if float16 else "float32"
    prepared: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name == HEADER_KEY:
            raise ValueError(f"invalid array name {name!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise ValueError(f"array {name!r} has unsupported dtype {array.dtype}")
        if array.dtype.kind == "f":
            if not np.isfinite(array).all():
                raise ValueError(f"array {name!r} contains NaN or inf; refusing to save it")
            with np.errstate(over="ignore"):  # overflow to inf is reported just below
                array = array.astype(storage)
            if not np.isfinite(array).all():
                raise ValueError(f"array {name!r} has values outside the {storage} range")
        prepared[name] = array

    head = dict(header)
    for key, value in (("format", FORMAT_NAME), ("format_version", CURRENT_FORMAT_VERSION),
                       ("dtype", storage)):
        if head.setdefault(key, value) != value:
            raise ValueError(f"header {key}={head[key]!r} contradicts the file being written ({value!r})")
    head.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if "git_commit" not in head:
        head["git_commit"] = _git_commit()
    try:
        text = json.dumps(head, default=_json_default, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"header is not JSON-serialisable: {exc}") from exc
    problem = _header_problem(json.loads(text))  # validate exactly what a reader will see
    if problem:
        raise ValueError(f"refusing to write {path}: {problem}")
    data = text.encode("utf-8")
    if len(data) > MAX_HEADER_BYTES:  # what a reader would refuse is never written
        raise ValueError(f"refusing to write {path}: its header would be {len(data):,} bytes, more than the "
                         f"{MAX_HEADER_BYTES:,} a reader accepts")
    prepared[HEADER_KEY] = np.frombuffer(data, dtype=np.uint8)

    # Same layout as np.savez, written directly so no weight name can clash with its keywords.
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, array in prepared.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def update_metrics(path: PathLike, metrics: Mapping[str, Any]) -> None:
    """Merge ``metrics`` into a checkpoint's header metrics and rewrite it atomically (weights unchanged). A
    symbolic link is followed: the model it names is the one updated (an atomic write would otherwise put a
    copy in the link's place and leave that model without the record)."""
    path = Path(path).resolve()
    header = read_header(path)
    storage = np.float16 if header["dtype"] == "float16" else np.float32
    arrays, header = load_checkpoint(path, dtype=storage)
    header["metrics"] = {**header["metrics"], **metrics}
    save_checkpoint(path, arrays, header, float16=storage is np.float16)


def _error(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}")


@contextlib.contextmanager
def _open_npz(path: Path) -> Iterator[NpzFile]:
    """Open ``path`` as an npz archive or raise CheckpointError; closes the file on every path."""
    try:
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end: not a file of ours
            raise _error(path, "not a regular file (a pipe, device or directory cannot hold a checkpoint)")
        f = path.open("rb")  # opened here: np.load leaks its own handle when the zip is corrupt
    except OSError as exc:  # missing, a directory, no permission, ...
        raise _error(path, f"cannot read file ({exc.strerror or exc})") from exc
    with f:
        if f.read(4) != b"PK\x03\x04":  # np.load would otherwise guess .npy or pickle
            raise _error(path, "truncated or not an rnnchat checkpoint (not an .npz archive)")
        f.seek(0)
        try:
            npz = np.load(f, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise _error(path, f"truncated or not an rnnchat checkpoint ({exc})") from exc
        with npz:
            yield npz


def _member_meta(npz: NpzFile, name: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one entry, read from its .npy header without touching the data."""
    try:
        info = npz.zip.getinfo(f"{name}.npy")
        with npz.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version}")
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
    except _READ_ERRORS as exc:
        raise _error(path, f"entry {name!r} is corrupt or not a .npy array ({exc})") from exc
    if dtype.hasobject:
        raise _error(path, f"array {name!r} is a pickled object array; refusing to load it")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise _error(path, f"array {name!r} is truncated (shape {shape} does not fit its data)")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_INFLATION * info.compress_size + 2**16:
        raise _error(path, f"array {name!r} inflates from {info.compress_size:,} to {info.file_size:,} bytes; "
                           f"refusing it (rnnchat writes its files uncompressed, and real weights do not "
                           f"compress {MAX_INFLATION}x)")
    return shape, dtype


def _read_member(npz: NpzFile, name: str, path: Path) -> np.ndarray:
    try:
        return npz[name]
    except _READ_ERRORS as exc:  # includes "Object arrays cannot be loaded when allow_pickle=False"
        raise _error(path, f"array {name!r} is corrupt or unsafe ({exc})") from exc


def _load_header(npz: NpzFile, path: Path) -> dict:
    if HEADER_KEY not in npz.files:
        raise _error(path, f"no {HEADER_KEY} entry; not an rnnchat checkpoint")
    shape, dtype = _member_meta(npz, HEADER_KEY, path)
    if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_HEADER_BYTES:
        raise _error(path, f"{HEADER_KEY} must be 1-D uint8 of at most {MAX_HEADER_BYTES} bytes, "
                           f"not {dtype} {shape}")
    raw = _read_member(npz, HEADER_KEY, path).tobytes()
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _error(path, f"header is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _error(path, f"header must be a JSON object, not {type(header).__name__}")
    problem = _header_problem(header)
    if problem:
        raise _error(path, problem)
    return header


def _expected_shapes(spec: Spec, header: dict, path: Path) -> dict[str, tuple[int, ...]]:
    """Evaluate ``spec`` for this header and check every size before anything is allocated."""
    try:
        raw = spec(header) if callable(spec) else spec
        shapes = {name: tuple(shape) for name, shape in raw.items()}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        problem = f"config does not fit model {header['model']!r} ({type(exc).__name__}: {exc})"
        raise _error(path, problem) from exc
    for name, shape in shapes.items():
        if not all(_is_int(d) and 0 <= d <= MAX_DIM for d in shape):
            raise _error(path, f"config gives an invalid shape for {name!r}: {shape!r} "
                               f"(sizes must be ints in 0..{MAX_DIM})")
    return {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}


def read_header(path: PathLike) -> dict:
    """Read and validate only the header of a checkpoint (for ``rnnchat info``)."""
    path = Path(path)
    with _open_npz(path) as npz:
        return _load_header(npz, path)


def load_checkpoint(path: PathLike, spec: Spec | None = None, *, model: str | None = None,
                    dtype: Any = np.float32) -> tuple[dict[str, np.ndarray], dict]:
    """Load and validate a checkpoint; return (arrays, header).

    ``spec`` maps each expected parameter name to its shape, or is a callable computing that
    mapping from the header (e.g. from ``header["config"]``); with no spec, names and shapes
    are not checked. Floating arrays are returned as C-contiguous ``dtype``; integer/bool
    arrays as stored. Any problem raises CheckpointError naming the file and the problem.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating type, not {dtype}")
    with _open_npz(path) as npz:
        header = _load_header(npz, path)
        if model is not None and header["model"] != model:
            raise _error(path, f"holds a {header['model']!r} model, expected {model!r}")
        names = [n for n in npz.files if n != HEADER_KEY]
        expected = None if spec is None else _expected_shapes(spec, header, path)
        if expected is not None:
            missing = sorted(set(expected) - set(names))
            unexpected = sorted(set(names) - set(expected))
            if missing:
                raise _error(path, f"missing arrays: {_names(missing)}")
            if unexpected:
                raise _error(path, f"unexpected arrays: {_names(unexpected)}")
        for name in names:
            shape, stored = _member_meta(npz, name, path)
            if stored.kind not in "iub" and stored != np.dtype(header["dtype"]):
                raise _error(path, f"array {name!r} is stored as {stored}, expected {header['dtype']} "
                                   "(or an integer/bool array)")
            if expected is not None and shape != expected[name]:
                raise _error(path, f"array {name!r} has shape {shape}, expected {expected[name]}")
        arrays: dict[str, np.ndarray] = {}
        for name in names:  # one at a time, each checked as soon as it is read
            array = _read_member(npz, name, path)
            if array.dtype.kind == "f":
                array = np.ascontiguousarray(array, dtype=dtype)
                if not np.isfinite(array).all():
                    raise _error(path, f"array {name!r} contains NaN or inf")
            arrays[name] = array
    return arrays, header


def load_vocab_model(path: PathLike, model: str, spec: Callable[[dict], dict], build: Callable[[dict], Any],
                     sizes: tuple[str, ...] = ("vocab_size",)) -> tuple[Any, Vocab, dict]:
    """Load a checkpoint of a model that carries its vocabulary: (model in eval mode, Vocab, header).

    spec(config) gives the expected array shapes; build(config) an empty model (with `load_arrays` and
    `train`) for the weights. A vocabulary that is malformed or whose length differs from the config entries
    named in `sizes`, or a config that `build` refuses, is a CheckpointError.
    """
    arrays, header = load_checkpoint(path, lambda h: spec(h["config"]), model=model)
    if ints := sorted(n for n, a in arrays.items() if a.dtype.kind != "f"):  # e.g. an int64 1e18 bias
        raise CheckpointError(f"{path}: model weights must be floating-point arrays, not {ints[:3]}")
    try:
        vocab = Vocab.from_list(header["vocab"], header.get("vocab_level", "word"))
    except ValueError as e:
        raise CheckpointError(f"{path}: bad vocabulary: {e}") from None
    for key in sizes:
        if header["config"].get(key) != len(vocab):
            raise CheckpointError(f"{path}: config {key} {header['config'].get(key)} != vocabulary length "
                                  f"{len(vocab)}")
    try:
        net = build(header["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid {model} config ({e})") from None
    net.load_arrays(arrays)
    net.train(False)
    return net, vocab, header


def _fields(d: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in d.items()) or "(none)"


def format_header(header: dict) -> str:
    """Human-readable summary of a header for ``rnnchat info`` (the vocab is only sampled)."""
    vocab = header.get("vocab") or []
    sample = ", ".join(repr(t) for t in vocab[:8]) + (", ..." if len(vocab) > 8 else "")
    lines = [
        f"model:      {_short(header.get('model'))} (format {header.get('format_version')}, "
        f"{header.get('dtype')} weights)",
        f"config:     {_fields(header.get('config') or {})}",
        f"vocab:      {len(vocab)} tokens" + (f" ({sample})" if vocab else ""),
        f"corpus:     {_fields(header.get('corpus') or {})}",
        f"metrics:    {_fields(header.get('metrics') or {})}",
        f"git commit: {_short(header.get('git_commit') or 'unknown')}",
        f"created:    {_short(header.get('created'))}",
    ]
    known = {"format", "format_version", *(key for key, _, _ in _HEADER_FIELDS)}
    lines += [f"{k + ':':<11} {_short(v)}" for k, v in header.items() if k not in known]
    return "\n".join(lines)
