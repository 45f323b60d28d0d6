"""Batch mode: same results as prompts run alone, input order, malformed lines, resume."""

import hashlib
import json

import pytest

from rnnchat.cli.main import main
from rnnchat.engine.batch import Job, generate_rows, read_jobs
from rnnchat.sampling import SamplingSettings

S = SamplingSettings(temperature=0.9, seed=11, max_tokens=12)
PROMPTS = ["hello there", "", "i think the movie was good , but the food was bad", "how are you ?",
           "cat dog cat dog", "thanks !"]


def test_batch_equals_each_prompt_alone(engine):
    jobs = [Job(str(i), p, S.with_(seed=100 + i, max_tokens=5 + 3 * i)) for i, p in enumerate(PROMPTS)]
    together = generate_rows(engine.decoder, engine.vocab, jobs)
    assert [r["id"] for r in together] == [j.id for j in jobs]  # every job, once, in order
    for job, res in zip(jobs, together):
        alone = generate_rows(engine.decoder, engine.vocab, [job])[0]
        assert res["token_ids"] == alone["token_ids"] and res["text"] == alone["text"]
        conv = engine.conversation()  # and the interactive path draws the same tokens
        conv.feed(job.prompt)
        ids = [t.id for t in conv.stream(job.settings, stop_ids=(engine.vocab.eot_id,))]
        assert ids == res["token_ids"]
        assert len(res["token_ids"]) <= job.settings.max_tokens


def test_read_jobs_reports_bad_lines_and_keeps_going():
    lines = ['{"prompt": "hi", "temperature": 0}', "not json", '{"prompt": 3}', '{"prompt": "x", "top_p": 7}',
             "", '{"prompt": "ok", "id": "mine", "seed": 5}']
    items = list(read_jobs(lines, S, jsonl=True))
    bad = [(i.line, i.error) for i in items if not isinstance(i, Job)]
    assert [b[0] for b in bad] == [2, 3, 4]
    assert "top-p" in bad[2][1]
    jobs = [i for i in items if isinstance(i, Job)]
    assert [j.id for j in jobs] == ["1", "mine"] and jobs[0].settings.temperature == 0 and jobs[1].settings.seed == 5
    assert jobs[0].settings.seed != S.seed  # per-line seeds derived from the run's seed


def test_an_id_is_a_string_or_an_integer():
    """A list id was written back as Python's repr ("[1, 2]"), which is not the id the script sent."""
    lines = ['{"prompt": "a", "id": 7}', '{"prompt": "b", "id": [1, 2]}', '{"prompt": "c", "id": null}',
             '{"prompt": "d", "id": true}', '{"prompt": "e", "id": 1.5}', '{"prompt": "f", "id": "x"}']
    items = list(read_jobs(lines, S, jsonl=True))
    assert [i.id for i in items if isinstance(i, Job)] == ["7", "x"]
    assert [(i.line, i.error) for i in items if not isinstance(i, Job)] == [
        (2, '"id" must be a string or an integer, got [1, 2]'), (3, '"id" must be a string or an integer, got null'),
        (4, '"id" must be a string or an integer, got true'), (5, '"id" must be a string or an integer, got 1.5')]


