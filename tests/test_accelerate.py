"""SFT beyond one process: ``scripts/sft_accelerate.py`` as 1 process x batch 4 vs ``accelerate launch`` with 2 DDP
processes (gloo, CPU) x batch 2. Same global batch, same seed, same data order -> the same training run.

Tolerance. With the loss normalised by the tokens of the whole global batch (``run_sft``), the two runs compute the
same quantity; they differ only by float32 summation order (each process pads its 2 samples to a different width,
and gloo all-reduces two partial gradients). Measured: losses within 1e-6, LoRA weights within 1e-6 after 3 Adam
steps. We allow 1e-4 for both. The failure this guards against, each process averaging over its own tokens only
(what Qwen-VL models get from trl/transformers by default), moves the step-1 loss by 6e-3 and the weights by 4e-3,
40-60x outside the tolerance; a batch that is not synchronised or not the same global batch moves them further.
"""
import json
import os
import socket
import subprocess
import sys

import pytest

from ivt_lib.configs import ROOT

SCRIPT = ROOT / "scripts" / "sft_accelerate.py"
COMMON = ["--split", "test", "--n-samples", "8", "--max-steps", "3", "--seed", "0", "--device", "cpu"]
TOL = 1e-4


def _env() -> dict:
    # 2 processes on 2 cores: one thread each; no hub calls (the model is a local folder)
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], out_dir) -> dict:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads((out_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny_dir, tmp_path_factory):
    """(1-process result, 2-process result, their output folders)."""
    d1, d2 = tmp_path_factory.mktemp("sft_1proc"), tmp_path_factory.mktemp("sft_2proc")
    one = _run([sys.executable, str(SCRIPT), "--model", str(tiny_dir), "--out", str(d1), "--batch-size", "4",
                *COMMON], d1)
    # `--cpu --num_processes 2` would start a single process (accelerate needs MPI for multi-CPU); the torchrun
    # launcher (--multi_gpu) with --device cpu gives DDP over gloo on CPU processes.
    two = _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(_free_port()),
                str(SCRIPT), "--model", str(tiny_dir), "--out", str(d2), "--batch-size", "2", *COMMON], d2)
    return one, two, d1, d2


def test_two_processes_really_ran_ddp(runs):
    one, two, _, d2 = runs
    assert one["world_size"] == one["num_processes"] == 1
    assert two["world_size"] == two["num_processes"] == 2
    assert two["distributed_type"] == "DistributedType.MULTI_CPU" and two["backend"] == "gloo"
    assert one["global_batch"] == two["global_batch"] == 4
    assert one["steps"] == two["steps"] == 3
    # only the main process wrote the results: one adapter, one merged model, no half-renamed folder left
    assert (d2 / "adapter" / "adapter_model.safetensors").exists() and (d2 / "merged" / "config.json").exists()
    assert not (d2 / "merged.tmp").exists()


def test_same_data_order(runs):
    one, two, _, _ = runs
    # cumulative tokens seen, gathered over processes: equal at every step <=> the same samples in every step
    assert one["num_tokens"] == two["num_tokens"] and len(one["num_tokens"]) == 3


def test_ddp_matches_single_process(runs):
    one, two, d1, d2 = runs
    assert two["first_loss"] == pytest.approx(one["first_loss"], abs=TOL)
    assert two["final_loss"] == pytest.approx(one["final_loss"], abs=TOL)
    assert two["losses"] == pytest.approx(one["losses"], abs=TOL)
    assert one["final_loss"] < one["first_loss"]  # it trained
    c1, c2 = one["adapter_checksum"], two["adapter_checksum"]
    assert c1["n_params"] == c2["n_params"] > 0
    assert c2["sum"] == pytest.approx(c1["sum"], abs=c1["n_params"] * TOL * 1e-2)
    from safetensors.torch import load_file

    w1 = load_file(str(d1 / "adapter" / "adapter_model.safetensors"))
    w2 = load_file(str(d2 / "adapter" / "adapter_model.safetensors"))
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < TOL
    assert max(float(w1[k].abs().max()) for k in w1 if "lora_B" in k) > 10 * TOL  # B moved from 0: a real check


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    ddp = load_config_from_file(str(ROOT / "configs" / "accelerate_ddp.yaml"))
    ds = load_config_from_file(str(ROOT / "configs" / "accelerate_deepspeed_zero2.yaml"))
    assert str(ddp.distributed_type) == "DistributedType.MULTI_GPU"
    assert str(ds.distributed_type) == "DistributedType.DEEPSPEED" and ds.deepspeed_config["zero_stage"] == 2


