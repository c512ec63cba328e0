"""ivt_lib.reproduction.lanes: the dependency graph, the thread shares, the scheduler (real child processes), and
reproduce.run(jobs>1) with the same keys and stamps as the serial run."""
import json
import os
import subprocess
import sys
import time

import pytest

from ivt_lib.reproduction import executor, lanes, reproduce

from test_reproduce import STEMS, TIER, sandbox  # noqa: F401  (the fixture)

REAL = [p.stem for p in executor.notebooks()]


def test_graph_of_the_real_notebooks():
    g = lanes.graph(REAL, [1, 2])
    assert g["00_base_model"] == g["01_naive_iteration_collapse"] == g["02_teacher_data_synthesis"] == []
    assert set(g["03_sft"]) == {"00_base_model", "02_teacher_data_synthesis"}
    assert "03_sft" in g["04_grpo"]
    assert g["seed 1 03_sft"] == g["seed 2 03_sft"] == lanes.SEED_NEEDS
    assert g["seed 1 04_grpo"] == ["seed 1 03_sft"]
    assert set(g[lanes.SUMMARY]) == {"03_sft", "04_grpo", "seed 1 04_grpo", "seed 2 04_grpo"}  # and seed 0's
    assert set(g["05_evaluation"]) == set(REAL[:REAL.index("05_evaluation")]) | {lanes.SUMMARY}
    assert "05_evaluation" in g["06_explore"]
    assert lanes.SUMMARY not in lanes.graph(REAL, [])  # no seeds, no summary
    assert lanes.graph(["00_base_model", "07_new"], [])["07_new"] == ["00_base_model"]  # unknown: serial order


def test_downstream_counts_what_waits():
    d = lanes.downstream(lanes.graph(REAL, [1]))
    assert d["06_explore"] == 0 and d["05_evaluation"] == 1
    assert d["02_teacher_data_synthesis"] > d["03_sft"] > d["01_naive_iteration_collapse"]


@pytest.mark.parametrize("jobs,busy,ready,cores,want", [
    (2, 0, 2, 2, 1), (2, 0, 1, 2, 2), (2, 1, 1, 2, 1), (1, 0, 3, 2, 2), (3, 0, 5, 16, 5), (4, 0, 1, 1, 1)])
def test_threads_for(jobs, busy, ready, cores, want):
    assert lanes.threads_for(jobs, busy, ready, cores) == want


def _child(record_dir, fail=False, sleep=0.3):
    """A start() that runs a real child process recording its start, end and thread setting."""
    def start(task, threads, log):
        code = (f"import json,os,sys,time; t=time.time(); time.sleep({sleep}); "
                f"json.dump({{'start': t, 'end': time.time(), 'threads': os.environ['OMP_NUM_THREADS']}}, "
                f"open({str(record_dir / task.name)!r}, 'w')); sys.exit({int(fail and task.name == 'b')})")
        env = {**os.environ, **{k: str(threads) for k in lanes.THREAD_ENV}}
        log.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", code], env=env)
    return start


def test_schedule_respects_needs_and_runs_side_by_side(tmp_path):
    done = []
    tasks = [lanes.Task("a", [], []), lanes.Task("b", [], []), lanes.Task("c", [], ["a", "b"], done.append),
             lanes.Task("d", [], ["gone"])]  # a need that is not a task (up to date): satisfied
    times = lanes.schedule(tasks, 2, tmp_path / "logs", start=_child(tmp_path), poll_s=0.05, cores=2)
    rec = {n: json.loads((tmp_path / n).read_text()) for n in "abcd"}
    assert set(times) == set("abcd") and len(done) == 1
    assert rec["c"]["start"] >= max(rec["a"]["end"], rec["b"]["end"])
    spans = sorted((r["start"], r["end"]) for r in rec.values())
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most == 2, "two lanes: two tasks at once, never three"
    assert rec["a"]["threads"] == "1" and rec["c"]["threads"] in ("1", "2")


