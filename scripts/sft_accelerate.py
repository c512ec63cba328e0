"""Phase-1 SFT beyond one process: the same ``ivt_lib.training.sft.run_sft`` under ``accelerate launch`` (DDP / DeepSpeed).

One process (plain ``python``) or N processes (``accelerate launch``) run the same code: trl/transformers read the
distributed environment that ``accelerate launch`` sets up, wrap the model in DDP (gloo on CPU, NCCL on GPU) and
shard each global batch across processes; ``run_sft`` normalises the loss by the tokens of the whole global batch,
so N processes x batch b give the same updates as 1 process x batch N*b. Data: scripted-teacher traces from
jittered starts on the first ``--n-samples`` samples of a split (deterministic, no base model needed). The main
process writes a JSON summary: losses and token counts per step, world size, and a checksum of the LoRA adapter.

**Tier mode** (``--tier T``): every setting comes from notebook 03's section of ``params/T.yaml`` (``--set key=value``
overrides), the data are notebook 02's teacher traces (``<traces_dir>/student``) and the run writes to
``<runs_dir>/sft/student``, where notebook 03 looks. The gradient accumulation of the tier is divided by the number of
processes, so the optimiser-step batch (and the number of steps) is the tier's. Then ``make reproduce TIER=T``:
notebook 03 finds the finished run, resumes it (no further steps) and evaluates.

    # one process, per-device batch 4
    python scripts/sft_accelerate.py --model data/base_model --out runs/sft_acc1 --batch-size 4
    # two CPU processes (DDP over gloo), per-device batch 2: the same global batch of 4. On CPU, use the torchrun
    # launcher (--multi_gpu) with --device cpu: `accelerate launch --cpu --num_processes 2` starts ONE process
    # unless it is given an MPI hostfile (--mpirun_hostfile).
    accelerate launch --multi_gpu --num_processes 2 scripts/sft_accelerate.py --model data/base_model \
        --out runs/sft_acc2 --batch-size 2 --device cpu
    # the paper tier's SFT stage on 2 GPUs (after notebook 02 wrote the traces); notebook 03 then evaluates it
    accelerate launch --config_file configs/accelerate_ddp.yaml --num_processes 2 scripts/sft_accelerate.py --tier paper
    # GPUs, explicit settings: configs/accelerate_ddp.yaml or configs/accelerate_deepspeed_zero2.yaml (pip install deepspeed)
    accelerate launch --config_file configs/accelerate_ddp.yaml scripts/sft_accelerate.py \
        --model Qwen/Qwen3-VL-4B-Instruct --out runs/sft_ddp --bf16 --dtype bfloat16
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import os
import random
from pathlib import Path

import ivt_lib  # noqa: F401  (the torchvision shim must run before transformers is imported)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared command line, also when imported
import tier_args  # noqa: E402

log = logging.getLogger("sft_accelerate")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tier_args.add_tier_arguments(p, "03", "the SFT starting point")
    p.add_argument("--out", help="output folder (checkpoints/, adapter/, merged/); not with --tier")
    p.add_argument("--result", default=None, help="JSON summary path (default: OUT/result.json)")
    p.add_argument("--data", default=None, help="dataset folder (default: the committed data/scenes)")
    p.add_argument("--split", default="train", help="split of --data to build traces from")
    p.add_argument("--n-samples", type=int, default=16, help="first N samples of the split (2 traces each, T=2)")
    p.add_argument("--max-steps", type=int, default=3, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=4, help="per-device batch; global = this x processes x accum")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    p.add_argument("--seed", type=int, default=0, help="seed for LoRA init, data order and the jittered starts")
    p.add_argument("--jitter", type=float, default=0.4, help="start-box jitter scale (x box size)")
    p.add_argument("--device", default="auto", help="auto (this process's accelerator device) or cpu")
    p.add_argument("--dtype", default="float32", help="weights dtype: float32, bfloat16, float16")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    p.add_argument("--qlora", action="store_true", help="4-bit NF4 base weights (GPU, bitsandbytes)")
    args = p.parse_args(argv)
    tier_args.check_tier_arguments(p, args)
    return args


def build_dataset(split: str, n: int, seed: int, jitter: float, data: str | None = None):
    """Scripted-teacher traces (T=2) from jittered ground-truth starts on the first ``n`` samples of ``split``."""
    from ivt_lib.core import boxes as bx
    from ivt_lib.training import traces
    from ivt_lib.corpora.splits import load_split
    from ivt_lib.training.teacher import ScriptedTeacher

    samples = load_split(split, limit=n) if data is None else load_split(split, data, limit=n)
    starts = [bx.jitter(random.Random(seed * 100_003 + i), s["bbox"], s["width"], s["height"], jitter)
              for i, s in enumerate(samples)]
    stats = traces.SynthesisStats()
    reqs = traces.build_requests(samples, starts, T=2, iou_max=1.0, stats=stats)
    recs, stats = traces.synthesize(ScriptedTeacher(), reqs, stats)
    return traces.to_dataset(recs), stats


def from_tier(args):
    """(model, traces, output folder, run config, device, dtype) as notebook 03 builds them, with the tier's
    accumulation divided over the processes."""
    from dataclasses import replace

    from accelerate import PartialState
    from datasets import load_from_disk

    from ivt_lib import configs

    cfg = configs.tier_config(args.tier, "03_sft", tier_args.parse_overrides(args.set))
    state = PartialState(cpu=cfg.device == "cpu")  # joins the process group when launched
    from ivt_lib.training.sft import SFTRunConfig

    run_cfg = SFTRunConfig.from_stage(cfg)
    if run_cfg.grad_accum % state.num_processes:
        raise SystemExit(f"grad_accum={run_cfg.grad_accum} of tier {args.tier} is not divisible by "
                         f"{state.num_processes} processes: the step batch would change (use --set grad_accum=...)")
    run_cfg = replace(run_cfg, grad_accum=run_cfg.grad_accum // state.num_processes)
    device = str(state.device) if cfg.device in ("auto", "cuda") else cfg.device
    traces_dir = cfg.path("traces_dir") / "student"
    if not traces_dir.exists():
        raise SystemExit(f"no teacher traces at {traces_dir}: run notebook 02 of tier {args.tier} first")
    ds = load_from_disk(str(traces_dir))
    return configs.model_source(cfg.model), ds, cfg.path("runs_dir") / "sft" / "student", run_cfg, device, cfg.dtype


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.tier:
        return main_tier(args)

    # --- seed ---------------------------------------------------------------------------------------------------
    from transformers import set_seed

    set_seed(args.seed)

    # --- device: each process its own accelerator (cuda:LOCAL_RANK), or the CPU --------------------------------
    from accelerate import PartialState

    device = args.device
    if device == "auto":
        device = str(PartialState().device)  # also initialises the process group when launched

    # --- data ---------------------------------------------------------------------------------------------------
    ds, stats = build_dataset(args.split, args.n_samples, args.seed, args.jitter, args.data)
    log.info("%d traces from %d samples", len(ds), stats.n_kept_samples)

    # --- train --------------------------------------------------------------------------------------------------
    from ivt_lib.training.sft import SFTRunConfig, run_sft

    cfg = SFTRunConfig(max_steps=args.max_steps, train_batch_size=args.batch_size, grad_accum=args.grad_accum,
                       learning_rate=args.lr, lora_r=args.lora_r, lora_alpha=2 * args.lora_r, seed=args.seed,
                       logging_steps=1, save_steps=max(args.max_steps, 1), warmup_ratio=0.0,
                       bf16=args.bf16, quantize_4bit=args.qlora)
    out = run_sft(args.model, ds, args.out, cfg, device=device, dtype=args.dtype)

    # --- summary (main process only) ----------------------------------------------------------------------------
    state = PartialState()
    losses = [h["loss"] for h in out["log_history"]]
    summary = {"world_size": out["world_size"], "num_processes": state.num_processes,
               "distributed_type": str(state.distributed_type), "backend": state.backend,
               "per_device_batch": args.batch_size, "grad_accum": args.grad_accum,
               "global_batch": args.batch_size * args.grad_accum * out["world_size"],
               "steps": out["steps"], "n_traces": len(ds), "losses": losses,
               "num_tokens": [h.get("num_tokens") for h in out["log_history"]],  # cumulative, all processes
               "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
               "train_loss": out["train_loss"], "device": device, "seed": args.seed}
    if state.is_main_process:
        from ivt_lib.core.models import adapter_checksum

        summary["adapter_checksum"] = adapter_checksum(Path(out["adapter"]))
        res = Path(args.result) if args.result else Path(args.out) / "result.json"
        res.parent.mkdir(parents=True, exist_ok=True)
        tmp = res.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, res)
        log.info("wrote %s: final loss %.5f, world size %d", res, summary["final_loss"], summary["world_size"])
    state.wait_for_everyone()
    return summary


def main_tier(args) -> dict:
    """Tier mode: notebook 03's SFT run, on however many processes were launched."""
    from accelerate import PartialState
    from transformers import set_seed

    from ivt_lib.core.models import adapter_checksum
    from ivt_lib.training.sft import run_sft

    model, ds, out_dir, cfg, device, dtype = from_tier(args)
    set_seed(cfg.seed)
    out = run_sft(model, ds, out_dir, cfg, device=device, dtype=dtype)
    state = PartialState()
    summary = {"tier": args.tier, "world_size": out["world_size"], "steps": out["steps"],
               "per_device_batch": cfg.train_batch_size, "grad_accum": cfg.grad_accum,
               "global_batch": cfg.train_batch_size * cfg.grad_accum * out["world_size"], "n_traces": len(ds),
               "losses": [h["loss"] for h in out["log_history"]], "train_loss": out["train_loss"], "device": device}
    if state.is_main_process:
        from ivt_lib.core.io import atomic_write_json

        summary["adapter_checksum"] = adapter_checksum(Path(out["adapter"]))
        atomic_write_json(out_dir / "result.json", summary)
        log.info("wrote %s: %d steps on %d processes", out_dir / "result.json", out["steps"], out["world_size"])
    state.wait_for_everyone()
    return summary


if __name__ == "__main__":
    main()