def test_a_batch_file_opening_with_a_byte_order_mark_runs_its_first_line(small_lm_path, tmp_path, capsys):
    """The mark made the first JSONL line invalid JSON ("Unexpected UTF-8 BOM"), so it was skipped."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_bytes(b'\xef\xbb\xbf{"prompt": "hi", "id": "a"}\n{"prompt": "there", "id": "b"}\n')
    out = tmp_path / "o.jsonl"
    assert main(["generate", "--batch", str(prompts), "--out", str(out), "--checkpoint", str(small_lm_path),
                 "-n", "4", "-q"]) == 0
    assert [json.loads(l)["id"] for l in out.read_text().splitlines()] == ["a", "b"]
    # a run records the file's bytes, mark included (the text without it would not match a run begun before)
    manifest = json.loads((tmp_path / "o.jsonl.run.json").read_text())
    assert manifest["prompts_sha256"] == hashlib.sha256(prompts.read_bytes()).hexdigest()


@pytest.mark.parametrize("command,noun", [("generate", "prompts"), ("chat", "conversations")])
def test_a_batch_file_with_nothing_to_run_is_an_error_and_writes_nothing(command, noun, small_lm_path, tmp_path,
                                                                         capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    out = tmp_path / "o.jsonl"
    assert main([command, "--batch", str(empty), "--out", str(out), "--checkpoint", str(small_lm_path), "-q"]) == 1
    assert f"no {noun} in it" in capsys.readouterr().err and not out.exists()


def test_cli_batch_in_order_with_resume(small_lm_path, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"prompt number {i} hello" for i in range(10)) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["generate", "--batch", str(prompts), "--out", str(out), "--checkpoint", str(small_lm_path),
            "-s", "1", "-n", "8", "--batch-size", "4", "-q"]
    assert main(argv) == 0
    full = out.read_text().splitlines()
    assert [json.loads(l)["id"] for l in full] == [str(i) for i in range(1, 11)]
    # simulate a crash after 3 results and a torn 4th line, then resume
    out.write_text("\n".join(full[:3]) + "\n" + full[3][:20])
    assert main(argv) == 0
    assert out.read_text().splitlines() == full
    assert "resuming: 3 results" in capsys.readouterr().err


def test_resume_of_a_run_whose_manifest_predates_a_new_setting(small_lm_path, tmp_path, capsys):
    """A run started before `guidance` existed has no such key in OUT.run.json: it resumes (the new setting at
    its default is the same run); another value of it is another run."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"prompt {i}" for i in range(4)) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["generate", "--batch", str(prompts), "--out", str(out), "--checkpoint", str(small_lm_path),
            "-s", "1", "-n", "5", "-q"]
    assert main(argv) == 0
    full = out.read_text().splitlines()
    side = tmp_path / "out.jsonl.run.json"
    manifest = json.loads(side.read_text())
    del manifest["settings"]["guidance"]
    side.write_text(json.dumps(manifest))
    out.write_text("\n".join(full[:2]) + "\n")
    assert main(argv) == 0 and out.read_text().splitlines() == full
    assert main(argv + ["--guidance", "1"]) == 1  # refused, as another run's file is
    assert "settings differ" in capsys.readouterr().err


