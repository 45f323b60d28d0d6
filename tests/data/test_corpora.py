"""Tests for rnnchat.data.corpora: split rule, real builds, loaders and errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from rnnchat import paths
from rnnchat.data import corpora
from rnnchat.data.corpora import SPLITS, CorpusError

DEFAULT_DOWNLOADS = corpora.default_root() / "_downloads"


# --- split rule ---------------------------------------------------------------


def test_assign_split_matches_rule_and_is_deterministic() -> None:
    for key in ["chitchat:0", "chitchat:11", "chitchat:19", "vader:tweets:1", "x"]:
        h = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 100
        want = "train" if h < 90 else "val" if h < 95 else "test"
        assert corpora.assign_split(key) == corpora.assign_split(key) == want
    # pinned values: a change of rule would silently reshuffle every corpus
    assert [corpora.assign_split(f"chitchat:{i}") for i in (0, 19, 11)] == ["train", "val", "test"]


def test_assign_split_proportions() -> None:
    n = 20_000
    counts = Counter(corpora.assign_split(f"chitchat:conv-{i}") for i in range(n))
    assert set(counts) == set(SPLITS)
    assert abs(counts["train"] / n - 0.90) < 0.01
    assert abs(counts["val"] / n - 0.05) < 0.007
    assert abs(counts["test"] / n - 0.05) < 0.007


# --- manifests ----------------------------------------------------------------


@pytest.mark.parametrize("name", corpora.NAMES)
def test_manifest_consistent(name: str) -> None:
    man = corpora.manifest(name)
    assert man["name"] == name and man["license"] == "MIT"
    assert len(man["source"]["sha256"]) == 64
    total, splits = man["expected"]["total"], man["expected"]["splits"]
    assert set(splits) == set(SPLITS)
    for key, value in total.items():
        assert sum(s[key] for s in splits.values()) == value
    path = paths.MANIFESTS / f"{name}.json"
    assert corpora.manifest_hash(name) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unknown_name_and_split() -> None:
    with pytest.raises(CorpusError, match="unknown corpus"):
        corpora.manifest("nope")
    with pytest.raises(CorpusError, match="unknown split"):
        corpora.load_vader("dev", root=Path("/nonexistent"))


# --- loaders and error messages -------------------------------------------------


@pytest.mark.parametrize("loader,name", [(corpora.load_chitchat, "chitchat"),
                                         (corpora.load_vader, "vader")])
def test_loader_missing_files(tmp_path: Path, loader, name: str) -> None:
    with pytest.raises(CorpusError, match=f"rnnchat corpus build {name}"):
        loader("train", root=tmp_path)


@pytest.mark.parametrize("name, line", [
    ("vader", '{"id": "1", "domain": "tweets", "rating": 2.5, "text": "go'),  # cut mid-write
    ("vader", '{"id": "1", "domain": "tweets", "rating": "2.5", "text": "good"}'),
    ("vader", '["1", "tweets", 2.5, "good"]'),
    ("vader", '{"id": "1", "domain": "zzz", "rating": 1, "text": "hi"}'),   # (corpus stats: KeyError)
    ("vader", '{"id": "1", "domain": "news", "rating": NaN, "text": "hi"}'),  # (scored silently)
    ("vader", '{"id": "1", "domain": "news", "rating": 99, "text": "hi"}'),
    ("chitchat", '{"id": "c1", "turns": ["hello"]}'),
    ("chitchat", '{"id": "c1"}'),
])
def test_a_damaged_build_is_a_clear_error_with_the_fix(tmp_path: Path, capsys, monkeypatch, name: str, line: str) -> None:
    """`corpus stats` and `eval sentiment` on a damaged build were JSONDecodeError and TypeError tracebacks."""
    from rnnchat.cli.main import main
    good = {"vader": '{"id": "0", "domain": "tweets", "rating": -1.0, "text": "bad"}',
            "chitchat": '{"id": "c0", "turns": [["hi", "there"]], "senders": ["a"]}'}[name]
    for split in SPLITS:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"{split}.jsonl").write_text(good + "\n" + (line + "\n" if split == "val" else ""))
    with pytest.raises(CorpusError, match=rf"val.jsonl is damaged \(line 2: .*\); fix: rnnchat corpus build {name}"):
        corpora._load(name, "val", tmp_path)
    monkeypatch.setenv("RNNCHAT_CORPORA", str(tmp_path))
    assert main(["corpus", "stats", name]) == 1
    assert "is damaged" in capsys.readouterr().err


def test_an_unknown_corpus_name_is_a_usage_error(capsys) -> None:
    from rnnchat.cli.main import main
    for command in ("build", "stats"):
        assert main(["corpus", command, "vader", "bogus"]) == 2
        assert "unknown corpus 'bogus'" in capsys.readouterr().err


def test_env_var_overrides_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNCHAT_CORPORA", str(tmp_path))
    assert corpora.default_root() == tmp_path
    with pytest.raises(CorpusError, match=str(tmp_path)):
        corpora.load_chitchat("val")


def test_missing_package_names_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "chitchat_dataset", None)  # import now fails
    with pytest.raises(CorpusError, match=r"pip install 'rnnchat\[train\]'"):
        corpora.build("chitchat", root=tmp_path, progress=False)


def test_failed_download_names_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(subprocess, "run", offline)
    with pytest.raises(CorpusError, match="pip download --no-deps --no-binary :all:"):
        corpora.build("vader", root=tmp_path, progress=False)
    assert not (tmp_path / "vader").exists()


# --- real builds ----------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Build both corpora once into a temp dir (vader sdist from the shared cache)."""
    root = tmp_path_factory.mktemp("corpora")
    downloads = DEFAULT_DOWNLOADS if DEFAULT_DOWNLOADS.is_dir() else root / "_downloads"
    out = {}
    try:
        out["chitchat"] = corpora.build("chitchat", root=root, progress=False)
    except CorpusError as e:
        out["chitchat"] = e
    try:
        out["vader"] = corpora.build("vader", root=root, progress=False, downloads=downloads)
    except CorpusError as e:
        out["vader"] = e
    return root, out


