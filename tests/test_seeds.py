"""Training seeds: the per-seed parameters, the mean ± sd summary, and one extra seed of the smoke tier end to end."""
import json
import statistics

import pytest

from ivt_lib import seeds


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
