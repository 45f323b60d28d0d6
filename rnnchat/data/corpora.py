"""Real training corpora built from pinned PyPI packages.

* ``chitchat``: open-domain two-person chats from ``chitchat-dataset`` (MIT).
* ``vader``: human-rated sentences (tweets, movie/product reviews, news
  editorials) from the ``vaderSentiment`` source distribution (MIT).

No third-party text is committed: ``corpora/<name>.json`` manifests pin the
source (package, version, sha256), the split rule and the expected counts;
``build`` writes ``<root>/<name>/{train,val,test}.jsonl``.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rnnchat import paths
from rnnchat.atomic import atomic_open
from rnnchat.data import jsonl

NAMES = ("chitchat", "vader")
SPLITS = ("train", "val", "test")
VOCAB_SIZE = 10_000
_INSTALL_FIX = "pip install 'rnnchat[train]'"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


class CorpusError(Exception):
    """A corpus is missing, unbuildable or does not match its manifest."""


def _tokenize(text: str) -> list[str]:
    """Lowercase word/punctuation tokens (used for statistics only)."""
    return _WORD.findall(text.lower())


def default_root() -> Path:
    """Build directory: ``$RNNCHAT_CORPORA`` or ``corpora/build`` in the repo."""
    return paths.corpora_build_dir()


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise CorpusError(f"unknown corpus {name!r}; choose one of {', '.join(NAMES)}")


def _manifest_bytes(name: str) -> bytes:
    _check_name(name)
    path = paths.MANIFESTS / f"{name}.json"
    if not path.is_file():
        raise CorpusError(f"manifest {path} is missing; corpora are built from a source checkout")
    return path.read_bytes()


def manifest(name: str) -> dict:
    """The committed manifest ``corpora/<name>.json``."""
    return json.loads(_manifest_bytes(name))


def manifest_hash(name: str) -> str:
    """sha256 of the manifest file's bytes (recorded in checkpoints)."""
    return hashlib.sha256(_manifest_bytes(name)).hexdigest()


def assign_split(key: str) -> str:
    """Deterministic 90/5/5 split: ``sha256(key) % 100`` -> train/val/test."""
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if h < 90 else "val" if h < 95 else "test"


