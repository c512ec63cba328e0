"""ivt_lib.reproduction.guards: one run per tier (a lock, tested with real processes) and committed results only from
a clean tree (issue 33, items 5 and 7)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ivt_lib.core import io
from ivt_lib.reproduction import executor, guards, reproduce

REPO = Path(__file__).resolve().parent.parent

# holds the smoke tier's lock under root argv[1] until the file argv[2] exists
HOLDER = """
import sys, time
from pathlib import Path
from ivt_lib.reproduction import guards
root, release = Path(sys.argv[1]), Path(sys.argv[2])
with guards.tier_lock(root, "smoke", "reproduce --tier smoke (the first run)"):
    print("holding", flush=True)
    while not release.exists():
        time.sleep(0.05)
"""

# a second run's CLI (reproduce or seeds) under root argv[1], its work replaced by a marker line
SECOND = """
import sys
from pathlib import Path
from ivt_lib.reproduction import executor, reproduce, seeds
executor.ROOT = Path(sys.argv[1])
reproduce.run = lambda *a, **k: print("second run worked", flush=True) or {}
seeds.run_all = lambda *a, **k: print("second run worked", flush=True) or {"summary": {}}
seeds.markdown = lambda result: []
main = reproduce.main if sys.argv[2] == "reproduce" else seeds.main
sys.exit(main(sys.argv[3:]))
"""


def _python(code: str, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, text=True, **kw)


@pytest.fixture
def holder(tmp_path):
    """A real process holding the smoke tier's lock; ``release()`` lets it finish."""
    release = tmp_path / "release"
    proc = _python(HOLDER, tmp_path, release, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "holding"
    proc.release = lambda: (release.touch(), proc.wait(timeout=30))
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("cli", ["reproduce", "seeds"])
def test_a_second_run_of_the_same_tier_refuses_naming_the_holders_pid(tmp_path, holder, cli):
    """Two reproductions started 2 s apart trained into the same checkpoint folders; nothing refused or waited."""
    second = _python(SECOND, tmp_path, cli, "--tier", "smoke", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 3 and "second run worked" not in out
    assert err.strip() == (f"the smoke tier is already running in PID {holder.pid} (reproduce --tier smoke (the "
                           f"first run), since {json.loads(guards.lock_path(tmp_path, 'smoke').read_text())['since']})"
                           f"; lock file {guards.lock_path(tmp_path, 'smoke')}. Wait for it to finish, or rerun with "
                           "--wait to start when it has.")
    holder.release()
    again = _python(SECOND, tmp_path, cli, "--tier", "smoke", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "second run worked" in out


def test_another_tier_is_not_blocked(tmp_path, holder):
    other = _python(SECOND, tmp_path, "reproduce", "--tier", "full", "--allow-dirty", stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    out, _ = other.communicate(timeout=60)
    assert other.returncode == 0 and "second run worked" in out


def test_wait_queues_behind_the_running_one(tmp_path, holder):
    err = tmp_path / "err.txt"
    with open(err, "w") as fh:
        second = _python(SECOND, tmp_path, "reproduce", "--tier", "smoke", "--wait", stdout=subprocess.PIPE,
                         stderr=fh)
        for _ in range(600):  # until it has started and found the lock held (imports take a while)
            if "waiting" in err.read_text() or second.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        assert second.poll() is None, "it waits while the first run holds the lock"
        assert f"waiting for the smoke tier's run in PID {holder.pid}" in err.read_text()
        holder.release()
        out, _ = second.communicate(timeout=60)
    assert second.returncode == 0 and "second run worked" in out


def test_a_killed_holder_leaves_no_lock(tmp_path, holder):
    """The kernel drops an flock when its process dies: a killed run never blocks the next one."""
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert guards.holder(guards.lock_path(tmp_path, "smoke"))["pid"] == holder.pid  # the stale record is still there
    with guards.tier_lock(tmp_path, "smoke", "after a kill") as path:
        assert guards.holder(path)["pid"] == os.getpid()
    assert guards.holder(path) == {}, "released: no holder recorded"


# ---------------------------------------------------------------------------------------------------------------
# Committed results only from a clean tree
# ---------------------------------------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A git checkout with library code and committed results."""
    for rel, text in (("ivt_lib/x.py", "A = 1\n"), ("results/r.json", "{}\n"), ("figures/f.png", "png"),
                      ("notebooks/00_a.ipynb", "{}"), ("README.md", "# x\n")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    return tmp_path


def test_results_written_by_a_run_do_not_make_the_tree_dirty(repo):
    """A run rewrites tracked results and figures itself: the committed results all said '+dirty' for that."""
    (repo / "results" / "r.json").write_text('{"acc": 1}\n')
    (repo / "figures" / "f.png").write_text("other png")
    (repo / "README.md").write_text("# y\n")
    (repo / "notebooks" / "executed" / "default").mkdir(parents=True)  # executed notebooks: the run's, committed
    (repo / "notebooks" / "executed" / "default" / "00_a.ipynb").write_text("{}")
    assert io.dirty_paths(repo) == [] and not io.git_sha(repo).endswith("+dirty")
    (repo / "ivt_lib" / "x.py").write_text("A = 2\n")
    (repo / "ivt_lib" / "new.py").write_text("B = 1\n")  # untracked code is what the results depend on too
    assert io.dirty_paths(repo) == [" M ivt_lib/x.py", "?? ivt_lib/new.py"]
    assert io.git_sha(repo).endswith("+dirty")


def test_committed_tiers_refuse_a_dirty_tree_unless_allowed(repo, capsys):
    (repo / "ivt_lib" / "x.py").write_text("A = 2\n")
    assert guards.committed_tier("default") and guards.committed_tier("full") and not guards.committed_tier("smoke")
    assert guards.refuse_dirty(repo, "smoke", False, "reproduce") is None  # scratch results: anything goes
    assert guards.refuse_dirty(repo, "default", False, "reproduce") == (
        "refusing to write the default tier's results (results/, committed) from a tree with uncommitted changes to "
        "what they depend on:  M ivt_lib/x.py. Commit or stash them first, so that the results regenerate from a "
        "commit, or pass --allow-dirty to reproduce anyway.")
    assert guards.refuse_dirty(repo, "full", True, "reproduce") is None
    assert "WARNING: writing the full tier's committed results from a tree with uncommitted changes" in \
        capsys.readouterr().err


def test_reproduce_cli_refuses_a_dirty_tree_before_any_work(repo, monkeypatch, capsys):
    (repo / "ivt_lib" / "x.py").write_text("A = 2\n")
    monkeypatch.setattr(executor, "ROOT", repo)
    ran = []
    monkeypatch.setattr(reproduce, "run", lambda *a, **k: ran.append(a) or {})
    assert reproduce.main(["--tier", "default"]) == 2 and ran == []
    assert capsys.readouterr().err.startswith("refusing to write the default tier's results")
    assert not guards.lock_path(repo, "default").exists(), "refused before taking the lock"
    assert reproduce.main(["--tier", "default", "--allow-dirty"]) == 0 and len(ran) == 1


def test_provenance_records_the_threads_and_the_uncommitted_changes():
    import torch  # noqa: F401  (a result computed with torch records its thread count)

    prov = io.provenance({})
    assert prov["threads"]["torch"] == torch.get_num_threads()
    assert isinstance(prov["git_dirty"], list) and prov["git_sha"].endswith("+dirty") == bool(prov["git_dirty"])