# --------------------------------------------------------------------------------------------------------------- GRPO
GRPO_SCRIPT = ROOT / "scripts" / "grpo_accelerate.py"
GRPO_COMMON = ["--model", str(ROOT / "data" / "base_model"), "--n-samples", "16", "--prompts", "4", "--group", "4",
               "--T", "1", "--seed", "0", "--device", "cpu"]


def _launch2(script, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), str(script), *args]


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory):
    """GRPO on the shipped base model (its rewards vary, so advantages and gradients are non-zero): 1 process x 4
    prompts vs 2 processes x 2 prompts, 2 iterations each; and 2 processes killed-and-resumed after iteration 1."""
    d1, d2, d3 = (tmp_path_factory.mktemp(n) for n in ("grpo_1proc", "grpo_2proc", "grpo_2proc_resumed"))
    one = _run([sys.executable, str(GRPO_SCRIPT), "--out", str(d1), "--iterations", "2", *GRPO_COMMON], d1)
    two = _run(_launch2(GRPO_SCRIPT, ["--out", str(d2), "--iterations", "2", *GRPO_COMMON]), d2)
    _run(_launch2(GRPO_SCRIPT, ["--out", str(d3), "--iterations", "1", *GRPO_COMMON]), d3)  # stops after 1 update
    resumed = _run(_launch2(GRPO_SCRIPT, ["--out", str(d3), "--iterations", "2", *GRPO_COMMON]), d3)
    return one, two, resumed, d1, d2, d3


def test_grpo_two_processes_really_split_the_prompts(grpo_runs):
    one, two, _, _, d2, _ = grpo_runs
    assert one["world_size"] == 1 and two["world_size"] == two["num_processes"] == 2 and two["backend"] == "gloo"
    assert all(e["processes"] == 2 for e in two["logs"]) and len(two["logs"]) == 2
    assert (d2 / "merged" / "config.json").exists() and (d2 / "checkpoint" / "state.json").exists()


def test_grpo_two_processes_match_one(grpo_runs):
    """Same rollouts (seeded per trajectory), same global loss, same update. Measured: losses within 1e-10, LoRA
    weights within 4e-7 after 2 Adam steps; without the gradient all_reduce the weights differ by 4e-3."""
    one, two, _, d1, d2, _ = grpo_runs
    for a, b in zip(one["logs"], two["logs"]):
        assert a["rollout_digest"] == b["rollout_digest"]  # the very same sampled tokens
        assert a["tokens"] == b["tokens"] and a["rows"] == b["rows"]
        assert b["reward_mean"] == pytest.approx(a["reward_mean"], abs=1e-6)
        assert b["loss"] == pytest.approx(a["loss"], abs=TOL) and b["kl"] == pytest.approx(a["kl"], abs=TOL)
    assert one["logs"][0]["reward_std"] > 0 and one["logs"][0]["zero_adv_groups"] < 4  # real advantages
    from safetensors.torch import load_file

    w1 = load_file(str(d1 / "checkpoint" / "adapter_model.safetensors"))
    w2 = load_file(str(d2 / "checkpoint" / "adapter_model.safetensors"))
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < TOL
    assert max(float(w1[k].abs().max()) for k in w1 if "lora_B" in k) > 10 * TOL  # the adapter moved


def test_grpo_two_processes_resume_after_a_stop(grpo_runs):
    _, two, resumed, _, d2, d3 = grpo_runs
    assert [e["rollout_digest"] for e in resumed["logs"]] == [e["rollout_digest"] for e in two["logs"]]
    assert resumed["logs"][-1]["loss"] == pytest.approx(two["logs"][-1]["loss"], abs=TOL)
    c2, c3 = two["adapter_checksum"], resumed["adapter_checksum"]
    assert c3["abs_sum"] == pytest.approx(c2["abs_sum"], rel=1e-6)


