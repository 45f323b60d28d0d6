"""Regression tests for the bugs the reliability work found (issue 8): bad seeds, settings of the wrong
type in JSONL, deeply nested lines, unknown skip words in one line, line separators, unwritable --out,
malformed vocabularies and configs in checkpoints, huge layer counts, control characters in `rnnchat info`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnchat.checkpoint import CheckpointError, load_checkpoint
from rnnchat.engine.engine import Engine
from tests.reliability.conftest import CONTROL, assert_clear_failure
from tests.reliability.test_hostile_checkpoints import members, write_zip


def generate(cli, path, *args, stdin=b""):
    return cli(["generate", "--checkpoint", str(path), "-n", "2", "-q", *args], stdin)


def batch(cli, small_lm_path, tmp_path, lines: list[str], *flags, suffix=".jsonl"):
    src, out = tmp_path / f"p{suffix}", tmp_path / "o.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = generate(cli, small_lm_path, "--batch", str(src), "--out", str(out), *flags)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return r, rows


# -- sampling settings --------------------------------------------------------------------------------------------
def test_negative_seed_is_a_usage_error(cli, small_lm_path):
    r = generate(cli, small_lm_path, "hi", "-s", "-1")
    assert_clear_failure(r)
    assert r.code == 2


def test_skip_hash_superscript_digit_is_a_usage_error(cli, small_lm_path):
    r = generate(cli, small_lm_path, "hi", "--skip", "#²")
    assert_clear_failure(r)
    assert r.code == 2


# -- batch files --------------------------------------------------------------------------------------------------
WRONG_TYPES = [
    {"top_k": 1.5}, {"repeat_last_n": 1.5}, {"max_tokens": 2.5}, {"repeat_last_n": float("inf")},
    {"seed": -1}, {"seed": "abc"}, {"seed": 1.5}, {"skip": 5}, {"stop": 5}, {"skip": [5]}, {"stop": [5]},
    {"skip": [["the"]]},
]  # ({"max_tokens": Infinity} is accepted too, and only EOT ends that reply: not run here, it may never end)


@pytest.mark.parametrize("setting", WRONG_TYPES, ids=[json.dumps(s) for s in WRONG_TYPES])
def test_jsonl_setting_of_the_wrong_type_is_a_skipped_line(cli, small_lm_path, tmp_path, setting):
    lines = ['{"prompt": "hi"}', json.dumps({"prompt": "x", **setting}), '{"prompt": "there"}']
    r, rows = batch(cli, small_lm_path, tmp_path, lines)
    assert r.code == 1 and "p.jsonl:2: skipped: " in r.err
    assert [row["id"] for row in rows] == ["1", "3"]


def test_jsonl_deeply_nested_line_is_a_skipped_line(cli, small_lm_path, tmp_path):
    r, rows = batch(cli, small_lm_path, tmp_path, ['{"prompt": "hi"}', "[" * 100_000])
    assert r.code == 1 and "p.jsonl:2: skipped: " in r.err and len(rows) == 1


def test_batch_negative_seed_is_a_usage_error(cli, small_lm_path, tmp_path):
    r, _ = batch(cli, small_lm_path, tmp_path, ["hello"], "-s", "-1", suffix=".txt")
    assert_clear_failure(r)


def test_jsonl_unknown_skip_word_is_a_skipped_line(cli, small_lm_path, tmp_path):
    lines = ['{"prompt": "hi"}', '{"prompt": "x", "skip": ["zebra"]}', '{"prompt": "y", "skip": ["#99999"]}',
             '{"prompt": "there"}']
    r, rows = batch(cli, small_lm_path, tmp_path, lines)
    assert r.code == 1 and "p.jsonl:2: skipped: " in r.err and "p.jsonl:3: skipped: " in r.err
    assert [row["id"] for row in rows] == ["1", "4"]


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0c", "\x1c"])
def test_one_prompt_per_line(cli, small_lm_path, tmp_path, sep):
    line = json.dumps({"prompt": f"a{sep}b", "id": "x"}, ensure_ascii=False)
    r, rows = batch(cli, small_lm_path, tmp_path, [line, '{"prompt": "c"}'])
    assert r.code == 0 and [row["id"] for row in rows] == ["x", "2"] and rows[0]["prompt"] == f"a{sep}b"
    (tmp_path / "o.jsonl").unlink()
    r, rows = batch(cli, small_lm_path, tmp_path, [f"one{sep}two", "three"], suffix=".txt")
    assert r.code == 0 and [row["id"] for row in rows] == ["1", "2"]


@pytest.mark.parametrize("where", ["dir", "uncreatable"])
def test_unwritable_out_is_a_clear_error(cli, small_lm_path, tmp_path, where):
    src = tmp_path / "p.txt"
    src.write_text("hello\n")
    (tmp_path / "file").write_text("x")
    out = tmp_path if where == "dir" else tmp_path / "file" / "sub" / "o.jsonl"
    r = generate(cli, small_lm_path, "--batch", str(src), "--out", str(out))
    assert_clear_failure(r)
    assert r.code == 1


# -- checkpoints --------------------------------------------------------------------------------------------------
def hostile(small_lm_path, tmp_path, arrays=None, **changes):
    good_arrays, header = load_checkpoint(small_lm_path)
    path = tmp_path / "bad.npz"
    write_zip(path, members(good_arrays if arrays is None else arrays, {**header, **changes}))
    return path, header


def refused_everywhere(cli, path):
    with pytest.raises(CheckpointError):
        Engine(path)
    r = generate(cli, path, "hi")
    assert_clear_failure(r)
    assert r.code == 1 and r.err.count("\n") == 1 and len(r.err) < 2000, r.err[:300]


@pytest.mark.parametrize("how", ["reversed", "empty-token"])
def test_vocab_without_specials_is_refused(cli, small_lm_path, tmp_path, how):
    vocab = load_checkpoint(small_lm_path)[1]["vocab"]
    vocab = vocab[::-1] if how == "reversed" else vocab[:-1] + [""]
    path, _ = hostile(small_lm_path, tmp_path, vocab=vocab)
    refused_everywhere(cli, path)


@pytest.mark.parametrize("change", [{"dropout": "x"}, {"dropout": 1.5}, {"layers": 0}],
                         ids=["dropout-str", "dropout-1.5", "layers-0"])
def test_nonsense_config_is_refused(cli, small_lm_path, tmp_path, change):
    arrays, header = load_checkpoint(small_lm_path)
    if change.get("layers") == 0:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("lstm")}
    path, _ = hostile(small_lm_path, tmp_path, arrays=arrays, config={**header["config"], **change})
    refused_everywhere(cli, path)


def test_huge_layer_count_is_refused_quickly_and_briefly(cli, small_lm_path, tmp_path):
    header = load_checkpoint(small_lm_path)[1]
    path, _ = hostile(small_lm_path, tmp_path, config={**header["config"], "layers": 20_000})
    refused_everywhere(cli, path)


@pytest.mark.parametrize("field", ["note", "model_kind"])
def test_info_escapes_control_characters(cli, small_lm_path, tmp_path, field):
    change = {"note": "\x1b]0;pwned\x07\x1b[2J"} if field == "note" else {"model": "lm\x1b[31m"}
    path, _ = hostile(small_lm_path, tmp_path, **change)
    r = cli(["info", str(path)])
    assert r.code == 0 and not CONTROL.search(r.out), repr(r.out[-120:])


def test_reproductions_use_real_files(small_lm_path, tmp_path):
    """(Not a bug: the helper above writes files the loader accepts when nothing is changed.)"""
    path, header = hostile(small_lm_path, tmp_path)
    arrays, h = load_checkpoint(path)
    assert h["config"] == header["config"] and np.isfinite(arrays["embed.W"]).all()
    Engine(path)


# -- issue 20, item 12: what a checkpoint may carry --------------------------------------------------------------
def test_a_vocabulary_with_escape_sequences_is_refused(small_lm_path, tmp_path, capsys):
    _, header = load_checkpoint(small_lm_path)
    vocab = list(header["vocab"])
    vocab[-1] = "\x1b[2J\x1b[H\x1b[41mPWNED"
    path, _ = hostile(small_lm_path, tmp_path, vocab=vocab)
    from rnnchat.cli.main import main
    assert main(["generate", "hi", "--checkpoint", str(path)]) == 1
    err = capsys.readouterr().err
    assert "control or separator character" in err and "\x1b" not in err.replace("\\x1b", "")


def test_integer_weights_are_refused(small_lm_path, tmp_path):
    arrays, _ = load_checkpoint(small_lm_path)
    name = next(n for n in arrays if n.endswith(".b"))
    arrays = {**arrays, name: np.full(arrays[name].shape, 10**18, np.int64)}
    path, _ = hostile(small_lm_path, tmp_path, arrays=arrays)
    with pytest.raises(CheckpointError, match="floating-point"):
        Engine(path)
