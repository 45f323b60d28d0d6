"""Checkpoint format: round trips, every refusal names its problem, no pickle, atomic writes."""

import errno
import io
import json
import os
import pathlib
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rnnchat import atomic, checkpoint
from rnnchat.atomic import atomic_open, atomic_write_bytes
from rnnchat.checkpoint import (CURRENT_FORMAT_VERSION, CheckpointError, format_header,
                                load_checkpoint, read_header, save_checkpoint)

CONFIG = {"vocab_size": 5, "hidden": 3, "cell": "lstm", "tied": False}
VOCAB = ["<pad>", "<unk>", "hello", "world", "!"]
DROP = object()  # in valid_raw_header(**changes): leave this key out


def spec(header):
    c = header["config"]
    return {"embed": (c["vocab_size"], c["hidden"]), "W": (c["hidden"], 4 * c["hidden"]),
            "b": (4 * c["hidden"],), "steps": ()}


def weights(seed=0):
    r = np.random.default_rng(seed)
    return {"embed": r.standard_normal((5, 3)).astype(np.float32),
            "W": r.standard_normal((3, 12)).astype(np.float32),
            "b": r.standard_normal(12).astype(np.float32),
            "steps": np.array(1234, dtype=np.int64)}


def header(**changes):
    h = {"model": "lm", "config": dict(CONFIG), "vocab": list(VOCAB),
         "corpus": {"name": "tiny", "manifest_sha256": "ab" * 32},
         "metrics": {"val_loss": np.float32(1.25), "epoch": np.int64(3)}, "run": "test"}
    h.update(changes)
    return h


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "lm.npz"
    save_checkpoint(path, weights(), header())
    return path


def write_raw(path, arrays, head):
    """A hand-made .npz, bypassing save_checkpoint's validation (head: dict, str or bytes)."""
    if isinstance(head, dict):
        head = json.dumps(head)
    raw = head.encode() if isinstance(head, str) else head
    np.savez(path, __header__=np.frombuffer(raw, dtype=np.uint8), **arrays)


def valid_raw_header(**changes):
    h = {"format": "rnnchat-checkpoint", "format_version": 1, "model": "lm", "config": dict(CONFIG),
         "vocab": list(VOCAB), "dtype": "float32", "corpus": {}, "metrics": {},
         "git_commit": None, "created": "2025-01-01T00:00:00+00:00"}
    h.update(changes)
    return h


def refuses(path, *words, spec_=spec, **kw):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, spec_, **kw)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    return message


# --- round trips --------------------------------------------------------------------------


def test_round_trip_float32_is_exact(ckpt):
    arrays, h = load_checkpoint(ckpt, spec, model="lm")
    expected = weights()
    assert arrays.keys() == expected.keys()
    for name, value in expected.items():
        assert arrays[name].dtype == value.dtype and arrays[name].shape == value.shape
        np.testing.assert_array_equal(arrays[name], value)
    assert arrays["W"].flags.c_contiguous and arrays["W"].flags.writeable


def test_header_fields(ckpt):
    h = read_header(ckpt)
    assert h["format"] == "rnnchat-checkpoint" and h["format_version"] == CURRENT_FORMAT_VERSION
    assert h["model"] == "lm" and h["config"] == CONFIG and h["vocab"] == VOCAB
    assert h["dtype"] == "float32" and h["corpus"]["name"] == "tiny"
    assert h["metrics"] == {"val_loss": 1.25, "epoch": 3} and h["run"] == "test"
    assert h["git_commit"] is None or len(h["git_commit"]) in (40, 64)
    assert h["created"].startswith("20")
    assert load_checkpoint(ckpt, spec)[1] == h


def test_float16_storage(tmp_path):
    path = tmp_path / "half.npz"
    save_checkpoint(path, weights(), header(), float16=True)
    with np.load(path, allow_pickle=False) as raw:
        assert raw["W"].dtype == np.float16 and raw["steps"].dtype == np.int64
    arrays, h = load_checkpoint(path, spec)
    assert h["dtype"] == "float16" and arrays["W"].dtype == np.float32
    np.testing.assert_allclose(arrays["W"], weights()["W"], rtol=1e-3, atol=1e-4)
    assert load_checkpoint(path, spec, dtype=np.float16)[0]["W"].dtype == np.float16


def test_float64_input_is_stored_as_float32(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, {"x": np.arange(4, dtype=np.float64)}, header())
    with np.load(path, allow_pickle=False) as raw:
        assert raw["x"].dtype == np.float32


