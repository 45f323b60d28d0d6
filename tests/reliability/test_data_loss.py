"""Issue 20, data loss: nothing we cannot read back is written, an unreadable conversation is kept aside
before anything autosaves, training never replaces a shipped model by default, and batch output resumes only
into a file of the same run."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from rnnchat import paths
from rnnchat.checkpoint import MAX_HEADER_BYTES, save_checkpoint
from rnnchat.cli.main import main
from rnnchat.engine.engine import Engine
from rnnchat.models.lm import LanguageModel, LMConfig, save_lm
from rnnchat.session.session import ChatSession
from rnnchat.session.store import SessionError
from rnnchat.session.transcript import Mode, Turn
from rnnchat.text import SPECIALS, Vocab


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def another_lm(tmp_path):
    vocab = Vocab(list(SPECIALS) + ["a", "b"])
    path = tmp_path / "other.npz"
    save_lm(LanguageModel(LMConfig(vocab_size=len(vocab), hidden=8, layers=1, dropout=0.0)), vocab, path, {},
            float16=False)
    return path


def newer_format(path):
    """The same conversation file, claiming a format version from the future."""
    from rnnchat.checkpoint import load_checkpoint
    arrays, header = load_checkpoint(path, model="conversation")
    header = {k: v for k, v in header.items() if k not in ("format_version",)}
    save_checkpoint(path, arrays, header)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"format_version": 1', b'"format_version": 99'))


def test_a_sound_last_conversation_of_another_model_is_kept_where_load_lists_it(make_session, data_dir, tmp_path):
    """It was moved into unreadable/ like a damaged file, out of /load's and export's reach."""
    s = make_session()
    list(s.respond("hello there"))
    before = digest(data_dir / "last.npz")
    t = ChatSession(Engine(another_lm(tmp_path)), settings=s.settings)
    note = t.restore()
    [kept] = t.saved_names()
    assert kept.startswith("other-model-") and f"kept as {kept!r}" in note and digest(t.path(kept)) == before
    assert not (data_dir / "unreadable").exists() and not (data_dir / "last.npz").exists()
    t.set_mode(Mode.LM)
    list(t.respond("a"))  # the first reply autosaves a new last.npz: the kept one is untouched
    assert digest(t.path(kept)) == before and (data_dir / "last.npz").exists()
    assert make_session().load(kept) is None  # and its own model loads it


@pytest.mark.parametrize("damage", ["newer format", "garbage", "bad transcript"])
def test_an_unreadable_last_conversation_is_moved_aside_before_any_autosave(make_session, data_dir, tmp_path, damage):
    s = make_session()
    list(s.respond("hello there"))
    last = data_dir / "last.npz"
    if damage == "newer format":
        newer_format(last)
    elif damage == "garbage":
        last.write_bytes(b"PK\x03\x04 not really a zip file")
    elif damage == "bad transcript":
        arrays = dict(np.load(last, allow_pickle=False))
        header = json.loads(bytes(arrays.pop("__header__")).decode())
        header["transcript"] = [1, 2, 3]
        save_checkpoint(last, arrays, header)
    before = digest(last)
    t = ChatSession(s.engine, settings=s.settings)
    note = t.restore()
    assert note and "could not restore" in note and "moved to" in note
    kept = list((data_dir / "unreadable").glob("last-*.npz"))
    assert len(kept) == 1 and str(kept[0]) in note and digest(kept[0]) == before
    t.set_mode(Mode.LM)
    list(t.respond("a"))  # the first reply autosaves a new last.npz: the old one is untouched
    assert digest(kept[0]) == before and last.exists()


def test_a_conversation_too_big_to_read_back_is_never_written(make_session, data_dir):
    s = make_session()
    list(s.respond("hello"))
    last = data_dir / "last.npz"
    before = digest(last)
    s.transcript.append(Turn("user", "x" * (MAX_HEADER_BYTES + 10), Mode.LM))
    with pytest.raises(SessionError, match="a reader accepts"):
        s.save("big")
    assert not (data_dir / "conversations" / "big.npz").exists()
    list(s.respond("more"))
    assert "could not autosave" in s.last_stats.save_error and digest(last) == before


def test_training_writes_into_its_run_dir_and_resume_needs_a_run(chitchat_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNCHAT_CORPORA", str(chitchat_root))
    shipped = paths.lm_checkpoint()
    before = digest(shipped) if shipped.exists() else None
    run = tmp_path / "run"
    argv = ["train", "lm", "--run-dir", str(run), "--hidden", "8", "--vocab-size", "200", "--layers", "1",
            "--max-train-convs", "20", "--epochs", "0.2", "--eval-every", "3", "--batch-size", "4", "--bptt", "8"]
    assert main(argv) == 0
    assert (run / "lm.npz").exists()
    assert (digest(shipped) if shipped.exists() else None) == before
    assert main(["train", "lm", "--resume", "--run-dir", str(tmp_path / "wrong")]) == 2
    err = capsys.readouterr().err
    assert "holds no training run" in err and "Traceback" not in err
    assert not (tmp_path / "wrong" / "lm.npz").exists()


@pytest.fixture
def batch(small_lm_path, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello there\nhow are you\nwhat is that\n")

    def run(*extra, prompts=prompts, out=tmp_path / "out.jsonl"):
        return main(["generate", "--batch", str(prompts), "--out", str(out), "--checkpoint", str(small_lm_path),
                     "-s", "1", "-n", "4", "-q", *extra])
    return run, prompts, tmp_path / "out.jsonl"


def test_batch_refuses_an_output_it_did_not_write(batch, tmp_path, capsys):
    run, prompts, _ = batch
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nno trailing newline")
    before = digest(notes)
    assert run(out=notes) == 1
    assert "was not written by" in capsys.readouterr().err and digest(notes) == before
    before = digest(prompts)
    assert run(out=prompts) == 1
    assert "is the prompts file" in capsys.readouterr().err and digest(prompts) == before


def test_batch_never_writes_its_manifest_over_the_prompts_or_a_file_it_did_not_write(batch, tmp_path, capsys):
    """The manifest OUT.run.json was written over whatever lay there: the prompts file itself (--batch
    r.jsonl.run.json --out r.jsonl), or a user's file of that name."""
    run, prompts, _ = batch
    named = tmp_path / "r.jsonl.run.json"
    named.write_text('{"prompt": "hello", "id": "a"}\n{"prompt": "bye", "id": "b"}\n')
    before = digest(named)
    assert run(prompts=named, out=tmp_path / "r.jsonl") == 1
    assert "is the prompts file itself" in capsys.readouterr().err and digest(named) == before
    mine = tmp_path / "results.jsonl.run.json"
    mine.write_text('{"my": "important settings"}')
    assert run(out=tmp_path / "results.jsonl") == 1
    assert "is not a batch run's manifest" in capsys.readouterr().err and mine.read_text() == '{"my": "important settings"}'
    mine.unlink()
    assert run(out=tmp_path / "results.jsonl") == 0 and run(out=tmp_path / "results.jsonl") == 0  # then: a run, a resume
    (tmp_path / "results.jsonl").unlink()
    assert run(out=tmp_path / "results.jsonl") == 0  # a run's own old manifest is replaced


