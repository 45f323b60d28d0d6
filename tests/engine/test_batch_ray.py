"""`--ray` (issue 19): batch generation and chat replies on Ray Data equal the local batch mode line for line; a
worker killed mid-run is retried with nothing lost or doubled; a rerun after a crash finishes only the missing
ids; clear errors. One local Ray (2 CPUs) serves the whole module."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="pip install 'rnnchat[distributed]' provides Ray")

from rnnchat.cli import batch as cli_batch  # noqa: E402
from rnnchat.cli.main import main  # noqa: E402
from rnnchat.engine.batch import PromptModels, read_jobs, run_manifest  # noqa: E402

PROMPTS = ["hello there", "", "i think the movie was good , but the food was bad", "how are you ?", "cat dog",
           "thanks !", "what do you like ?", "i love that", "no", "the cat is fine"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    lines = [{"prompt": p, "temperature": 0.6 + 0.1 * (i % 5), "max_tokens": 4 + i % 7}
             | ({"seed": 1000 + i} if i % 3 else {}) for i, p in enumerate(PROMPTS * 2)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def generate(small_lm_path, prompts, out, *argv):
    return main(["generate", "--batch", str(prompts), "--out", str(out), "-m", str(small_lm_path), "-s", "5",
                 "-q", *argv])


def test_ray_lines_equal_the_local_batch_mode(small_lm_path, prompts, tmp_path, capsys):
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert generate(small_lm_path, prompts, local, "--batch-size", "7") == 0
    assert generate(small_lm_path, prompts, on_ray, "--ray", "--workers", "2", "--batch-size", "3") == 0
    assert on_ray.read_bytes() == local.read_bytes()
    assert len(local.read_text().splitlines()) == 2 * len(PROMPTS)
    assert "ray: 2 worker(s)" in capsys.readouterr().err


@dataclass(frozen=True)
class CrashOnce:
    """Test-only models: the worker that gets the batch holding `job_id` dies (os._exit) the first time."""

    models: PromptModels
    marker: str
    job_id: str

    def load(self):
        run = self.models.load()

        def crashing(texts):
            if any(json.loads(t)["id"] == self.job_id for t in texts) and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)
            return run(texts)
        return crashing


def test_a_worker_killed_mid_run_is_retried_nothing_lost_or_doubled(small_lm_path, prompts, tmp_path, capsys):
    from rnnchat.sampling import SamplingSettings
    local = tmp_path / "local.jsonl"
    assert generate(small_lm_path, prompts, local, "--batch-size", "4") == 0
    data, lines = cli_batch.read_lines(prompts)
    defaults = SamplingSettings(seed=5, max_tokens=60)
    items = list(read_jobs(lines, defaults, jsonl=True))
    marker, out = tmp_path / "crashed", tmp_path / "ray.jsonl"
    models = CrashOnce(PromptModels(small_lm_path), str(marker), items[9].id)
    with cli_batch.on_ray(models, None, 2, 4) as execute:
        bad = cli_batch.run_jobs(prompts, out, items, run_manifest(data, defaults), execute,
                                 progress=False)
    assert bad == 0 and marker.exists()  # a worker died, and Ray ran its batch again on a new one
    assert out.read_bytes() == local.read_bytes()


def test_a_rerun_after_a_crash_finishes_only_the_missing_ids(small_lm_path, prompts, tmp_path, capsys):
    local, out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert generate(small_lm_path, prompts, local) == 0
    full = local.read_text().splitlines()
    assert generate(small_lm_path, prompts, out, "--ray", "--workers", "1") == 0
    out.write_text("\n".join(full[:7]) + "\n" + full[7][:25])  # a crash after 7 results, the 8th torn
    capsys.readouterr()
    assert generate(small_lm_path, prompts, out, "--ray", "--batch-size", "3") == 0
    assert out.read_text().splitlines() == full
    assert f"resuming: 7 results already in {out}, {len(full) - 7} to go" in capsys.readouterr().err


def test_ray_chat_replies_equal_the_local_ones(small_lm_path, tmp_path, data_dir):
    convs = tmp_path / "convs.jsonl"
    lines = [{"conversation": [p or "hi"]} for p in PROMPTS[:5]]
    lines += [{"conversation": ["hello there", "hi , how are you ?", "good , and you ?"], "seed": 3, "mode": "chat"}]
    convs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    outs = []
    for extra in ([], ["--ray", "--workers", "2", "--batch-size", "2"]):
        out = tmp_path / f"replies{len(outs)}.jsonl"
        assert main(["chat", "--batch", str(convs), "--out", str(out), "-m", str(small_lm_path), "--candidates",
                     "3", "-n", "8", "-s", "1", "-q", *extra]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == len(lines)


def test_more_workers_than_cpus_is_a_usage_error(small_lm_path, prompts, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert generate(small_lm_path, prompts, out, "--ray", "--workers", "3") == 2
    err = capsys.readouterr().err
    assert "--workers 3: the Ray cluster has 2 CPU(s)" in err and "Traceback" not in err
    assert not out.exists()


def test_without_ray_installed_the_error_says_how_to_get_it(small_lm_path, prompts, tmp_path, capsys,
                                                           monkeypatch):
    import rnnchat.engine
    monkeypatch.setitem(sys.modules, "rnnchat.engine.batch_ray", None)  # the import fails, as without Ray
    monkeypatch.delattr(rnnchat.engine, "batch_ray", raising=False)
    assert generate(small_lm_path, prompts, tmp_path / "o.jsonl", "--ray") == 1
    assert "pip install 'rnnchat[distributed]'" in capsys.readouterr().err


def test_an_unreachable_cluster_is_a_clear_error_in_seconds(small_lm_path, prompts, tmp_path):
    r = subprocess.run([sys.executable, "-m", "rnnchat", "generate", "--batch", str(prompts), "--out",
                        str(tmp_path / "o.jsonl"), "-m", str(small_lm_path), "--ray", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 1
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr


@dataclass(frozen=True)
class MissingOnTheNode:
    """Test-only models: the checkpoint is not where the worker looks (a custom -m path absent on a node)."""

    path: str

    def load(self):
        from rnnchat.models.lm import load_lm
        load_lm(self.path)


def test_a_worker_that_cannot_load_the_models_is_a_clear_error(small_lm_path, prompts, tmp_path):
    from rnnchat.cli.generate import InputError
    from rnnchat.sampling import SamplingSettings
    data, lines = cli_batch.read_lines(prompts)
    items = list(read_jobs(lines, SamplingSettings(), jsonl=True))
    with pytest.raises(InputError, match=r"a Ray worker failed \(.*nowhere\.npz"):
        with cli_batch.on_ray(MissingOnTheNode(str(tmp_path / "nowhere.npz")), None, 1, 8) as execute:
            cli_batch.run_jobs(prompts, tmp_path / "o.jsonl", items, {"format": "test"}, execute, False)
    assert (tmp_path / "o.jsonl").read_text() == ""  # claimed, nothing written: a rerun starts it afresh
