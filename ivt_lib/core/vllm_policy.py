"""Optional vLLM generation backend for the refinement loop: a :class:`~ivt_lib.core.loop.Policy` on ``vllm.LLM``.

Same contract as :class:`~ivt_lib.core.loop.HFPolicy`: ``generate(messages, images) -> list[Generation]`` with the text,
the mean log-probability of the generated tokens (the label-free confidence) and the generated token ids. Prompts are
built with the HF processor's chat template (the same text ``HFPolicy`` feeds its processor); vLLM expands the image
placeholder itself and gets the image as ``multi_modal_data``. vLLM is imported only when the class is instantiated,
so this module imports anywhere; vLLM itself needs a GPU machine (``pip install vllm``).

    >>> pol = VLLMPolicy("Qwen/Qwen3-VL-4B-Instruct", max_new_tokens=64)      # doctest: +SKIP
    >>> trajs = run_loop(pol, samples, T=2)                                     # doctest: +SKIP

vLLM keeps its own copy of the weights: a trained model (e.g. the merged SFT folder) is loaded by path, and GRPO
(``generation_backend="vllm"``) pushes the policy's merged weights into the engine after every update with
:meth:`VLLMPolicy.sync_weights`, as trl's colocate mode does (``trl/generation/vllm_generation.py``, trl 1.16).
"""
from __future__ import annotations

import math

import torch
from typing import Any, Iterator, Sequence

from PIL import Image

from . import progress
from .loop import Generation

INSTALL_HINT = ("VLLMPolicy needs vLLM, which is not installed here: `pip install vllm` on a GPU machine "
                "(vLLM runs on CUDA GPUs; on a CPU machine use ivt_lib.core.loop.HFPolicy instead).")


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:  # also raised when sys.modules["vllm"] is None
        raise ImportError(INSTALL_HINT) from exc
    return vllm


def mean_logprob(token_ids, logprobs, cumulative_logprob: float | None = None) -> float:
    """Mean log-probability of the sampled tokens from vLLM's per-position ``{token_id: Logprob}`` maps.

    With ``logprobs=1`` each position holds the sampled token and the top-1 token (one entry when they coincide); the
    sampled token's value is used, never the top one. Falls back to ``cumulative_logprob / n``; NaN when unknown.
    """
    ids = list(token_ids)
    if not ids:
        return float("nan")
    if logprobs is not None and len(logprobs) == len(ids):
        vals = []
        for tid, pos in zip(ids, logprobs):
            lp = pos.get(tid) if pos is not None else None
            if lp is None:
                break
            vals.append(float(getattr(lp, "logprob", lp)))
        else:
            return sum(vals) / len(vals)
    if cumulative_logprob is not None and math.isfinite(cumulative_logprob):
        return float(cumulative_logprob) / len(ids)
    return float("nan")