def test_batch_resume_refuses_other_prompts_or_settings(batch, capsys):
    run, prompts, out = batch
    assert run() == 0
    done = out.read_text()
    prompts.write_text("an inserted line\nhello there\nhow are you\nwhat is that\n")
    assert run() == 1
    assert "prompts file changed" in capsys.readouterr().err and out.read_text() == done
    prompts.write_text("hello there\nhow are you\nwhat is that\n")
    assert run("--temperature", "0.9") == 1
    assert "settings differ" in capsys.readouterr().err and out.read_text() == done
    assert run() == 0 and out.read_text() == done  # the same run: nothing left to do


def test_batch_duplicate_ids_are_refused(batch, tmp_path, capsys):
    run, _, out = batch
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a", "id": "2"}\n{"prompt": "b"}\n')  # the second line's default id is 2
    assert run(prompts=prompts) == 1
    assert "id '2' on lines 1 and 2" in capsys.readouterr().err and not out.exists()


def test_batch_to_special_files_streams_without_reading_back(batch, capsys):
    run, _, _ = batch
    from pathlib import Path
    assert run(out=Path("/dev/null")) == 0
    if Path("/dev/full").exists():
        assert run(out=Path("/dev/full")) == 1
        err = capsys.readouterr().err
        assert "cannot write /dev/full" in err and "Traceback" not in err


def test_keeping_another_model_s_conversation_works_without_hard_links(make_session, data_dir, tmp_path,
                                                                      monkeypatch):
    """FAT and some network mounts refuse os.link: the kept conversation is renamed instead of autosave going off."""
    import errno
    import os

    def no_links(*args):
        raise OSError(errno.EPERM, "Operation not permitted")
    s = make_session()
    list(s.respond("hello there"))
    before = digest(data_dir / "last.npz")
    monkeypatch.setattr(os, "link", no_links)
    t = ChatSession(Engine(another_lm(tmp_path)), settings=s.settings)
    assert "kept as" in t.restore() and not t.autosave_blocked
    [kept] = t.saved_names()
    assert digest(t.path(kept)) == before and not (data_dir / "last.npz").exists()
