"""Hostile checkpoint files end to end (issue 8): `rnnchat generate --checkpoint BAD`, `rnnchat info BAD` and
`Engine(BAD)` refuse each with a clear message, and a pickle payload never runs.

tests/test_checkpoint.py covers the checkpoint module itself; this file checks that every entry point the user
reaches stops at it. `rnnchat info` reads only the header (by design, see test_checkpoint.py): it must refuse a
file whose container or header is bad, and may print the header of a file whose damage is in the weights, but
without ever unpickling anything.
"""

from __future__ import annotations

import json
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

from rnnchat.checkpoint import CheckpointError, load_checkpoint
from rnnchat.engine.engine import Engine
from tests.reliability.conftest import CONTROL, assert_clear_failure


class Touch:
    """Unpickling this creates the marker file: proof that pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def npy_bytes(array, allow_pickle=False) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def write_zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def members(arrays: dict, header) -> dict[str, bytes]:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    out = {"__header__.npy": npy_bytes(np.frombuffer(raw, np.uint8))}
    out.update({f"{name}.npy": npy_bytes(a) for name, a in arrays.items()})
    return out


def object_array(marker) -> np.ndarray:
    obj = np.empty(1, dtype=object)
    obj[0] = Touch(marker)
    return obj


def build_hostile(kind: str, good: pathlib.Path, path: pathlib.Path, marker: pathlib.Path) -> bool:
    """Write the hostile file `kind` to `path`; returns whether its header is fine (weights-only damage)."""
    arrays, header = load_checkpoint(good)
    arrays = {k: v.copy() for k, v in arrays.items()}
    cfg = header["config"]
    evil = npy_bytes(object_array(marker), allow_pickle=True)
    if kind.startswith("truncated"):
        data = good.read_bytes()
        cut = {"truncated-half": len(data) // 2, "truncated-end": len(data) - 10, "truncated-4": 4,
               "truncated-empty": 0}[kind]
        path.write_bytes(data[:cut])
        return False
    if kind == "wrong-shape":
        arrays["lstm1.Wh"] = arrays["lstm1.Wh"][:, :-4]
    elif kind == "wrong-shape-transposed":
        arrays["embed.W"] = np.ascontiguousarray(arrays["embed.W"].T)
    elif kind == "missing-array":
        del arrays["out.b"]
    elif kind == "extra-array":
        arrays["stowaway"] = np.zeros(3, np.float32)
    elif kind in ("nan-weights", "inf-weights"):
        arrays["lstm0.Wx"][3, 5] = np.nan if kind == "nan-weights" else -np.inf
    elif kind == "float64-weights":
        arrays["embed.W"] = arrays["embed.W"].astype(np.float64)
    elif kind == "pickle-weight":  # a pickled object array under a legitimate weight name
        m = members(arrays, header)
        m["lstm0.b.npy"] = evil
        write_zip(path, m)
        return True
    elif kind == "pickle-extra":
        m = members(arrays, header)
        m["payload.npy"] = evil
        write_zip(path, m)
        return True
    elif kind == "pickle-header":  # the header entry itself is a pickled object array
        m = members(arrays, header)
        m["__header__.npy"] = evil
        write_zip(path, m)
        return False
    elif kind == "raw-pickle":  # not a zip at all: a bare pickle stream named .npz
        path.write_bytes(pickle.dumps(Touch(marker)))
        return False
    elif kind == "npy-pickle":  # a bare .npy holding an object array
        path.write_bytes(evil)
        return False
    elif kind == "header-not-json":
        write_zip(path, members(arrays, b"\x80\x04K\x01."))  # a pickle where the JSON should be
        return False
    elif kind == "header-list":
        write_zip(path, members(arrays, [header]))
        return False
    elif kind.startswith("header-"):
        bad = {
            "header-version-str": {**header, "format_version": "1"},
            "header-version-bool": {**header, "format_version": True},
            "header-vocab-ints": {**header, "vocab": list(range(len(header["vocab"])))},
            "header-config-list": {**header, "config": [cfg]},
            "header-hidden-str": {**header, "config": {**cfg, "hidden": "24"}},
            "header-hidden-float": {**header, "config": {**cfg, "hidden": 24.0}},
            "header-hidden-nested": {**header, "config": {**cfg, "hidden": {"$ref": 24}}},
            "header-hidden-huge": {**header, "config": {**cfg, "hidden": 10**15}},
            "header-hidden-negative": {**header, "config": {**cfg, "hidden": -24}},
            "header-shape-huge": {**header, "config": {**cfg, "hidden": 10**7, "vocab_size": 10**7}},
            "header-vocab-size-mismatch": {**header, "config": {**cfg, "vocab_size": cfg["vocab_size"] + 1}},
            "header-model-kind": {**header, "model": "seq2seq"},
            "header-dtype": {**header, "dtype": "object"},
            "header-format": {**header, "format": "pickle"},
            "header-newer": {**header, "format_version": 99},
            "header-no-config": {k: v for k, v in header.items() if k != "config"},
        }[kind]
        write_zip(path, members(arrays, bad))
        return kind in ("header-vocab-size-mismatch", "header-shape-huge", "header-hidden-str",
                        "header-hidden-float", "header-hidden-nested", "header-model-kind")
    elif kind == "huge-declared-array":  # a .npy header promising 10^14 floats in a few bytes
        m = members(arrays, header)
        import io
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (10**7, 10**7)})
        m["lstm0.Wx.npy"] = buf.getvalue()
        write_zip(path, m)
        return True
    elif kind == "huge-header":  # 20 MiB header (limit 16 MiB)
        write_zip(path, members(arrays, json.dumps({**header, "pad": "x" * (20 * 2**20)}).encode()))
        return False
    elif kind == "not-a-zip":
        path.write_bytes(b"\x00" * 64 + b"PK\x05\x06" + b"\x00" * 18)
        return False
    else:
        raise ValueError(kind)
    write_zip(path, members(arrays, header))
    return True


KINDS = ["truncated-half", "truncated-end", "truncated-4", "truncated-empty", "wrong-shape",
         "wrong-shape-transposed", "missing-array", "extra-array", "nan-weights", "inf-weights", "float64-weights",
         "pickle-weight", "pickle-extra", "pickle-header", "raw-pickle", "npy-pickle", "header-not-json",
         "header-list", "header-version-str", "header-version-bool", "header-vocab-ints", "header-config-list",
         "header-hidden-str", "header-hidden-float", "header-hidden-nested", "header-hidden-huge",
         "header-hidden-negative", "header-shape-huge", "header-vocab-size-mismatch", "header-model-kind",
         "header-dtype", "header-format", "header-newer", "header-no-config", "huge-declared-array",
         "huge-header", "not-a-zip"]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_checkpoint_is_refused_everywhere(kind, small_lm_path, tmp_path, cli):
    marker = tmp_path / "PWNED"
    bad = tmp_path / f"{kind}.npz"
    header_ok = build_hostile(kind, small_lm_path, bad, marker)

    with pytest.raises(CheckpointError) as e:
        Engine(bad)
    assert str(bad) in str(e.value)

    for argv, stdin in ((["generate", "hi", "--checkpoint", str(bad), "-n", "2"], b""),
                        (["generate", "--checkpoint", str(bad), "-n", "2"], b"hello"),
                        (["generate", "--checkpoint", str(bad), "--batch", str(tmp_path / "p.txt"),
                          "--out", str(tmp_path / "o.jsonl"), "-q"], b"")):
        (tmp_path / "p.txt").write_text("hello\nthere\n")
        r = cli(argv, stdin)
        assert_clear_failure(r)
        assert r.code == 1 and str(bad) in r.err and r.err.count("\n") == 1, r.err[:300]
        assert not (tmp_path / "o.jsonl").exists()

    r = cli(["info", str(bad)])
    if header_ok:  # info shows only the header, and never touches the weights
        assert r.code == 0 and "model:" in r.out and not CONTROL.search(r.out)
    else:
        assert_clear_failure(r)
        assert r.code == 1 and str(bad) in r.err
    r = cli(["info", "--json", str(bad)])
    assert r.code == (0 if header_ok else 1)
    assert not marker.exists(), f"{kind}: the pickle payload ran"


def test_the_pickle_payload_is_live(tmp_path, small_lm_path):
    """The payload used above does run when pickle is allowed (so its absence above means something)."""
    marker = tmp_path / "PWNED"
    bad = tmp_path / "armed.npz"
    build_hostile("pickle-extra", small_lm_path, bad, marker)
    with np.load(bad, allow_pickle=True) as z:
        z["payload"]
    assert marker.exists()
    marker.unlink()
    build_hostile("raw-pickle", small_lm_path, bad, marker)
    pickle.loads(bad.read_bytes())
    assert marker.exists()


def test_good_checkpoint_still_loads(small_lm_path, cli):
    Engine(small_lm_path)
    assert cli(["info", str(small_lm_path)]).code == 0
    assert cli(["generate", "hi", "--checkpoint", str(small_lm_path), "-n", "2"]).code == 0