class VLLMPolicy:
    """Batched generation with ``vllm.LLM`` (greedy unless ``temperature > 0``), one image per prompt (two in the
    zoom view, passed as a list).

    Args:
        model: hub id or local folder (what ``vllm.LLM(model=...)`` takes), e.g. the merged SFT model.
        processor: the HF processor whose chat template builds the prompts (default: loaded from ``model``).
        max_new_tokens, temperature, top_p: sampling, as in :class:`~ivt_lib.core.loop.HFPolicy`.
        seed: the vLLM engine's seed (``None``: vLLM's default).
        show_progress: vLLM's own progress bar.
        llm: an already built ``vllm.LLM`` to reuse (then ``llm_kwargs`` is ignored).
        colocate: run the engine inside this process (``distributed_executor_backend="external_launcher"``, one
            engine per training process on its own GPU, as trl's colocate mode) so that :meth:`sync_weights` can
            reach the model; needed for GRPO rollouts, not for evaluation.
        **llm_kwargs: passed to ``vllm.LLM`` (``dtype``, ``gpu_memory_utilization``, ``max_model_len``,
            ``tensor_parallel_size``, ...).
    """

    def __init__(self, model: str, processor=None, max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, show_progress: bool = False, llm=None,
                 colocate: bool = False, **llm_kwargs: Any):
        vllm = _import_vllm()
        self._vllm = vllm
        self.model = str(model)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.seed, self.show_progress = seed, show_progress
        if processor is None:
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(self.model)
        self.processor = processor
        if llm is None:
            kwargs = {"limit_mm_per_prompt": {"image": 2}, **llm_kwargs}
            if colocate:
                kwargs.update(_colocate_kwargs(seed))
            elif seed is not None:
                kwargs.setdefault("seed", seed)
            llm = vllm.LLM(model=self.model, **kwargs)
        self.llm = llm

    def sampling_params(self, seed: int | None = None):
        """``vllm.SamplingParams`` for one request (``logprobs=1``: the sampled token's log-probability).

        ``seed`` (per request) makes a sequence's sample independent of its batch; without it the engine's ``seed``
        makes a whole run reproducible and identical prompts (a GRPO group) still sample different answers.
        """
        kw = {} if seed is None else {"seed": int(seed) % (2 ** 63)}
        return self._vllm.SamplingParams(temperature=self.temperature, top_p=self.top_p,
                                         max_tokens=self.max_new_tokens, logprobs=1, **kw)

    def prompts(self, messages: list[list[dict]], images: list[Image.Image | list[Image.Image]]) -> list[dict]:
        """vLLM inputs: the chat-templated text (with the image placeholders) and its image (or list of images)."""
        if len(messages) != len(images):
            raise ValueError(f"got {len(messages)} message lists but {len(images)} images")
        return [{"prompt": self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                 "multi_modal_data": {"image": im}} for m, im in zip(messages, images)]

    def generate(self, messages: list[list[dict]], images: list[Image.Image],
                 seeds: Sequence[int] | None = None) -> list[Generation]:
        """Generate for all pairs in one vLLM call (vLLM batches and schedules them itself); ``seeds``: one per
        request."""
        if not messages:
            return []
        if seeds is not None and len(seeds) != len(messages):
            raise ValueError(f"seeds: {len(seeds)} for {len(messages)} prompts")
        params = self.sampling_params() if seeds is None else [self.sampling_params(sd) for sd in seeds]
        outs = self.llm.generate(self.prompts(messages, images), sampling_params=params,
                                 use_tqdm=self.show_progress and progress.enabled())
        if len(outs) != len(messages):
            raise RuntimeError(f"vLLM returned {len(outs)} outputs for {len(messages)} prompts")
        gens = []
        for o in outs:
            c = o.outputs[0]
            ids = [int(t) for t in c.token_ids]
            gens.append(Generation(c.text, mean_logprob(ids, c.logprobs, getattr(c, "cumulative_logprob", None)),
                                   ids))
        return gens

    def sync_weights(self, model, only_lora: bool = True) -> int:
        """Load ``model``'s current weights into the engine (LoRA deltas added out of place); returns the count.

        ``only_lora``: push only the weights that LoRA wraps (the engine was started from the same base model, and
        the rest is frozen), not the vision tower and embeddings. Colocated engines only (``colocate=True``), as
        trl's ``vllm_mode="colocate"``; the prefix cache is reset because cached keys/values used the old weights.
        """
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        n = 0
        for name, tensor in vllm_named_weights(model, only_lora=only_lora):
            runner.load_weights([(name, tensor)])
            n += 1
        self.llm.reset_prefix_cache()
        return n


def _colocate_kwargs(seed: int | None) -> dict:
    """``vllm.LLM`` arguments and environment for an engine inside this (training) process, as trl's colocate mode."""
    import os

    from accelerate import PartialState
    from trl.trainer.utils import ensure_master_addr_port

    state = PartialState()
    os.environ["RANK"] = str(state.process_index)
    os.environ["LOCAL_RANK"] = str(state.local_process_index)
    os.environ["WORLD_SIZE"] = str(state.num_processes)
    ensure_master_addr_port()
    return {"distributed_executor_backend": "external_launcher", "seed": (seed or 0) + state.process_index}


def vllm_named_weights(model, only_lora: bool = False) -> Iterator[tuple[str, Any]]:
    """``(hf_name, tensor)`` for every weight of ``model`` under the name vLLM loads. For a peft model each LoRA-wrapped
    weight is yielded as ``base + delta`` computed out of place (``get_delta_weight``), LoRA tensors are skipped and
    ``base_model.model.`` / ``.base_layer`` stripped. Out of place, unlike trl's ``merge_adapter()``/``unmerge_adapter()``
    round trip, so the trained model's bf16 base weights never drift over hundreds of syncs. ``only_lora``: just the
    LoRA-wrapped weights (what an update changes)."""
    is_peft = hasattr(model, "peft_config") and hasattr(model, "get_base_model")
    lora_modules = {n: m for n, m in model.named_modules() if is_peft and hasattr(m, "get_delta_weight")
                    and hasattr(m, "base_layer")}
    with torch.no_grad():
        for name, param in model.named_parameters():
            tensor = param.data
            if is_peft:
                if "lora_" in name or "original_module" in name:
                    continue
                owner = name.rsplit(".base_layer.", 1)[0] if ".base_layer." in name else None
                wrapped = owner in lora_modules and name.endswith(".base_layer.weight")
                if only_lora and not wrapped:
                    continue
                if wrapped:
                    mod = lora_modules[owner]
                    if not getattr(mod, "merged", False) and not getattr(mod, "disable_adapters", False):
                        for adapter in mod.active_adapters:
                            if adapter in mod.lora_A:
                                tensor = tensor + mod.get_delta_weight(adapter).to(tensor.dtype)
                name = name.removeprefix("base_model.model.").replace(".base_layer", "")
                name = name.replace("modules_to_save.default.", "")
            yield name, tensor
