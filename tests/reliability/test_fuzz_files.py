"""Generated hostile files and values (issue 20): transcripts, conversation files, config files and sampling
flags drawn by hypothesis. Each is either used or refused with the error type its layer promises (never another
exception, never a hang); what is accepted round-trips.

Budgets scale with RNNCHAT_FUZZ_SCALE (bench/reliability.py runs them larger and prints the figures).
"""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnchat.checkpoint import CheckpointError, load_checkpoint
from rnnchat.session.config import ConfigError, load_config
from rnnchat.session.store import SessionError, Store
from rnnchat.session.transcript import TranscriptError, from_json, to_json
from tests.reliability.strategies import fuzz_settings, hostile_text

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | hostile_text(long_weight=0),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                               max_size=4), max_leaves=12)
ENTRY_KEYS = ("role", "text", "mode", "sentiment", "stopped", "time")
_entry_values = {
    "role": st.sampled_from(["user", "assistant", "system", "", None, 1]),
    "text": hostile_text(long_weight=0) | st.integers() | st.none(),
    "mode": st.sampled_from(["lm", "chat", "continue", "bogus", None, 3]),
    "sentiment": st.none() | st.fixed_dictionaries({"label": st.sampled_from(["positive", "negative", "neutral",
                                                                              "bogus", 1]),
                                                    "score": st.floats() | st.integers(-3, 3) | st.text()}) | JSON,
    "stopped": st.booleans() | st.none() | st.integers(0, 1),
    "time": st.none() | st.sampled_from(["2026-12-01T12:00:00+00:00", "2026-12-01", "yesterday", "", "9" * 50]),
}
ENTRY = st.fixed_dictionaries({}, optional={k: _entry_values[k] for k in ENTRY_KEYS})
TRANSCRIPT = st.lists(ENTRY, max_size=6) | JSON


@fuzz_settings(300)
@given(entries=TRANSCRIPT)
def test_any_transcript_json_is_used_or_refused_with_a_transcript_error(entries):
    try:
        turns = from_json(entries)
    except TranscriptError as e:
        assert str(e)
        return
    assert from_json(to_json(turns)) == turns  # what is accepted survives a save
    for t in turns:
        assert t.role in ("user", "assistant") and isinstance(t.text, str)
        assert t.sentiment is None or math.isfinite(t.sentiment.score)


def _mutations():
    member = st.sampled_from(["h0", "c0", "logits", "history", "__header__", "extra"])
    return st.lists(st.one_of(
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
        st.tuples(st.just("deflated"), member, st.sampled_from([(10**8,), (5, 10**6), (0,), (3,)]),
                  st.sampled_from(["<f4", "<i8", "|u1", "<f2", "|b1"])),
        st.tuples(st.just("header"), TRANSCRIPT),
    ), min_size=1, max_size=3)


def _apply(data: bytes, mutation, path) -> bytes:
    kind = mutation[0]
    if kind == "truncate":
        return data[: int(len(data) * mutation[1])]
    if kind == "flip":
        i = min(len(data) - 1, int(len(data) * mutation[1]))
        return data[:i] + bytes([data[i] ^ mutation[2]]) + data[i + 1:] if data else data
    buf = io.BytesIO(data)
    try:
        with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as zf:
            if kind == "deflated":
                _, name, shape, descr = mutation
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:  # a duplicate name shadows the first
                    np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
                    f.write(bytes(min(math.prod(shape) * np.dtype(descr).itemsize, 2**22)))
            else:
                header = {"format": "rnnchat-checkpoint", "format_version": 1, "model": "conversation",
                          "config": {}, "vocab": [], "corpus": {}, "metrics": {}, "dtype": "float32",
                          "transcript": mutation[1]}
                with zf.open("__header__.npy", "w") as f:
                    np.lib.format.write_array(f, np.frombuffer(json.dumps(header).encode(), np.uint8))
    except (zipfile.BadZipFile, ValueError, OSError):
        return data  # not a zip any more: the earlier mutation stands
    return buf.getvalue()


