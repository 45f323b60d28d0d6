"""Issue 20: a reader that goes away (`| head`) ends the command quietly, a closed stdout is a clear error, and a
FIFO or device given as a checkpoint or conversation is refused instead of hanging."""

import os
import subprocess
import sys

import pytest

from rnnchat.cli.main import main


def run_piped(argv, read_bytes: int, timeout: float = 60):
    """Run `python -m rnnchat ARGV`, read a few bytes of its stdout and close the pipe (as `head -c` does)."""
    p = subprocess.Popen([sys.executable, "-m", "rnnchat", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    p.stdout.read(read_bytes)
    p.stdout.close()
    err = p.stderr.read().decode()
    return p.wait(timeout), err


@pytest.mark.parametrize("argv", [["generate", "hi", "-n", "500"], ["info", "{lm}", "--json", "--vocab"],
                                  ["generate", "hi", "-n", "40", "--json", "--num-samples", "50"]])
def test_a_closed_pipe_ends_quietly(small_lm_path, argv):
    argv = [a.replace("{lm}", str(small_lm_path)) for a in argv]
    if argv[0] == "generate":
        argv += ["--checkpoint", str(small_lm_path)]
    code, err = run_piped(argv, 10)
    assert code in (0, 141) and "Traceback" not in err and "Exception" not in err, err


def test_closed_stdout_is_a_clear_error(small_lm_path):
    r = subprocess.run([sys.executable, "-m", "rnnchat", "generate", "hi", "--checkpoint", str(small_lm_path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       preexec_fn=lambda: os.close(1), timeout=60)
    assert r.returncode == 2 and "standard output is closed" in r.stderr.decode()


@pytest.mark.parametrize("argv", [["info", "{f}"], ["generate", "hi", "--checkpoint", "{f}"],
                                  ["sentiment", "hi", "--checkpoint", "{f}"]])
def test_a_fifo_is_refused_not_waited_on(tmp_path, capsys, argv):
    fifo = tmp_path / "f.npz"
    os.mkfifo(fifo)
    assert main([a.replace("{f}", str(fifo)) for a in argv]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_a_fifo_as_the_last_conversation_is_set_aside(make_session, data_dir):
    data_dir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(data_dir / "last.npz")
    s = make_session()
    note = s.restore()
    assert note and "not a regular file" in note and "moved to" in note and not (data_dir / "last.npz").exists()
