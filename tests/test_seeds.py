"""Training seeds: the per-seed parameters, the mean ± sd summary, and one extra seed of the smoke tier end to end."""
import json
import statistics

import pytest

from ivt_lib.analysis import seed_stats
from ivt_lib.reproduction import seeds


def _result(step0: float, last: float, deg: float) -> dict:
    return {"step0": {"acc@0.5": step0}, "last": {"acc@0.5": last}, "oracle_best_step (uses GT)": {"acc@0.5": last},
            "stability": {"degradation": deg, "improve": 0.2, "degrade": 0.3, "stay": 0.5}}


def test_seed_params_redirect_every_output_and_drop_the_extra_rows(tmp_path):
    p = seeds.seed_params("default", 3, tmp_path)
    for stem in ("03_sft", "04_grpo"):
        assert p[stem]["seed"] == 3
        for k in ("runs_dir", "results_dir", "figures_dir"):
            assert p[stem][k].startswith(str(tmp_path / "seed_3")), (stem, k)
    assert p["03_sft"]["traces_dir"] == str(tmp_path / "traces")  # the same teacher data as seed 0
    assert not p["03_sft"]["recipe_ours"] and not p["03_sft"]["ablation_jittered"]
    assert not p["04_grpo"]["refine_credit_ablation"] and not p["04_grpo"]["single_step"]


def test_extra_rows_train_ours_and_refine_credit_but_not_the_other_ablations(tmp_path):
    p = seeds.seed_params("default", 3, tmp_path, extra_rows=True)
    assert p["03_sft"]["recipe_ours"] and p["04_grpo"]["refine_credit_ablation"]
    assert not p["03_sft"]["ablation_jittered"] and not p["04_grpo"]["single_step"]


def test_a_seed_is_done_only_when_every_requested_row_is_there(tmp_path):
    assert not seeds.seed_done(tmp_path)
    (tmp_path / "sft.json").write_text(json.dumps({**_result(0.5, 0.4, 0.1), "ours_recipe": None}))
    (tmp_path / "grpo.json").write_text(json.dumps({**_result(0.5, 0.4, 0.1), "refine_credit": None}))
    assert seeds.seed_done(tmp_path) and not seeds.seed_done(tmp_path, extra_rows=True)
    (tmp_path / "sft.json").write_text(json.dumps({**_result(0.5, 0.4, 0.1), "ours_recipe": _result(0.6, 0.5, 0.1)}))
    assert not seeds.seed_done(tmp_path, extra_rows=True)  # refine credit still missing
    (tmp_path / "grpo.json").write_text(json.dumps({**_result(0.5, 0.4, 0.1), "refine_credit": _result(0.5, 0.5, 0.0)}))
    assert seeds.seed_done(tmp_path, extra_rows=True)


def test_collect_reads_the_extra_rows_nested_in_the_results(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    (res / "sft.json").write_text(json.dumps({**_result(0.5, 0.4, 0.1), "ours_recipe": _result(0.6, 0.55, 0.05)}))
    (res / "grpo.json").write_text(json.dumps({**_result(0.5, 0.45, 0.08), "refine_credit": None}))
    got = seeds.collect("smoke", [], tmp_path, res)
    assert set(got[0]) == {"SFT + IVT", "SFT + GRPO + IVT", "SFT (ours: keep data) + IVT"}  # None: not run
    out = seeds.summarize(got)
    assert out["SFT (ours: keep data) + IVT"]["step 0 Acc@0.5"]["mean"] == 0.6
    assert "SFT + GRPO (ours: refine credit) + IVT" not in out


def test_summary_keeps_every_seed_and_its_mean_and_sd():
    per = {s: {"SFT + IVT": _result(0.5 + s / 100, 0.4, 0.1 * (s + 1)), "SFT + GRPO + IVT": _result(0.5, 0.45, 0.05)}
           for s in (0, 1, 2)}
    out = seeds.summarize(per)
    d = out["SFT + IVT"]["degradation"]
    assert d["per_seed"] == {0: 0.1, 1: 0.2, 2: pytest.approx(0.3)}
    assert d["mean"] == pytest.approx(0.2) and d["sd"] == pytest.approx(statistics.stdev([0.1, 0.2, 0.3]))
    assert out["SFT + GRPO + IVT"]["step 0 Acc@0.5"]["sd"] == 0.0
    lines = seeds.table(out)
    assert lines[2].startswith("| SFT + IVT | 0, 1, 2 | 51.0 ± 1.0 |") and "0.200 ± 0.100" in lines[2]
    one = seeds.summarize({0: per[0]})
    assert one["SFT + IVT"]["degradation"]["sd"] is None and " ± " not in seeds.table(one)[2]  # one seed: no spread


def test_bad_requests_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="seed 0 is the main run"):
        seeds.run_seed("smoke", 0, runs=tmp_path)
    with pytest.raises(FileNotFoundError, match="run notebooks 00-02"):
        seeds.run_seed("smoke", 1, runs=tmp_path)
    with pytest.raises(ValueError, match="no seed results"):
        seeds.summarize({})
    with pytest.raises(ValueError, match="reruns"):
        seeds.run_seed("smoke", 1, runs=tmp_path, stems=("05_evaluation",))