def test_static_spec_and_no_spec(ckpt):
    static = spec(read_header(ckpt))
    assert load_checkpoint(ckpt, static)[0].keys() == load_checkpoint(ckpt)[0].keys()


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                  elements=st.floats(allow_nan=False, allow_infinity=False, width=32)))
def test_round_trip_property(array):
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d, "p.npz")
        save_checkpoint(path, {"a": array}, header())
        loaded, _ = load_checkpoint(path, {"a": array.shape})
        np.testing.assert_array_equal(loaded["a"], array)


def test_format_header_is_a_summary(ckpt):
    text = format_header(read_header(ckpt))
    for word in ("lm", "hidden=3", "5 tokens", "tiny", "val_loss=1.25", "created", "run"):
        assert word in text
    big = valid_raw_header(vocab=[f"t{i}" for i in range(1000)])
    text = format_header(big)
    assert "1000 tokens" in text and "t999" not in text


# --- refusals -----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    refuses(tmp_path / "nope.npz", "No such file")


def test_truncated_file(ckpt, tmp_path):
    data = ckpt.read_bytes()
    path = tmp_path / "half.npz"
    path.write_bytes(data[: len(data) // 2])
    refuses(path, "truncated or not an rnnchat checkpoint")
    with pytest.raises(CheckpointError, match="truncated"):
        read_header(path)


@pytest.mark.parametrize("data", [os.urandom(4096), b"", b"PK\x03\x04" + os.urandom(100)])
def test_garbage(tmp_path, data):
    path = tmp_path / "junk.npz"
    path.write_bytes(data)
    refuses(path, "truncated or not an rnnchat checkpoint")


def test_plain_npy_and_plain_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    refuses(tmp_path / "a.npy", "not an rnnchat checkpoint")
    np.savez(tmp_path / "b.npz", W=np.zeros(3))
    refuses(tmp_path / "b.npz", "__header__")


def test_missing_array(tmp_path):
    arrays = weights()
    del arrays["b"]
    save_checkpoint(tmp_path / "m.npz", arrays, header())
    refuses(tmp_path / "m.npz", "missing arrays: b")


def test_extra_array(tmp_path):
    save_checkpoint(tmp_path / "m.npz", {**weights(), "stray": np.zeros(2, np.float32)}, header())
    refuses(tmp_path / "m.npz", "unexpected arrays: stray")


def test_wrong_shape(tmp_path):
    save_checkpoint(tmp_path / "m.npz", {**weights(), "b": np.zeros(11, np.float32)}, header())
    refuses(tmp_path / "m.npz", "'b'", "shape (11,)", "(12,)")


def test_wrong_model_kind(ckpt):
    refuses(ckpt, "'lm'", "'seq2seq'", model="seq2seq")


def test_newer_format_version(tmp_path):
    write_raw(tmp_path / "m.npz", weights(), valid_raw_header(format_version=2))
    refuses(tmp_path / "m.npz", "written by a newer rnnchat (format 2 > 1); upgrade")
    with pytest.raises(CheckpointError, match="newer rnnchat"):
        read_header(tmp_path / "m.npz")


@pytest.mark.parametrize("changes, words", [
    ({"vocab": DROP}, ("header has no vocab",)),
    ({"vocab": ["a", 3]}, ("vocab", "list of strings")),
    ({"vocab": ["a", "b", "a"]}, ("vocab", "duplicate", "'a'")),
    ({"config": [5, 3]}, ("config", "object")),
    ({"config": {**CONFIG, "hidden": 10**12}}, ("config", "'hidden'", "out of range")),
    ({"config": {**CONFIG, "hidden": -3}}, ("config", "'hidden'", "out of range")),
    ({"config": {**CONFIG, "hidden": "3"}}, ("config", "invalid shape")),
    ({"config": {**CONFIG, "hidden": True}}, ("config", "invalid shape")),
    ({"config": {**CONFIG, "hidden": 2.5}}, ("config", "invalid shape", "2.5")),
    ({"config": {"hidden": 3}}, ("config does not fit", "vocab_size")),
    ({"format": "something-else"}, ("not an rnnchat checkpoint",)),
    ({"format_version": "1"}, ("format_version",)),
    ({"model": 7}, ("model",)),
    ({"dtype": "float64"}, ("dtype",)),
    ({"metrics": [1.0]}, ("metrics",)),
])
def test_bad_header_fields(tmp_path, changes, words):
    head = {k: v for k, v in valid_raw_header(**changes).items() if v is not DROP}
    write_raw(tmp_path / "m.npz", weights(), head)
    refuses(tmp_path / "m.npz", *words)


@pytest.mark.parametrize("raw, word", [
    (b"\xff\xfe{}", "UTF-8 JSON"), ("{not json", "UTF-8 JSON"), ("[1, 2]", "JSON object"),
    ("[" * 100_000 + "]" * 100_000, "UTF-8 JSON"),
])
def test_header_not_json_object(tmp_path, raw, word):
    write_raw(tmp_path / "m.npz", weights(), raw)
    refuses(tmp_path / "m.npz", word)


def test_header_wrong_array_type(tmp_path):
    np.savez(tmp_path / "m.npz", __header__=np.zeros(3, np.float32), **weights())
    refuses(tmp_path / "m.npz", "__header__", "uint8")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(tmp_path, bad):
    arrays = weights()
    arrays["W"][1, 2] = bad
    with pytest.raises(ValueError, match="'W'.*NaN or inf"):
        save_checkpoint(tmp_path / "m.npz", arrays, header())
    assert not (tmp_path / "m.npz").exists()
    write_raw(tmp_path / "m.npz", arrays, valid_raw_header())
    refuses(tmp_path / "m.npz", "'W'", "NaN or inf")


def test_float16_overflow_is_refused_at_save(tmp_path):
    with pytest.raises(ValueError, match="float16 range"):
        save_checkpoint(tmp_path / "m.npz", {"x": np.array([1e6], np.float32)}, header(), float16=True)


def test_wrong_stored_dtype(tmp_path):
    arrays = {**weights(), "W": weights()["W"].astype(np.float64)}
    write_raw(tmp_path / "m.npz", arrays, valid_raw_header())
    refuses(tmp_path / "m.npz", "'W'", "float64")
    write_raw(tmp_path / "s.npz", {**weights(), "b": np.array(["x"] * 12)}, valid_raw_header())
    refuses(tmp_path / "s.npz", "'b'", "<U1")


def test_declared_shape_larger_than_data_is_refused_before_allocating(tmp_path):
    path = tmp_path / "m.npz"
    write_raw(path, weights(), valid_raw_header())
    lying = io.BytesIO()
    np.lib.format.write_array_header_1_0(lying, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (10**7, 10**7)})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("huge.npy", lying.getvalue())
    refuses(path, "'huge'", "truncated", spec_=None)


def test_deflated_bomb_is_refused_before_inflating(tmp_path):
    """A small file whose deflated member declares (and holds) 100 MB of zeros: refused from the zip directory
    alone, before anything is inflated (issue 20, item 5). Honest compression of real data still loads."""
    path = tmp_path / "bomb.npz"
    write_raw(path, weights(), valid_raw_header())
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (25 * 2**20,)})
        for _ in range(100):
            f.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    refuses(path, "'zeros'", "inflates", spec_=None)
    honest = tmp_path / "honest.npz"
    write_raw(honest, weights(), valid_raw_header())
    with zipfile.ZipFile(honest, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("noise.npy", "w") as f:
        np.lib.format.write_array(f, np.random.default_rng(0).standard_normal(10**5).astype(np.float32))
    arrays, _ = load_checkpoint(honest)
    assert arrays["noise"].shape == (10**5,)


def test_non_npy_member(tmp_path):
    path = tmp_path / "m.npz"
    write_raw(path, weights(), valid_raw_header())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("notes.txt", b"hello")
    refuses(path, "'notes.txt'", "not a .npy array", spec_=None)


class Touch:
    """Unpickling this creates the marker file: proof that pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def write_pickle_bomb(path, marker):
    obj = np.empty(1, dtype=object)
    obj[0] = Touch(marker)
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("__header__.npy", "w") as f:
            np.save(f, np.frombuffer(json.dumps(valid_raw_header()).encode(), np.uint8))
        for name, value in weights().items():
            with zf.open(f"{name}.npy", "w") as f:
                np.save(f, value)
        with zf.open("evil.npy", "w") as f:
            np.save(f, obj, allow_pickle=True)


def test_pickled_object_array_is_refused_without_unpickling(tmp_path):
    # The bomb works: loading it with pickle enabled does create its marker.
    armed = tmp_path / "armed-marker"
    write_pickle_bomb(tmp_path / "armed.npz", armed)
    with np.load(tmp_path / "armed.npz", allow_pickle=True) as z:
        z["evil"]
    assert armed.exists()

    marker = tmp_path / "marker"
    path = tmp_path / "bomb.npz"
    write_pickle_bomb(path, marker)
    refuses(path, "'evil'", "pickled object array", spec_=None)
    refuses(path, "unexpected arrays: evil")
    assert read_header(path)["model"] == "lm"  # header alone is fine; the array is never touched
    assert not marker.exists()


def test_save_refuses_bad_input(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match="unsupported dtype"):
        save_checkpoint(path, {"x": np.array([object()])}, header())
    with pytest.raises(ValueError, match="invalid array name"):
        save_checkpoint(path, {"__header__": np.zeros(1)}, header())
    with pytest.raises(ValueError, match="vocab"):
        save_checkpoint(path, weights(), header(vocab=["a", "a"]))
    with pytest.raises(ValueError, match="format_version"):
        save_checkpoint(path, weights(), header(format_version=2))
    with pytest.raises(ValueError, match="dtype"):
        save_checkpoint(path, weights(), header(dtype="float32"), float16=True)
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(path, weights(), header(metrics={"loss": float("nan")}))
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(path, weights(), header(extra=object()))
    assert list(tmp_path.iterdir()) == []


def test_git_commit_never_raises(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(checkpoint.subprocess, "run", broken)
    save_checkpoint(tmp_path / "m.npz", weights(), header())
    assert read_header(tmp_path / "m.npz")["git_commit"] is None


# --- atomic writes ------------------------------------------------------------------------


def test_failure_midway_keeps_previous_checkpoint(ckpt, monkeypatch):
    before = ckpt.read_bytes()
    real = np.lib.format.write_array
    calls = []

    def failing(fp, array, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            fp.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fp, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match=f"{ckpt.name}.*no space left on device") as info:
        save_checkpoint(ckpt, weights(seed=1), header())
    assert info.value.errno == errno.ENOSPC and len(calls) == 3
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name]
    monkeypatch.undo()
    np.testing.assert_array_equal(load_checkpoint(ckpt, spec)[0]["W"], weights()["W"])


def test_fsync_failure_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError, match="could not write .*f.bin: no space left on device"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_open(tmp_path):
    path = tmp_path / "notes.txt"
    with atomic_open(path, "w") as f:
        f.write("héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert path.read_text(encoding="utf-8") == "héllo"
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(path, "a"):
            pass


def test_atomic_write_into_missing_directory(tmp_path):
    with pytest.raises(OSError, match="could not write"):
        atomic_write_bytes(tmp_path / "no" / "such" / "f.bin", b"x")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_an_atomic_write_never_puts_a_plain_file_where_a_pipe_or_folder_was(tmp_path):
    """The rename over the path replaced whatever was there: `export -f /dev/null` as root replaced the system's
    /dev/null with a plain file. (A FIFO and a folder stand in for the device here.)"""
    import stat
    fifo, folder = tmp_path / "fifo", tmp_path / "folder"
    os.mkfifo(fifo)
    folder.mkdir()
    for path in (fifo, folder):
        with pytest.raises(OSError, match="not a regular file") as e:
            atomic_write_bytes(path, b"x")
        assert str(e.value).startswith("could not write") and e.value.errno == errno.EINVAL  # no "[Errno 22] "
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and folder.is_dir()
    assert sorted(os.listdir(tmp_path)) == ["fifo", "folder"]  # no temp file left


def test_an_atomic_write_to_a_symbolic_link_replaces_the_link_and_leaves_its_target(tmp_path):
    """A --out linked to another run's checkpoint must not overwrite that checkpoint; a link to a device is
    refused like the device."""
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_bytes(b"old")
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new" and target.read_bytes() == b"old"
    folder, to_folder = tmp_path / "folder", tmp_path / "to_folder"
    folder.mkdir()
    to_folder.symlink_to(folder)
    with pytest.raises(OSError, match="it is a folder, not a regular file"):
        atomic_write_bytes(to_folder, b"x")
    assert to_folder.is_symlink()


def test_update_metrics_keeps_weights_and_merges(tmp_path):
    from rnnchat.checkpoint import update_metrics
    path = tmp_path / "m.npz"
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    save_checkpoint(path, {"w": w}, {"model": "lm", "config": {}, "vocab": [], "corpus": {},
                                     "metrics": {"a": 1}}, float16=True)
    before, _ = load_checkpoint(path)
    update_metrics(path, {"b": 2.5})
    after, header = load_checkpoint(path)
    assert header["metrics"] == {"a": 1, "b": 2.5} and header["dtype"] == "float16"
    np.testing.assert_array_equal(before["w"], after["w"])
    link = tmp_path / "link.npz"  # a link: the model it names gets the record (eval lm --record made a copy)
    link.symlink_to(path)
    update_metrics(link, {"c": 3})
    assert link.is_symlink() and read_header(path)["metrics"] == {"a": 1, "b": 2.5, "c": 3}