def test_schedule_failure_stops_new_work_and_names_the_task(tmp_path):
    stamped = []
    tasks = [lanes.Task("a", [], [], stamped.append), lanes.Task("b", [], []), lanes.Task("c", [], ["b"])]
    with pytest.raises(RuntimeError, match="b failed"):
        lanes.schedule(tasks, 2, tmp_path / "logs", start=_child(tmp_path, fail=True, sleep=0.2), poll_s=0.05)
    assert (tmp_path / "a").exists() and stamped, "the task running beside the failure finished and was stamped"
    assert not (tmp_path / "c").exists(), "what needs the failed task never starts"


class _Exited:
    def __init__(self, rc: int):
        self.rc = rc

    def poll(self) -> int:
        return self.rc


@pytest.fixture()
def in_process(monkeypatch):
    """lanes.launch replaced by running the child's main() in this process (so papermill's recorder sees it)."""
    def fake(task, threads, log):
        try:
            return _Exited(lanes.main(task.argv))
        except Exception:  # noqa: BLE001  (a failing child exits non-zero)
            return _Exited(1)
    monkeypatch.setattr(lanes, "launch", fake)


def test_lanes_use_the_serial_runs_keys_both_ways(sandbox, in_process):  # noqa: F811
    rec = sandbox["rec"]
    times = reproduce.run(TIER, jobs=2)
    assert sorted(rec.ran()) == sorted(STEMS) and "wall" in times
    assert reproduce.run(TIER) == {s: 0.0 for s in STEMS} and rec.ran() == []  # the serial run finds them done
    reproduce.run(TIER, force=True)
    rec.ran()
    assert all(v == 0.0 for k, v in reproduce.run(TIER, jobs=2).items() if k != "wall") and rec.ran() == []
    sandbox["params"][STEMS[1]]["n_samples"] = 9  # keys chain in notebook order, as in the serial run
    reproduce.run(TIER, jobs=2)
    assert sorted(rec.ran()) == sorted(STEMS[1:])


def test_lanes_run_seeds_and_stamp_each(sandbox, in_process, monkeypatch):  # noqa: F811
    from ivt_lib.reproduction import seeds

    rec = sandbox["rec"]
    monkeypatch.setattr(executor, "SEEDS_AFTER", STEMS[1])
    ran = []
    monkeypatch.setattr(seeds, "run_seed", lambda tier, s, force=False, extra_rows=False, stems=():
                        ran.append((s, *stems, force, extra_rows)))
    monkeypatch.setattr(seeds, "write_summary", lambda tier, s, extra_rows=False: ran.append(("summary", tuple(s))) or {})
    monkeypatch.setattr(seeds, "markdown", lambda result: [])
    reproduce.run(TIER, seeds=[1, 2], jobs=2)
    assert sorted(ran, key=str) == sorted([(k, stem, True, True) for k in (1, 2) for stem in ("03_sft", "04_grpo")]
                                          + [("summary", (1, 2))], key=str)
    assert ran.index((1, "03_sft", True, True)) < ran.index((1, "04_grpo", True, True))
    assert ran[-1] == ("summary", (1, 2)), "the summary waits for every seed"
    for f in ("seed_1_03_sft.json", "seed_2_04_grpo.json", "seeds.json"):
        assert (sandbox["stamps"] / f).exists()
    rec.ran(), ran.clear()
    assert reproduce.run(TIER, seeds=[1, 2])["seeds"] == 0.0 and ran == []  # the serial run: the same seeds key
    (sandbox["stamps"] / "seeds.json").unlink()  # killed after both seeds, before the summary
    reproduce.run(TIER, seeds=[1, 2], jobs=2)
    assert ran == [("summary", (1, 2))], "finished seeds are not retrained"


def test_cli_rejects_bad_jobs(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--tier", TIER, "--jobs", "0"])
    assert "--jobs" in capsys.readouterr().err


def test_child_seed_needs_a_stem(capsys):
    with pytest.raises(SystemExit):
        lanes.main(["--tier", TIER, "--seed", "1"])
    assert "--stem" in capsys.readouterr().err


def test_child_main_runs_one_notebook(sandbox):  # noqa: F811
    assert lanes.main(["--tier", TIER, "--notebook", STEMS[2]]) == 0
    assert sandbox["rec"].ran() == [STEMS[2]]
    assert (sandbox["nb_dir"] / "executed" / TIER / f"{STEMS[2]}.ipynb").exists()
