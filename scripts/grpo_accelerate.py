"""Phase-2 GRPO beyond one process: ``ivt_lib.training.grpo.MultiStepGRPO`` under ``accelerate launch``.

One process (plain ``python``) or N processes (``accelerate launch``) run the same code: each process rolls out its
share of every iteration's prompts (whole groups), the loss is normalised by the tokens of the whole batch, and the
LoRA gradients are summed over processes before the same optimiser step everywhere, so N processes give the same
run as one (rollouts are seeded per trajectory, not per batch). The main process writes a JSON summary: per-iteration
loss, reward, KL, token counts and a digest of the rollouts, the world size, and a checksum of the LoRA adapter.
A killed run resumes from ``OUT/checkpoint`` when started again with the same arguments.

**Tier mode** (``--tier T``): every setting comes from notebook 04's section of ``params/T.yaml`` (``--set key=value``
overrides), and the run writes to ``<runs_dir>/grpo``, where notebook 04 looks. Run GRPO on several GPUs first, then
``make reproduce TIER=T``: notebook 04 finds the finished checkpoint, resumes it (no further updates) and evaluates.

    # one process, 4 prompts per iteration
    python scripts/grpo_accelerate.py --model data/base_model --out runs/grpo_acc1
    # two CPU processes (gloo), 2 prompts each: the same run. On CPU, use the torchrun launcher (--multi_gpu) with
    # --device cpu; `accelerate launch --cpu --num_processes 2` starts ONE process without an MPI hostfile.
    accelerate launch --multi_gpu --num_processes 2 scripts/grpo_accelerate.py --model data/base_model \
        --out runs/grpo_acc2 --device cpu
    # the paper tier's GRPO stage on all GPUs of this machine; notebook 04 then evaluates it
    accelerate launch --config_file configs/accelerate_ddp.yaml scripts/grpo_accelerate.py --tier paper
    # GPUs, explicit settings (bf16 weights, optional colocated vLLM rollouts: pip install vllm)
    accelerate launch --config_file configs/accelerate_ddp.yaml scripts/grpo_accelerate.py \
        --model runs/paper/sft/student/merged --dataset data/paper_benchmark --out runs/grpo_ddp --dtype bfloat16 \
        --prompts 8 --iterations 300 --lr 1e-5 --lora-r 64 --max-new-tokens 256 --backend vllm
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import ivt_lib  # noqa: F401  (the torchvision shim must run before transformers is imported)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared command line, also when imported
import tier_args  # noqa: E402

log = logging.getLogger("grpo_accelerate")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tier_args.add_tier_arguments(p, "04", "GRPO's start: the merged SFT model")
    p.add_argument("--out", help="output folder (checkpoint/, merged/, result.json); not with --tier")
    p.add_argument("--dataset", default=None, help="dataset folder (default: the committed data/scenes)")
    p.add_argument("--split", default="train", help="split to draw prompts from")
    p.add_argument("--n-samples", type=int, default=0, help="first N samples of the split (0: all)")
    p.add_argument("--max-image-pixels", type=int, default=0, help="image-size cap (0: as stored)")
    p.add_argument("--iterations", type=int, default=2, help="GRPO updates")
    p.add_argument("--prompts", type=int, default=4, help="prompts per iteration, over all processes")
    p.add_argument("--group", type=int, default=4, help="trajectories per prompt (G)")
    p.add_argument("--T", type=int, default=1, help="refinement steps per trajectory")
    p.add_argument("--max-new-tokens", type=int, default=32, help="generation budget per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha = 2 x rank)")
    p.add_argument("--micro-batch", type=int, default=8, help="rows per scoring forward")
    p.add_argument("--seed", type=int, default=0, help="seed for the adapter init, prompts and rollouts")
    p.add_argument("--device", default="auto", help="auto (this process's accelerator) or cpu")
    p.add_argument("--dtype", default="float32", help="weights dtype: float32, bfloat16, float16")
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"], help="rollout generation backend")
    p.add_argument("--vllm-gpu-memory", type=float, default=0.3, help="vLLM gpu_memory_utilization (colocated)")
    args = p.parse_args(argv)
    tier_args.check_tier_arguments(p, args)
    return args


def from_tier(args):
    """(model, train samples, output folder, run config, device, dtype) exactly as notebook 04 builds them."""
    from ivt_lib import configs
    from ivt_lib.corpora.splits import load_split

    cfg = configs.tier_config(args.tier, "04_grpo", tier_args.parse_overrides(args.set))
    samples = load_split("train", cfg.path("dataset"), cfg.train_n or None, cfg.max_pixels)
    # the validation curve is notebook 04's (it needs the validation split on the main process); the script trains only
    from ivt_lib.training.grpo import GRPORunConfig

    run_cfg = dataclasses.replace(GRPORunConfig.from_stage(cfg), val_every=0)
    return configs.model_source(cfg.sft_model), samples, cfg.path("runs_dir") / "grpo", run_cfg, cfg.device, cfg.dtype


def from_args(args):
    """(model, train samples, output folder, run config, device, dtype) from the explicit arguments."""
    from ivt_lib.corpora.splits import load_split
    from ivt_lib.training.grpo import GRPORunConfig

    kw = {} if args.dataset is None else {"path": args.dataset}
    samples = load_split(args.split, limit=args.n_samples or None, max_pixels=args.max_image_pixels or None, **kw)
    cfg = GRPORunConfig(iterations=args.iterations, prompts_per_iter=args.prompts, group_size=args.group, T=args.T,
                        max_new_tokens=args.max_new_tokens, learning_rate=args.lr, beta=args.beta,
                        lora_r=args.lora_r, lora_alpha=2 * args.lora_r, micro_batch=args.micro_batch,
                        save_every=args.iterations, seed=args.seed, generation_backend=args.backend,
                        vllm_kwargs={"gpu_memory_utilization": args.vllm_gpu_memory} if args.backend == "vllm" else {})
    return args.model, samples, Path(args.out), cfg, args.device, args.dtype


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    from accelerate import PartialState

    from ivt_lib.training.grpo import MultiStepGRPO
    from ivt_lib.core.models import adapter_checksum

    model, samples, out, cfg, device, dtype = from_tier(args) if args.tier else from_args(args)
    state = PartialState(cpu=device == "cpu")  # joins the process group when launched (gloo on CPU)
    trainer = MultiStepGRPO(model, samples, out, cfg, device, dtype)
    logs = trainer.train(show_progress=state.is_main_process)
    summary = {"world_size": trainer.world, "num_processes": state.num_processes,
               "distributed_type": str(state.distributed_type), "backend": state.backend,
               "prompts_per_iter": cfg.prompts_per_iter, "group_size": cfg.group_size, "iterations": len(logs),
               "logs": logs, "device": str(trainer.model.device), "seed": cfg.seed, "tier": args.tier,
               "rollout_backend": cfg.generation_backend}
    if state.is_main_process:
        summary["adapter_checksum"] = adapter_checksum(trainer.ckpt)
        from ivt_lib.core.io import atomic_write_json

        atomic_write_json(out / "result.json", summary)
        log.info("wrote %s: %d iterations on %d processes", out / "result.json", len(logs), trainer.world)
    trainer.export(out / "merged")
    return summary


if __name__ == "__main__":
    main()
