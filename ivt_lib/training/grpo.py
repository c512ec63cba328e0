"""Phase 2: multi-step GRPO over visual-feedback trajectories.

Why not trl's ``GRPOTrainer``: each refine step's image is rendered *during* the rollout from the previous step's box,
and trl's ``rollout_func`` drops such images from the training forward pass (a silent "blind policy"). So the GRPO
step lives here, built on torch + peft, reusing trl's formulation (``GRPOTrainer._compute_loss`` and the group
advantages in ``GRPOTrainer._generate_and_score_completions``, trl 1.16; ``tests/test_grpo.py`` checks we match it):

1. sample ``group_size`` whole trajectories per prompt with the refinement loop (temperature > 0) in the run's feedback
   view, rendering between steps and recording every step's exact messages, image(s) and generated token ids;
2. reward the **final step** only: IoU + 0.1 x format (the reward registry, trl's signature);
3. group-normalised advantages ``(r - mean_g) / (std_g + 1e-4)`` (zero for a group of equal rewards, never NaN);
4. a clipped policy-gradient loss over every generated token of every step (each step's row is scored with *its own*
   rendered image), plus ``beta`` x the k3 KL to the reference. With LoRA, the adapter-disabled model is the
   reference: GRPO starts from the merged SFT model, so the reference is the SFT policy at no extra memory.

One policy update per rollout batch (trl's default ``num_iterations=1``: importance ratio 1, clip fraction logged).
Checkpoints (adapter + optimiser + iteration + logs) are written atomically every ``save_every`` iterations; a killed
run resumes where it stopped, with the same prompts. Rollouts sample with per-trajectory seeds (``derive_seed(seed,
iteration, sample id, member)``), so a trajectory is the same however prompts are batched or split across processes.

**Several processes** (``accelerate launch``, see ``scripts/grpo_accelerate.py``): each process rolls out its share of
the iteration's prompts (``prompts[rank::world]``, whole groups, so advantages stay local), scales its loss by the
*global* token (or row) count, and the LoRA gradients are summed with one ``all_reduce`` before the identical
optimiser step on every process: data parallelism with the same update as one process. Not the ``DistributedDataParallel``
wrapper: its per-backward hooks need the same number of backward passes on every process, and the number of scoring
micro-batches per process varies with the rollouts. The main process writes checkpoints.

**Generation backend** ``generation_backend="vllm"``: a colocated ``vllm.LLM`` (:mod:`ivt_lib.core.vllm_policy`) gets
the merged policy weights before every rollout after an update, as trl's colocate mode; scoring stays in HF/peft.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core import boxes as bx
from ..core import progress
from .grpo_objective import (encode_rows, final_rewards, group_advantages, grpo_loss,  # noqa: F401 (re-exported)
                             rollout_digest, rollout_rows, score_rows, token_logps)
from .grpo_config import ADDED_LATER, CREDITS, OLD_NAMES, RESUMABLE_CHANGES, GRPORunConfig, resume_relevant  # noqa: F401 (re-exported)
from ..core.integrity import corrupt_error, folder_problems, force_requested
from ..core.io import atomic_dir, recover_dir
from ..core.feedback import ViewSettings
from ..core.loop import HFPolicy, Trajectory, run_loop, vision_token_ids
from ..core.models import LLM_TARGETS
from ..core.sample_check import check_samples
from ..core.sampling import derive_seed
from ..core.state_io import has_state, load_state, save_state, state_files
from .process_group import ProcessGroup

log = logging.getLogger(__name__)


class MultiStepGRPO:
    """Multi-step GRPO on a LoRA adapter over ``model_path`` (typically the merged SFT model); one or more processes."""

    def __init__(self, model_path: str, train_samples: Sequence[dict], out_dir: str | Path, cfg: GRPORunConfig,
                 device: str = "auto", dtype: str = "float32", val_samples: Sequence[dict] = (),
                 force: bool | None = None):
        """``force``: retrain over a corrupt checkpoint instead of stopping (None: ``IVT_FORCE``, a forced rerun)."""
        from accelerate import PartialState
        from peft import LoraConfig, get_peft_model

        from ..core.models import load_model

        if not train_samples:
            raise ValueError("MultiStepGRPO got no training samples")
        check_samples(train_samples, "GRPO training samples")  # a bad sample stops the run now, not at its rollout
        self.view = ViewSettings(cfg.feedback, cfg.zoom_margin, cfg.zoom_size)
        if val_samples:
            check_samples(val_samples, "GRPO validation samples")
        self.cfg, self.samples, self.out = cfg, list(train_samples), Path(out_dir)
        self.val_samples = list(val_samples)
        if cfg.val_every and not self.val_samples:
            raise ValueError(f"val_every={cfg.val_every} needs validation samples (val_samples is empty)")
        self.model_path = str(model_path)
        state = PartialState(cpu=device == "cpu")  # under `accelerate launch`: joins the process group (gloo on CPU)
        self.pg = ProcessGroup(state.process_index, state.num_processes)
        self.rank, self.world, self.is_main = self.pg.rank, self.pg.world, self.pg.is_main
        per_iter = min(cfg.prompts_per_iter, len(self.samples))
        if per_iter < self.world:
            raise ValueError(f"{per_iter} prompts per iteration (prompts_per_iter={cfg.prompts_per_iter}, "
                             f"{len(self.samples)} samples) for {self.world} processes: every process needs at least one")
        if device in ("auto", "cuda") and self.world > 1:
            device = str(state.device)  # this process's accelerator (cuda:LOCAL_RANK), or the CPU
        base, self.processor = load_model(model_path, device, dtype, quantize_4bit=cfg.quantize_4bit)
        torch.manual_seed(cfg.seed)
        self.model = get_peft_model(base, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                     target_modules=LLM_TARGETS, task_type="CAUSAL_LM"))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.learning_rate)
        self.iteration, self.logs, self.val0 = 0, [], {}
        self._maybe_resume(force_requested(force))
        self.pg.broadcast(self.params)  # start from identical adapters everywhere, as DDP does
        self._vllm, self._vllm_synced_at = None, 0
        self.banned_ids = vision_token_ids(self.processor)  # completions with these are never scored

    # ------------------------------------------------------------------------------------------- checkpointing
    @property
    def ckpt(self) -> Path:
        """The resumable state folder."""
        return self.out / "checkpoint"

    def save(self) -> None:
        """Atomically write adapter + optimiser + iteration + logs (main process; the others wait for it)."""
        if self.is_main:
            with atomic_dir(self.ckpt) as tmp:
                self.model.save_pretrained(tmp)
                save_state(tmp, {"opt": self.opt.state_dict(), "iteration": self.iteration, "val0": self.val0,
                                 "config": resume_relevant(self.cfg)})  # safetensors + JSON: loading runs no code
                (tmp / "logs.json").write_text(json.dumps(self.logs))
        self.pg.barrier()

    def _maybe_resume(self, force: bool) -> None:
        if not has_state(recover_dir(self.ckpt)):
            return
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        bad = folder_problems(self.ckpt, ("adapter_model.safetensors", "logs.json", *state_files(self.ckpt)))
        if bad and not force:
            raise corrupt_error("GRPO checkpoint", self.ckpt, bad)
        if bad:  # nothing is loaded: the run starts over and its first save replaces the folder
            log.warning("GRPO checkpoint %s is corrupt (%s); forced rerun: training starts over and replaces it",
                        self.ckpt, "; ".join(f"{n} {p}" for n, p in bad))
            return
        st = load_state(self.ckpt)  # the old state.pt too, read with weights_only=True
        set_peft_model_state_dict(self.model, load_file(self.ckpt / "adapter_model.safetensors"))
        saved, now = st.get("config"), resume_relevant(self.cfg)
        if saved is not None:
            saved = {**ADDED_LATER, **{OLD_NAMES.get(k, k): v for k, v in saved.items()}}
        if saved is not None and saved != now:
            diff = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
            raise ValueError(f"{self.ckpt} was written with other settings {diff} (saved, now): delete that folder "
                             f"or use another out_dir; only {', '.join(RESUMABLE_CHANGES)} may change on resume")
        self.opt.load_state_dict(st["opt"])
        self.iteration, self.logs = st["iteration"], json.loads((self.ckpt / "logs.json").read_text())
        self.val0 = st.get("val0") or {}
        log.info("resumed GRPO at iteration %d", self.iteration)

    # ------------------------------------------------------------------------------------------------ one step
    def prompts(self, iteration: int) -> list[dict]:
        """The prompts of an iteration: a function of (seed, iteration), so a resumed run sees the same ones."""
        rng = random.Random(f"grpo-{self.cfg.seed}-{iteration}")
        return rng.sample(self.samples, min(self.cfg.prompts_per_iter, len(self.samples)))

    def local_prompts(self, iteration: int) -> list[dict]:
        """This process's share of the iteration's prompts (all of them with one process)."""
        return self.prompts(iteration)[self.rank::self.world]

    def rollout_policy(self):
        """The generation backend: HF ``generate`` on the current adapter, or the colocated vLLM engine kept in sync."""
        c = self.cfg
        if c.generation_backend == "hf":
            return HFPolicy(self.model, self.processor, c.max_new_tokens, c.batch_size, c.temperature, c.top_p)
        if self._vllm is None:
            from ..core.vllm_policy import VLLMPolicy

            self._vllm = VLLMPolicy(self.model_path, self.processor, c.max_new_tokens, c.temperature, c.top_p,
                                    seed=c.seed, colocate=True, **c.vllm_kwargs)
            self._vllm_synced_at = 0 if self.iteration == 0 else -1  # resumed: the engine holds the SFT weights
        if self._vllm_synced_at != self.iteration:
            self._vllm.sync_weights(self.model)
            self._vllm_synced_at = self.iteration
        return self._vllm

    def rollout(self, prompts: Sequence[dict], iteration: int | None = None) -> list[Trajectory]:
        """``group_size`` sampled trajectories per prompt (consecutive), recording every step's inputs; trajectory
        ``g`` of a prompt samples with its own seed (from ``seed``, ``iteration``, the sample id and ``g``)."""
        c = self.cfg
        it = self.iteration if iteration is None else iteration
        expanded = [p for p in prompts for _ in range(c.group_size)]
        seeds = [derive_seed("grpo", c.seed, it, str(p["id"]), g) for p in prompts for g in range(c.group_size)]
        pol = self.rollout_policy()
        self.model.eval()
        with torch.no_grad():
            if c.credit == "trajectory":
                return run_loop(pol, expanded, c.T, c.coord_format, show_progress=False, record_inputs=True,
                                sample_seeds=seeds, feedback=self.view)
            # one step 0 per prompt (sampled, or greedy: refine_start), shared by its group; only the refine steps are
            # recorded for the loss
            if c.refine_start == "greedy":  # the deployed start: what the greedy policy answers at step 0
                greedy = HFPolicy(self.model, self.processor, c.max_new_tokens, c.batch_size)
                s0 = run_loop(greedy, list(prompts), 0, c.coord_format, show_progress=False,
                              record_inputs=c.anchor_step0)
            else:
                s0 = run_loop(pol, list(prompts), 0, c.coord_format, show_progress=False, record_inputs=c.anchor_step0,
                              sample_seeds=[derive_seed("grpo-step0", c.seed, it, str(p["id"])) for p in prompts])
            starts = [tr.steps[0].box for tr in s0 for _ in range(c.group_size)]
            trajs = run_loop(pol, expanded, c.T, c.coord_format, start_boxes=starts, show_progress=False,
                             record_inputs=True, sample_seeds=seeds, feedback=self.view)
            for tr, s in zip(trajs, (t for t in s0 for _ in range(c.group_size))):
                tr.steps[0] = s.steps[0]  # keep the shared step 0's text, parse flag and log-prob
            if c.anchor_step0:  # the shared step 0, scored once per group with advantage 0 (rollout_rows)
                for tr, s in zip(trajs[::c.group_size], s0):
                    tr.rollout = [{**r, "anchor": True} for r in s.rollout] + tr.rollout
            return trajs

    def frames(self, trajs: Sequence[Trajectory]) -> list:
        """Each trajectory's last answer frame (:func:`ivt_lib.core.boxes.model_frames`): its image's or its window's."""
        sizes = [(tr.width, tr.height) if tr.steps[-1].window is None else (self.view.size,) * 2 for tr in trajs]
        return bx.model_frames(self.processor, sizes, self.cfg.coord_format)

    def validate(self) -> dict:
        """Greedy T-step evaluation on the validation subset: last-step Acc@0.5, degradation, improve/degrade/stay."""
        from ..core.metrics import stability, step_metrics

        pol = HFPolicy(self.model, self.processor, self.cfg.max_new_tokens, self.cfg.batch_size)
        self.model.eval()
        with torch.no_grad():
            trajs = run_loop(pol, self.val_samples, self.cfg.T, self.cfg.coord_format, show_progress=False,
                             feedback=self.view)
        st = stability(trajs)
        return {"step0_acc@0.5": step_metrics(trajs, 0)["acc@0.5"],
                "last_acc@0.5": step_metrics(trajs, self.cfg.T)["acc@0.5"], **st}

    def step(self) -> dict:
        """One GRPO iteration: rollout, rewards, advantages, one clipped policy-gradient update."""
        c = self.cfg
        torch.manual_seed(c.seed * 100003 + self.iteration)  # anything else random is reproducible per iteration
        trajs = self.rollout(self.local_prompts(self.iteration))
        rewards = final_rewards(trajs, c.reward_weights, c.coord_format, self.frames(trajs))
        adv = group_advantages(rewards, c.group_size)
        rows = rollout_rows(trajs, adv, self.banned_ids)
        n_tok, n_rows = (int(v) for v in self.pg.all_sum(sum(len(r["token_ids"]) for r in rows), len(rows), device=self.model.device))
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss_sum, kl_sum, clip_sum = 0.0, 0.0, 0.0
        for s in range(0, len(rows), c.micro_batch):
            mb = rows[s:s + c.micro_batch]
            inputs, comp, mask = encode_rows(self.processor, mb, self.model.device)  # encoded once, scored twice
            ref = None
            if c.beta != 0.0:
                with torch.no_grad(), self.model.disable_adapter():
                    ref = token_logps(self.model, inputs, comp, c.temperature)
            logps = token_logps(self.model, inputs, comp, c.temperature)
            a = torch.tensor([r["advantage"] for r in mb], dtype=logps.dtype, device=logps.device)
            loss, st = grpo_loss(logps, logps.detach(), ref, a, mask, c.beta, c.epsilon, c.epsilon, c.loss_type)
            mb_tok = int(mask.sum())
            # scale so that the sum over micro-batches *and processes* is the loss over the whole batch of rows
            weight = mb_tok / max(n_tok, 1) if c.loss_type == "bnpo" else len(mb) / max(n_rows, 1)
            (loss * weight).backward()
            loss_sum += float(loss.detach()) * weight
            kl_sum += st["kl"] * mb_tok
            clip_sum += st["clip_frac"] * mb_tok
        if n_rows > 0:  # no scorable row anywhere (every completion banned/empty): no update, on every process
            self.pg.sum_gradients(self.params)
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
        self.iteration += 1
        loss_sum, kl_sum, clip_sum = self.pg.all_sum(loss_sum, kl_sum, clip_sum, device=self.model.device)
        parts = self.pg.all_gather({"rewards": rewards.tolist(), "ious": [tr.ious for tr in trajs],
                                  "parse": [tr.steps[-1].parse_ok for tr in trajs],
                                  "tokens": [(tr.sample_id, [r["token_ids"] for r in tr.rollout]) for tr in trajs]})
        all_rewards = torch.tensor([r for p in parts for r in p["rewards"]])
        ious = np.array([i for p in parts for i in p["ious"]])
        entry = {"iteration": self.iteration, "loss": loss_sum, "reward_mean": float(all_rewards.mean()),
                 "reward_std": float(all_rewards.std()), "kl": kl_sum / max(n_tok, 1),
                 "clip_frac": clip_sum / max(n_tok, 1), "iou_per_step": ious.mean(0).tolist(),
                 "final_parse_rate": float(np.mean([x for p in parts for x in p["parse"]])),
                 "zero_adv_groups": int((all_rewards.view(-1, c.group_size).std(1) == 0).sum()), "rows": n_rows,
                 "tokens": n_tok, "processes": self.world,
                 # the same rollouts <=> the same digest, however many processes generated them
                 "rollout_digest": rollout_digest([t for p in parts for t in p["tokens"]])}
        if self.cfg.val_every and self.iteration % self.cfg.val_every == 0 and self.is_main:
            entry["val"] = self.validate()
        self.logs.append(entry)
        return entry

    def train(self, show_progress: bool = True) -> list[dict]:
        """Run the remaining iterations (resuming if a checkpoint exists); save periodically and at the end."""
        bar = tqdm(total=self.cfg.iterations, initial=self.iteration, desc="GRPO",
                   disable=not show_progress or not self.is_main or not progress.enabled())
        if self.cfg.val_every and self.iteration == 0 and not self.val0 and self.is_main:
            self.val0 = self.validate()  # the curve's starting point: the SFT policy itself
        while self.iteration < self.cfg.iterations:
            e = self.step()
            bar.update(1)
            bar.set_postfix(reward=f"{e['reward_mean']:.3f}", kl=f"{e['kl']:.4f}")
            if self.iteration % self.cfg.save_every == 0 or self.iteration == self.cfg.iterations:
                self.save()
        bar.close()
        return self.logs

    def export(self, path: str | Path) -> str:
        """Merge the adapter into a plain model folder (loadable by ``load_model``; main process writes); its path."""
        from ..core.models import save_merged

        if self.is_main:
            save_merged(self.model, self.processor, path, {"grpo_config.json": json.dumps(asdict(self.cfg), indent=1)})
        self.pg.barrier()
        return str(path)