def test_cli_batch_malformed_line_exit_1_rest_done(small_lm_path, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n{oops\n{"prompt": "there"}\n')
    out = tmp_path / "o.jsonl"
    rc = main(["generate", "--batch", str(prompts), "--out", str(out), "--checkpoint", str(small_lm_path), "-q"])
    assert rc == 1
    assert "p.jsonl:2" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 2


def test_cli_generate_streams_text_only_and_is_reproducible(small_lm_path, capsys):
    argv = ["generate", "hello there", "--checkpoint", str(small_lm_path), "-s", "4", "-n", "10"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first and first.strip()


@pytest.mark.parametrize("flags", [["--temperature", "-1"], ["--top-p", "0"], ["--top-p", "1.5"],
                                   ["--skip", "zebra"], ["--num-samples", "0"], ["--batch", "x.txt"]])
def test_cli_invalid_settings_exit_2(small_lm_path, flags, capsys):
    try:
        code = main(["generate", "hi", "--checkpoint", str(small_lm_path), *flags])
    except SystemExit as e:  # argparse's own usage errors (e.g. --num-samples 0)
        code = e.code
    assert code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [(["hi"], "PROMPT"), (["--echo"], "--echo"), (["--num-samples", "2"], "--num-samples"),
                                          (["--json"], "--json")])
def test_flags_a_batch_would_ignore_are_usage_errors(small_lm_path, tmp_path, flags, named, capsys):
    """generate --batch ran and ignored them (adversarial finding)."""
    (tmp_path / "p.txt").write_text("hello\n")
    argv = ["generate", "--batch", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o.jsonl"), "-m", str(small_lm_path)]
    assert main([*argv, *flags]) == 2
    assert f"{named}: not with --batch" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()


def test_cli_generate_json_samples(small_lm_path, capsys):
    assert main(["generate", "hi", "--checkpoint", str(small_lm_path), "--json", "--num-samples", "3",
                 "-s", "2", "-n", "4"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and [r["seed"] for r in rows] == [2, 3, 4]
    assert all(set(r) >= {"prompt", "text", "tokens", "settings", "seed", "timing"} for r in rows)


def test_cli_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", "hi", "--checkpoint", str(tmp_path / "nope.npz")]) == 1
    assert "nope.npz" in capsys.readouterr().err


def test_cli_generate_reads_as_one_text_with_its_prompt(small_lm_path, capsys, monkeypatch):
    """Issue 15, item 2: a continuation is spaced and capitalised as part of its prompt; --echo prints the
    prompt first; several samples are headed; -m names the model; no prompt on a terminal is a usage error."""
    from rnnchat.engine.engine import Engine
    from rnnchat.engine.tokens import continued
    from rnnchat.sampling import SamplingSettings
    argv = ["generate", "the cat sat on", "-m", str(small_lm_path), "-s", "4", "-n", "8"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    conv = Engine(small_lm_path).conversation()
    conv.feed("the cat sat on")
    tokens = list(conv.stream(SamplingSettings(seed=4, max_tokens=8), stop_ids=(conv.vocab.eot_id,)))
    expect = "".join(t.text for t in continued("the cat sat on", (t for t in tokens), conv.vocab))
    assert text == expect + "\n"
    assert not text[:1].isupper()  # a continuation, not a new sentence
    assert main([*argv, "--echo"]) == 0
    assert capsys.readouterr().out == "the cat sat on" + expect + "\n"
    assert main([*argv, "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- sample 1 ---\n") and "\n--- sample 2 ---\n" in out

    class Tty:
        def isatty(self):
            return True
    monkeypatch.setattr("sys.stdin", Tty())
    assert main(["generate", "-m", str(small_lm_path)]) == 2
    assert "give PROMPT" in capsys.readouterr().err


VARIED = [Job(str(i), p, S.with_(seed=200 + i, max_tokens=4 + 5 * (i % 3), temperature=0.7 + 0.2 * (i % 4)))
          for i, p in enumerate(PROMPTS * 3)]


def in_batches(engine, jobs, size):
    return [r for s in range(0, len(jobs), size) for r in generate_rows(engine.decoder, engine.vocab, jobs[s:s + size])]


def test_a_row_does_not_depend_on_its_batch(engine):
    """Issue 19: a result is the same, bit for bit (probabilities too), whatever batch it ran in: alone, with a
    few others, with all, after the rows around it have finished."""
    alone = in_batches(engine, VARIED, 1)
    for size in (2, 5, len(VARIED)):
        assert in_batches(engine, VARIED, size) == alone


@pytest.fixture(scope="module")
def shipped():
    from rnnchat.engine.engine import Engine
    return Engine()


def test_the_shipped_lm_rows_do_not_depend_on_their_batch(shipped):
    """The same on the shipped LM's shapes (2 x 512, 10k vocabulary), where a one-row product takes another
    BLAS kernel (GEMV) than a batch (GEMM), whose sums differ in the last bits."""
    engine = shipped
    jobs = [Job(str(i), p, SamplingSettings(seed=i, max_tokens=6 + i % 5)) for i, p in enumerate(PROMPTS * 2)]
    alone = in_batches(engine, jobs, 1)
    assert in_batches(engine, jobs, 5) == alone and in_batches(engine, jobs, len(jobs)) == alone


def test_step_rows_of_one_row_equal_its_row_of_a_batch(shipped):
    import numpy as np
    from rnnchat.engine.rows import step_rows
    engine, rng = shipped, np.random.default_rng(0)
    state = [(rng.standard_normal((5, 512)).astype(np.float32), rng.standard_normal((5, 512)).astype(np.float32))
             for _ in range(2)]
    ids = np.array([4, 9, 5, 12, 7])
    logits, new = step_rows(engine.decoder, ids, state)
    for r in range(5):
        one, one_state = step_rows(engine.decoder, ids[r:r + 1], [(h[r:r + 1], c[r:r + 1]) for h, c in state])
        assert np.array_equal(one, logits[r:r + 1])
        assert len(one_state) == len(new) == len(state)
        assert all(np.array_equal(a[0], b[0][r:r + 1]) and np.array_equal(a[1], b[1][r:r + 1])
                   for a, b in zip(one_state, new))


def _same(a, b):
    import numpy as np
    return np.array_equal(a[0], b[0]) and all(np.array_equal(x, y) for s, t in zip(a[1], b[1]) for x, y in zip(s, t))


def test_step_rows_gives_every_row_its_block_bits_whether_it_takes_one_product_or_blocks(shipped):
    """The first time a row count is met both ways are run; from then on one product where they agreed (the
    SkylakeX kernels), blocks of 8 where they did not (the Haswell ones): the bits are a block's either way."""
    import numpy as np
    from rnnchat.engine import rows
    from rnnchat.runtime import blas_threads
    engine, rng = shipped, np.random.default_rng(1)
    H, layers = engine.decoder.hidden, len(engine.decoder.initial_state(1))
    for n in (2, 5, 8, 9, 16, 17, 32, 33, 64, 65):
        state = [(rng.standard_normal((n, H)).astype(np.float32), rng.standard_normal((n, H)).astype(np.float32))
                 for _ in range(layers)]
        ids = rng.integers(0, len(engine.vocab), n)
        blocks = rows._step_blocks(engine.decoder, ids, state)
        assert _same(rows.step_rows(engine.decoder, ids, state), blocks)  # (checks, then keeps the verdict)
        assert _same(rows.step_rows(engine.decoder, ids, state), blocks)  # (by the verdict)
    assert all((n, blas_threads()) in rows._one_product_ok[engine.decoder] for n in (2, 5, 9, 16, 17, 32, 33, 64))


def test_a_blas_that_rounds_rows_by_their_count_keeps_the_blocks(engine):
    """A product whose rows change with its row count (as OpenBLAS's Haswell kernels round) is never used as one
    product: every call gives the 8-row bits, and the verdict is kept as no."""
    import numpy as np
    from rnnchat.engine import rows

    class ByCount(type(engine.decoder)):
        def step(self, ids, state):
            logits, new = super().step(ids, state)
            return logits + np.float32(len(ids) / 64), new

    decoder = ByCount(engine.decoder.model)
    state = decoder.initial_state(5)
    ids = np.array([4, 9, 5, 12, 7])
    eight = decoder.step(np.concatenate([ids, ids[:3]]), [(np.concatenate([h, h[:3]]), np.concatenate([c, c[:3]]))
                                                          for h, c in state])
    for _ in range(2):
        logits, _ = rows.step_rows(decoder, ids, state)
        assert np.array_equal(logits, eight[0][:5])
    assert list(rows._one_product_ok[decoder].values()) == [False]


def test_one_product_is_taken_where_it_agrees_and_the_verdict_is_kept_per_thread_count(engine, monkeypatch):
    """Agreed once: later steps of that row count are one product. A thread count whose products round by their
    row count has its own verdict, and its rows get the block bits."""
    import numpy as np
    from rnnchat.engine import rows
    threads, calls = [(2,)], []
    monkeypatch.setattr(rows, "blas_threads", lambda: threads[0])

    class ByThreads(type(engine.decoder)):
        def step(self, ids, state):  # on "2 threads" every row as in a block of 8 copies of itself, whatever n
            calls.append(len(ids))
            step = super().step
            outs = [step(np.repeat(ids[r:r + 1], 8), [(np.repeat(h[r:r + 1], 8, 0), np.repeat(c[r:r + 1], 8, 0))
                                                      for h, c in state]) for r in range(len(ids))]
            logits = np.concatenate([o[0][:1] for o in outs])
            new = [tuple(np.concatenate([o[1][k][j][:1] for o in outs]) for j in (0, 1)) for k in range(len(state))]
            return (logits + np.float32(len(ids) / 64) if threads[0] == (1,) else logits), new

    decoder, ids = ByThreads(engine.decoder.model), np.array([4, 9, 5, 12, 7])
    state = decoder.initial_state(5)
    rows.step_rows(decoder, ids, state)
    calls.clear()
    rows.step_rows(decoder, ids, state)
    assert calls == [5]  # one product of the 5 rows
    threads[0] = (1,)
    assert np.array_equal(rows.step_rows(decoder, ids, state)[0], rows._step_blocks(decoder, ids, state)[0])
    assert rows._one_product_ok[decoder] == {(5, (2,)): True, (5, (1,)): False}


def test_cli_batch_size_does_not_change_a_line(small_lm_path, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "temperature": 1.2}) + "\n" for p in PROMPTS * 4))
    outs = []
    for size in ("1", "3", "64"):
        out = tmp_path / f"o{size}.jsonl"
        assert main(["generate", "--batch", str(prompts), "--out", str(out), "-m", str(small_lm_path), "-s", "9",
                     "-n", "10", "--batch-size", size, "-q"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_every_line_gets_a_seed_and_jobs_cross_the_wire_unchanged():
    lines = ['{"prompt": "a", "seed": null}', '{"prompt": "b"}', '{"prompt": "c", "seed": 4, "skip": ["x"], '
             '"stop": ["."], "top_k": 0}']
    jobs = list(read_jobs(lines, S, jsonl=True))
    assert jobs[0].settings.seed is not None and jobs[0].settings.seed != jobs[1].settings.seed
    assert [j.settings.seed for j in read_jobs(lines, S, jsonl=True)] == [j.settings.seed for j in jobs]
    for job in jobs:
        assert Job.from_wire(job.to_wire()) == job
