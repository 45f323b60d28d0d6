"""Packaging (issue 15, item 1): a wheel built from this tree, installed into a fresh virtualenv outside it,
runs `generate`, `sentiment` and a piped `repl` from another directory on the shipped models it carries.

The virtualenv sees this interpreter's site-packages for the dependencies (no network needed) but gets
rnnchat only from the wheel; the test checks that the package it imports is the installed one.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    wheels = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, timeout=600)
    [wheel] = wheels.glob("rnnchat-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # pip from this interpreter installs into the venv (--prefix keeps it out of the editable install)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--prefix",
                    str(env_dir), "--ignore-installed", str(wheel)], check=True, capture_output=True, timeout=600)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RNNCHAT_")}
    env |= {"RNNCHAT_DATA_DIR": str(base / "data"), "RNNCHAT_CONFIG": str(base / "config.toml"),
            "PYTHONNOUSERSITE": "1"}
    return python, elsewhere, env, wheel


def run(installed, *argv, stdin=""):
    python, elsewhere, env, _ = installed
    return subprocess.run([str(python), "-m", "rnnchat", *argv], cwd=elsewhere, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_the_wheel_carries_the_models_and_runs_from_anywhere(installed):
    python, elsewhere, env, wheel = installed
    where = subprocess.run([str(python), "-c", "import rnnchat, rnnchat.paths as p; print(rnnchat.__file__); "
                            "print(p.lm_checkpoint())"], cwd=elsewhere, env=env, capture_output=True, text=True,
                           check=True).stdout.split("\n")
    assert str(ROOT) not in where[0] and "venv" in where[0]  # the installed package, not this tree
    assert Path(where[1]).is_file()
    r = run(installed, "generate", "hello there", "-n", "5", "-s", "1")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = run(installed, "sentiment", "I love this")
    assert r.returncode == 0 and r.stdout.startswith("positive"), r.stderr
    r = run(installed, "repl", "--candidates", "1", "-n", "5", stdin="hello\n/quit\n")
    assert r.returncode == 0 and "you> hello" in r.stdout and "rnnchat> " in r.stdout, r.stderr
    r = run(installed, "paths")
    assert r.returncode == 0 and "venv" in r.stdout.splitlines()[0]