def _progress(items: Iterable, total: int, label: str, enabled: bool) -> Iterator:
    """Yield ``items`` while drawing a counter on stderr (final line only if not a tty)."""
    step = max(1, total // 100) if sys.stderr.isatty() else max(1, total)
    for i, item in enumerate(items, 1):
        if enabled and (i % step == 0 or i == total):
            end = "\n" if i == total else ""
            sys.stderr.write(f"\r{label}: {i:,}/{total:,} ({100 * i // total}%){end}")
            sys.stderr.flush()
        yield item


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_jsonl(path: Path, records: list[dict]) -> None:
    """Write one JSON object per line atomically (temp file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


# --- chitchat -----------------------------------------------------------------


def _chitchat_records(man: dict, progress: bool) -> list[dict]:
    src = man["source"]
    try:
        pkg = importlib.import_module(src["module"])
    except ImportError as e:
        raise CorpusError(
            f"package {src['package']}=={src['version']} is not installed; "
            f"fix: {_INSTALL_FIX}"
        ) from e
    data = (Path(pkg.__file__).parent / src["file"]).read_bytes()
    if _sha256(data) != src["sha256"]:
        raise CorpusError(
            f"{src['module']}/{src['file']} does not match the manifest sha256 "
            f"(wrong version?); fix: pip install {src['package']}=={src['version']}"
        )
    convs = json.loads(data)
    records = []
    for cid, conv in _progress(convs.items(), len(convs), "chitchat", progress):
        turns = conv["messages"]
        records.append({
            "id": cid,
            "turns": [[m["text"].strip() for m in turn] for turn in turns],
            "senders": [turn[0]["sender"] for turn in turns],
        })
    return records


def _chitchat_counts(records: list[dict]) -> dict:
    return {
        "conversations": len(records),
        "turns": sum(len(r["turns"]) for r in records),
        "messages": sum(len(t) for r in records for t in r["turns"]),
    }


# --- vader --------------------------------------------------------------------


def _pip_download_cmd(man: dict, dest: Path) -> list[str]:
    src = man["source"]
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"{src['package']}=={src['version']}", "-d", str(dest)]


def _fetch_archive(man: dict, downloads: Path, progress: bool) -> bytes:
    """The verified sdist bytes, downloaded with pip unless already cached."""
    src = man["source"]
    path = downloads / src["archive"]
    if path.is_file():
        data = path.read_bytes()
        if _sha256(data) == src["sha256"]:
            return data
        path.unlink()
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = _pip_download_cmd(man, downloads)
    if progress:
        print(f"downloading {src['archive']} with pip ...", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise CorpusError(
            f"could not download {src['archive']} (network or PyPI unreachable?):\n{tail}\n"
            f"fix: run `{' '.join(cmd[1:])}` with network access"
        )
    data = path.read_bytes()
    if _sha256(data) != src["sha256"]:
        raise CorpusError(f"{path} does not match the manifest sha256; delete it and rebuild")
    return data


def _tar_member(tar: tarfile.TarFile, name: str) -> bytes:
    """Read one regular file from a tar in memory (nothing touches disk)."""
    try:
        member = tar.getmember(name)
    except KeyError as e:
        raise CorpusError(f"{name} not found in archive") from e
    f = tar.extractfile(member) if member.isfile() else None
    if f is None:
        raise CorpusError(f"{name} is not a regular file in archive")
    return f.read()


def _vader_records(man: dict, downloads: Path, progress: bool) -> list[dict]:
    src = man["source"]
    with tarfile.open(fileobj=io.BytesIO(_fetch_archive(man, downloads, progress)), mode="r:gz") as outer:
        inner_bytes = _tar_member(outer, src["inner_archive"])
    records = []
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for domain, fname in src["files"].items():
            lines = _tar_member(inner, fname).decode(src["encoding"]).splitlines()
            for line in _progress(lines, len(lines), f"vader/{domain}", progress):
                if not line.strip():
                    continue
                fields = line.split("\t", 2)
                if len(fields) != 3:
                    raise CorpusError(f"{fname}: malformed line {line[:60]!r}")
                sid, rating, text = fields
                records.append({"id": sid.strip(), "domain": domain,
                                "rating": float(rating), "text": text.strip()})
    return records


def _vader_counts(records: list[dict]) -> dict:
    counts = Counter(r["domain"] for r in records)
    return {"sentences": len(records), **counts}  # domains in source order


# --- build / load / stats -----------------------------------------------------


def _split_key(name: str, rec: dict) -> str:
    return f"chitchat:{rec['id']}" if name == "chitchat" else f"vader:{rec['domain']}:{rec['id']}"


def _verify(name: str, counts: dict[str, dict]) -> None:
    """Compare per-split and total counts with the manifest's expectations."""
    expected = manifest(name)["expected"]
    for part, want in [("total", expected["total"]), *expected["splits"].items()]:
        got = {k: counts[part].get(k) for k in want}
        if got != want:
            raise CorpusError(f"{name}/{part}: counts {got} differ from the manifest {want}")


def build(name: str, root: Path | None = None, progress: bool = True, *,
          downloads: Path | None = None) -> dict:
    """Build ``<root>/<name>/{train,val,test}.jsonl``, verify counts, return ``stats``.

    ``downloads`` is the sdist cache (default ``<root>/_downloads``).
    """
    _check_name(name)
    root = Path(root) if root is not None else default_root()
    man = manifest(name)
    if name == "chitchat":
        records, count = _chitchat_records(man, progress), _chitchat_counts
    else:
        records = _vader_records(man, downloads or root / "_downloads", progress)
        count = _vader_counts
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for rec in records:
        splits[assign_split(_split_key(name, rec))].append(rec)
    _verify(name, {"total": count(records), **{s: count(r) for s, r in splits.items()}})
    for split, recs in splits.items():
        _write_jsonl(root / name / f"{split}.jsonl", recs)
    if progress:
        print(f"{name}: wrote {len(records):,} records to {root / name}", file=sys.stderr)
    return _stats(name, splits)


def _load(name: str, split: str, root: Path | None) -> list[dict]:
    _check_name(name)
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    path = (Path(root) if root is not None else default_root()) / name / f"{split}.jsonl"
    if not path.is_file():
        raise CorpusError(f"{name} corpus not built ({path} is missing); "
                          f"fix: rnnchat corpus build {name}")
    try:
        with path.open(encoding="utf-8") as f:
            return [_checked(name, n, line) for n, line in enumerate(f, 1) if line.strip()]
    except ValueError as e:  # (UnicodeDecodeError is one)
        raise CorpusError(f"{path} is damaged ({e}); fix: rnnchat corpus build {name}") from None


VADER_DOMAINS = ("tweets", "movies", "products", "news")  # (the manifest's source files, in its order)


def _checked(name: str, n: int, line: str) -> dict:
    """One built record, checked to be what the readers expect (ValueError naming the line)."""
    r = jsonl.parse(line, f"line {n}")
    if name == "vader":  # (ratings are the raters' mean on VADER's scale, -4 .. 4)
        rating = r.get("rating") if isinstance(r, dict) else None
        ok = (isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("domain") in VADER_DOMAINS
              and isinstance(r.get("text"), str) and isinstance(rating, (int, float)) and not isinstance(rating, bool)
              and -4 <= rating <= 4)
    else:
        turns = r.get("turns") if isinstance(r, dict) else None
        ok = (isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(turns, list)
              and all(isinstance(t, list) and all(isinstance(m, str) for m in t) for t in turns))
    if not ok:
        raise ValueError(f"line {n}: not a {name} record")
    return r


def load_chitchat(split: str, root: Path | None = None) -> list[dict]:
    """Conversations ``{"id", "turns": [[text, ...], ...], "senders": [...]}``."""
    return _load("chitchat", split, root)


def load_vader(split: str, root: Path | None = None) -> list[dict]:
    """Rated sentences ``{"id", "domain", "rating", "text"}`` (id unique per domain)."""
    return _load("vader", split, root)


def _stats(name: str, splits: dict[str, list[dict]]) -> dict:
    """Per-split counts (and, for chitchat, words and vocabulary coverage)."""
    out: dict[str, Any] = {"name": name, "manifest_sha256": manifest_hash(name), "splits": {}}
    if name == "vader":
        for split, recs in splits.items():
            out["splits"][split] = _vader_counts(recs)
        out["total"] = _vader_counts([r for recs in splits.values() for r in recs])
        return out
    freqs = {}
    for split, recs in splits.items():
        freqs[split] = Counter(tok for r in recs for turn in r["turns"]
                               for msg in turn for tok in _tokenize(msg))
        out["splits"][split] = {**_chitchat_counts(recs), "words": sum(freqs[split].values())}
    out["total"] = {k: sum(s[k] for s in out["splits"].values()) for k in out["splits"]["train"]}
    top = {w for w, _ in freqs["train"].most_common(VOCAB_SIZE)}
    val_tokens = sum(freqs["val"].values())
    out["vocab"] = {
        "train_types": len(freqs["train"]),
        "size": min(VOCAB_SIZE, len(freqs["train"])),
        "val_coverage": sum(n for w, n in freqs["val"].items() if w in top) / max(1, val_tokens),
    }
    return out


def stats(name: str, root: Path | None = None) -> dict:
    """Statistics of a built corpus (reads the jsonl files)."""
    return _stats(name, {s: _load(name, s, root) for s in SPLITS})


def format_stats(stats: dict) -> str:
    """Render ``stats``/``build`` output as a plain-text table."""
    rows = [*SPLITS, "total"]
    parts = {**stats["splits"], "total": stats["total"]}
    cols = list(stats["total"])
    width = max(len(c) for c in cols) + 2
    lines = [f"{stats['name']} (manifest {stats['manifest_sha256'][:12]})",
             "split".ljust(7) + "".join(c.rjust(width) for c in cols)]
    lines += [r.ljust(7) + "".join(f"{parts[r][c]:,}".rjust(width) for c in cols) for r in rows]
    if "vocab" in stats:
        v = stats["vocab"]
        lines.append(f"top {v['size']:,} of {v['train_types']:,} train word types "
                     f"cover {100 * v['val_coverage']:.2f}% of val tokens")
    return "\n".join(lines)