@pytest.fixture(scope="module")
def saved_conversation(engine, tmp_path_factory):
    d = tmp_path_factory.mktemp("conv")
    conv = engine.conversation()
    conv.feed("hello there", end_turn=True)
    path = d / "conversations" / "good.npz"
    Store(d).write("good", conv, from_json([{"role": "user", "text": "hello there", "mode": "lm"}]), None, None)
    return path.read_bytes()


@pytest.mark.filterwarnings("ignore:Duplicate name")  # a member added twice: the zip keeps both, readers the last
@fuzz_settings(150)
@given(mutations=_mutations())
def test_damaged_conversation_files_are_read_or_refused(mutations, saved_conversation, engine, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzconv")
    path = d / "conversations" / "x.npz"
    path.parent.mkdir(parents=True)
    data = saved_conversation
    for m in mutations:
        data = _apply(data, m, path)
    path.write_bytes(data)
    try:
        loaded = Store(d).read("x", engine.conversation(), None)
    except SessionError as e:
        assert str(e)
        return
    assert len(loaded.conv.history) > 0 and all(isinstance(t.text, str) for t in loaded.transcript)


@fuzz_settings(150)
@given(raw=st.binary(max_size=300) | st.lists(st.sampled_from([
    "[sampling]", "[chat]", "[other]", "temperature = 0.5", "temperature = -1", "temperature = 'x'", "top_k = 1e9",
    "top_k = 3", "skip = ['a', 1]", "stop = ''", "stop = ['']", "seed = -2", "mode = 'chat'", "mode = 1",
    "candidates = 65", "candidates = 4", "cache = 'yes'", "max_tokens = 100000", "x = [", "= 3", "\x00", "é = 1",
]), max_size=8).map(lambda lines: "\n".join(lines).encode()))
def test_any_config_file_is_used_or_refused_with_a_config_error(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(raw)
    try:
        config = load_config(path)
    except ConfigError as e:
        assert str(path) in str(e)
        return
    assert 1 <= config.candidates <= 64 and config.sampling.temperature >= 0


NUMBERS = st.sampled_from(["0", "1", "-1", "0.5", "1e308", "-1e308", "nan", "inf", "-inf", "1e-320", "abc", "",
                           "3" * 30, "0x10", "١", " 2 "])  # "3" * 30 samples ran "forever": now a usage error
FLAGS = st.lists(st.tuples(st.sampled_from(["--temperature", "--top-k", "--top-p", "--repeat-penalty",
                                            "--repeat-last-n", "-n", "-s", "--num-samples"]), NUMBERS), max_size=4)


@fuzz_settings(120)
@given(flags=FLAGS)
def test_any_sampling_flags_run_or_are_usage_errors(flags, cli, small_lm_path):
    argv = ["generate", "hello", "-m", str(small_lm_path), "-n", "3", "--json"]
    for name, value in flags:
        argv += [name, value] if name != "-n" or value.strip().isdigit() and int(value) <= 50 else ["-n", "4"]
    r = cli(argv)
    assert r.code in (0, 2), r
    if r.code == 0:
        for line in r.out.splitlines():
            json.loads(line)  # valid JSON: no NaN, whatever the flags
    else:
        assert "error" in r.err and "Traceback" not in r.err


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_checkpoint_loader_refuses_every_mutation_type_with_its_error(tmp_path, saved_conversation):
    """The loader itself (below the store): damaged bytes are CheckpointError, never another exception."""
    path = tmp_path / "c.npz"
    for mutation in [("truncate", 0.5), ("flip", 0.01, 7), ("deflated", "h0", (10**8,), "<f4")]:
        path.write_bytes(_apply(saved_conversation, mutation, path))
        with pytest.raises(CheckpointError):
            load_checkpoint(path, model="conversation")