def test_an_extra_smoke_seed_trains_and_is_summarized(smoke_chain):
    root, errors = smoke_chain
    if errors:
        pytest.skip(f"the smoke chain failed first: {sorted(errors)}")
    runs, results = root / "runs_dir", root / "results_dir"
    times = seeds.run_seed("smoke", 1, runs=runs)
    assert set(times) == {"03_sft", "04_grpo"}
    own = json.loads((runs / "seed_1" / "results" / "sft.json").read_text())
    assert own["sft"]["merged"].endswith("seed_1/sft/student/merged") and own["ours_recipe"] is None
    assert seeds.run_seed("smoke", 1, runs=runs) == {}  # done: not rerun
    out = seeds.summarize(seeds.collect("smoke", [1], runs, results))
    assert out["SFT + GRPO + IVT"]["seeds"] == [0, 1] and out["SFT + GRPO + IVT"]["degradation"]["sd"] is not None
    # the extra rows on the same seed: the finished paper-recipe runs are loaded, ours and refine credit are trained
    times = seeds.run_seed("smoke", 1, runs=runs, extra_rows=True)
    assert set(times) == {"03_sft", "04_grpo"}
    logged = json.loads((runs / "seed_1" / "results" / "seconds.json").read_text())["runs"]
    assert [r["extra_rows"] for r in logged] == [False, True]
    again = json.loads((runs / "seed_1" / "results" / "sft.json").read_text())
    assert again["step0"] == own["step0"] and again["ours_recipe"] is not None  # loaded, not retrained: same answers
    assert seeds.seed_done(runs / "seed_1" / "results", extra_rows=True)
    # one notebook alone (a parallel lane's task): the other's timing stays on record
    assert set(seeds.run_seed("smoke", 1, runs=runs, force=True, extra_rows=True, stems=("04_grpo",))) == {"04_grpo"}
    assert set(json.loads((runs / "seed_1" / "results" / "seconds.json").read_text())) >= {"03_sft", "04_grpo"}
    out = seeds.summarize(seeds.collect("smoke", [1], runs, results))
    assert set(out) == set(seeds.ROWS) and out["SFT (ours: keep data) + IVT"]["seeds"] == [0, 1]
    paired = seed_stats.per_seed(runs, [1])
    assert set(paired) == {0, 1} and len(paired[1]["contrasts"]) == len(seed_stats.CONTRASTS)


def test_write_summary_records_its_own_wall_seconds(tmp_path, monkeypatch):
    """The provenance gets the summary's wall time, not the per-seed timings dict (a local of the same name)."""
    got = {}
    monkeypatch.setattr(seeds, "tier_dirs", lambda tier: (tmp_path / "runs", tmp_path / "results"))
    (tmp_path / "runs" / "seed_1" / "results").mkdir(parents=True)
    (tmp_path / "runs" / "seed_1" / "results" / "seconds.json").write_text('{"03_sft": 5.0}')
    monkeypatch.setattr(seeds, "collect", lambda tier, s: {})
    monkeypatch.setattr(seeds, "summarize", lambda r: {})
    monkeypatch.setattr(seed_stats, "per_seed", lambda runs, s: {})
    monkeypatch.setattr(seed_stats, "validation_curves", lambda r: {})
    monkeypatch.setattr(seeds, "write_result", lambda path, obj, params, wall: got.update(obj=obj, wall=wall))
    seeds.write_summary("smoke", [1], False, 12.5)
    assert got["wall"] == 12.5 and got["obj"]["seconds"] == {1: {"03_sft": 5.0}}


def test_write_summary_puts_each_configurations_seeds_into_its_own_result_file(tmp_path):
    """sft.json holds both SFT recipes' per-seed numbers and grpo.json both credit options' (issue 13)."""
    row = lambda acc: {"step0": {"acc@0.5": acc}, "last": {"acc@0.5": acc - 0.1},  # noqa: E731
                       "oracle_best_step (uses GT)": {"acc@0.5": acc + 0.1},
                       "stability": {"degradation": 0.05, "improve": 0.2, "degrade": 0.3, "stay": 0.5}}
    for folder, acc in ((tmp_path / "results", 0.7), (tmp_path / "runs" / "seed_1" / "results", 0.6)):
        folder.mkdir(parents=True)
        (folder / "sft.json").write_text(json.dumps({**row(acc), "ours_recipe": row(acc + 0.01), "sft": {"steps": 3}}))
        (folder / "grpo.json").write_text(json.dumps({**row(acc), "refine_credit": row(acc + 0.02)}))
    summary = seeds.summarize(seeds.collect("smoke", [1], tmp_path / "runs", tmp_path / "results"))
    seeds.embed(tmp_path / "results", summary)
    sft = json.loads((tmp_path / "results" / "sft.json").read_text())
    grpo = json.loads((tmp_path / "results" / "grpo.json").read_text())
    assert set(sft["seeds"]) == {"SFT + IVT", "SFT (ours: keep data) + IVT"} and sft["sft"] == {"steps": 3}
    assert set(grpo["seeds"]) == {"SFT + GRPO + IVT", "SFT + GRPO (ours: refine credit) + IVT"}
    assert sft["seeds"]["SFT (ours: keep data) + IVT"]["step 0 Acc@0.5"]["per_seed"] == pytest.approx({"0": 0.71, "1": 0.61})
    assert grpo["seeds"]["SFT + GRPO + IVT"]["seeds"] == [0, 1]
    again = seeds.summarize(seeds.collect("smoke", [1], tmp_path / "runs", tmp_path / "results"))
    assert again == summary, "the embedded block does not change what is collected"