# ------------------------------------------------------------------------------- tier mode: scripts, then notebooks
def _sets(overrides: dict) -> list[str]:
    return [f"--set={k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def tier_workflow(tmp_path_factory):
    """The multi-GPU workflow on 2 CPU processes: SFT (03's settings) and GRPO (04's settings) of the smoke tier run by
    the scripts with `--tier smoke`, each followed by its notebook, which must resume the finished run and evaluate."""
    import importlib.util

    import papermill as pm

    from ivt_lib.configs import load_tier

    root = tmp_path_factory.mktemp("tier")
    runs = root / "runs"
    spec = importlib.util.spec_from_file_location("sft_accelerate", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ds, _ = mod.build_dataset("train", 8, 0, 0.4)  # stands in for notebook 02's teacher traces
    ds.save_to_disk(str(runs / "traces" / "student"))
    common = {"runs_dir": str(runs), "results_dir": str(root / "results"), "figures_dir": str(root / "figures"),
              "device": "cpu"}
    sft_over = {**common, "traces_dir": str(runs / "traces"), "train_batch_size": 2, "grad_accum": 2, "max_steps": 2}
    sft_script = _run(_launch2(SCRIPT, ["--tier", "smoke", *_sets(sft_over)]), runs / "sft" / "student")
    tier = load_tier("smoke")
    pm.execute_notebook(str(ROOT / "notebooks" / "03_sft.ipynb"), str(root / "03.ipynb"), cwd=str(ROOT),
                        parameters={**tier["03_sft"], **sft_over, "ablation_jittered": False, "recipe_ours": False},
                        kernel_name="python3", progress_bar=False)
    grpo_over = {**common, "sft_model": str(runs / "sft" / "student" / "merged")}
    grpo_script = _run(_launch2(GRPO_SCRIPT, ["--tier", "smoke", *_sets(grpo_over)]), runs / "grpo")
    pm.execute_notebook(str(ROOT / "notebooks" / "04_grpo.ipynb"), str(root / "04.ipynb"), cwd=str(ROOT),
                        parameters={**tier["04_grpo"], **grpo_over, "single_step": False,
                                                "refine_credit_ablation": False},
                        kernel_name="python3", progress_bar=False)
    return sft_script, grpo_script, root


def test_tier_mode_sft_runs_the_notebook_recipe_and_the_notebook_finishes_it(tier_workflow):
    sft_script, _, root = tier_workflow
    assert sft_script["world_size"] == 2 and sft_script["tier"] == "smoke"
    assert sft_script["grad_accum"] == 1 and sft_script["global_batch"] == 4  # 2 x 2 of the tier, over 2 processes
    nb = json.loads((root / "results" / "sft.json").read_text())
    assert nb["sft"]["resumed_from"].endswith("checkpoint-2") and nb["sft"]["steps"] == sft_script["steps"] == 2
    assert [h["loss"] for h in nb["sft_loss_curve"]] == pytest.approx(sft_script["losses"], abs=1e-9)  # no new steps


def test_tier_mode_grpo_runs_the_notebook_recipe_and_the_notebook_finishes_it(tier_workflow):
    _, grpo_script, root = tier_workflow
    assert grpo_script["world_size"] == 2 and grpo_script["tier"] == "smoke" and grpo_script["iterations"] == 2
    nb = json.loads((root / "results" / "grpo.json").read_text())
    assert [e["rollout_digest"] for e in nb["training_log"]] == [e["rollout_digest"] for e in grpo_script["logs"]]
    assert [e["processes"] for e in nb["training_log"]] == [2, 2]  # trained by the script, evaluated by the notebook
    assert len(nb["per_step"]) == 2  # T=1 of the smoke tier: step 0 and step 1


def test_tier_mode_rejects_unknown_overrides_and_mixed_arguments(tmp_path):
    bad = subprocess.run([sys.executable, str(GRPO_SCRIPT), "--tier", "smoke", "--set", "no_such_param=1"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no_such_param" in bad.stderr
    mixed = subprocess.run([sys.executable, str(SCRIPT), "--tier", "smoke", "--out", str(tmp_path)],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert mixed.returncode == 2 and "--tier takes" in mixed.stderr