def _get(built: tuple[Path, dict], name: str) -> tuple[Path, dict]:
    root, out = built
    if isinstance(out[name], CorpusError):
        pytest.skip(f"{name} unavailable: {out[name]}")
    return root, out[name]


def test_build_chitchat_counts(built) -> None:
    root, st = _get(built, "chitchat")
    assert st["total"]["conversations"] == 7168
    assert st["total"]["turns"] == 138_737
    assert st["total"]["messages"] == 258_145
    assert 0.9 < st["vocab"]["val_coverage"] <= 1.0
    assert corpora.stats("chitchat", root=root) == st
    assert "7,168" in corpora.format_stats(st)


def test_chitchat_records_and_disjoint_splits(built) -> None:
    root, _ = _get(built, "chitchat")
    seen: dict[str, str] = {}
    messages = 0
    for split in SPLITS:
        for conv in corpora.load_chitchat(split, root=root):
            assert conv["id"] not in seen, f"{conv['id']} in {seen.get(conv['id'])} and {split}"
            seen[conv["id"]] = split
            assert corpora.assign_split(f"chitchat:{conv['id']}") == split
            assert len(conv["senders"]) == len(conv["turns"]) >= 1
            assert all(m == m.strip() for turn in conv["turns"] for m in turn)
            messages += sum(len(turn) for turn in conv["turns"])
    assert len(seen) == 7168 and messages == 258_145


def test_build_vader_counts(built) -> None:
    root, st = _get(built, "vader")
    assert st["total"] == {"sentences": 23_703, "tweets": 4200, "movies": 10_605,
                           "products": 3708, "news": 5190}
    assert corpora.stats("vader", root=root) == st
    assert "23,703" in corpora.format_stats(st)


def test_vader_records_and_disjoint_splits(built) -> None:
    root, _ = _get(built, "vader")
    seen: dict[tuple[str, str], str] = {}
    for split in SPLITS:
        for rec in corpora.load_vader(split, root=root):
            key = (rec["domain"], rec["id"])
            assert key not in seen, f"{key} in {seen.get(key)} and {split}"
            seen[key] = split
            assert corpora.assign_split(f"vader:{rec['domain']}:{rec['id']}") == split
            assert isinstance(rec["rating"], float) and -4.0 <= rec["rating"] <= 4.0
            assert rec["text"] and rec["text"] == rec["text"].strip()
    assert len(seen) == 23_703
