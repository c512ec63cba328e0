"""Deployable vs oracle: every configuration x every way of choosing its answer, each against base single shot.

For each configuration the answers are: step 0, the last step, the ORACLE best step, best-of-N sampled step-0
answers (ORACLE), self-consistency over them, stop-when-still, confidence, and the two rules fitted on validation
(move gate, verifier). Each row carries its true compute (forward passes per sample), Acc@0.5/0.7/0.9, mean IoU,
and the paired comparison with base single shot (``ivt_lib.core.stats.compare``: Δ, 95 % bootstrap CI, exact McNemar).
The verdict line is generated from those numbers.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from ..core import metrics, stats
from . import selection
from ..core.loop import Trajectory

REFERENCE = "base, single shot"
ORACLE_MARK = "ORACLE"
# label-free rules that use the refinement trajectory (self-consistency does not: it is the equal-compute baseline)
TRAJECTORY_RULES = ("last step", "stop-when-still", "confidence", "move gate", "verifier")


def rule_answers(trajs: Sequence[Trajectory], still_eps: float = 0.05, gate: dict | None = None,
                 verifier: dict | None = None, sampled: Sequence[Sequence[Trajectory]] | None = None
                 ) -> dict[str, tuple[list[float], float]]:
    """Per rule: the per-sample IoUs of its answers and the forward passes per sample it costs."""
    T = len(trajs[0].steps) - 1
    out: dict[str, tuple[list[float], float]] = {"step 0": (metrics.step_ious(trajs, 0), 1.0)}
    if T > 0:
        out[f"last step (T={T})"] = (metrics.step_ious(trajs, T), T + 1.0)
        out["ORACLE best step (uses GT)"] = (metrics.selected_ious(trajs, metrics.oracle_rule), T + 1.0)
    if sampled:
        for k, v in selection.sampled_baselines(sampled).items():
            out[k.replace("best-of-N", f"best-of-{len(sampled)}")] = (v, float(len(sampled)))
    if T > 0:
        still = metrics.select(trajs, metrics.still_rule(still_eps))
        out["stop-when-still (label-free)"] = (metrics.selected_ious(trajs, metrics.still_rule(still_eps)),
                                               still["mean_passes"])
        out["confidence (label-free)"] = (metrics.selected_ious(trajs, metrics.confidence_rule), T + 1.0)
        if gate is not None:
            out[f"move gate (label-free, tau={gate['tau']:.2f} fitted on validation)"] = (
                selection.pick(trajs, selection.gate_choice(trajs, gate["tau"])), T + 1.0)
        if verifier is not None:
            out["verifier (label-free, fitted on validation)"] = (
                selection.pick(trajs, selection.verifier_choice(trajs, verifier)), T + 1.0)
    return out


def rows_for(name: str, answers: Mapping[str, tuple[list[float], float]], reference: Sequence[float],
             seed: int = 0) -> list[dict]:
    """Table rows of one configuration: metrics, the paired comparison with the reference (base single shot) and,
    where the configuration has a step 0, the paired comparison with its own step 0 (``*_vs_step0``)."""
    rows, own0 = [], answers.get("step 0", (None, 0))[0]
    for rule, (ious, passes) in answers.items():
        m = metrics.summarize(ious)
        c = stats.compare(reference, ious, seed)
        row = {"configuration": name, "rule": rule, "passes": float(passes),
               **{k: m[k] for k in ("acc@0.5", "acc@0.7", "acc@0.9", "mean_iou")},
               **{k: c[k] for k in ("d_acc@0.5", "ci_acc@0.5", "d_acc@0.7", "ci_acc@0.7", "d_acc@0.9",
                                    "ci_acc@0.9", "d_mean_iou", "ci_mean_iou", "significant")},
               "gained": c["mcnemar"]["gained"], "lost": c["mcnemar"]["lost"], "p": c["mcnemar"]["p"]}
        if own0 is not None:
            o = stats.compare(own0, ious, seed)
            row.update({"d_acc@0.5_vs_step0": o["d_acc@0.5"], "ci_acc@0.5_vs_step0": o["ci_acc@0.5"],
                        "p_vs_step0": o["mcnemar"]["p"], "significant_vs_step0": o["significant"]})
        rows.append(row)
    return rows


def _is(rule: str, kind: str) -> bool:
    return rule.startswith(kind)


def verdict(rows: Sequence[dict]) -> dict:
    """The moonshot check, from the rows: does a label-free rule over the refinement trajectory beat base single
    shot *and* its own configuration's step 0 (each: Acc@0.5 CI above 0 and McNemar p < 0.05) without losing to
    self-consistency at equal compute? Beating its own step 0 is required so that a configuration whose single shot
    is already better (a differently trained base) does not pass without any gain from refinement."""
    sc = {r["configuration"]: r for r in rows if _is(r["rule"], "self-consistency")}
    candidates = [r for r in rows if r["configuration"] != REFERENCE and ORACLE_MARK not in r["rule"]
                  and any(_is(r["rule"], k) for k in TRAJECTORY_RULES)]
    winners = [r for r in candidates if r["significant"] and r["d_acc@0.5"] > 0
               and r.get("significant_vs_step0") and r["d_acc@0.5_vs_step0"] > 0
               and r["acc@0.5"] >= sc.get(r["configuration"], {"acc@0.5": -1.0})["acc@0.5"]]
    deployable = [r for r in rows if ORACLE_MARK not in r["rule"]]
    best = max(deployable, key=lambda r: (r["acc@0.5"], -r["passes"]))
    shares = {}
    for name in dict.fromkeys(r["configuration"] for r in rows):  # row order, not a set's (hash-seeded) order
        own = {r["rule"]: r for r in rows if r["configuration"] == name}
        s0 = own.get("step 0")
        orc = next((r for k, r in own.items() if k.startswith("ORACLE best step")), None)
        bon = next((r for k, r in own.items() if k.startswith("best-of-")), None)
        if s0 and orc and bon and orc["acc@0.5"] > s0["acc@0.5"]:
            shares[name] = {"oracle_gain_pp": 100 * (orc["acc@0.5"] - s0["acc@0.5"]),
                            "best_of_n_gain_pp": 100 * (bon["acc@0.5"] - s0["acc@0.5"])}

    def desc(r):
        lo, hi = r["ci_acc@0.5"]
        return (f"{r['configuration']} / {r['rule']}: Acc@0.5 {100 * r['acc@0.5']:.1f} % "
                f"(Δ {100 * r['d_acc@0.5']:+.1f} pp, 95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}], "
                f"{r['gained']} gained / {r['lost']} lost, p = {r['p']:.3g}, {r['passes']:.2f} passes)")

    if winners:
        w = max(winners, key=lambda r: r["d_acc@0.5"])
        text = ("MOONSHOT MET: a label-free rule over the refinement trajectory beats base single shot and its own "
                "step 0. " + desc(w))
    else:
        text = ("No label-free rule over the refinement trajectory beats both base single shot and its own step 0 "
                "with p < 0.05 (and at least self-consistency's accuracy). Best deployable answer: " + desc(best))
    if shares:
        text += (". Acc@0.5 gain over each configuration's own step 0, ORACLE best step vs best-of-N sampled step-0 "
                 "answers (also ORACLE) at the same passes: " + "; ".join(
                     f"{k} {v['oracle_gain_pp']:+.1f} vs {v['best_of_n_gain_pp']:+.1f} pp"
                     for k, v in sorted(shares.items())))
    return {"text": text, "moonshot_met": bool(winners), "winners": [(r["configuration"], r["rule"]) for r in winners],
            "best_deployable": {k: best[k] for k in ("configuration", "rule", "acc@0.5", "d_acc@0.5", "ci_acc@0.5",
                                                    "p", "passes")},
            "best_of_n_share_of_oracle_gain": shares}


def common_samples(configs: Mapping[str, Sequence[Trajectory]]) -> dict[str, list[Trajectory]]:
    """Every configuration restricted to the samples all of them cover, in one order (paired statistics need the
    same samples; tiers may evaluate different counts). Raises when no sample is shared."""
    ids = set.intersection(*({t.sample_id for t in v} for v in configs.values()))
    if not ids:
        raise ValueError("the configurations share no sample: paired statistics are impossible")
    order = [t.sample_id for t in next(iter(configs.values())) if t.sample_id in ids]
    out = {}
    for name, trajs in configs.items():
        by_id = {t.sample_id: t for t in trajs}
        out[name] = [by_id[i] for i in order]
    return out


def fit_and_sample(policy, test_trajs: Sequence[Trajectory], test_samples: Sequence[dict],
                   val_samples: Sequence[dict], coord_format: str = "qwen3", temperature: float = 0.7,
                   seed: int = 0) -> tuple[dict, list[list[Trajectory]]]:
    """For one configuration's model: run its loop (greedy, the same T as its test trajectories) on the
    **validation** samples and fit the move gate and the verifier there; then draw N = T+1 sampled step-0 answers
    per **test** sample (seeded per sample) for best-of-N and self-consistency. Returns (fitted rules, sampled runs).
    """
    from ..core.loop import run_loop
    from ..core.models import sampling_copy
    from ..core.sampling import derive_seed

    T = len(test_trajs[0].steps) - 1
    if [t.sample_id for t in test_trajs] != [str(s["id"]) for s in test_samples]:
        raise ValueError("test trajectories and test samples are not the same samples in the same order")
    val = run_loop(policy, val_samples, T=T, coord_format=coord_format, show_progress=False)
    fitted = {"gate": selection.fit_move_gate(val), "verifier": None,
              "fitted_on": {"split": "validation", "n": len(val_samples), "T": T,
                            "first_ids": [str(s["id"]) for s in val_samples[:3]]}}
    try:
        fitted["verifier"] = selection.fit_verifier(val, seed)
    except ValueError as exc:  # e.g. every validation step wrong (a tiny smoke model): no verifier row, said why
        fitted["verifier_skipped"] = str(exc)
    sampler = sampling_copy(policy, temperature)
    sampled = [run_loop(sampler, test_samples, T=0, coord_format=coord_format, show_progress=False,
                        sample_seeds=[derive_seed("step0-sample", seed, k, str(s["id"])) for s in test_samples])
               for k in range(T + 1)]
    return fitted, sampled


def paired_summary(trajs: Sequence[Trajectory], reference: Sequence[Trajectory] | None = None,
                   seed: int = 0) -> dict[str, dict]:
    """Paired comparisons for one configuration (notebooks 03/04): its last step against its own step 0, and its
    step 0 and last step against base single shot (``reference``) on the samples both cover."""
    T = len(trajs[0].steps) - 1
    out = {f"last step (T={T}) vs own step 0": stats.compare(metrics.step_ious(trajs, 0),
                                                              metrics.step_ious(trajs, T), seed)}
    if reference:
        both = common_samples({"ref": reference, "cfg": trajs})
        ref = metrics.step_ious(both["ref"], 0)
        out["step 0 vs base single shot"] = stats.compare(ref, metrics.step_ious(both["cfg"], 0), seed)
        out[f"last step (T={T}) vs base single shot"] = stats.compare(ref, metrics.step_ious(both["cfg"], T), seed)
    return out
